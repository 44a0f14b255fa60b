"""Dropout whose mask is drawn with `torch.rand` on CPU.

`nn.Dropout` draws its mask with `bernoulli_`, which on CPU costs twice a uniform draw of the same
size: profiled on a conformer8 training step (2 threads, bf16 autocast), `bernoulli_` alone was
29 % of the step. Comparing uniforms with p gives the same Bernoulli(1 - p) mask (P(u >= p) = 1 - p
for u ~ U[0, 1)) at about half the cost (bench/RESULTS.md, "Training throughput"). On GPUs the
fused `F.dropout` is faster and is used as is.
"""

import torch
from torch import nn


class Dropout(nn.Dropout):
    """`nn.Dropout(p)` (inverted dropout: kept elements are scaled by 1 / (1 - p)), same interface,
    same distribution; x (any shape) -> the same shape and dtype. Identity in eval mode or at p = 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" or self.p == 1.0:
            return super().forward(x)
        keep = torch.rand(x.shape) >= self.p  # float32 uniforms whatever x's dtype (bf16 has 8 bits)
        return x * keep * (1.0 / (1.0 - self.p))
