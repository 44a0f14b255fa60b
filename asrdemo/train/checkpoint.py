"""Training checkpoints: everything needed to continue a run exactly where it stopped.

`exp/<tag>/checkpoints/` holds
  epoch_N.pt   written at the end of epoch N (the best `keep_nbest_models` and the newest are kept)
  last.pt      rolling mid-epoch checkpoint, every `save_interval_steps` updates (if set)
  latest       one line naming the newest of them (written after it, atomically)

A checkpoint is a dict: model / optimizer / scheduler / grad-scaler state dicts, `epoch` and
`batches_done` (the position inside that epoch; the epoch's batch order is rebuilt from
(seed, epoch)), `step` (updates so far), the RNG states of every rank, the epoch's running
statistics, the best-so-far tracker and the history. Files are written atomically, so a kill at
any moment leaves the previous checkpoint intact.
"""

import logging
import random
import re
from pathlib import Path

import numpy as np
import torch

from asrdemo.errors import AsrdemoError
from asrdemo.utils.io import atomic_torch_save, atomic_write_text

log = logging.getLogger(__name__)

LATEST = "latest"


def rng_state():
    """The RNG states of python, numpy and torch (CPU and, if present, CUDA) of this process."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(ckpt_dir, name, state):
    """Write `ckpt_dir/name` atomically, then point `latest` at it."""
    ckpt_dir = Path(ckpt_dir)
    atomic_torch_save(state, ckpt_dir / name)
    atomic_write_text(ckpt_dir / LATEST, name + "\n")
    return ckpt_dir / name


def latest_checkpoint(ckpt_dir):
    """Path of the newest checkpoint, or None if the dir has none."""
    ckpt_dir = Path(ckpt_dir)
    pointer = ckpt_dir / LATEST
    if pointer.is_file():
        path = ckpt_dir / pointer.read_text(encoding="utf-8").strip()
        if path.is_file():
            return path
        log.warning("%s names %s, which is missing; using the newest file instead", pointer, path.name)
    files = [p for p in ckpt_dir.glob("*.pt") if re.fullmatch(r"epoch_\d+\.pt|last\.pt", p.name)]
    return max(files, key=lambda p: p.stat().st_mtime) if files else None


def load_checkpoint(path, map_location="cpu"):
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise AsrdemoError(f"cannot read checkpoint {path}: {e}")


def epoch_checkpoints(ckpt_dir):
    """{epoch: path} of the epoch_N.pt files present."""
    out = {}
    for p in Path(ckpt_dir).glob("epoch_*.pt"):
        m = re.fullmatch(r"epoch_(\d+)\.pt", p.name)
        if m:
            out[int(m.group(1))] = p
    return out


def prune_checkpoints(ckpt_dir, keep_epochs):
    """Delete the epoch_N.pt files whose N is not in `keep_epochs`."""
    for epoch, path in epoch_checkpoints(ckpt_dir).items():
        if epoch not in keep_epochs:
            path.unlink()
            log.debug("removed %s", path)
