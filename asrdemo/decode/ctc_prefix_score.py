"""Vectorised CTC prefix scores for joint CTC/attention beam search.

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

import torch

NEG_INF = float("-inf")


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
