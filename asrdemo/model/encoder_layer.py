"""One encoder block: Transformer (MHSA + FFN) or Conformer (FFN/2 + MHSA + Conv + FFN/2).

Residual connections with LayerNorm before each sub-block (``normalize_before=True``, the
default) or after it (the original Transformer's post-norm).
"""

from typing import Optional

import torch
from torch import nn


class TransformerEncoderLayer(nn.Module):
    def __init__(self, size: int, self_attn: nn.Module, feed_forward: nn.Module, dropout_rate: float,
                 normalize_before: bool = True):
        super().__init__()
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        self.norm1 = nn.LayerNorm(size)
        self.norm2 = nn.LayerNorm(size)
        self.dropout = nn.Dropout(dropout_rate)
        self.normalize_before = normalize_before

    def forward(self, x: torch.Tensor, mask: torch.Tensor, pos_emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (B, T, D), mask (B, 1, T) bool True = valid -> (B, T, D)."""
        residual = x
        if self.normalize_before:
            x = self.norm1(x)
        x = residual + self.dropout(self.self_attn(x, x, x, mask, pos_emb))
        if not self.normalize_before:
            x = self.norm1(x)

        residual = x
        if self.normalize_before:
            x = self.norm2(x)
        x = residual + self.dropout(self.feed_forward(x))
        if not self.normalize_before:
            x = self.norm2(x)
        return x


class ConformerEncoderLayer(nn.Module):
    """x + FFN/2 -> x + MHSA -> x + Conv -> x + FFN/2 -> LayerNorm   (macaron, Gulati et al. 2020).

    ``feed_forward_macaron`` None gives a single full FFN; ``conv_module`` None leaves out the
    convolution (and the final LayerNorm, as ESPnet does).
    """

    def __init__(self, size: int, self_attn: nn.Module, feed_forward: nn.Module,
                 feed_forward_macaron: Optional[nn.Module], conv_module: Optional[nn.Module],
                 dropout_rate: float, normalize_before: bool = True):
        super().__init__()
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        self.feed_forward_macaron = feed_forward_macaron
        self.conv_module = conv_module
        self.norm_ff = nn.LayerNorm(size)
        self.norm_mha = nn.LayerNorm(size)
        if feed_forward_macaron is not None:
            self.norm_ff_macaron = nn.LayerNorm(size)
            self.ff_scale = 0.5
        else:
            self.ff_scale = 1.0
        if conv_module is not None:
            self.norm_conv = nn.LayerNorm(size)
            self.norm_final = nn.LayerNorm(size)
        self.dropout = nn.Dropout(dropout_rate)
        self.normalize_before = normalize_before

    def _sublayer(self, x, norm, fn, scale=1.0):
        """Residual + (pre- or post-) LayerNorm around one sub-block."""
        residual = x
        if self.normalize_before:
            x = norm(x)
        x = residual + scale * self.dropout(fn(x))
        if not self.normalize_before:
            x = norm(x)
        return x

    def forward(self, x: torch.Tensor, mask: torch.Tensor, pos_emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (B, T, D), mask (B, 1, T) bool True = valid, pos_emb for rel_pos -> (B, T, D)."""
        if self.feed_forward_macaron is not None:
            x = self._sublayer(x, self.norm_ff_macaron, self.feed_forward_macaron, self.ff_scale)
        x = self._sublayer(x, self.norm_mha, lambda y: self.self_attn(y, y, y, mask, pos_emb))
        if self.conv_module is not None:
            x = self._sublayer(x, self.norm_conv, lambda y: self.conv_module(y, mask))
        x = self._sublayer(x, self.norm_ff, self.feed_forward, self.ff_scale)
        if self.conv_module is not None:
            x = self.norm_final(x)
        return x
