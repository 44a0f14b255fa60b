"""Joint CTC/attention beam search (ESPnet style), batched over utterances and over the beam.

Every step extends all running hypotheses of all utterances by one token with one call of the
attention decoder and one pass of the vectorised CTC prefix scorer:

    score(h + c) = score(h) + (1 - ctc_weight) * log p_att(c | h, x)
                            + ctc_weight * (psi(h + c) - psi(h)) + penalty

where psi is the CTC prefix score (`CTCPrefixScorer`, below), so a finished hypothesis
scores (1 - w) log p_att(y<eos> | x) + w log p_ctc(y | x) + penalty * (|y| + 1).
With a language model (shallow fusion, `lm_scorer` and `lm_weight` != 0) every extension also gets
`lm_weight * log p_lm(c | h)`, before the pre-beam as in ESPnet (whose pre-beam ranks the weighted
sum of the full scorers, decoder and LM), so a finished hypothesis gets `lm_weight * log p_lm(y<eos>)`
more (asrdemo/decode/lm_scorer.py). With lm_weight 0 the LM is never called: the search is
exactly the one without it.
Only the `pre_beam_ratio * beam_size` tokens the decoder likes best (per hypothesis) are scored
by CTC. With ctc_weight = 0 this is attention-only beam search; with ctc_weight = 1 the decoder is
not called and CTC scores every token (exact, but slow for a large vocabulary: use
`ctc_prefix_beam` for CTC-only decoding).

The search talks to the decoder only through a `DecoderScorer`, so it runs (and is tested) with
any scorer; the recognizer wires in the model's decoder (`DecoderStepScorer`).

The file reads top-down: the two scorers (the CTC prefix score, the decoder step), then the search.

The CTC prefix score of a label prefix h is psi(h) = log sum over all label sequences that start
with h of p(sequence | x), i.e. the probability that the audio's transcript begins with h
(Watanabe et al., "Hybrid CTC/attention architecture", 2017, Algorithm 2). It is computed from two
forward variables per frame t, the log-probabilities of having emitted exactly h in frames 0..t
with the last frame a label (r^n) or a blank (r^b):

    r^n_t(hc) = logaddexp(r^n_{t-1}(hc), phi_{t-1}) + x_t(c)
    r^b_t(hc) = logaddexp(r^n_{t-1}(hc), r^b_{t-1}(hc)) + x_t(blank)
    phi_t     = logaddexp(r^n_t(h), r^b_t(h)), or r^b_t(h) alone when c repeats h's last label
    psi(hc)   = logsumexp_t (phi_{t-1} + x_t(c)),   psi(h<eos>) = logaddexp(r^n_T(h), r^b_T(h))

Like ESPnet's CTCPrefixScoreTH, all N hypotheses (B utterances x beam) and all C candidate tokens of
a search step go through one tensor recursion over frames. All hypotheses of a step have the same
number of labels L, so frames t < L (which cannot hold L + 1 labels) are skipped.

Utterances of different lengths share one padded tensor: past its last frame an utterance's blank
has log-prob 0 and every label -inf, so r^b stays constant there and the last padded frame holds
the full-sequence probability that <eos> needs.
"""

import dataclasses
import logging
from typing import Any, List, Optional, Protocol, Tuple

import torch

from asrdemo.decode.hypothesis import Hypothesis, empty_hypothesis
from asrdemo.model.decoder import SourceMemory

log = logging.getLogger(__name__)

NEG_INF = float("-inf")


class DecoderScorer(Protocol):
    """What the beam search needs from an attention decoder; the state is opaque to the search."""

    def init_state(self, utt: torch.Tensor) -> Any:
        """State of N hypotheses holding only <sos>; row i belongs to utterance `utt[i]`."""

    def score(self, ys: torch.Tensor, state: Any) -> Tuple[torch.Tensor, Any]:
        """`ys` (N, L) token prefixes starting with <sos> -> (log-probs of the next token (N, V), state)."""

    def select_state(self, state: Any, rows: torch.Tensor) -> Any:
        """The state of rows `rows` (M,) of the N rows (beam reordering, finished utterances)."""


# ---------------------------------------------------------------- the CTC prefix score


