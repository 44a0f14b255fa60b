"""Sinusoidal positional encodings (Vaswani et al., 2017).

* ``PositionalEncoding`` (abs_pos): adds the sinusoid of each absolute position to the input.
  Used by the Transformer encoder and by the decoder.
* ``RelPositionalEncoding`` (rel_pos): leaves the input unchanged (apart from the sqrt(d) scale)
  and returns the sinusoid of every *relative* distance T-1, T-2, ..., -(T-1) separately (a
  streaming chunk with cached keys: ``embedding(queries, keys)``), for
  ``RelPositionMultiHeadedAttention`` (Transformer-XL / Conformer, as ESPnet's ``rel_pos``).

Both return ``(x, pos_emb)`` so that encoder layers can treat them alike; abs_pos gives None.
The tables are computed on the fly: (2T-1) x D sines are negligible next to one attention layer.
"""

import math
from typing import Optional, Tuple

import torch
from torch import nn

from asrdemo.model.dropout import Dropout


def sinusoid_table(positions: torch.Tensor, d_model: int) -> torch.Tensor:
    """positions (P,) float -> (P, d_model): sin on even dims, cos on odd dims."""
    inv_freq = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32, device=positions.device) * (-math.log(10000.0) / d_model)
    )
    angles = positions.float().unsqueeze(1) * inv_freq.unsqueeze(0)  # (P, d_model/2)
    table = torch.zeros(positions.numel(), d_model, device=positions.device)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles)
    return table


class _SinusoidEncoding(nn.Module):
    """What both encodings keep: the model dimension, the sqrt(d) input scale, the dropout."""

    def __init__(self, d_model: int, dropout_rate: float):
        super().__init__()
        self.d_model = d_model
        self.xscale = math.sqrt(d_model)
        self.dropout = Dropout(dropout_rate)


class PositionalEncoding(_SinusoidEncoding):
    """x * sqrt(d) + PE[offset + t], then dropout."""

    def forward(self, x: torch.Tensor, offset: int = 0) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """x (B, T, D) -> (x with positions added (B, T, D), None)."""
        positions = torch.arange(offset, offset + x.size(1), device=x.device)
        pe = sinusoid_table(positions, self.d_model).to(x.dtype)
        return self.dropout(x * self.xscale + pe.unsqueeze(0)), None

    def at(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x (B, L, D), positions (B, L) int: x * sqrt(d) + PE[positions], then dropout
        (each element at its own position, e.g. the depth of a node in a prefix tree)."""
        pe = sinusoid_table(positions.reshape(-1), self.d_model).to(x.dtype).view(*positions.shape, -1)
        return self.dropout(x * self.xscale + pe)


class RelPositionalEncoding(_SinusoidEncoding):
    """x * sqrt(d) (dropout), and pos_emb (1, 2T-1, D) for distances T-1 ... 0 ... -(T-1)."""

    def forward(self, x: torch.Tensor, offset: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, D) -> (x * sqrt(d), pos_emb (1, 2T-1, D)). ``offset`` (where x starts in the
        utterance) changes nothing: only distances matter; it is accepted as abs_pos takes it."""
        t = x.size(1)
        return self.dropout(x * self.xscale), self.embedding(t, t, x.dtype, x.device)

    def embedding(self, num_queries: int, num_keys: int, dtype=torch.float32, device=None) -> torch.Tensor:
        """pos_emb (1, num_keys + num_queries - 1, D) for distances num_keys-1 ... -(num_queries-1):
        what queries that are the LAST num_queries of num_keys keys need (a streaming chunk
        attending to its cached left context and itself); num_queries == num_keys is ``forward``'s."""
        distances = torch.arange(num_keys - 1, -num_queries, -1, device=device)  # e.g. T-1, ..., 0, ..., -(T-1)
        return self.dropout(sinusoid_table(distances, self.d_model).to(dtype).unsqueeze(0))
