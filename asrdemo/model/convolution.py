"""The Conformer's convolution module (Gulati et al., 2020).

pointwise conv (D -> 2D) -> GLU -> depthwise conv (kernel k, "same" padding) -> BatchNorm
-> activation -> pointwise conv (D -> D).

Padding: frames beyond an utterance's length are zeroed right before the depthwise conv, so
they look exactly like the conv's own zero padding and a padded utterance gives the same
valid outputs as the utterance alone. (Zeroing only the block's input is not enough: the first
pointwise conv's bias makes padded frames non-zero again.) In training mode BatchNorm
statistics still include padded frames, as in ESPnet and WeNet; ``norm="layer_norm"`` avoids that.
"""

from typing import Optional

import torch
from torch import nn


class ConvolutionModule(nn.Module):
    def __init__(self, channels: int, kernel_size: int = 15, activation: nn.Module = None, norm: str = "batch_norm"):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"cnn_module_kernel must be odd (symmetric 'same' padding), got {kernel_size}")
        self.pointwise_conv1 = nn.Conv1d(channels, 2 * channels, kernel_size=1)
        self.depthwise_conv = nn.Conv1d(
            channels, channels, kernel_size, padding=(kernel_size - 1) // 2, groups=channels
        )
        if norm == "batch_norm":
            self.norm = nn.BatchNorm1d(channels)
        elif norm == "layer_norm":
            self.norm = nn.LayerNorm(channels)
        else:
            raise ValueError(f"cnn_module_norm must be batch_norm or layer_norm, got {norm!r}")
        self.use_layer_norm = norm == "layer_norm"
        self.pointwise_conv2 = nn.Conv1d(channels, channels, kernel_size=1)
        self.activation = activation if activation is not None else nn.SiLU()

    def forward(self, x: torch.Tensor, mask_pad: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (B, T, D), mask_pad (B, 1, T) bool True = valid -> (B, T, D)."""
        x = x.transpose(1, 2)  # (B, D, T): channels first for Conv1d
        x = nn.functional.glu(self.pointwise_conv1(x), dim=1)
        if mask_pad is not None:
            x = x.masked_fill(~mask_pad, 0.0)
        x = self.depthwise_conv(x)
        if self.use_layer_norm:
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        else:
            x = self.norm(x)
        x = self.pointwise_conv2(self.activation(x))
        return x.transpose(1, 2)