@dataclasses.dataclass
class CTCPrefixState:
    """The CTC side of N hypotheses (rows), all with `num_labels` labels."""

    r: torch.Tensor  # (T, 2, N) log forward variables: [:, 0] last frame a blank (r^b), [:, 1] a label (r^n)
    score: torch.Tensor  # (N,) psi(h), the log prefix probability
    last: torch.Tensor  # (N,) last label of h; -1 for the empty prefix
    utt: torch.Tensor  # (N,) row -> utterance index in the scorer's batch
    num_labels: int

    def index(self, rows: torch.Tensor) -> "CTCPrefixState":
        """The same prefixes, rows picked (or repeated) by `rows`."""
        return CTCPrefixState(self.r[:, :, rows], self.score[rows], self.last[rows], self.utt[rows], self.num_labels)


@dataclasses.dataclass
class CTCPrefixExtensions:
    """Forward variables of every scored extension h + c, kept so the beam's picks can be taken."""

    q: torch.Tensor  # (T, 3, N, C): r^b, r^n, phi
    score: torch.Tensor  # (N, C) psi(h + c)
    candidates: torch.Tensor  # (N, C)
    parent: CTCPrefixState


class CTCPrefixScorer:
    """`CTCPrefixScorer(ctc_logp (B, T, V), lengths (B,))`, then per search step
    `score(state, candidates (N, C)) -> (psi (N, C), extensions)` and `select(extensions, rows, cols)`.
    """

    def __init__(self, ctc_logp: torch.Tensor, lengths: torch.Tensor, blank_id: int = 0, eos_id: int = None):
        if ctc_logp.dim() != 3:
            raise ValueError(f"ctc_logp must be (B, T, V), got {tuple(ctc_logp.shape)}")
        batch, max_len, vocab = ctc_logp.shape
        self.blank_id = blank_id
        self.eos_id = vocab - 1 if eos_id is None else eos_id
        self.vocab_size = vocab
        self.lengths = lengths.to(ctc_logp.device)
        padding = torch.arange(max_len, device=ctc_logp.device).unsqueeze(0) >= self.lengths.unsqueeze(1)
        x = ctc_logp.detach().masked_fill(padding.unsqueeze(-1), NEG_INF)
        x[:, :, blank_id] = x[:, :, blank_id].masked_fill(padding, 0.0)
        self.x = x.transpose(0, 1).contiguous()  # (T, B, V)
        self.x_flat = self.x.view(max_len, batch * vocab)
        self.x_blank = self.x[:, :, blank_id]  # (T, B)

    def init_state(self, utt: torch.Tensor) -> CTCPrefixState:
        """The empty prefix (<sos> only) for rows belonging to utterances `utt` (N,)."""
        utt = utt.to(self.x.device)
        r = torch.full((self.x.shape[0], 2, len(utt)), NEG_INF, dtype=self.x.dtype, device=self.x.device)
        r[:, 0] = torch.cumsum(self.x_blank[:, utt], dim=0)
        zeros = torch.zeros(len(utt), dtype=self.x.dtype, device=self.x.device)
        last = torch.full((len(utt),), -1, dtype=torch.long, device=self.x.device)
        return CTCPrefixState(r, zeros, last, utt, 0)

    def score(self, state: CTCPrefixState, candidates: torch.Tensor):
        """psi(h + c) for every row h of `state` and every token c in its row of `candidates` (N, C).

        <eos> gets the full-sequence log-probability of h, <blank> gets -inf.
        """
        max_len = self.x.shape[0]
        n, c = candidates.shape
        flat = (state.utt.unsqueeze(1) * self.vocab_size + candidates).reshape(-1)
        x_cand = self.x_flat.index_select(1, flat).view(max_len, n, c)  # (T, N, C) x_t(c)
        x_blank = self.x_blank[:, state.utt].unsqueeze(-1)  # (T, N, 1)

        r_sum = torch.logaddexp(state.r[:, 0], state.r[:, 1])  # (T, N)
        repeat = (candidates == state.last.unsqueeze(1)).unsqueeze(0)  # (1, N, C)
        log_phi = torch.where(repeat, state.r[:, 0].unsqueeze(-1), r_sum.unsqueeze(-1))  # (T, N, C)

        # q[t] = (r^b_t, r^n_t, phi_t) of every extension. Laid out so that one frame is two calls:
        # (r^b_t, r^n_t) = logaddexp(r^n_{t-1}, (r^b_{t-1}, phi_{t-1})) + (x_t(blank), x_t(c)),
        # reading q[t-1, 1] and q[t-1, 0::2] and writing q[t, 0:2] in place.
        q = torch.empty((max_len, 3, n, c), dtype=self.x.dtype, device=self.x.device)
        q[:, :2] = NEG_INF
        q[:, 2] = log_phi
        if state.num_labels == 0:
            q[0, 1] = x_cand[0]
        start = max(state.num_labels, 1)
        if start < max_len:
            x_pair = torch.stack([x_blank.expand(max_len, n, c), x_cand], dim=1)  # (T, 2, N, C)
            # per-frame views made in four calls, not four per frame (Python overhead dominates here)
            outs, r_label = q[start:, 0:2].unbind(0), q[start - 1 : -1, 1:2].unbind(0)
            r_blank_phi, x_next = q[start - 1 : -1, 0::2].unbind(0), x_pair[start:].unbind(0)
            for out, prev_label, prev_pair, x in zip(outs, r_label, r_blank_phi, x_next):
                torch.logaddexp(prev_label, prev_pair, out=out)
                out.add_(x)

        if start <= max_len:
            emit = log_phi[start - 1 : max_len - 1] + x_cand[start:]  # phi_{t-1} + x_t(c), t >= start
            psi = torch.logsumexp(torch.cat([q[start - 1, 1].unsqueeze(0), emit]), dim=0)  # (N, C)
        else:  # more labels than frames: no extension fits
            psi = torch.full((n, c), NEG_INF, dtype=self.x.dtype, device=self.x.device)
        psi = torch.where(candidates == self.eos_id, r_sum[-1].unsqueeze(1), psi)
        psi = psi.masked_fill(candidates == self.blank_id, NEG_INF)
        return psi, CTCPrefixExtensions(q, psi, candidates, state)

    @staticmethod
    def select(ext: CTCPrefixExtensions, rows: torch.Tensor, cols: torch.Tensor) -> CTCPrefixState:
        """The state of the extensions (rows[i], cols[i]) that the beam kept."""
        parent = ext.parent
        return CTCPrefixState(
            r=ext.q[:, :2, rows, cols],
            score=ext.score[rows, cols],
            last=ext.candidates[rows, cols],
            utt=parent.utt[rows],
            num_labels=parent.num_labels + 1,
        )


