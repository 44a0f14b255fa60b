"""One Transformer decoder block: masked self-attention, source attention over the encoder
output ("memory"), feed-forward; each with a residual connection and LayerNorm.

Incremental decoding: with ``cache`` (this layer's outputs for the first L-1 positions,
(N, L-1, D)) only the newest position is computed as a query; the earlier outputs are copied
from the cache. The self-attention still reads keys/values of all L inputs.
"""

from typing import Optional, Tuple

import torch
from torch import nn


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
        self.dropout = nn.Dropout(dropout_rate)
        self.normalize_before = normalize_before

    def forward(
        self,
        tgt: torch.Tensor,
        tgt_mask: Optional[torch.Tensor],
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        cache: Optional[torch.Tensor] = None,
        memory_kv: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
    ) -> torch.Tensor:
        """
        tgt (N, L, D) inputs of all positions; tgt_mask (N|1, L, L) bool or None (no masking);
        memory (N, T, D), memory_mask (N, 1, T) bool True = valid;
        cache None or (N, L-1, D); memory_kv None or ``src_attn.project_kv(memory, memory)``.
        Returns (N, L, D).
        """
        residual = tgt
        if self.normalize_before:
            tgt = self.norm1(tgt)
        if cache is None:
            query, query_mask = tgt, tgt_mask
        else:
            assert cache.shape == (tgt.size(0), tgt.size(1) - 1, tgt.size(2)), (
                f"cache {tuple(cache.shape)} does not fit {tuple(tgt.shape)} inputs"
            )
            query, residual = tgt[:, -1:], residual[:, -1:]
            query_mask = None if tgt_mask is None else tgt_mask[:, -1:, :]
        x = residual + self.dropout(self.self_attn(query, tgt, tgt, query_mask))
        if not self.normalize_before:
            x = self.norm1(x)

        residual = x
        if self.normalize_before:
            x = self.norm2(x)
        x = residual + self.dropout(self.src_attn(x, memory, memory, memory_mask, kv=memory_kv))
        if not self.normalize_before:
            x = self.norm2(x)

        residual = x
        if self.normalize_before:
            x = self.norm3(x)
        x = residual + self.dropout(self.feed_forward(x))
        if not self.normalize_before:
            x = self.norm3(x)

        if cache is not None:
            x = torch.cat([cache, x], dim=1)
        return x
