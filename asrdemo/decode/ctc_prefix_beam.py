"""CTC prefix beam search (as in WeNet): n-best label sequences from CTC log-probs alone.

Frame by frame, every prefix in the beam keeps two log-probabilities: of all alignments of the
frames so far that spell the prefix and end in a blank (pb) or in its last label (pnb). A frame
extends each prefix by each of its `beam_size` most likely tokens; the prefixes are then pruned to
the `beam_size` best by logaddexp(pb, pnb), which at the last frame is log p(prefix | x), the full
CTC probability of the label sequence.

Cost: WeNet extends by the `beam_size` best tokens of each frame, so a frame costs beam² steps
(RTF 0.24 at beam 100, 1.8 at beam 300). Here a frame offers at most `max_tokens_per_frame` (16)
tokens, as torchaudio's `beam_size_token` does: a CTC frame's mass sits on a handful of tokens,
and the cost per frame is then at most 16 x beam, linear in the beam.
"""

import heapq
import math
from typing import List, Optional

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


MAX_TOKENS_PER_FRAME = 16


class CTCPrefixBeamSearch:
    """The search's state, advanced a block of frames at a time: a streaming recognizer feeds
    each chunk's log-probs as they come and reads the best prefix in between; fed all frames at
    once, it is ``ctc_prefix_beam_search``. `counts`, if given, gets "extensions" (prefix x token
    pairs tried) added: the search's cost."""

    def __init__(self, beam_size: int = 10, blank_id: int = 0, max_tokens_per_frame: int = MAX_TOKENS_PER_FRAME,
                 counts: Optional[dict] = None):
        self.beam_size, self.blank_id, self.counts = beam_size, blank_id, counts
        self.max_tokens_per_frame = max(1, max_tokens_per_frame)
        self.beam = {(): (0.0, NEG_INF)}  # prefix -> (pb, pnb)
        self.num_frames = 0

    def advance(self, ctc_logp: torch.Tensor) -> None:
        """Extend the beam by ``ctc_logp`` (T, V), the log-probs of the next T frames (T may be 0).

        Each frame extends the beam by its min(beam_size, max_tokens_per_frame, V) most likely tokens."""
        if ctc_logp.dim() != 2:
            raise ValueError(f"ctc_logp must be (T, V), got {tuple(ctc_logp.shape)}")
        if ctc_logp.size(0) == 0:
            return
        per_frame = min(self.beam_size, self.max_tokens_per_frame, ctc_logp.size(1))
        top_logp, top_ids = ctc_logp.detach().float().topk(per_frame, dim=-1)
        blank_id, beam = self.blank_id, self.beam
        for frame_ids, frame_logp in zip(top_ids.tolist(), top_logp.tolist()):
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
            if self.counts is not None:
                self.counts["extensions"] = self.counts.get("extensions", 0) + len(frame_ids) * len(beam)
            # the best beam_size of the (at most beam x per_frame) extensions, O(n log beam)
            beam = dict(heapq.nlargest(self.beam_size, extended.items(), key=lambda kv: _logaddexp(*kv[1])))
        self.beam = beam
        self.num_frames += ctc_logp.size(0)

    def nbest(self, n: Optional[int] = None) -> List[Hypothesis]:
        """Up to ``n`` (default beam_size) hypotheses, best first, scored by log p(prefix | frames
        so far) (at the last frame: the full CTC probability of the label sequence)."""
        if self.num_frames == 0:
            return [empty_hypothesis()]
        hyps = []
        for prefix, (pb, pnb) in self.beam.items():
            score = _logaddexp(pb, pnb)
            if score > NEG_INF:
                hyps.append(Hypothesis(token_ids=list(prefix), score=score, ctc_score=score))
        hyps.sort(key=lambda h: -h.score)
        return hyps[: self.beam_size if n is None else n] or [empty_hypothesis()]


def ctc_prefix_beam_search(ctc_logp: torch.Tensor, beam_size: int = 10, nbest: int = None,
                           blank_id: int = 0, max_tokens_per_frame: int = MAX_TOKENS_PER_FRAME,
                           counts: Optional[dict] = None) -> List[Hypothesis]:
    """`ctc_logp` (T, V) log-probs of one utterance -> up to `nbest` hypotheses, best first.

    Each frame extends the beam by its min(beam_size, max_tokens_per_frame, V) most likely tokens.
    `counts`, if given, gets "extensions" (prefix x token pairs tried) added: the search's cost."""
    search = CTCPrefixBeamSearch(beam_size, blank_id, max_tokens_per_frame, counts)
    search.advance(ctc_logp)
    return search.nbest(nbest)


def ctc_prefix_beam_search_batch(ctc_logp: torch.Tensor, lengths: torch.Tensor, beam_size: int = 10,
                                 nbest: int = None, blank_id: int = 0) -> List[List[Hypothesis]]:
    """(B, T, V) log-probs and (B,) lengths -> per utterance its n-best list."""
    lengths = lengths.tolist()
    return [ctc_prefix_beam_search(ctc_logp[b, : lengths[b]], beam_size, nbest, blank_id)
            for b in range(ctc_logp.shape[0])]
