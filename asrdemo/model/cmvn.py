"""Global cepstral mean and variance normalisation, inside the model.

The statistics are Kaldi's global CMVN layout (what ``compute-cmvn-stats`` and our feature
stage write to ``cmvn.ark``): a float64 matrix of shape (2, D+1) where row 0 holds the per-dim
sums followed by the frame count, and row 1 the per-dim sums of squares.

They become two buffers, ``mean`` and ``istd``, so a checkpoint carries them and no caller can
forget to normalise.
"""

import numpy as np
import torch
from torch import nn

from asrdemo.data.cmvn import stats_to_mean_istd
from asrdemo.errors import AsrdemoError


class GlobalCMVN(nn.Module):
    """y = (x - mean) * istd, per feature dimension."""

    def __init__(self, mean: torch.Tensor, istd: torch.Tensor):
        super().__init__()
        if mean.shape != istd.shape or mean.dim() != 1:
            raise ValueError(f"mean {tuple(mean.shape)} and istd {tuple(istd.shape)} must be equal 1-D")
        self.register_buffer("mean", mean.float().clone())
        self.register_buffer("istd", istd.float().clone())

    @classmethod
    def from_kaldi_stats(cls, stats, input_dim: int = None) -> "GlobalCMVN":
        stats = np.asarray(stats, dtype=np.float64)
        if stats.ndim != 2 or stats.shape[0] != 2 or stats.shape[1] < 2:
            raise AsrdemoError(f"CMVN stats must be a (2, D+1) Kaldi matrix, got shape {stats.shape}")
        try:
            mean, istd = stats_to_mean_istd(stats)  # var = E[x^2] - E[x]^2, floored
        except ValueError as e:
            raise AsrdemoError(f"CMVN stats: {e}") from e
        if input_dim is not None and mean.shape[0] != input_dim:
            raise AsrdemoError(
                f"CMVN stats are for {mean.shape[0]}-dim features but the model expects {input_dim}"
            )
        return cls(torch.from_numpy(mean), torch.from_numpy(istd))

    @classmethod
    def identity(cls, dim: int) -> "GlobalCMVN":
        """No normalisation (mean 0, istd 1): used when no statistics are given."""
        return cls(torch.zeros(dim), torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, D) -> (B, T, D)."""
        return (x - self.mean) * self.istd

    def extra_repr(self) -> str:
        return f"dim={self.mean.numel()}"
