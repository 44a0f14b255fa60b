"""CTC prefix beam search (as in WeNet): n-best label sequences from CTC log-probs alone.

Frame by frame, every prefix in the beam keeps two log-probabilities: of all alignments of the
frames so far that spell the prefix and end in a blank (pb) or in its last label (pnb). A frame
extends each prefix by each of its `beam_size` most likely tokens; the prefixes are then pruned to
the `beam_size` best by logaddexp(pb, pnb), which at the last frame is log p(prefix | x), the full
CTC probability of the label sequence.
"""

import math
from typing import List

import torch

from asrdemo.decode.hypothesis import Hypothesis, empty_hypothesis

NEG_INF = float("-inf")


def _logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    m = max(a, b)
    return m + math.log1p(math.exp(-abs(a - b)))


def ctc_prefix_beam_search(ctc_logp: torch.Tensor, beam_size: int = 10, nbest: int = None,
                           blank_id: int = 0) -> List[Hypothesis]:
    """`ctc_logp` (T, V) log-probs of one utterance -> up to `nbest` hypotheses, best first."""
    if ctc_logp.dim() != 2:
        raise ValueError(f"ctc_logp must be (T, V), got {tuple(ctc_logp.shape)}")
    num_frames, vocab = ctc_logp.shape
    if num_frames == 0:
        return [empty_hypothesis()]
    nbest = beam_size if nbest is None else nbest
    top_logp, top_ids = ctc_logp.detach().float().topk(min(beam_size, vocab), dim=-1)
    top_logp, top_ids = top_logp.tolist(), top_ids.tolist()

    beam = {(): (0.0, NEG_INF)}  # prefix -> (pb, pnb)
    for frame_ids, frame_logp in zip(top_ids, top_logp):
        extended = {}

        def add(prefix, pb, pnb):
            old_b, old_nb = extended.get(prefix, (NEG_INF, NEG_INF))
            extended[prefix] = (_logaddexp(old_b, pb), _logaddexp(old_nb, pnb))

        for token, lp in zip(frame_ids, frame_logp):
            for prefix, (pb, pnb) in beam.items():
                if token == blank_id:  # stays the same prefix, now ending in a blank
                    add(prefix, _logaddexp(pb, pnb) + lp, NEG_INF)
                elif prefix and prefix[-1] == token:
                    add(prefix, NEG_INF, pnb + lp)  # repeat merged into the same label
                    add(prefix + (token,), NEG_INF, pb + lp)  # a blank in between: a new label
                else:
                    add(prefix + (token,), NEG_INF, _logaddexp(pb, pnb) + lp)
        ranked = sorted(extended.items(), key=lambda kv: _logaddexp(*kv[1]), reverse=True)
        beam = dict(ranked[:beam_size])

    hyps = []
    for prefix, (pb, pnb) in beam.items():
        score = _logaddexp(pb, pnb)
        if score > NEG_INF:
            hyps.append(Hypothesis(token_ids=list(prefix), score=score, ctc_score=score))
    hyps.sort(key=lambda h: -h.score)
    return hyps[:nbest] or [empty_hypothesis()]


def ctc_prefix_beam_search_batch(ctc_logp: torch.Tensor, lengths: torch.Tensor, beam_size: int = 10,
                                 nbest: int = None, blank_id: int = 0) -> List[List[Hypothesis]]:
    """(B, T, V) log-probs and (B,) lengths -> per utterance its n-best list."""
    lengths = lengths.tolist()
    return [ctc_prefix_beam_search(ctc_logp[b, : lengths[b]], beam_size, nbest, blank_id)
            for b in range(ctc_logp.shape[0])]
