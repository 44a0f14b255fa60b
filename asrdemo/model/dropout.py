"""Dropout whose mask is drawn from cheaper random numbers on CPU.

`nn.Dropout` draws its mask with `bernoulli_`, which on CPU costs about two uniform draws per
element: profiled on a conformer8 training step (2 threads, bf16 autocast), `bernoulli_` alone was
29 % of the step. Here each element's mask comes from 16 random bits instead — one 32-bit draw of
the generator (`random_`) gives two elements — and an element is dropped when its 16 bits, read as
a signed integer, fall below -32768 + round(p * 65536): a Bernoulli mask with drop probability
round(p * 65536) / 65536 (p to within 1 / 131072, e.g. 0.1 -> 0.100006). The mask costs about a
third of `bernoulli_`'s (bench/RESULTS.md, "Training throughput"). On GPUs the fused `F.dropout` is
faster and is used as is.
"""

import torch
from torch import nn


class Dropout(nn.Dropout):
    """`nn.Dropout(p)` (inverted dropout: kept elements are scaled by 1 / (1 - p)), same interface;
    x (any shape) -> the same shape and dtype. Identity in eval mode or at p = 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" or self.p == 1.0:
            return super().forward(x)
        n = x.numel()
        # [-2^31, 2^31 - 1): one 32-bit draw per value (ATen uses random64 only for ranges >= 2^32)
        bits = torch.empty((n + 1) // 2, dtype=torch.int32).random_(-(2 ** 31), 2 ** 31 - 1)
        lanes = bits.view(torch.int16)[:n].view(x.shape)  # two 16-bit values per draw
        keep = lanes >= round(self.p * 65536) - 32768
        return x * keep * (1.0 / (1.0 - self.p))
