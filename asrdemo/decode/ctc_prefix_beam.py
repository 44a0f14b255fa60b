"""CTC prefix beam search (as in WeNet): n-best label sequences from CTC log-probs alone; and
attention rescoring of that n-best (WeNet keeps both in one search.py too).

Frame by frame, every prefix in the beam keeps two log-probabilities: of all alignments of the
frames so far that spell the prefix and end in a blank (pb) or in its last label (pnb). A frame
extends each prefix by each of its `beam_size` most likely tokens; the prefixes are then pruned to
the `beam_size` best by logaddexp(pb, pnb), which at the last frame is log p(prefix | x), the full
CTC probability of the label sequence.

Cost: WeNet extends by the `beam_size` best tokens of each frame, so a frame costs beam² steps
(RTF 0.24 at beam 100, 1.8 at beam 300). Here a frame offers at most `max_tokens_per_frame` (16)
tokens, as torchaudio's `beam_size_token` does: a CTC frame's mass sits on a handful of tokens,
and the cost per frame is then at most 16 x beam, linear in the beam.

Attention rescoring (`attention_rescoring`) reranks that n-best list with the attention decoder.
All hypotheses of all utterances go through the decoder in ONE teacher-forced pass
(`<sos> y` in, `y <eos>` scored), so the decoder runs once per batch instead of once per token.
The final score is (1 - ctc_weight) * log p_att(y <eos> | x) + ctc_weight * log p_ctc(y | x)
+ penalty * (|y| + 1): the same weighting as joint beam search (WeNet's att + w' * ctc ranks the
same with w' = w / (1 - w)).
With a language model (`lm_fn`, `lm_weight` != 0), `lm_weight * log p_lm(y <eos>)` is added, as in
the fused joint search (asrdemo/decode/lm_scorer.py); with lm_weight 0 the LM is not called.
Hypotheses of an utterance that share a prefix share its decoder positions (`PrefixTree`,
`teacher_forced_scorer`): a CTC n-best list differs in a few late tokens, so the decoder runs
over several times fewer positions than one row per hypothesis.
"""

import heapq
import math
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

from asrdemo.decode.hypothesis import Hypothesis, empty_hypothesis, joint_score
from asrdemo.model.decoder import SourceMemory
from asrdemo.model.mask import make_non_pad_mask

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


# ---------------------------------------------------------------- attention rescoring

# (utt (N,), ys_in (N, L) <sos>-prefixed and <eos>-padded, ys_in_lens (N,)) -> log-probs (N, L, V)
TeacherForcedScorer = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def attention_rescoring(
    nbest: List[List[Hypothesis]],
    lengths: torch.Tensor,
    score_fn: TeacherForcedScorer,
    *,
    sos: int,
    eos: int,
    ctc_weight: float = 0.3,
    penalty: float = 0.0,
    lm_fn: Optional[Callable[[Sequence[Sequence[int]]], List[float]]] = None,
    lm_weight: float = 0.0,
) -> List[List[Hypothesis]]:
    """Rescore each utterance's CTC n-best (`ctc_score` set) -> the same hypotheses, re-sorted.

    `lm_fn(sequences) -> [log p_lm(y <eos>)]` (e.g. `lm_scorer.lm_sequence_logp` bound to an LM)
    is called once for all hypotheses when lm_weight != 0 (ValueError without one).

    Utterances with no encoder frames (`lengths` == 0) are returned as they are.
    """
    if lm_weight != 0 and lm_fn is None:
        raise ValueError(f"lm_weight {lm_weight} needs an LM")
    frames = lengths.tolist()
    utt, seqs = [], []
    for b, hyps in enumerate(nbest):
        if frames[b] > 0:
            for h in hyps:
                utt.append(b)
                seqs.append(h.token_ids)
    if not seqs:
        return [list(h) for h in nbest]
    device = lengths.device
    max_len = max(len(s) for s in seqs) + 1
    ys_in = torch.full((len(seqs), max_len), eos, dtype=torch.long, device=device)
    targets = torch.full((len(seqs), max_len), eos, dtype=torch.long, device=device)
    for i, s in enumerate(seqs):
        ys_in[i, 0] = sos
        if s:
            ys_in[i, 1 : len(s) + 1] = torch.tensor(s, device=device)
            targets[i, : len(s)] = torch.tensor(s, device=device)
    ys_lens = torch.tensor([len(s) + 1 for s in seqs], device=device)
    logp = score_fn(torch.tensor(utt, device=device), ys_in, ys_lens).float()  # (N, L, V)
    token_logp = logp.gather(2, targets.unsqueeze(2)).squeeze(2)
    att = token_logp.masked_fill(~make_non_pad_mask(ys_lens, max_len), 0.0).sum(dim=1).tolist()
    lm = lm_fn(seqs) if lm_weight != 0 else None

    out = [list(h) if frames[b] == 0 else [] for b, h in enumerate(nbest)]
    k = 0
    for b, hyps in enumerate(nbest):
        if frames[b] == 0:
            continue
        for h in hyps:
            combined = joint_score(att[k], h.ctc_score, len(h.token_ids), ctc_weight, penalty,
                                   None if lm is None else lm[k], lm_weight)
            out[b].append(Hypothesis(token_ids=list(h.token_ids), score=combined, ctc_score=h.ctc_score,
                                     att_score=att[k], lm_score=None if lm is None else lm[k]))
            k += 1
        out[b].sort(key=lambda h: -h.score)
    return out


