"""CTC forced alignment: where in the audio each token of a transcript was emitted.

Given the CTC log-posteriors of one utterance (T encoder frames x V tokens) and a token sequence
y1 ... yL (a hypothesis, or a reference), `ctc_forced_align` finds the single best CTC path that
spells exactly that sequence: Viterbi over the blank-interleaved labels

    <b> y1 <b> y2 <b> ... <b> yL <b>          (S = 2L + 1 states)

where a frame either stays in its state, moves to the next one, or skips a blank between two
*different* tokens (Graves et al., 2006; the same lattice as the CTC loss, with max instead of
sum). The path's score is the sum of its frames' log-posteriors, so it can never be better than
the unconstrained best path (`best_path_score`: the argmax of every frame), and it is the best
single alignment inside log p(y | x), which sums over all of them.

Token *times* follow from the frame rate of the encoder: one encoder frame is
`subsampling_rate x frame_shift` of audio (4 x 10 ms = 40 ms for conv2d). Encoder frame t covers
[t * 40 ms, (t + 1) * 40 ms), the convention of WeNet's timestamps. A CTC model emits each token on
one or two frames ("spikes") and blank in between, so a token's span is where it was *emitted*,
not the whole stretch of its sound.
"""

import dataclasses
from typing import List, Optional, Sequence

import numpy as np
import torch

from asrdemo.errors import AsrdemoError

NEG_INF = float("-inf")


class AlignmentError(AsrdemoError):
    """The token sequence cannot be laid on the frames (too many tokens for too few frames)."""


@dataclasses.dataclass
class CtcAlignment:
    """The best CTC path of one token sequence.

    `frame_labels[t]`: the label the path emits at encoder frame t (0 = blank).
    `spans[k]`: [start, end) encoder frames on which token k is emitted (start < end, in order).
    `score`: the path's log-probability, the sum of `ctc_logp[t, frame_labels[t]]`.
    """

    token_ids: List[int]
    frame_labels: List[int]
    spans: List[tuple]
    score: float


@dataclasses.dataclass
class TokenTime:
    """One token placed in the audio; seconds from the start of the (resampled) audio."""

    token: str
    token_id: int
    start_frame: int  # first encoder frame emitting it
    end_frame: int  # one past the last
    start_s: float
    end_s: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _as_numpy(ctc_logp) -> np.ndarray:
    if isinstance(ctc_logp, torch.Tensor):
        ctc_logp = ctc_logp.detach().float().cpu().numpy()
    logp = np.asarray(ctc_logp, dtype=np.float64)
    if logp.ndim != 2:
        raise ValueError(f"ctc_logp must be (frames, vocab), got shape {logp.shape}")
    return logp


def min_frames_needed(token_ids: Sequence[int]) -> int:
    """A CTC path needs one frame per token plus a blank between two equal neighbours."""
    ids = list(token_ids)
    return len(ids) + sum(1 for a, b in zip(ids, ids[1:]) if a == b)


def best_path_score(ctc_logp) -> float:
    """log-probability of the best unconstrained path: every frame's most likely label."""
    logp = _as_numpy(ctc_logp)
    return float(logp.max(axis=1).sum()) if len(logp) else 0.0


def greedy_path(ctc_logp) -> List[int]:
    """The label of every frame on the best unconstrained path (before collapsing)."""
    return [int(i) for i in _as_numpy(ctc_logp).argmax(axis=1)]


def ctc_forced_align(ctc_logp, token_ids: Sequence[int], blank_id: int = 0) -> CtcAlignment:
    """Viterbi alignment of `token_ids` (no blanks) to `ctc_logp` (T, V) log-posteriors.

    Raises AlignmentError when the sequence needs more frames than there are."""
    logp = _as_numpy(ctc_logp)
    ids = [int(i) for i in token_ids]
    if any(i == blank_id for i in ids):
        raise ValueError("token_ids must not contain the blank")
    if ids and (min(ids) < 0 or max(ids) >= logp.shape[1]):
        raise ValueError(f"token ids outside the vocabulary of {logp.shape[1]}")
    num_frames = logp.shape[0]
    if min_frames_needed(ids) > num_frames:
        raise AlignmentError(f"{len(ids)} tokens need at least {min_frames_needed(ids)} encoder frames, "
                             f"the audio gives {num_frames}")
    if num_frames == 0:  # nothing heard, nothing said
        return CtcAlignment([], [], [], 0.0)

    # the blank-interleaved label sequence and which states may be reached by skipping a blank
    ext = np.full(2 * len(ids) + 1, blank_id, dtype=np.int64)
    ext[1::2] = ids
    num_states = len(ext)
    can_skip = np.zeros(num_states, dtype=bool)
    can_skip[2:] = (ext[2:] != blank_id) & (ext[2:] != ext[:-2])

    emit = logp[:, ext]  # (T, S): log-posterior of each state's label at each frame
    score = np.full(num_states, NEG_INF)
    score[0] = emit[0, 0]
    if num_states > 1:
        score[1] = emit[0, 1]
    came_from = np.zeros((num_frames, num_states), dtype=np.int8)  # 0 stay, 1 from s-1, 2 from s-2
    candidates = np.full((3, num_states), NEG_INF)  # rows: stay in s, step from s-1, skip from s-2
    for t in range(1, num_frames):
        candidates[0] = score
        candidates[1, 1:] = score[:-1]
        candidates[2, 2:] = np.where(can_skip[2:], score[:-2], NEG_INF)
        choice = candidates.argmax(axis=0)
        score = candidates[choice, np.arange(num_states)] + emit[t]
        came_from[t] = choice

    # a path ends in the last token or the trailing blank
    last = num_states - 1
    if num_states > 1 and score[last - 1] > score[last]:
        last -= 1
    path_score = float(score[last])
    states = np.empty(num_frames, dtype=np.int64)
    states[-1] = last
    for t in range(num_frames - 1, 0, -1):
        states[t - 1] = states[t] - came_from[t, states[t]]

    frame_labels = [int(ext[s]) for s in states]
    spans = []
    for k in range(len(ids)):
        frames = np.nonzero(states == 2 * k + 1)[0]
        spans.append((int(frames[0]), int(frames[-1]) + 1))
    return CtcAlignment(ids, frame_labels, spans, path_score)


def encoder_frame_seconds(subsampling_rate: int, frame_shift_s: float) -> float:
    """How much audio one encoder frame advances: e.g. 4 x 0.010 s = 0.040 s."""
    return subsampling_rate * frame_shift_s


def token_times(alignment: CtcAlignment, tokens: Sequence[str], frame_s: float,
                duration_s: Optional[float] = None) -> List[TokenTime]:
    """Per token [start_s, end_s) from its emitting frames; `tokens` maps id -> string.

    Times are clipped to `duration_s` when given (they lie inside the audio anyway: subsampling
    drops frames at the end, it never adds any)."""
    out = []
    for token_id, (start, end) in zip(alignment.token_ids, alignment.spans):
        start_s, end_s = start * frame_s, end * frame_s
        if duration_s is not None:
            start_s, end_s = min(start_s, duration_s), min(end_s, duration_s)
        out.append(TokenTime(tokens[token_id], token_id, start, end, round(start_s, 4), round(end_s, 4)))
    return out
