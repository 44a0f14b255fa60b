"""The learnable weighted sum of a self-supervised model's hidden layers (SUPERB).

    h = sum_l softmax(w)_l * h_l,   l = 0 .. L

where h_0 is the input of the first transformer layer (the CNN encoder's output, projected) and h_l
the output of layer l, each (B, T, H). The weights w start at 0, i.e. every layer at 1 / (L + 1),
and are learned with the downstream model; softmax keeps them positive and summing to 1, so after
training they read as "how much of each layer the task used".

Source: Yang et al., "SUPERB: Speech processing Universal PERformance Benchmark", Interspeech
2021, arXiv:2105.01051 (section 3: the learnable weighted sum of all hidden layers); as s3prl's
``Featurizer`` and ESPnet's ``S3prlFrontend`` (``multilayer_feature: true``), without their
optional per-layer normalisation.
"""

from typing import Sequence

import torch
from torch import nn


class LayerWeightedSum(nn.Module):
    """``LayerWeightedSum(num_layers)(hidden_states)``: a sequence of `num_layers` tensors of one
    shape (B, T, H) -> their weighted sum (B, T, H). Raises ValueError for another count."""

    def __init__(self, num_layers: int):
        super().__init__()
        if int(num_layers) < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.num_layers = int(num_layers)
        self.weights = nn.Parameter(torch.zeros(self.num_layers))  # logits: softmax(0) = uniform

    def normalized_weights(self) -> torch.Tensor:
        """softmax(w): (num_layers,) positive, summing to 1 (with gradient)."""
        return torch.softmax(self.weights, dim=0)

    def forward(self, hidden_states: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(hidden_states) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} hidden states, got {len(hidden_states)}")
        weights = self.normalized_weights().to(hidden_states[0].dtype)
        out = weights[0] * hidden_states[0]
        for w, h in zip(weights[1:], hidden_states[1:]):  # a running sum: no (L+1, B, T, H) stack in memory
            out = out + w * h
        return out
