"""Global CMVN statistics in Kaldi's layout.

A 2 x (D+1) float64 matrix: row 0 holds the per-dimension sums and, in the last column, the frame
count; row 1 holds the sums of squares. It is what Kaldi's `compute-cmvn-stats` writes, so
`kaldiio.load_mat("cmvn.ark")` (or Kaldi's `copy-matrix`) reads ours.
"""

import numpy as np


def accumulate(stats, feats: np.ndarray) -> np.ndarray:
    """Add a (T, D) feature matrix to `stats` (None starts new stats)."""
    feats = np.asarray(feats, dtype=np.float64)
    if stats is None:
        stats = np.zeros((2, feats.shape[1] + 1), dtype=np.float64)
    stats[0, :-1] += feats.sum(axis=0)
    stats[0, -1] += feats.shape[0]
    stats[1, :-1] += (feats**2).sum(axis=0)
    return stats


def stats_to_mean_istd(stats, floor=1e-20):
    """-> (mean, 1/std) as float32 vectors; the model normalises with (x - mean) * istd."""
    stats = np.asarray(stats, dtype=np.float64)
    count = stats[0, -1]
    if count < 1:
        raise ValueError("CMVN statistics hold no frames")
    mean = stats[0, :-1] / count
    var = np.maximum(stats[1, :-1] / count - mean**2, floor)
    return mean.astype(np.float32), (1.0 / np.sqrt(var)).astype(np.float32)
