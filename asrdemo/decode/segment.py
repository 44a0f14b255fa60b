"""Long-form decoding: cut audio longer than the model was trained on into pieces at pauses.

A model trained on utterances of at most a few seconds does not generalise to minutes: its
attention decoder loses its place (「…しましましま…」) and CTC drops most characters (issue 12,
item 2). The recognizer therefore decodes a long input as pieces no longer than the longest
training utterance, cut where the audio is quietest, and joins the pieces' text and times.

Why energy and not CTC blanks: a pause is found here from the signal alone, in one cheap pass,
before the model runs; finding it from runs of CTC blanks needs a first encoder pass over the
whole input — exactly the long input the encoder handles badly — and then a second one over the
pieces. The energy is that of each 25 ms analysis frame with its DC offset removed (what the fbank
sees: `Fbank.dc_removed_frames`, as for the silence check), smoothed over `PAUSE_S`, so that one
quiet frame inside a word does not beat a real pause. Each cut is the quietest point in the second half of the longest
allowed piece, so a piece is never longer than allowed, and never shorter than half of it
(except the last), even when the speaker never pauses.
"""

from typing import List, Tuple

import numpy as np

PAUSE_S = 0.2  # the energy is averaged over this long: about the shortest pause between phrases


def split_at_pauses(wave: np.ndarray, fbank, max_samples: int, step: int) -> List[Tuple[int, int]]:
    """Contiguous pieces [(start, end)] (samples) covering `wave` (N,) at `fbank`'s rate, each at
    most `max_samples` long; every cut is a multiple of `step` samples (one encoder frame, so that
    times shift by whole frames) at the quietest point of the second half of the allowed span: the
    energy (dB) of `fbank.dc_removed_frames(wave)`, averaged over PAUSE_S.

    Raises ValueError when `max_samples` is less than 2 steps."""
    n = len(wave)
    if max_samples < 2 * step:
        raise ValueError(f"max_samples {max_samples} is too short to split into pieces of {step}-sample frames")
    if n <= max_samples:
        return [(0, n)]
    energy = 10.0 * np.log10(np.mean(fbank.dc_removed_frames(wave) ** 2, axis=1) + 1e-12)
    width = max(1, int(PAUSE_S / fbank.frame_shift_s))
    smooth = np.convolve(energy, np.ones(width) / width, mode="same")
    centres = np.arange(len(smooth)) * fbank.hop_length + fbank.win_length // 2  # each frame's middle sample
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
