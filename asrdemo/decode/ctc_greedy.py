"""CTC greedy search: the best label per frame, repeats collapsed, blanks dropped. Batched."""

from typing import List

import torch

from asrdemo.decode.hypothesis import Hypothesis
from asrdemo.model.mask import make_non_pad_mask


def ctc_greedy_search(ctc_logp: torch.Tensor, lengths: torch.Tensor, blank_id: int = 0) -> List[List[Hypothesis]]:
    """`ctc_logp` (B, T, V) log-probs, `lengths` (B,) valid frames -> per utterance [best hypothesis].

    The score is the log-probability of the single best alignment (the sum of per-frame maxima),
    not of the label sequence; it is 0 for an utterance with no frames.
    """
    if ctc_logp.dim() != 3:
        raise ValueError(f"ctc_logp must be (B, T, V), got {tuple(ctc_logp.shape)}")
    batch, max_len, _ = ctc_logp.shape
    lengths = lengths.to(ctc_logp.device)
    best_logp, best_ids = ctc_logp.max(dim=-1)  # (B, T)
    valid = make_non_pad_mask(lengths, max_len)
    previous = torch.nn.functional.pad(best_ids, (1, 0), value=blank_id)[:, :-1]
    keep = valid & (best_ids != blank_id) & (best_ids != previous)
    scores = best_logp.masked_fill(~valid, 0.0).sum(dim=1)
    ids, keep = best_ids.tolist(), keep.tolist()
    return [
        [Hypothesis(token_ids=[i for i, k in zip(ids[b], keep[b]) if k], score=float(scores[b]),
                    ctc_score=float(scores[b]))]
        for b in range(batch)
    ]
