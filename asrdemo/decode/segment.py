"""Long-form decoding: cut audio longer than the model was trained on into pieces at pauses.

A model trained on utterances of at most a few seconds does not generalise to minutes: its
attention decoder loses its place (「…しましましま…」) and CTC drops most characters (issue 12,
item 2). The recognizer therefore decodes a long input as pieces no longer than the longest
training utterance, cut where the audio is quietest, and joins the pieces' text and times.

Why energy and not CTC blanks: a pause is found here from the signal alone, in one cheap pass,
before the model runs; finding it from runs of CTC blanks needs a first encoder pass over the
whole input — exactly the long input the encoder handles badly — and then a second one over the
pieces. The energy is that of each 25 ms analysis frame with its DC offset removed (what the fbank
sees, as `Recognizer.level_dbfs`), smoothed over `PAUSE_S`, so that one quiet frame inside a word
does not beat a real pause. Each cut is the quietest point in the second half of the longest
allowed piece, so a piece is never longer than allowed, and never shorter than half of it
(except the last), even when the speaker never pauses.
"""

from typing import List, Tuple

import numpy as np

PAUSE_S = 0.2  # the energy is averaged over this long: about the shortest pause between phrases


def frame_energy_db(wave: np.ndarray, win: int, hop: int) -> np.ndarray:
    """(N,) float wave -> (F,) energy in dB of each `win`-sample frame every `hop` samples, after
    removing the frame's mean (its DC offset). F = 1 + (N - win) // hop (N >= win)."""
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(wave, dtype=np.float64), win)[::hop]
    power = np.mean((frames - frames.mean(axis=1, keepdims=True)) ** 2, axis=1)
    return 10.0 * np.log10(power + 1e-12)


def split_at_pauses(wave: np.ndarray, sample_rate: int, max_samples: int, win: int, hop: int,
                    step: int) -> List[Tuple[int, int]]:
    """Contiguous pieces [(start, end)] (samples) covering `wave` (N,), each at most `max_samples`
    long; every cut is a multiple of `step` samples (one encoder frame, so that times shift by whole
    frames) at the quietest point (`frame_energy_db` averaged over PAUSE_S) of the second half of
    the allowed span. `win`/`hop`: the fbank's frame length and shift in samples.

    Raises ValueError when `max_samples` is less than 2 steps."""
    n = len(wave)
    if max_samples < 2 * step:
        raise ValueError(f"max_samples {max_samples} is too short to split into pieces of {step}-sample frames")
    if n <= max_samples:
        return [(0, n)]
    energy = frame_energy_db(wave, win, hop)
    width = max(1, int(PAUSE_S * sample_rate / hop))
    smooth = np.convolve(energy, np.ones(width) / width, mode="same")
    centres = np.arange(len(smooth)) * hop + win // 2  # the sample at the middle of each frame
    pieces, start = [], 0
    while n - start > max_samples:
        lo, hi = start + max_samples // 2, start + max_samples
        candidates = np.nonzero((centres >= lo) & (centres <= hi))[0]
        centre = centres[candidates[np.argmin(smooth[candidates])]] if len(candidates) else hi
        cut = max(start + step, int(centre) // step * step)
        pieces.append((start, cut))
        start = cut
    pieces.append((start, n))
    return pieces
