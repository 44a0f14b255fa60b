"""The Conformer's convolution module (Gulati et al., 2020).

pointwise conv (D -> 2D) -> GLU -> depthwise conv (kernel k) -> BatchNorm -> activation
-> pointwise conv (D -> D).

The depthwise conv is "same"-padded ((k-1)/2 frames each side, the default) or, with
``causal=True``, looks only at the past: k-1 frames on the left, none on the right (WeNet's
``causal``), so a frame's output never waits for later audio — what streaming needs. Both have the
same parameters (names and shapes), so a model trained without ``causal`` can be fine-tuned with it.

Streaming (asrdemo/model/encoder.py ``forward_chunk``): the left padding is taken from ``cache``,
the last ``left_context`` GLU outputs of the previous chunk (WeNet's ``cnn_cache``), instead of
zeros. Causal, chunk by chunk equals the whole sequence. "Same"-padded, each chunk's right edge
sees zeros where the whole sequence has the next chunk's frames; ``forward(..., chunk_size=C)``
computes exactly that on a whole sequence (each chunk: its ``left_context`` frames before it, zeros
after its end), so training with chunk masks trains what chunk-by-chunk decoding computes, and the
convolution keeps the look-ahead it has inside a chunk (icefall's streaming Zipformer keeps a
chunk-wise look-ahead convolution for the same reason).

Padding: frames beyond an utterance's length are zeroed right before the depthwise conv, so
they look exactly like the conv's own zero padding and a padded utterance gives the same
valid outputs as the utterance alone. (Zeroing only the block's input is not enough: the first
pointwise conv's bias makes padded frames non-zero again.) In training mode BatchNorm
statistics still include padded frames, as in ESPnet and WeNet; ``norm="layer_norm"`` avoids that.
"""

from typing import Optional, Tuple

import torch
from torch import nn


class ConvolutionModule(nn.Module):
    def __init__(self, channels: int, kernel_size: int = 15, activation: nn.Module = None, norm: str = "batch_norm",
                 causal: bool = False):
        super().__init__()
        if not causal and kernel_size % 2 != 1:
            raise ValueError(f"cnn_module_kernel must be odd (symmetric 'same' padding), got {kernel_size}")
        self.causal = causal
        # frames of left context each output needs; "same" padding supplies the right side itself
        self.left_context = kernel_size - 1 if causal else (kernel_size - 1) // 2
        self.pointwise_conv1 = nn.Conv1d(channels, 2 * channels, kernel_size=1)
        self.depthwise_conv = nn.Conv1d(
            channels, channels, kernel_size, padding=0 if causal else (kernel_size - 1) // 2, groups=channels
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

    def forward(self, x: torch.Tensor, mask_pad: Optional[torch.Tensor] = None,
                cache: Optional[torch.Tensor] = None, chunk_size: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, D), mask_pad (B, 1, T) bool True = valid, cache None or (B, D, left_context),
        chunk_size > 0: the whole sequence convolved as chunks of that many frames would be one by
        one (matters only without ``causal``) -> (y (B, T, D), the next cache (B, D, left_context):
        the last left_context GLU outputs, preceded by ``cache``'s when T is shorter)."""
        x = x.transpose(1, 2)  # (B, D, T): channels first for Conv1d
        x = nn.functional.glu(self.pointwise_conv1(x), dim=1)
        if mask_pad is not None:
            x = x.masked_fill(~mask_pad, 0.0)
        if cache is None:  # the start of the sequence: zeros, as padding
            cache = x.new_zeros(x.size(0), x.size(1), self.left_context if self.causal else 0)
        x = torch.cat([cache, x], dim=2)
        new_cache = x[:, :, max(x.size(2) - self.left_context, 0):]
        # "same" padding pads the cache's left side too: those outputs are dropped
        y = self.depthwise_conv(x)[:, :, 0 if self.causal else cache.size(2):]
        if chunk_size > 0 and not self.causal:
            y = y - self._beyond_chunk_ends(x[:, :, cache.size(2):], chunk_size)
        x = y
        if self.use_layer_norm:
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        else:
            x = self.norm(x)
        x = self.pointwise_conv2(self.activation(x))
        return x.transpose(1, 2), new_cache

    def _beyond_chunk_ends(self, x: torch.Tensor, chunk_size: int) -> torch.Tensor:
        """What the "same"-padded depthwise conv of x (B, D, T) read beyond each chunk's end
        -> (B, D, T), to subtract so that chunk i (frames iC .. iC+C-1) sees zeros after its end,
        as ``forward`` with a cache does per chunk: right tap k = 1..p of frame t reads t+k, beyond
        the chunk when t mod C + k >= C. The whole conv minus this costs about 1.9x the plain
        conv's time at any C, where cutting the sequence into overlapping windows cost 10x at
        C = 1 (bench/chunk_conv.py, bench/RESULTS.md)."""
        p, t = self.left_context, x.size(2)
        weight = self.depthwise_conv.weight[:, 0, :]  # (D, kernel): tap p + k reads frame t + k
        in_chunk = torch.arange(t, device=x.device) % chunk_size  # each frame's place in its chunk
        beyond = torch.zeros_like(x)
        for k in range(1, min(p, t - 1) + 1):
            crosses = (in_chunk[:t - k] + k >= chunk_size).to(x.dtype)
            beyond[:, :, :t - k] += weight[:, p + k, None] * x[:, :, k:] * crosses
        return beyond
