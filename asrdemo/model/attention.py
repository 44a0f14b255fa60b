"""Multi-head attention.

* ``MultiHeadedAttention``: scaled dot-product attention (Vaswani et al.). Used by the
  Transformer encoder and by the decoder's self- and source attention.
* ``RelPositionMultiHeadedAttention``: self-attention with relative positional encoding
  (Transformer-XL, Dai et al. 2019; the Conformer's MHSA, as ESPnet's ``rel_selfattn``).

Masks are bool, True = may attend: (B, 1, T2) for "which keys are real" or (B, T1, T2).

Three hooks for decoding and for figures:
* ``project_kv(key, value)`` returns the projected keys/values; ``forward(..., kv=(k, v))``
  reuses them. The decoder projects the encoder memory once per utterance this way instead of
  at every output step.
* ``self_attention(x, mask, pos_emb, cache)`` attends over cached keys/values of earlier frames
  too: the streaming encoder's ``att_cache``.
* set ``store_attn = True`` (or call ``store_attention_weights(model)``) and each module keeps
  its last attention weights (B, H, T1, T2) in ``self.attn``.
"""

import math
from typing import Optional, Tuple

import torch
from torch import nn

from asrdemo.model.dropout import Dropout


class MultiHeadedAttention(nn.Module):
    def __init__(self, n_head: int, n_feat: int, dropout_rate: float):
        super().__init__()
        if n_feat % n_head != 0:
            raise ValueError(f"attention size {n_feat} is not divisible by {n_head} heads")
        self.h = n_head
        self.d_k = n_feat // n_head
        self.linear_q = nn.Linear(n_feat, n_feat)
        self.linear_k = nn.Linear(n_feat, n_feat)
        self.linear_v = nn.Linear(n_feat, n_feat)
        self.linear_out = nn.Linear(n_feat, n_feat)
        self.dropout = Dropout(dropout_rate)
        self.store_attn = False
        self.attn: Optional[torch.Tensor] = None

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, H*d_k) -> (B, H, T, d_k)."""
        return x.view(x.size(0), x.size(1), self.h, self.d_k).transpose(1, 2)

    def project_kv(self, key: torch.Tensor, value: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, T2, D) key and value -> k, v each (B, H, T2, d_k)."""
        return self.split_heads(self.linear_k(key)), self.split_heads(self.linear_v(value))

    def attend(self, scores: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Softmax over keys (masked), weighted sum of values, output projection.

        scores (B, H, T1, T2), v (B, H, T2, d_k), mask (B, 1|T1, T2) -> (B, T1, D).
        Masked scores get the dtype's lowest value rather than -inf, and the weights are zeroed
        again after the softmax, so a row with no valid key yields zeros instead of NaN.
        """
        if mask is not None:
            blocked = ~mask.unsqueeze(1)  # (B, 1, 1|T1, T2), broadcast over heads
            scores = scores.masked_fill(blocked, torch.finfo(scores.dtype).min)
            attn = torch.softmax(scores, dim=-1).masked_fill(blocked, 0.0)
        else:
            attn = torch.softmax(scores, dim=-1)
        if self.store_attn:
            self.attn = attn.detach()
        x = torch.matmul(self.dropout(attn), v)  # (B, H, T1, d_k)
        x = x.transpose(1, 2).reshape(x.size(0), -1, self.h * self.d_k)
        return self.linear_out(x)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: Optional[torch.Tensor],
        pos_emb: Optional[torch.Tensor] = None,
        kv: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
    ) -> torch.Tensor:
        """query (B, T1, D), key/value (B, T2, D) -> (B, T1, D). ``pos_emb`` goes to ``scores``
        (read by the relative-position subclass only); ``kv`` = the result of
        ``project_kv(key, value)`` skips projecting key and value."""
        # q before k and v, as always: the same allocation order keeps results bit-identical (CPU
        # matmul kernels may round differently with other memory alignment)
        q = self.linear_q(query)
        k, v = kv if kv is not None else self.project_kv(key, value)
        return self.attend(self.scores(q, k, pos_emb), v, mask)

    def scores(self, q: torch.Tensor, k: torch.Tensor, pos_emb: Optional[torch.Tensor]) -> torch.Tensor:
        """Projected queries q (B, T1, D) and keys k (B, H, T2, d_k) -> scaled dot products (B, H, T1, T2)."""
        return torch.matmul(self.split_heads(q), k.transpose(-2, -1)) / math.sqrt(self.d_k)

    def self_attention(self, x: torch.Tensor, mask: Optional[torch.Tensor], pos_emb: Optional[torch.Tensor] = None,
                       cache: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
                       ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Self-attention of x (B, T1, D) over the cached keys/values of earlier frames followed by
        x's own -> (out (B, T1, D), (k, v) each (B, H, C+T1, d_k): the next cache, untrimmed).

        ``cache`` None (full context, C = 0) or (k, v) each (B, H, C, d_k) as returned before;
        ``mask`` (B, 1|T1, C+T1). Caching projected keys/values is what makes chunk-by-chunk
        encoding cost O(chunk) per chunk (WeNet's ``att_cache``)."""
        k, v = self.project_kv(x, x)
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        return self.forward(x, x, x, mask, pos_emb, kv=(k, v)), (k, v)

    def forward_fused(
        self,
        query: torch.Tensor,
        kv: Tuple[torch.Tensor, torch.Tensor],
        mask: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """``forward(query, None, None, mask, kv=kv)`` in fewer calls, for the decoder's one-position
        steps (where per-call overhead is most of the cost): one fused scaled-dot-product call
        instead of matmul, scale, mask, softmax, matmul. Every query row must have a valid key.
        Falls back to ``forward`` when the weights are to be kept or dropout is active."""
        if self.store_attn or (self.training and self.dropout.p > 0):
            return self.forward(query, None, None, mask, kv=kv)
        q = self.split_heads(self.linear_q(query))
        k, v = kv
        x = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask.unsqueeze(1))
        return self.linear_out(x.transpose(1, 2).reshape(x.size(0), -1, self.h * self.d_k))


def rel_shift(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T1, T2+T1-1) scores against distances T2-1 ... -(T1-1) -> (B, H, T1, T2) scores[i, j]
    against distance (T2-T1+i) - j: the queries are the last T1 of the T2 keys (T1 == T2 in full
    context; a streaming chunk after T2-T1 cached frames otherwise).

    That distance sits in column (T1-1) - i + j, so row i of the result is the window of row i
    of ``x`` that starts at column T1-1-i: one step down is one step left. A strided view does
    that without copying.
    """
    x = x.contiguous()
    b, h, t1, p = x.shape
    t2 = p - t1 + 1
    assert t2 >= t1, f"expected at least 2*T1-1 = {2 * t1 - 1} distances, got {p}"
    s0, s1, s2, s3 = x.stride()
    return x.as_strided((b, h, t1, t2), (s0, s1, s2 - s3, s3), x.storage_offset() + (t1 - 1) * s3)


class RelPositionMultiHeadedAttention(MultiHeadedAttention):
    """score(i, j) = (q_i + u) . k_j  +  (q_i + v) . W_pos p_{i-j}     (Transformer-XL)

    u, v (``pos_bias_u``, ``pos_bias_v``) are learned per head; p_{i-j} is the sinusoid of the
    distance i - j from ``RelPositionalEncoding``. Only for self-attention: the T1 queries are
    the last T1 of the T2 keys (T1 == T2, or a streaming chunk after T2 - T1 cached frames, with
    pos_emb from ``RelPositionalEncoding.embedding(T1, T2)``).
    """

    def __init__(self, n_head: int, n_feat: int, dropout_rate: float):
        super().__init__(n_head, n_feat, dropout_rate)
        self.linear_pos = nn.Linear(n_feat, n_feat, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(self.h, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.empty(self.h, self.d_k))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def scores(self, q: torch.Tensor, k: torch.Tensor, pos_emb: Optional[torch.Tensor]) -> torch.Tensor:
        """pos_emb (1, T2+T1-1, D) from ``RelPositionalEncoding``; otherwise as the base class."""
        if pos_emb is None:
            raise ValueError("RelPositionMultiHeadedAttention needs pos_emb (use rel_pos encoding)")
        b, t, _ = q.shape
        q = q.view(b, t, self.h, self.d_k)  # (B, T, H, d_k): add biases per head
        p = self.split_heads(self.linear_pos(pos_emb))  # (1, H, T2+T1-1, d_k)
        q_u = (q + self.pos_bias_u).transpose(1, 2)  # (B, H, T, d_k)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        content = torch.matmul(q_u, k.transpose(-2, -1))  # (B, H, T1, T2)   terms (a) + (c)
        position = rel_shift(torch.matmul(q_v, p.transpose(-2, -1)))  # (B, H, T1, T2)  terms (b) + (d)
        return (content + position) / math.sqrt(self.d_k)


def store_attention_weights(module: nn.Module, flag: bool = True) -> None:
    """Turn on (or off) keeping ``.attn`` in every attention module below ``module``."""
    for m in module.modules():
        if isinstance(m, MultiHeadedAttention):
            m.store_attn = flag
            if not flag:
                m.attn = None