class PrefixTree:
    """The distinct prefixes of N token sequences, one tree per utterance.

    `PrefixTree(utt, ys_in, ys_in_lens)`: row n is utterance utt[n]'s sequence ys_in[n, :lens[n]]
    (<sos> first, the tree's root). Fields: `utts` (B',) the utterances in order of appearance;
    `tokens`, `positions` (B', U) each node's token and depth (padding: 0); `mask` (B', U, U)
    True where node j is node i or an ancestor (a padding node sees itself only); `node` (N, L)
    the node of every prefix ys_in[n, :l+1] (0 past the row's length); `row_utt` (N,) the index
    into `utts` of every row.
    """

    def __init__(self, utt: torch.Tensor, ys_in: torch.Tensor, ys_in_lens: torch.Tensor):
        utts, trees, row_utt, row_nodes = {}, [], [], []
        for u, seq, n in zip(utt.tolist(), ys_in.tolist(), ys_in_lens.tolist()):
            if u not in utts:
                utts[u] = len(trees)
                trees.append(({}, [], [], []))  # (parent, token) -> node; tokens; depths; parents
            children, tokens, depths, parents = trees[utts[u]]
            node, path = -1, []
            for depth, token in enumerate(seq[:n]):
                child = children.get((node, token))
                if child is None:
                    child = children[(node, token)] = len(tokens)
                    tokens.append(token)
                    depths.append(depth)
                    parents.append(node)
                node = child
                path.append(node)
            row_utt.append(utts[u])
            row_nodes.append(path + [0] * (ys_in.size(1) - len(path)))
        size = max(len(t[1]) for t in trees)
        device = ys_in.device
        tok = np.zeros((len(trees), size), dtype=np.int64)
        pos = np.zeros((len(trees), size), dtype=np.int64)
        mask = np.zeros((len(trees), size, size), dtype=bool)
        for b, (_, tokens, depths, parents) in enumerate(trees):
            tok[b, : len(tokens)], pos[b, : len(tokens)] = tokens, depths
            for i, p in enumerate(parents):  # parents come before their children
                if p >= 0:
                    mask[b, i] = mask[b, p]
                mask[b, i, i] = True
            mask[b, np.arange(len(tokens), size), np.arange(len(tokens), size)] = True
        self.utts = torch.tensor(list(utts), dtype=torch.long, device=device)
        self.tokens, self.positions = torch.from_numpy(tok).to(device), torch.from_numpy(pos).to(device)
        self.mask = torch.from_numpy(mask).to(device)
        self.node = torch.tensor(row_nodes, dtype=torch.long, device=device)
        self.row_utt = torch.tensor(row_utt, dtype=torch.long, device=device)


def teacher_forced_scorer(decoder, memory: torch.Tensor, memory_mask: torch.Tensor):
    """-> score_fn(utt (N,), ys_in (N, L), ys_in_lens (N,)) -> log-probs (N, L, V).

    Hypotheses of an utterance that share a prefix share its decoder positions (`PrefixTree`,
    `decoder.forward_tree`): a CTC n-best list differs in a few late tokens, so this runs the
    decoder over several times fewer positions than one row per hypothesis."""
    mem = SourceMemory(decoder, memory, memory_mask)

    def score_fn(utt, ys_in, ys_in_lens):
        tree = PrefixTree(utt, ys_in, ys_in_lens)
        memory_kv, mask = mem.for_rows(tree.utts)
        logits = decoder.forward_tree(None, mask, tree.tokens, tree.positions, tree.mask, memory_kv=memory_kv)
        logp = torch.log_softmax(logits.float(), dim=-1)  # (B', U, V)
        return logp[tree.row_utt.unsqueeze(1), tree.node]

    return score_fn
