"""Training examples from a data dir's audio, for a frontend that makes its features on the fly
from the waveform (``frontend: ssl``, asrdemo/model/ssl_frontend.py).

An fbank exp trains on a dump dir (`feats.scp`, stage 2). An SSL frontend's features depend on
weights that may be trained, so they cannot be dumped once: the trainer reads `wav.scp` of a Kaldi
data dir (stage 1's `data/<set>`, or `data/train_sp`) and each item is the utterance's audio,
read and resampled to the model's rate by `asrdemo.data.audio.load_audio` (the one reader and
resampler), a float32 (N,) in [-1, 1].

Lengths are **samples** at that rate (from `utt2dur`), and so are batching's `batch_bins`,
`min_frames` and `max_frames` for such an exp, as ESPnet counts raw-audio batches in samples.
"""

import logging
from pathlib import Path
from typing import Optional

import numpy as np

from asrdemo.data.audio import load_audio
from asrdemo.data.dataset import Example, select_examples
from asrdemo.data.datadir import read_kv, read_text
from asrdemo.errors import AsrdemoError

log = logging.getLogger(__name__)


def utterance_samples(data_dir, sample_rate: int) -> dict:
    """{utt_id: samples at `sample_rate`} from `data_dir/utt2dur` (seconds). Raises AsrdemoError
    when the file is missing or a duration is not a number."""
    path = Path(data_dir) / "utt2dur"
    if not path.is_file():
        raise AsrdemoError(f"missing {path}: the SSL frontend batches by duration (made by stage 1, `asrdemo prepare`)")
    out = {}
    for utt_id, value in read_kv(path).items():
        try:
            out[utt_id] = int(round(float(value) * sample_rate))
        except ValueError:
            raise AsrdemoError(f"{path}: {utt_id}: not a duration in seconds: {value!r}") from None
    return out


def read_wave_dir(data_dir, token_list, sample_rate: int, min_samples: int = 1,
                  max_samples: Optional[int] = None, readings: bool = False) -> list:
    """`wav.scp`, `utt2dur` and `text` of a data dir -> `Example`s whose `feats_path` is the audio
    file and `num_frames` its length in samples at `sample_rate`.

    Utterances outside [min_samples, max_samples] are left out with a log line; an empty
    transcript is a non-speech example (`select_examples`). Raises AsrdemoError for a missing file, an utterance missing from `text` or
    `utt2dur`, a pipe command in wav.scp, or audio that is not there."""
    data_dir = Path(data_dir)
    for name in ("wav.scp", "utt2dur", "text"):
        if not (data_dir / name).is_file():
            raise AsrdemoError(f"missing {data_dir / name} (a data dir of stage 1, `asrdemo prepare`)")
    wavs = read_kv(data_dir / "wav.scp")
    for utt_id, wav in wavs.items():
        if wav.rstrip().endswith("|"):
            raise AsrdemoError(f"{data_dir}/wav.scp: {utt_id}: pipe commands are not supported, give a file path")
        if not Path(wav).is_file():
            raise AsrdemoError(f"{data_dir}/wav.scp: {utt_id}: {wav} does not exist (from {Path.cwd()})")
    return select_examples(data_dir, wavs, utterance_samples(data_dir, sample_rate), read_text(data_dir / "text"),
                           token_list, min_samples, max_samples, listed_in="wav.scp", lengths_file="utt2dur",
                           unit="samples", readings=readings)


class WaveLoader:
    """`WaveLoader(sample_rate)(example)` -> its audio, float32 (N,) mono at `sample_rate` (a
    picklable callable for `ASRDataset`, so DataLoader workers can use it)."""

    def __init__(self, sample_rate: int):
        self.sample_rate = int(sample_rate)

    def __call__(self, example: Example) -> np.ndarray:
        wave, _ = load_audio(example.feats_path, self.sample_rate)
        return np.ascontiguousarray(wave, dtype=np.float32)
