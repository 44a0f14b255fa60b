"""What `asrdemo train` reads, for each frontend of the training config (``frontend:``).

* ``fbank`` (default): --train_dir / --valid_dir are dump dirs of stage 2 (`feats.scp`,
  `cmvn.ark`, `frontend.yaml`); items are fbank matrices (T, 80), lengths in frames; config.yaml's
  `frontend:` holds the fbank options.
* ``ssl``: they are data dirs of stage 1 (`wav.scp`, `utt2dur`, `text`); items are waves (N,) at
  16 kHz, lengths in samples, and the model's `HuggingFaceFrontend` makes the features;
  config.yaml holds `frontend: ssl` and `frontend_conf:` (the settings, the SSL model's name,
  revision and weights digest).

An SSL frontend's features depend on weights that train (the layer weights and the projection,
and the SSL model itself when fine-tuned), so they are computed on the fly from the audio rather
than dumped once; global CMVN is not used (the projection learns the scale).
"""

import dataclasses
import json
import logging
from pathlib import Path
from typing import Callable, Optional

import kaldiio
import numpy as np
import torch
import yaml

from asrdemo.data.cmvn import load_stats
from asrdemo.data.dataset import read_dump_dir
from asrdemo.data.datadir import read_kv
from asrdemo.errors import AsrdemoError
from asrdemo.model.subsampling import INPUT_LAYERS
from asrdemo.utils.io import atomic_write_text

log = logging.getLogger(__name__)

FRONTENDS = ("fbank", "ssl")
LAYER_WEIGHTS_FILE = "ssl_layer_weights.json"


@dataclasses.dataclass
class TrainingInput:
    kind: str  # fbank | ssl
    train_examples: list
    valid_examples: list
    input_dim: int  # the encoder's input size
    frontend_record: Optional[dict]  # fbank: the options (frontend.yaml); ssl: frontend_conf with the model's version
    cmvn_stats: Optional[np.ndarray]
    frontend: Optional[torch.nn.Module] = None  # ssl: the model's frontend module
    load: Optional[Callable] = None  # how a dataset item is read (None: fbank from the ark)
    length_unit: str = "frames"  # of Example.num_frames and of batching's bins


def check_frontend_kind(value, where: str) -> str:
    """``frontend:`` of a training config: fbank or ssl. Raises AsrdemoError naming `where`."""
    if value not in FRONTENDS:
        raise AsrdemoError(f"{where}: frontend must be one of {', '.join(FRONTENDS)}, got {value!r}")
    return value


def read_training_input(config: dict, train_dir, valid_dir, token_list) -> TrainingInput:
    """The examples, input size and frontend of a run (the table above); with the model's reading
    CTC (`reading_ctc_weight` > 0) the examples carry its targets. Raises AsrdemoError for missing
    files, an SSL model that cannot be found offline, or readings wanted without pyopenjtalk."""
    from asrdemo.kana import kana_available
    from asrdemo.model.asr_model import resolve_model_conf

    bc = config["batching"]
    kind = check_frontend_kind(config.get("frontend", "fbank"), "training config")
    readings = resolve_model_conf(config["model"])["reading_ctc_weight"] > 0
    if readings and not kana_available():
        raise AsrdemoError("reading_ctc_weight > 0 needs pyopenjtalk for the readings: pip install -e '.[mini]'")
    if kind == "ssl":
        return _ssl_input(config, train_dir, valid_dir, token_list, readings)
    if config.get("frontend_conf"):
        raise AsrdemoError("frontend_conf is for frontend: ssl; the fbank options live in conf/fbank.yaml "
                           "(stage 2, the dump dir's frontend.yaml)")
    train_examples = read_dump_dir(train_dir, token_list, bc["min_frames"], bc["max_frames"], readings)
    valid_examples = read_dump_dir(valid_dir, token_list, readings=readings)
    input_dim = int(kaldiio.load_mat(train_examples[0].feats_path).shape[1])
    frontend_path = Path(train_dir) / "frontend.yaml"
    frontend = yaml.safe_load(frontend_path.read_text(encoding="utf-8")) if frontend_path.is_file() else None
    if frontend is None:
        log.warning("%s is missing: config.yaml will have no frontend", frontend_path)
    elif frontend.get("num_mel_bins", input_dim) != input_dim:
        raise AsrdemoError(f"{frontend_path} says {frontend['num_mel_bins']} mel bins, the features have {input_dim}")
    cmvn_path = Path(train_dir) / "cmvn.ark"
    cmvn_stats = load_stats(cmvn_path) if cmvn_path.is_file() else None
    if cmvn_stats is None:
        log.warning("%s is missing: the model will not normalise its input", cmvn_path)
    return TrainingInput("fbank", train_examples, valid_examples, input_dim, frontend, cmvn_stats)


