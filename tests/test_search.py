"""Search algorithms against references that share no code with them.

- CTC probabilities of label sequences by brute force over all alignments;
- the CTC prefix score by the textbook forward algorithm over the blank-interleaved labels;
- synthetic attention "decoders" (tables indexed by the utterance and the prefix), so the joint
  score of every full sequence can be enumerated exhaustively.
"""

import itertools
import math

import numpy as np
import pytest
import torch

from asrdemo.decode.beam_search import CTCPrefixScorer, joint_beam_search
from asrdemo.decode.ctc_greedy import ctc_greedy_search
from asrdemo.decode.ctc_prefix_beam import attention_rescoring, ctc_prefix_beam_search, ctc_prefix_beam_search_batch

torch.set_num_threads(1)
NEG_INF = float("-inf")


# ----------------------------------------------------------------------------------- references
def random_ctc_logp(batch, frames, vocab, seed, sharp=2.0, eos_logp=-1e4):
    """(B, T, V) CTC log-probs where the <sos/eos> class (last) is never emitted, as after training."""
    g = torch.Generator().manual_seed(seed)
    logits = sharp * torch.randn(batch, frames, vocab - 1, generator=g)
    logp = torch.log_softmax(logits, dim=-1)
    return torch.cat([logp, torch.full((batch, frames, 1), eos_logp)], dim=-1)


def collapse(path, blank=0):
    out = []
    prev = None
    for p in path:
        if p != blank and p != prev:
            out.append(p)
        prev = p
    return tuple(out)


def brute_force_ctc(logp):
    """log p(y | x) of every label sequence y, summing exp(path score) over ALL alignments.

    `logp` (T, V) numpy float64; alignments use <blank> and the labels 1..V-2 (not <sos/eos>)."""
    num_frames, vocab = logp.shape
    table = {}
    for path in itertools.product(range(vocab - 1), repeat=num_frames):
        lp = float(sum(logp[t, s] for t, s in enumerate(path)))
        seq = collapse(path)
        table[seq] = np.logaddexp(table.get(seq, NEG_INF), lp)
    return table


def forward_extended(logp, labels, blank=0):
    """Textbook CTC forward over the blank-interleaved labels: alpha (T, 2L+1) in log space."""
    num_frames = logp.shape[0]
    ext = [blank]
    for c in labels:
        ext += [c, blank]
    alpha = np.full((num_frames, len(ext)), NEG_INF)
    alpha[0, 0] = logp[0, blank]
    if labels:
        alpha[0, 1] = logp[0, ext[1]]
    for t in range(1, num_frames):
        for s in range(len(ext)):
            terms = [alpha[t - 1, s]]
            if s >= 1:
                terms.append(alpha[t - 1, s - 1])
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                terms.append(alpha[t - 1, s - 2])
            alpha[t, s] = np.logaddexp.reduce(terms) + logp[t, ext[s]]
    return alpha


def reference_prefix_score(logp, prefix, token, eos, blank=0):
    """psi(prefix + token): the probability that the transcript starts with prefix + token;
    for <eos>, log p(prefix | x). `logp` (T, V) holds only the utterance's own frames."""
    num_frames = logp.shape[0]
    if token == eos:
        alpha = forward_extended(logp, prefix, blank)
        return np.logaddexp(alpha[-1, -1], alpha[-1, -2]) if prefix else alpha[-1, 0]
    if token == blank:
        return NEG_INF
    # the new label starts at frame t: frames 0..t-1 spell exactly `prefix`
    total = logp[0, token] if not prefix else NEG_INF
    alpha = forward_extended(logp, prefix, blank)
    for t in range(1, num_frames):
        before = alpha[t - 1, -1]  # prefix done, last frame a blank
        if prefix and prefix[-1] != token:
            before = np.logaddexp(before, alpha[t - 1, -2])  # or its last label
        total = np.logaddexp(total, before + logp[t, token])
    return total