# ---------------------------------------------------------------- the decoder


class DecoderStepScorer:
    """The model's attention decoder as a `DecoderScorer`: one decoder step (`decoder.forward_step`)
    for all running hypotheses, the encoder output projected once per batch (`SourceMemory`)."""

    def __init__(self, decoder, memory: torch.Tensor, memory_mask: torch.Tensor):
        """memory (B, T, D) encoder output, memory_mask (B, 1, T) bool True = valid frame."""
        self.decoder = decoder
        self.memory = SourceMemory(decoder, memory, memory_mask)

    def init_state(self, utt: torch.Tensor):
        return {"utt": utt, "kv": None}

    def score(self, ys: torch.Tensor, state):
        """ys (N, L): only the newest token ys[:, -1] is read; the state holds the L-1 before it."""
        cached = 0 if state["kv"] is None else state["kv"][0][0].size(2)
        if cached != ys.size(1) - 1:
            raise ValueError(f"the state holds {cached} positions, ys has {ys.size(1)} (expected one more)")
        memory_kv, mask = self.memory.for_rows(state["utt"])
        logp, kv = self.decoder.forward_step(ys[:, -1], state["kv"], memory_kv, mask)
        return logp, {"utt": state["utt"], "kv": kv}

    def select_state(self, state, rows: torch.Tensor):
        return {"utt": state["utt"].index_select(0, rows), "kv": self.decoder.select_self_kv(state["kv"], rows)}


# ---------------------------------------------------------------- the search


def max_output_length(maxlenratio: float, num_frames: int) -> int:
    """ESPnet's rule: 0 -> the number of encoder frames, < 0 -> -maxlenratio tokens, else ratio x frames."""
    if maxlenratio == 0:
        return num_frames
    if maxlenratio < 0:
        return int(-maxlenratio)
    return max(1, int(maxlenratio * num_frames))


def min_output_length(minlenratio: float, num_frames: int) -> int:
    return int(-minlenratio) if minlenratio < 0 else int(minlenratio * num_frames)


def end_detected(ended: List[Tuple[int, float]], step: int, m: int = 3, d_end: float = -10.0) -> bool:
    """ESPnet's end detection: stop when, for the last `m` output lengths, the best hypothesis that
    ended with that length is more than |d_end| nats worse than the best ended one.

    `ended` holds (number of tokens, score). ESPnet compares `len(yseq)` (with <sos> and <eos>)
    to `step - k`, i.e. looks at hypotheses with step - k - 2 tokens; kept as is, for comparable runs.
    """
    if not ended:
        return False
    best = max(s for _, s in ended)
    count = 0
    for k in range(m):
        same = [s for n, s in ended if n + 2 == step - k]
        if same and max(same) - best < d_end:
            count += 1
    return count == m


