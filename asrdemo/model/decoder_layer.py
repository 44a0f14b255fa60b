"""One Transformer decoder block: masked self-attention, source attention over the encoder
output ("memory"), feed-forward; each with a residual connection and LayerNorm.

``forward_step`` is the incremental path (one new position per call) for beam search: the cache
holds the self-attention's projected keys/values of the earlier positions, so a step projects only
the newest position; the source attention takes keys/values projected once per utterance and
shared by that utterance's W hypotheses (the W queries attend to one (H, T, d_k) memory, nothing is
copied per hypothesis).
"""

from typing import Optional, Tuple

import torch
from torch import nn

from asrdemo.model.dropout import Dropout
from asrdemo.model.residual import residual_block

KV = Tuple[torch.Tensor, torch.Tensor]  # keys, values, each (N, H, L, d_k)


class DecoderLayer(nn.Module):
    def __init__(self, size: int, self_attn: nn.Module, src_attn: nn.Module, feed_forward: nn.Module,
                 dropout_rate: float, normalize_before: bool = True):
        super().__init__()
        self.self_attn = self_attn
        self.src_attn = src_attn
        self.feed_forward = feed_forward
        self.norm1 = nn.LayerNorm(size)
        self.norm2 = nn.LayerNorm(size)
        self.norm3 = nn.LayerNorm(size)
        self.dropout = Dropout(dropout_rate)
        self.normalize_before = normalize_before

    def forward(
        self,
        tgt: torch.Tensor,
        tgt_mask: Optional[torch.Tensor],
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        memory_kv: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
    ) -> torch.Tensor:
        """
        tgt (N, L, D) inputs of all positions; tgt_mask (N|1, L, L) bool or None (no masking);
        memory (N, T, D), memory_mask (N, 1, T) bool True = valid;
        memory_kv None or ``src_attn.project_kv(memory, memory)``, either
        per row (N, H, T, d_k) or per utterance (B, H, T, d_k) with N = B * W rows, W consecutive
        rows per utterance (then memory is not read and memory_mask is (B, 1, T) or None).
        Returns (N, L, D).
        """
        x, _ = self._block(tgt, self.norm1, lambda y: (self.self_attn(y, y, y, tgt_mask), None))
        n, length, d = x.shape
        b = n if memory_kv is None else memory_kv[0].size(0)

        def source_attention(y):
            if b != n:  # memory_kv of B utterances, N = B * W rows: W consecutive rows per utterance
                y = self.src_attn(y.reshape(b, (n // b) * length, d), None, None, memory_mask, kv=memory_kv)
                return y.reshape(n, length, d), None
            return self.src_attn(y, memory, memory, memory_mask, kv=memory_kv), None

        x, _ = self._block(x, self.norm2, source_attention)
        x, _ = self._block(x, self.norm3, lambda y: (self.feed_forward(y), None))
        return x

    def forward_step(
        self,
        x: torch.Tensor,
        self_kv: Optional[KV],
        memory_kv: KV,
        memory_mask: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, KV]:
        """One new position for N = B * W hypotheses (W consecutive rows per utterance).

        x (N, 1, D) this layer's input at the newest position; self_kv None (first position) or
        the keys/values of the earlier positions, each (N, H, L-1, d_k); memory_kv the source
        attention's keys/values of the B utterances, each (B, H, T, d_k); memory_mask (B, 1, T)
        bool True = valid, or None when every frame is valid.
        Returns the output (N, 1, D) and the keys/values of all L positions, each (N, H, L, d_k).
        """
        n, _, d = x.shape

        def self_attention(y):
            k, v = self.self_attn.project_kv(y, y)  # (N, H, 1, d_k): the newest position only
            if self_kv is not None:
                k, v = torch.cat([self_kv[0], k], dim=2), torch.cat([self_kv[1], v], dim=2)
            # the newest position may see every earlier one: no mask
            return self.self_attn.forward_fused(y, (k, v), None), (k, v)

        x, kv = self._block(x, self.norm1, self_attention)
        # an utterance's W hypotheses are W queries against its one memory: (B, W, D)
        b = memory_kv[0].size(0)
        x, _ = self._block(x, self.norm2, lambda y: (
            self.src_attn.forward_fused(y.reshape(b, n // b, d), memory_kv, memory_mask).reshape(n, 1, d), None))
        x, _ = self._block(x, self.norm3, lambda y: (self.feed_forward(y), None))
        return x, kv

    def _block(self, x, norm, fn):
        return residual_block(x, norm, fn, self.dropout, self.normalize_before)