class TableScorer:
    """A synthetic attention decoder: log p(c | prefix) = table[utt, hash(prefix) % K].

    With `stateful`, the prefix hash is carried in the state (so wrong state selection in the
    search would change the result); otherwise it is recomputed from `ys` each call.
    """

    def __init__(self, num_utts, vocab, seed, buckets=97, stateful=False, sharp=1.5):
        g = torch.Generator().manual_seed(seed)
        self.table = torch.log_softmax(sharp * torch.randn(num_utts, buckets, vocab, generator=g), dim=-1)
        self.buckets, self.stateful, self.calls = buckets, stateful, 0

    def prefix_hash(self, ys):
        h = torch.zeros(ys.shape[0], dtype=torch.long)
        for j in range(ys.shape[1]):
            h = (h * 31 + ys[:, j] + 7) % 1000003
        return h

    def init_state(self, utt):
        return (utt.clone(), torch.zeros(len(utt), dtype=torch.long), 0)

    def score(self, ys, state):
        self.calls += 1
        utt, h, n = state
        if self.stateful:
            for j in range(n, ys.shape[1]):  # fold in the tokens not yet seen
                h = (h * 31 + ys[:, j] + 7) % 1000003
        else:
            h = self.prefix_hash(ys)
        return self.table[utt, h % self.buckets], (utt, h, ys.shape[1])

    def select_state(self, state, rows):
        utt, h, n = state
        return (utt[rows], h[rows], n)

    def sequence_logp(self, utt, seq, sos, eos):
        """log p_att(seq <eos>) by scoring one prefix at a time."""
        ys = [sos]
        total = 0.0
        for c in list(seq) + [eos]:
            h = self.prefix_hash(torch.tensor([ys]))
            total += float(self.table[utt, h % self.buckets][0, c])
            ys.append(c)
        return total

    def teacher_forced(self, utt, ys_in, ys_lens):
        out = []
        for j in range(ys_in.shape[1]):
            h = self.prefix_hash(ys_in[:, : j + 1])
            out.append(self.table[utt, h % self.buckets])
        return torch.stack(out, dim=1)


def joint(ctc_logp, lengths, scorer, **kw):
    vocab = ctc_logp.shape[-1] if ctc_logp is not None else kw.pop("vocab_size")
    return joint_beam_search(ctc_logp, lengths, scorer, sos=vocab - 1, eos=vocab - 1, vocab_size=vocab, **kw)


def assert_sorted_finite(hyps):
    assert hyps, "no hypotheses"
    scores = [h.score for h in hyps]
    assert all(math.isfinite(s) for s in scores), scores
    assert scores == sorted(scores, reverse=True), scores


# ---------------------------------------------------------------------------------- greedy
def test_greedy_is_argmax_then_collapse():
    logp = torch.log_softmax(torch.randn(4, 37, 9, generator=torch.Generator().manual_seed(0)), -1)
    lengths = torch.tensor([37, 20, 1, 0])
    hyps = ctc_greedy_search(logp, lengths)
    for b in range(4):
        best = logp[b, : lengths[b]].argmax(-1).tolist()
        expected = [k for k, _ in itertools.groupby(best) if k != 0]
        assert hyps[b][0].token_ids == expected
        assert hyps[b][0].score == pytest.approx(float(logp[b, : lengths[b]].max(-1).values.sum()), abs=1e-4)
    assert hyps[3][0].token_ids == [] and hyps[3][0].score == 0.0


# ------------------------------------------------------------------- exhaustive CTC-only search
EXHAUSTIVE_CASES = [(t, v, seed) for t, v in [(4, 4), (5, 4), (6, 4), (4, 5), (5, 5)] for seed in range(3)]


