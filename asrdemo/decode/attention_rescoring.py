"""Attention rescoring (as in WeNet): rerank a CTC n-best list with the attention decoder.

All hypotheses of all utterances go through the decoder in ONE teacher-forced pass
(`<sos> y` in, `y <eos>` scored), so the decoder runs once per batch instead of once per token.
The final score is (1 - ctc_weight) * log p_att(y <eos> | x) + ctc_weight * log p_ctc(y | x)
+ penalty * (|y| + 1): the same weighting as joint beam search (WeNet's att + w' * ctc ranks the
same with w' = w / (1 - w)).
With a language model (`lm_fn`, `lm_weight` != 0), `lm_weight * log p_lm(y <eos>)` is added, as in
the fused joint search (asrdemo/decode/lm_scorer.py); with lm_weight 0 the LM is not called.
"""

from typing import Callable, List, Optional, Sequence

import torch

from asrdemo.decode.hypothesis import Hypothesis, joint_score
from asrdemo.model.mask import make_non_pad_mask

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
