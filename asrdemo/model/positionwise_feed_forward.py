"""The position-wise feed-forward block: Linear(D -> units), activation, dropout, Linear(units -> D)."""

import torch
from torch import nn

from asrdemo.model.dropout import Dropout


class PositionwiseFeedForward(nn.Module):
    def __init__(self, idim: int, hidden_units: int, dropout_rate: float, activation: nn.Module = None):
        super().__init__()
        self.w_1 = nn.Linear(idim, hidden_units)
        self.activation = activation if activation is not None else nn.ReLU()
        self.dropout = Dropout(dropout_rate)
        self.w_2 = nn.Linear(hidden_units, idim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D)."""
        return self.w_2(self.dropout(self.activation(self.w_1(x))))