@pytest.mark.parametrize("frames,vocab,seed", EXHAUSTIVE_CASES)
def test_ctc_only_searches_find_the_best_sequence(frames, vocab, seed):
    logp = random_ctc_logp(1, frames, vocab, seed)
    table = brute_force_ctc(logp[0].double().numpy())
    best_seq = max(table, key=table.get)
    beam = (vocab - 1) ** (frames + 1)  # more than all prefixes x all tokens: nothing is pruned

    for hyps in (joint(logp, torch.tensor([frames]), None, beam_size=beam, ctc_weight=1.0, nbest=beam)[0],
                 ctc_prefix_beam_search(logp[0], beam_size=beam)):
        assert_sorted_finite(hyps)
        assert tuple(hyps[0].token_ids) == best_seq
        assert hyps[0].score == pytest.approx(table[best_seq], abs=1e-4)
        for h in hyps:  # every score is the sequence's full CTC probability
            if h.score > -1000:  # (skip paths through the never-emitted <sos/eos> class)
                assert h.score == pytest.approx(table[tuple(h.token_ids)], abs=1e-4)
        found = {tuple(h.token_ids) for h in hyps}
        assert {s for s, p in table.items() if p > -1000} <= found


@pytest.mark.parametrize("seed", range(4))
def test_joint_search_finds_the_best_joint_score(seed):
    """ctc_weight 0.4 and a synthetic decoder: the search's best equals the best over ALL sequences."""
    frames, vocab, w = 5, 4, 0.4
    logp = random_ctc_logp(1, frames, vocab, seed)
    ctc_table = brute_force_ctc(logp[0].double().numpy())
    scorer = TableScorer(1, vocab, seed + 100)
    eos = vocab - 1
    joint_table = {}
    for seq, ctc_lp in ctc_table.items():
        if len(seq) <= frames and ctc_lp > -1000:
            att = scorer.sequence_logp(0, seq, eos, eos)
            joint_table[seq] = (1 - w) * att + w * ctc_lp
    best = max(joint_table, key=joint_table.get)
    beam = 3 ** (frames + 1)
    hyps = joint(logp, torch.tensor([frames]), scorer, beam_size=beam, ctc_weight=w, nbest=5,
                 pre_beam_ratio=vocab)[0]
    assert_sorted_finite(hyps)
    assert tuple(hyps[0].token_ids) == best
    assert hyps[0].score == pytest.approx(joint_table[best], abs=1e-4)
    for h in hyps:
        assert h.ctc_score == pytest.approx(ctc_table[tuple(h.token_ids)], abs=1e-4)
        assert h.att_score == pytest.approx(scorer.sequence_logp(0, h.token_ids, eos, eos), abs=1e-4)


def test_a_small_beam_does_not_always_find_the_best():
    """The exhaustive tests above can fail: with beam 1 the search is greedy and misses sometimes."""
    misses = 0
    for seed in range(20):
        logp = random_ctc_logp(1, 6, 4, seed, sharp=0.7)
        table = brute_force_ctc(logp[0].double().numpy())
        hyp = joint(logp, torch.tensor([6]), None, beam_size=1, ctc_weight=1.0)[0][0]
        misses += tuple(hyp.token_ids) != max(table, key=table.get)
    assert misses > 0


# --------------------------------------------------------------------------- CTC prefix score
def test_prefix_score_matches_brute_force_definition():
    """psi(h) = sum of p(y | x) over all y that start with h, for every h up to length 3."""
    frames, vocab = 5, 4
    logp = random_ctc_logp(1, frames, vocab, seed=7)
    table = brute_force_ctc(logp[0].double().numpy())
    scorer = CTCPrefixScorer(logp, torch.tensor([frames]))
    labels = list(range(1, vocab - 1))
    for length in range(0, 3):
        for prefix in itertools.product(labels, repeat=length):
            state = scorer.init_state(torch.tensor([0]))
            for tok in prefix:
                _, ext = scorer.score(state, torch.tensor([[tok]]))
                state = scorer.select(ext, torch.tensor([0]), torch.tensor([0]))
            cand = torch.tensor([labels + [vocab - 1, 0]])
            psi, _ = scorer.score(state, cand)
            for j, c in enumerate(labels):
                expected = np.logaddexp.reduce(
                    [p for s, p in table.items() if s[: length + 1] == prefix + (c,)] or [NEG_INF])
                assert float(psi[0, j]) == pytest.approx(expected, abs=1e-4)
            assert float(psi[0, len(labels)]) == pytest.approx(table.get(prefix, NEG_INF), abs=1e-4)  # <eos>
            assert float(psi[0, -1]) == NEG_INF  # <blank>