def joint_beam_search(
    ctc_logp: Optional[torch.Tensor],
    lengths: torch.Tensor,
    scorer: Optional[DecoderScorer],
    *,
    sos: int,
    eos: int,
    vocab_size: Optional[int] = None,
    blank_id: int = 0,
    beam_size: int = 10,
    ctc_weight: float = 0.3,
    penalty: float = 0.0,
    maxlenratio: float = 0.0,
    minlenratio: float = 0.0,
    pre_beam_ratio: float = 1.5,
    nbest: int = 1,
    end_detection: bool = True,
    lm_scorer: Optional[DecoderScorer] = None,
    lm_weight: float = 0.0,
) -> List[List[Hypothesis]]:
    """Decode B utterances at once -> per utterance up to `nbest` hypotheses, best first.

    `ctc_logp` (B, T, V) CTC log-probs (may be None when ctc_weight == 0), `lengths` (B,) encoder
    frames per utterance, `scorer` the attention decoder (may be None when ctc_weight == 1).
    End detection (ESPnet's) applies only with maxlenratio == 0, as in ESPnet.
    `lm_scorer` (same interface as `scorer`, e.g. `lm_scorer.LMStepScorer`) is fused with weight
    `lm_weight` (ValueError when lm_weight != 0 and there is no LM).
    """
    if not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"ctc_weight must be in [0, 1], got {ctc_weight}")
    use_ctc, use_att = ctc_weight > 0, ctc_weight < 1
    if use_ctc and ctc_logp is None:
        raise ValueError("ctc_weight > 0 needs ctc_logp")
    if use_att and scorer is None:
        raise ValueError("ctc_weight < 1 needs a decoder scorer")
    if lm_weight != 0 and lm_scorer is None:
        raise ValueError(f"lm_weight {lm_weight} needs an LM scorer")
    use_lm = lm_weight != 0
    if vocab_size is None:
        if ctc_logp is None:
            raise ValueError("give vocab_size when there are no CTC log-probs")
        vocab_size = ctc_logp.shape[-1]
    device = ctc_logp.device if ctc_logp is not None else lengths.device
    lengths = lengths.to(device)
    frames = lengths.tolist()
    results: List[List[Hypothesis]] = [[empty_hypothesis()] for _ in frames]
    active = [b for b, n in enumerate(frames) if n > 0]  # no frames: the empty hypothesis
    if not active:
        return results

    pre_beam = int(pre_beam_ratio * beam_size)
    ctc = CTCPrefixScorer(ctc_logp, lengths, blank_id, eos) if use_ctc else None
    # Rows are (utterance, hypothesis), `width` hypotheses per utterance: 1 (<sos>) at the first
    # step, then beam_size (fewer only while fewer candidates exist, e.g. a tiny vocabulary).
    width = 1
    utt = torch.tensor(active, device=device)  # row -> utterance
    maxlen = torch.tensor([max_output_length(maxlenratio, frames[b]) for b in active], device=device)
    minlen = torch.tensor([min_output_length(minlenratio, frames[b]) for b in active], device=device)
    ys = torch.full((len(utt), 1), sos, dtype=torch.long, device=device)
    alive = torch.ones(len(active), width, dtype=torch.bool, device=device)
    score = torch.zeros(len(utt), device=device)
    att_total = torch.zeros(len(utt), device=device)
    lm_total = torch.zeros(len(utt), device=device)
    dec_state = scorer.init_state(utt) if use_att else None
    lm_state = lm_scorer.init_state(utt) if use_lm else None
    ctc_state = ctc.init_state(utt) if use_ctc else None
    ended = {b: [] for b in active}
    vocab = torch.arange(vocab_size, device=device)

    step = 0
    while active:
        n_utt, n_rows = len(active), len(active) * width
        # 1. next-token scores of every running hypothesis, one decoder call for all
        if use_att:
            att_logp, dec_state = scorer.score(ys, dec_state)
            att_logp = att_logp.float()
            weighted = (1.0 - ctc_weight) * att_logp
        else:
            att_logp = None
            weighted = torch.zeros(n_rows, vocab_size, device=device)
        if use_lm:  # shallow fusion: one LM step for all rows, like the decoder's
            lm_logp, lm_state = lm_scorer.score(ys, lm_state)
            lm_logp = lm_logp.float()
            weighted = weighted + lm_weight * lm_logp
        row_maxlen = maxlen.repeat_interleave(width).unsqueeze(1)
        row_minlen = minlen.repeat_interleave(width).unsqueeze(1)
        forbidden = (vocab == blank_id) | ((vocab != eos) & (step >= row_maxlen)) | ((vocab == eos) & (step < row_minlen))
        weighted = weighted.masked_fill(forbidden, NEG_INF)

        # 2. candidates: the decoder's pre-beam, rescored with the CTC prefix score
        if use_ctc:
            if use_att and pre_beam < vocab_size:
                cand = weighted.topk(pre_beam, dim=1).indices
            else:
                cand = vocab.expand(n_rows, vocab_size)
            psi, ctc_ext = ctc.score(ctc_state, cand)
            cand_score = weighted.gather(1, cand) + ctc_weight * (psi - ctc_state.score.unsqueeze(1))
        else:
            cand = None
            cand_score = weighted
        cand_score = (cand_score + penalty + score.unsqueeze(1)).masked_fill(~alive.view(-1, 1), NEG_INF)

        # 3. the beam: the best `beam_size` extensions of each utterance among its width x C candidates
        n_cand = cand_score.shape[1]
        new_width = min(beam_size, width * n_cand)
        top_score, top = cand_score.view(n_utt, width * n_cand).topk(new_width, dim=1)
        rows = (torch.arange(n_utt, device=device).unsqueeze(1) * width + top // n_cand).view(-1)
        width = new_width
        cols = (top % n_cand).view(-1)
        tokens = cand[rows, cols] if cand is not None else cols
        score = top_score.view(-1)
        if use_att:
            att_total = att_total[rows] + att_logp[rows, tokens]
        if use_lm:
            lm_total = lm_total[rows] + lm_logp[rows, tokens]
            lm_state = lm_scorer.select_state(lm_state, rows)
        ys = torch.cat([ys[rows], tokens.unsqueeze(1)], dim=1)
        if use_att:
            dec_state = scorer.select_state(dec_state, rows)
        if use_ctc:
            ctc_state = ctc.select(ctc_ext, rows, cols)

        # 4. hypotheses that chose <eos> are finished
        finite = torch.isfinite(score)
        done = finite & (tokens == eos)
        for i in done.nonzero().view(-1).tolist():
            ended[active[i // width]].append(Hypothesis(
                token_ids=ys[i, 1:-1].tolist(), score=float(score[i]),
                att_score=float(att_total[i]) if use_att else None,
                ctc_score=float(ctc_state.score[i]) if use_ctc else None,
                lm_score=float(lm_total[i]) if use_lm else None,
            ))
        alive = (finite & (tokens != eos)).view(n_utt, width)
        score = score.masked_fill(~alive.view(-1), NEG_INF)

        # 5. drop utterances that are finished: nothing running, max length, or end detected
        keep = []
        for j, (b, stop) in enumerate(zip(active, (~alive.any(dim=1) | (step >= maxlen)).tolist())):
            if not stop and end_detection and maxlenratio == 0:
                stop = end_detected([(len(h.token_ids), h.score) for h in ended[b]], step)
            if not stop:
                keep.append(j)
        if len(keep) < n_utt:
            keep_t = torch.tensor(keep, dtype=torch.long, device=device)
            keep_rows = (keep_t.unsqueeze(1) * width + torch.arange(width, device=device)).view(-1)
            active = [active[j] for j in keep]
            maxlen, minlen, alive = maxlen[keep_t], minlen[keep_t], alive[keep_t]
            ys, score = ys[keep_rows], score[keep_rows]
            if use_att:  # (without a decoder att_total keeps its first-step shape and is never read)
                att_total = att_total[keep_rows]
            if use_att and active:
                dec_state = scorer.select_state(dec_state, keep_rows)
            if use_lm:
                lm_total = lm_total[keep_rows]
                if active:
                    lm_state = lm_scorer.select_state(lm_state, keep_rows)
            if use_ctc:
                ctc_state = ctc_state.index(keep_rows)
        step += 1

    for b, hyps in ended.items():
        if hyps:
            results[b] = sorted(hyps, key=lambda h: -h.score)[:nbest]
        else:
            log.warning("utterance %d: no hypothesis reached <eos> (minlenratio %s); returning an empty one",
                        b, minlenratio)
    return results
