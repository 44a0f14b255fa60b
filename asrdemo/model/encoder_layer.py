"""One encoder block: Transformer (MHSA + FFN) or Conformer (FFN/2 + MHSA + Conv + FFN/2).

Residual connections with LayerNorm before each sub-block (``normalize_before=True``, the
default) or after it (the original Transformer's post-norm).

Every block returns, beside its output, what a streaming encoder must keep for the next chunk
(asrdemo/model/encoder.py ``forward_chunk``): the self-attention's keys/values ``(k, v)`` and the
convolution's last inputs (None without a convolution). Given those as ``att_cache`` and
``cnn_cache``, a chunk attends to and convolves over the earlier chunks without recomputing them.
"""

from typing import Optional, Tuple

import torch
from torch import nn

from asrdemo.model.dropout import Dropout
from asrdemo.model.residual import residual_block

KVCache = Tuple[torch.Tensor, torch.Tensor]  # keys, values: each (B, H, frames, d_k)


class TransformerEncoderLayer(nn.Module):
    def __init__(self, size: int, self_attn: nn.Module, feed_forward: nn.Module, dropout_rate: float,
                 normalize_before: bool = True):
        super().__init__()
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        self.norm1 = nn.LayerNorm(size)
        self.norm2 = nn.LayerNorm(size)
        self.dropout = Dropout(dropout_rate)
        self.normalize_before = normalize_before

    def forward(self, x: torch.Tensor, mask: torch.Tensor, pos_emb: Optional[torch.Tensor] = None,
                mask_pad: Optional[torch.Tensor] = None, att_cache: Optional[KVCache] = None,
                cnn_cache: Optional[torch.Tensor] = None, chunk_size: int = 0) -> Tuple[torch.Tensor, KVCache, None]:
        """x (B, T, D), mask (B, 1|T, C+T) bool True = may attend, att_cache None or the (k, v) of
        C earlier frames -> (x (B, T, D), (k, v) of C+T frames, None). (``mask_pad``,
        ``cnn_cache`` and ``chunk_size`` are the Conformer's convolution's; here unused.)"""
        x, new_att_cache = residual_block(
            x, self.norm1, lambda y: self.self_attn.self_attention(y, mask, pos_emb, att_cache), self.dropout,
            self.normalize_before)
        x, _ = residual_block(x, self.norm2, lambda y: (self.feed_forward(y), None), self.dropout,
                              self.normalize_before)
        return x, new_att_cache, None


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
        self.dropout = Dropout(dropout_rate)
        self.normalize_before = normalize_before

    def _sublayer(self, x, norm, fn, scale=1.0):
        """``residual_block`` around one sub-block; ``fn(x) -> (out, cache)`` -> (x, cache). (Every
        sub-block's output is scaled, by 1.0 too: the same operations as always, the same results.)"""
        return residual_block(x, norm, fn, self.dropout, self.normalize_before, scale)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, pos_emb: Optional[torch.Tensor] = None,
                mask_pad: Optional[torch.Tensor] = None, att_cache: Optional[KVCache] = None,
                cnn_cache: Optional[torch.Tensor] = None, chunk_size: int = 0
                ) -> Tuple[torch.Tensor, KVCache, Optional[torch.Tensor]]:
        """x (B, T, D), mask (B, 1|T, C+T) bool True = may attend, pos_emb for rel_pos,
        mask_pad (B, 1, T) the valid frames for the convolution (default: ``mask`` when it is
        (B, 1, T)), att_cache None or the (k, v) of C earlier frames, cnn_cache None or
        (B, D, kernel context), chunk_size > 0: the chunk of ``mask``, for the convolution
        (``ConvolutionModule.forward``) -> (x (B, T, D), (k, v) of C+T frames, the next cnn_cache or None)."""
        if mask_pad is None and mask is not None and mask.size(1) == 1:
            mask_pad = mask
        if self.feed_forward_macaron is not None:
            x, _ = self._sublayer(x, self.norm_ff_macaron, lambda y: (self.feed_forward_macaron(y), None),
                                  self.ff_scale)
        x, new_att_cache = self._sublayer(x, self.norm_mha,
                                          lambda y: self.self_attn.self_attention(y, mask, pos_emb, att_cache))
        new_cnn_cache = None
        if self.conv_module is not None:
            x, new_cnn_cache = self._sublayer(x, self.norm_conv, lambda y: self.conv_module(y, mask_pad, cnn_cache, chunk_size))
        x, _ = self._sublayer(x, self.norm_ff, lambda y: (self.feed_forward(y), None), self.ff_scale)
        if self.conv_module is not None:
            x = self.norm_final(x)
        return x, new_att_cache, new_cnn_cache