def test_vectorised_prefix_score_equals_reference_batched_and_padded():
    """B utterances of different lengths x several prefixes x candidates (repeats, <eos>, <blank>)."""
    vocab, lengths = 7, [30, 17, 3]
    eos = vocab - 1
    logp = random_ctc_logp(3, max(lengths), vocab, seed=3, sharp=1.0, eos_logp=-3.0)
    scorer = CTCPrefixScorer(logp, torch.tensor(lengths))
    g = torch.Generator().manual_seed(5)
    rows_utt = torch.tensor([0, 0, 1, 1, 2, 2])
    prefixes = torch.randint(1, vocab - 1, (len(rows_utt), 5), generator=g)
    prefixes[0, 1] = prefixes[0, 0]  # a repeated label inside a prefix
    state = scorer.init_state(rows_utt)
    for step in range(prefixes.shape[1]):
        cand = torch.randint(0, vocab, (len(rows_utt), 6), generator=g)
        cand[:, 0] = prefixes[:, step]  # the prefix continues through column 0
        if step > 0:
            cand[:, 1] = prefixes[:, step - 1]  # a repeat of the last label
        cand[:, 2], cand[:, 3] = eos, 0
        psi, ext = scorer.score(state, cand)
        for i, b in enumerate(rows_utt.tolist()):
            x = logp[b, : lengths[b]].double().numpy()
            for j in range(cand.shape[1]):
                expected = reference_prefix_score(x, prefixes[i, :step].tolist(), int(cand[i, j]), eos)
                got = float(psi[i, j])
                if expected == NEG_INF or expected < -1e3:
                    assert got == NEG_INF or got < -1e3
                else:
                    assert got == pytest.approx(expected, rel=1e-5, abs=1e-3), (step, i, j)
        state = scorer.select(ext, torch.arange(len(rows_utt)), torch.zeros(len(rows_utt), dtype=torch.long))


# --------------------------------------------------------------------- batched == one by one
def _decode_all_modes(logp, lengths, scorer, beam=4):
    out = {
        "greedy": ctc_greedy_search(logp, lengths),
        "prefix_beam": ctc_prefix_beam_search_batch(logp, lengths, beam_size=beam, nbest=beam),
        "attention": joint(logp, lengths, scorer, beam_size=beam, ctc_weight=0.0, nbest=beam),
        "joint": joint(logp, lengths, scorer, beam_size=beam, ctc_weight=0.3, nbest=beam),
        "joint_penalty_maxlen": joint(logp, lengths, scorer, beam_size=beam, ctc_weight=0.5, nbest=beam,
                                      penalty=0.5, maxlenratio=0.3),
    }
    vocab = logp.shape[-1]
    out["rescoring"] = attention_rescoring(out["prefix_beam"], lengths, scorer.teacher_forced,
                                           sos=vocab - 1, eos=vocab - 1, ctc_weight=0.3)
    return out


def test_batched_equals_one_by_one():
    vocab, lengths = 8, torch.tensor([23, 9, 0, 1, 16])
    logp = random_ctc_logp(len(lengths), 23, vocab, seed=11, sharp=1.0)
    scorer = TableScorer(len(lengths), vocab, seed=12)
    batched = _decode_all_modes(logp, lengths, scorer)
    for b in range(len(lengths)):
        n = int(lengths[b])
        single_scorer = TableScorer(1, vocab, seed=0)
        single_scorer.table = scorer.table[b : b + 1]
        single = _decode_all_modes(logp[b : b + 1, : max(n, 1)], lengths[b : b + 1], single_scorer)
        for mode, result in single.items():
            got, want = batched[mode][b], result[0]
            assert_sorted_finite(got)
            assert [h.token_ids for h in got] == [h.token_ids for h in want], (mode, b)
            np.testing.assert_allclose([h.score for h in got], [h.score for h in want], rtol=1e-5, atol=1e-4)