def _ssl_input(config, train_dir, valid_dir, token_list, readings: bool) -> TrainingInput:
    from asrdemo.data.wave_dataset import WaveLoader, read_wave_dir
    from asrdemo.model.ssl_frontend import HuggingFaceFrontend

    if (Path(train_dir) / "feats.scp").is_file() and not (Path(train_dir) / "wav.scp").is_file():
        raise AsrdemoError(f"frontend: ssl reads audio: give --train_dir/--valid_dir as data dirs with wav.scp "
                           f"(e.g. data/train, data/dev), not the fbank dump {train_dir}")
    frontend = HuggingFaceFrontend.from_conf(config.get("frontend_conf"))
    input_layer = (config["model"].get("encoder_conf") or {}).get("input_layer", "conv2d")
    if input_layer != "conv2d2":
        shift_ms = frontend.frame_shift_s * 1000
        log.warning("frontend: ssl with input_layer %s: encoder frames of %.0f ms (conv2d2 gives 40 ms from the SSL "
                    "model's %.0f ms frames)", input_layer, shift_ms * INPUT_LAYERS.get(input_layer, 4), shift_ms)
    bc, sr = config["batching"], frontend.sample_rate
    train_examples = read_wave_dir(train_dir, token_list, sr, bc["min_frames"], bc["max_frames"], readings)
    valid_examples = read_wave_dir(valid_dir, token_list, sr, readings=readings)
    return TrainingInput("ssl", train_examples, valid_examples, frontend.output_size(), frontend.conf, None,
                         frontend=frontend, load=WaveLoader(sr), length_unit="samples")


def longest_utterance(data_dir, kind: str, sample_rate: Optional[int] = None) -> dict:
    """config.yaml's record of the longest training utterance, which the recognizer cuts longer input
    by: {"train_max_frames": fbank frames} (utt2num_frames) or {"train_max_samples": samples}
    (utt2dur; ssl). None when the file is missing or empty."""
    if kind == "ssl":
        from asrdemo.data.wave_dataset import utterance_samples

        samples = list(utterance_samples(data_dir, sample_rate).values())
        return {"train_max_samples": max(samples) if samples else None}
    path = Path(data_dir) / "utt2num_frames"
    frames = [int(v) for v in read_kv(path).values()] if path.is_file() else []
    return {"train_max_frames": max(frames) if frames else None}


def write_layer_weights(exp_dir, model_file, frontend_conf: dict) -> Optional[Path]:
    """exp_dir/ssl_layer_weights.json: softmax of the weighted sum's weights in `model_file` (the
    averaged model), one per hidden state (0: the transformer's input, l: layer l's output), with the
    SSL model's name. None (nothing written) for a frontend that uses one fixed layer."""
    from asrdemo.model.asr_model import load_model_weights

    state = load_model_weights(model_file)
    logits = state.get("frontend.weighted_sum.weights")
    if logits is None:
        return None
    weights = torch.softmax(logits.double(), dim=0).tolist()
    record = {"model": frontend_conf.get("model"), "revision": frontend_conf.get("revision"),
              "model_file": Path(model_file).name, "layers": list(range(len(weights))),
              "weights": [round(w, 6) for w in weights]}
    path = Path(exp_dir) / LAYER_WEIGHTS_FILE
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    best = max(range(len(weights)), key=lambda i: weights[i])
    log.info("SSL layer weights (%s): %s; most weight on layer %d", path.name,
             " ".join(f"{w:.3f}" for w in weights), best)
    return path
