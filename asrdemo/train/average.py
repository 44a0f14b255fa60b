"""Model averaging: the mean of the N best epochs' weights (by validation accuracy).

Averaging the last good epochs smooths out the noise of single updates and usually gains a
little accuracy for free (ESPnet's `valid.acc.ave_10best.pth`). The result is a plain
state_dict `valid.acc.ave_{N}best.pth`, and `valid.acc.ave.pth` (a symlink to it) is the model
that decoding loads by default.

    asrdemo average --exp_dir exp/mini --num 5
"""

import json
import logging
import os
from pathlib import Path

import torch

from asrdemo.errors import AsrdemoError
from asrdemo.train.checkpoint import epoch_checkpoints, load_checkpoint
from asrdemo.utils.io import atomic_torch_save

log = logging.getLogger(__name__)


def average_state_dicts(state_dicts):
    """Element-wise mean of floating-point tensors; other tensors (e.g. integer counters) are
    taken from the first state_dict. Sums in float64, so the order does not matter."""
    if not state_dicts:
        raise AsrdemoError("nothing to average")
    first = state_dicts[0]
    out = {}
    for key, value in first.items():
        if torch.is_tensor(value) and value.is_floating_point():
            total = torch.zeros_like(value, dtype=torch.float64)
            for sd in state_dicts:
                total += sd[key].to(torch.float64)
            out[key] = (total / len(state_dicts)).to(value.dtype)
        else:
            out[key] = value
    return out


def read_history(exp_dir):
    path = Path(exp_dir) / "history.jsonl"
    if not path.is_file():
        raise AsrdemoError(f"missing {path} (written by `asrdemo train` after each epoch)")
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise AsrdemoError(f"{path}:{lineno}: not JSON: {e}")
    return rows


def training_summary(rows) -> dict:
    """{"epochs", "updates", "hours"} of a run's history rows (non-empty): hours are the epochs'
    training-step time, the model card's and `init_param.json`'s measure of training."""
    return {"epochs": len(rows), "updates": rows[-1]["step"], "hours": sum(r["time"] for r in rows) / 3600}


def best_epochs(history, num, metric="valid_acc"):
    """The `num` best epochs by `metric`, best first (ties: the later epoch first). Accuracies
    rank high-to-low, anything else (loss, cer) low-to-high."""
    sign = 1 if metric.endswith("acc") else -1
    scored = [(sign * row[metric], row["epoch"]) for row in history if row.get(metric) is not None]
    scored.sort(reverse=True)
    return [epoch for _, epoch in scored[:num]]


def _symlink(target_name, link_path):
    """Point `link_path` at `target_name` (a name in the same dir), replacing it atomically."""
    tmp = link_path.with_name(f".{link_path.name}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target_name, tmp)
    os.replace(tmp, link_path)


def average_best(exp_dir, num, metric="valid_acc"):
    """Average the checkpoints of the `num` best epochs that are still on disk; write
    `valid.acc.ave_{k}best.pth` (k = how many were averaged) and point `valid.acc.ave.pth` at it
    (for another metric, e.g. valid_cer: `valid.cer.ave_{k}best.pth`).
    Returns (path, averaged epochs)."""
    exp_dir = Path(exp_dir)
    available = epoch_checkpoints(exp_dir / "checkpoints")
    history = [row for row in read_history(exp_dir) if row["epoch"] in available]
    epochs = best_epochs(history, num, metric)
    if not epochs:
        raise AsrdemoError(f"{exp_dir}: no epoch checkpoint with a {metric} in history.jsonl")
    if len(epochs) < num:
        log.warning("only %d epoch checkpoint(s) available; averaging %d instead of %d", len(epochs), len(epochs), num)
    state_dicts = [load_checkpoint(available[e])["model"] for e in epochs]
    prefix = metric.replace("_", ".")  # valid_acc -> valid.acc.ave_5best.pth, as ESPnet names it
    name = f"{prefix}.ave_{len(epochs)}best.pth"
    atomic_torch_save(average_state_dicts(state_dicts), exp_dir / name)
    _symlink(name, exp_dir / f"{prefix}.ave.pth")
    log.info("averaged epochs %s (best %s first) into %s", epochs, metric, exp_dir / name)
    return exp_dir / name, epochs


def add_arguments(p):
    p.add_argument("--exp_dir", required=True, help="an exp dir made by `asrdemo train`")
    p.add_argument("--num", type=int, default=5, help="how many best epochs to average (default 5)")
    p.add_argument("--metric", default="valid_acc", help="history.jsonl key to rank by (*acc: higher is better, else lower)")


def main(args):
    average_best(args.exp_dir, args.num, args.metric)