def test_stateful_and_stateless_decoders_agree():
    """The search must hand each hypothesis its own parent's decoder state."""
    vocab, lengths = 9, torch.tensor([25, 14])
    logp = random_ctc_logp(2, 25, vocab, seed=21, sharp=0.5)
    a, b = TableScorer(2, vocab, seed=22), TableScorer(2, vocab, seed=22, stateful=True)
    for w in (0.0, 0.3):
        ha = joint(logp, lengths, a, beam_size=5, ctc_weight=w, nbest=5)
        hb = joint(logp, lengths, b, beam_size=5, ctc_weight=w, nbest=5)
        assert [[h.token_ids for h in x] for x in ha] == [[h.token_ids for h in x] for x in hb]


def test_one_decoder_call_per_step_for_the_whole_batch():
    vocab = 6
    logp = random_ctc_logp(3, 12, vocab, seed=1)
    scorer = TableScorer(3, vocab, seed=2)
    scorer.table[:, :, vocab - 1] = -1e4  # never <eos>: every utterance runs to maxlen
    joint(logp, torch.tensor([12, 12, 12]), scorer, beam_size=3, ctc_weight=0.3, maxlenratio=-4)
    assert scorer.calls == 5  # 4 tokens + the forced <eos>


# ----------------------------------------------------------------------------- lengths, edges
def test_maxlen_and_minlen():
    vocab = 6
    logp = random_ctc_logp(1, 20, vocab, seed=4, sharp=0.3)
    scorer = TableScorer(1, vocab, seed=5)
    scorer.table[:, :, vocab - 1] = -1e4
    hyps = joint(logp, torch.tensor([20]), scorer, beam_size=4, ctc_weight=0.3, maxlenratio=-7, nbest=4)[0]
    assert all(len(h.token_ids) == 7 for h in hyps)
    scorer = TableScorer(1, vocab, seed=5)
    scorer.table[:, :, vocab - 1] = 5.0  # <eos> is the decoder's favourite at once
    short = joint(logp, torch.tensor([20]), scorer, beam_size=4, ctc_weight=0.0, nbest=4)[0]
    assert short[0].token_ids == []
    longer = joint(logp, torch.tensor([20]), scorer, beam_size=4, ctc_weight=0.0, nbest=4, minlenratio=0.25)[0]
    assert all(len(h.token_ids) >= 5 for h in longer)


@pytest.mark.parametrize("frames", [0, 1])
def test_empty_and_one_frame_inputs(frames):
    vocab = 5
    logp = random_ctc_logp(1, max(frames, 1), vocab, seed=9)
    lengths = torch.tensor([frames])
    scorer = TableScorer(1, vocab, seed=10)
    for mode, hyps in _decode_all_modes(logp, lengths, scorer).items():
        assert_sorted_finite(hyps[0])
        if frames == 0:
            assert hyps[0][0].token_ids == [], mode
        else:
            assert len(hyps[0][0].token_ids) <= 1, mode
    assert ctc_prefix_beam_search(torch.zeros(0, vocab))[0].token_ids == []


# ----------------------------------------------- the prefix beam's cost in the beam (issue 12, item 6)
def test_ctc_prefix_beam_cost_is_linear_in_the_beam():
    """A 900-token vocabulary, as a real char model has: the work per frame must grow like the beam,
    not like its square (WeNet's top-beam tokens per frame made beam 300 8x slower than beam 100)."""
    logp = random_ctc_logp(1, 60, 900, seed=0, sharp=4.0)[0]
    work = {}
    for beam in (25, 100, 400):
        counts = {}
        hyps = ctc_prefix_beam_search(logp, beam_size=beam, counts=counts)
        assert_sorted_finite(hyps)
        work[beam] = counts["extensions"]
    assert work[400] <= 4.2 * work[100] and work[100] <= 4.2 * work[25], work
    # and a small beam is the search it always was: every token of the frame when beam <= 16
    small = ctc_prefix_beam_search(logp, beam_size=10, nbest=10)
    wide = ctc_prefix_beam_search(logp, beam_size=10, nbest=10, max_tokens_per_frame=10 ** 6)
    assert [(h.token_ids, h.score) for h in small] == [(h.token_ids, h.score) for h in wide]
