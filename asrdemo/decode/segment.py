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
quiet frame inside a word does not beat a real pause. Silence is left out, and the cuts in what
sounds are chosen together (`split_at_pauses`): the quietest set of cuts that leaves no piece
longer than allowed, so a piece is never longer than allowed, even when the speaker never pauses.
"""

from typing import List, Tuple

import numpy as np

PAUSE_S = 0.2  # the energy is averaged over this long: about the shortest pause between phrases
CUT_COST_DB = 1.0  # what one more cut costs: of two equally quiet ways, the one with fewer pieces


def split_at_pauses(wave: np.ndarray, fbank, max_samples: int, step: int,
                    silence_dbfs: float = -60.0) -> List[Tuple[int, int]]:
    """Pieces [(start, end)] (samples, in order) of `wave` (N,) at `fbank`'s rate, each at most
    `max_samples` long; cuts inside sounding stretches fall `step` samples (one encoder frame) apart.

    First the stretches of at least PAUSE_S that are silent to the model (every analysis frame's
    DC-removed peak below `silence_dbfs`, the recognizer's silence rule) are left out: they are
    free cuts, and digital silence between utterances is no input a model was trained on. A sounding stretch longer than
    `max_samples` is then cut where it is quiet: of all ways to cut it, the one whose cuts have the
    least summed energy (`_quietest_cuts`).

    Raises ValueError when `max_samples` is less than 2 steps."""
    n = len(wave)
    if max_samples < 2 * step:
        raise ValueError(f"max_samples {max_samples} is too short to split into pieces of {step}-sample frames")
    if n <= max_samples:
        return [(0, n)]
    frames = fbank.dc_removed_frames(wave)  # (F, win)
    energy = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    width = max(1, int(PAUSE_S / fbank.frame_shift_s))
    smooth = np.convolve(energy, np.ones(width) / width, mode="same")
    # a step sounds when a frame starting in it does (step / hop frames start in each step)
    per_step = step // fbank.hop_length
    floor = 10 ** (silence_dbfs / 20)
    frame_loud = np.max(np.abs(frames), axis=1) >= floor
    num_steps = -(-n // step)
    frame_loud = np.pad(frame_loud, (0, num_steps * per_step - len(frame_loud)))[: num_steps * per_step]
    loud = frame_loud.copy()
    loud = loud.reshape(num_steps, per_step).any(axis=1)
    # silence shorter than a pause (a stop consonant, a breath) stays inside its piece
    edges = np.flatnonzero(np.diff(np.concatenate([[1], loud.astype(np.int8), [1]])))  # silent runs
    for first, last in zip(edges[::2], edges[1::2]):
        if (last - first) * step < PAUSE_S * fbank.sample_rate and 0 < first and last < num_steps:
            loud[first:last] = True
    pieces = []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(np.int8), [0]])))  # sounding runs
    for first, last in zip(edges[::2], edges[1::2]):
        # from the first to the last sounding sample: not even part of a frame of silence at the ends
        sounding = np.flatnonzero(frame_loud[first * per_step: last * per_step]) + first * per_step
        start, end = int(first) * step, min(int(last) * step, n)
        if len(sounding):
            start = _sounding_sample(wave, fbank, int(sounding[0]), floor, first=True)
            end = _sounding_sample(wave, fbank, int(sounding[-1]), floor, first=False) + 1
            if int(sounding[-1]) == len(frames) - 1:
                end = n  # the samples after the last whole frame are nobody's silence
        pieces += _quietest_cuts(smooth, fbank, start, end, max_samples, step)
    return pieces


def _sounding_sample(wave: np.ndarray, fbank, frame: int, floor: float, first: bool) -> int:
    """The first (or last) sample of analysis frame `frame` whose magnitude reaches `floor` (the
    frame is known to sound: this only finds where, to the sample, its silence ends or begins)."""
    start = frame * fbank.hop_length
    above = np.flatnonzero(np.abs(wave[start: start + fbank.win_length]) >= floor)
    return start + int(above[0] if first else above[-1])


def _quietest_cuts(smooth: np.ndarray, fbank, start: int, end: int, max_samples: int, step: int):
    """[start, end) cut into pieces of at most `max_samples` at start + multiples of `step`: of all such
    cuttings, the one with the least summed cost, a cut's cost being the smoothed energy `smooth`
    (dB, per frame) there above the quietest frame, + CUT_COST_DB (dynamic programming over the cut
    positions). Unlike cutting greedily at the quietest point of each next span, one long sentence
    does not push the following cut into the middle of the next."""
    if end - start <= max_samples:
        return [(start, end)]
    positions = np.concatenate([np.arange(start, end, step), [end]])
    frames = np.clip((positions - fbank.win_length // 2) // fbank.hop_length, 0, len(smooth) - 1)
    cost = smooth[frames] - smooth.min() + CUT_COST_DB
    cost[0] = cost[-1] = 0.0
    best = np.full(len(positions), np.inf)  # least cost of cuts up to one at positions[j]
    best[0] = 0.0
    previous = np.zeros(len(positions), dtype=np.int64)
    for j in range(1, len(positions)):
        first = int(np.searchsorted(positions, positions[j] - max_samples))  # the farthest allowed start
        i = first + int(np.argmin(best[first:j]))
        best[j], previous[j] = best[i] + cost[j], i
    pieces, j = [], len(positions) - 1
    while j > 0:
        pieces.append((int(positions[previous[j]]), int(positions[j])))
        j = previous[j]
    return pieces[::-1]
