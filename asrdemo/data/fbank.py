"""Kaldi-exact log-mel filterbank features (kaldi-native-fbank).

The one feature extractor of the project: the feature stage, the recognizer and the demo's
spectrogram all call `Fbank`. Its settings live in `conf/fbank.yaml` and travel with every
dump dir (`frontend.yaml`) and exp dir (`config.yaml` -> `frontend:`).
"""

import kaldi_native_fbank as knf
import numpy as np
import yaml

DEFAULT_FBANK_CONF = {
    "sample_rate": 16000,
    "num_mel_bins": 80,
    "frame_length_ms": 25.0,
    "frame_shift_ms": 10.0,
    "dither": 0.0,
}


class Fbank:
    """`Fbank(conf)(wave) -> (num_frames, num_mel_bins) float32`, `wave` float in [-1, 1] at `sample_rate`."""

    def __init__(self, conf=None):
        unknown = set(conf or {}) - set(DEFAULT_FBANK_CONF)
        if unknown:
            raise ValueError(f"unknown fbank options {sorted(unknown)}; known: {sorted(DEFAULT_FBANK_CONF)}")
        self.conf = {**DEFAULT_FBANK_CONF, **(conf or {})}
        opts = knf.FbankOptions()
        opts.frame_opts.samp_freq = float(self.conf["sample_rate"])
        opts.frame_opts.frame_length_ms = float(self.conf["frame_length_ms"])
        opts.frame_opts.frame_shift_ms = float(self.conf["frame_shift_ms"])
        opts.frame_opts.dither = float(self.conf["dither"])
        opts.mel_opts.num_bins = int(self.conf["num_mel_bins"])
        self._opts = opts

    @classmethod
    def from_yaml(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls(yaml.safe_load(f) or {})

    @property
    def sample_rate(self) -> int:
        return int(self.conf["sample_rate"])

    @property
    def num_mel_bins(self) -> int:
        return int(self.conf["num_mel_bins"])

    @property
    def frame_shift_s(self) -> float:
        return self.conf["frame_shift_ms"] / 1000.0

    @property
    def frame_length_s(self) -> float:
        return self.conf["frame_length_ms"] / 1000.0

    @property
    def win_length(self) -> int:
        """Samples per analysis frame (25 ms: 400 at 16 kHz)."""
        return int(self.sample_rate * self.conf["frame_length_ms"] / 1000)

    @property
    def hop_length(self) -> int:
        """Samples between frame starts (10 ms: 160 at 16 kHz)."""
        return int(self.sample_rate * self.conf["frame_shift_ms"] / 1000)

    def num_frames(self, num_samples: int) -> int:
        """Kaldi's frame count with snip_edges=True."""
        return 0 if num_samples < self.win_length else 1 + (num_samples - self.win_length) // self.hop_length

    def dc_removed_frames(self, wave: np.ndarray) -> np.ndarray:
        """(N,) float wave -> (F, win_length) float64, its analysis frames (F = `num_frames(N)`), each
        minus its mean: the DC offset Kaldi's `remove_dc_offset` takes away before the spectrum, so
        what is left is what the features can see. A wave shorter than one frame is one shorter
        frame; an empty one, (0, 0). For the silence check and the pause finder (decode/segment.py)."""
        wave = np.asarray(wave, dtype=np.float64)
        if len(wave) == 0:
            return np.zeros((0, 0))
        if len(wave) < self.win_length:
            frames = wave[None, :]
        else:
            frames = np.lib.stride_tricks.sliding_window_view(wave, self.win_length)[:: self.hop_length]
        return frames - frames.mean(axis=1, keepdims=True)

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        stream = self.stream()
        frames = stream.accept_waveform(wave)
        return np.concatenate([frames, stream.input_finished()])

    def stream(self) -> "FbankStream":
        """Features of a wave that arrives in pieces: the same frames as calling this on the whole."""
        return FbankStream(self)


class FbankStream:
    """Incremental fbank (kaldi-native-fbank's online API): ``accept_waveform(piece)`` -> the
    frames (n, num_mel_bins) that became complete, ``input_finished()`` -> the rest. Frame i is
    ready once its 25 ms window has arrived (snip_edges), so the concatenation equals ``Fbank``
    of the whole wave, whatever the pieces."""

    def __init__(self, fbank: Fbank):
        self._fbank, self._online, self._read = fbank, knf.OnlineFbank(fbank._opts), 0

    def accept_waveform(self, wave: np.ndarray) -> np.ndarray:
        """wave: mono float in [-1, 1] at the fbank's sample rate (any length, 0 included)."""
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"Fbank expects a mono wave (samples,), got shape {wave.shape}")
        if len(wave):
            # Kaldi's features are defined on the int16 scale.
            self._online.accept_waveform(self._fbank.sample_rate, wave * 32768.0)
        return self._ready()

    def input_finished(self) -> np.ndarray:
        self._online.input_finished()
        return self._ready()

    def _ready(self) -> np.ndarray:
        n = self._online.num_frames_ready
        frames = [self._online.get_frame(i) for i in range(self._read, n)]
        self._read = n
        if not frames:
            return np.zeros((0, self._fbank.num_mel_bins), dtype=np.float32)
        return np.stack(frames).astype(np.float32, copy=False)
