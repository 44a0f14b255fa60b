"""Reading audio: any file soundfile reads (wav, flac, ogg), any rate, mono or multi-channel.

This is the only place in the project that resamples (soxr, very high quality): the feature stage,
the recognizer and the demo server all come through `load_audio`.
"""

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from asrdemo.errors import AsrdemoError


class AudioError(AsrdemoError):
    pass


def to_mono(wave: np.ndarray) -> np.ndarray:
    """(N,) or (N, C) -> (N,) float32, averaging channels."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    elif wave.ndim != 1:
        raise AudioError(f"audio must be (samples,) or (samples, channels), got shape {wave.shape}")
    return wave


def resample(wave: np.ndarray, sample_rate: int, target_sr: int) -> np.ndarray:
    wave = to_mono(wave)
    if sample_rate == target_sr or len(wave) == 0:
        return wave
    if sample_rate <= 0:
        raise AudioError(f"bad sample rate {sample_rate}")
    return soxr.resample(wave, sample_rate, target_sr, quality="VHQ").astype(np.float32, copy=False)


def _describe(src) -> str:
    return str(src) if isinstance(src, (str, Path)) else "<audio data>"


def load_audio(src, target_sr=None):
    """Read `src` (a path, bytes, or a binary file object) -> (mono float32 wave in [-1, 1], original rate).

    With `target_sr`, the wave is resampled to it. Raises `AudioError` with the file name when the
    data is not audio soundfile can read, or is empty.
    """
    if isinstance(src, (bytes, bytearray, memoryview)):
        src = io.BytesIO(bytes(src))
    elif isinstance(src, (str, Path)) and not Path(src).is_file():
        raise AudioError(f"{src}: no such file")
    try:
        wave, sr = sf.read(src, dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(f"{_describe(src)}: cannot read audio ({e})") from None
    if wave.size == 0:
        raise AudioError(f"{_describe(src)}: no samples")
    wave = to_mono(wave)
    if target_sr is not None:
        wave = resample(wave, sr, target_sr)
    return wave, sr
