"""Global CMVN statistics in Kaldi's layout.

A 2 x (D+1) float64 matrix: row 0 holds the per-dimension sums and, in the last column, the frame
count; row 1 holds the sums of squares. It is what Kaldi's `compute-cmvn-stats` writes, so
`kaldiio.load_mat("cmvn.ark")` (or Kaldi's `copy-matrix`) reads ours. `load_stats` also reads
the archive layout Kaldi's `compute-cmvn-stats ... ark:cmvn.ark` writes (`key matrix`, one key).
"""

from pathlib import Path

import numpy as np

from asrdemo.errors import AsrdemoError


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


def load_stats(path) -> np.ndarray:
    """Global CMVN statistics from `path` -> (2, D+1) float64.

    Accepts a bare matrix (what `asrdemo fbank` writes, `kaldiio.save_mat`, binary or text) and a
    Kaldi archive holding exactly one matrix (`compute-cmvn-stats ... ark:` with one key, e.g.
    `JS`), binary or text. Raises AsrdemoError naming the file for anything else: several keys
    (per-speaker statistics), not a Kaldi matrix, or not the 2-row layout with a positive count.
    """
    import kaldiio

    path = Path(path)
    try:
        head = path.read_bytes()[:64].lstrip()
    except OSError as e:
        raise AsrdemoError(f"cannot read CMVN statistics {path}: {e}") from None
    try:
        if head.startswith((b"\0B", b"[")):  # a bare matrix: no key in front
            stats = kaldiio.load_mat(str(path))
        else:
            table = dict(kaldiio.load_ark(str(path)))
            if len(table) != 1:
                keys = ", ".join(list(table)[:5])
                raise AsrdemoError(f"{path}: a Kaldi archive with {len(table)} matrices ({keys}); global CMVN "
                                   "needs one (per-speaker statistics are not supported: sum them, e.g. "
                                   "`matrix-sum`, into one)")
            stats = next(iter(table.values()))
    except AsrdemoError:
        raise
    except Exception as e:  # kaldiio raises UnicodeDecodeError, ValueError, ... on a foreign file
        raise AsrdemoError(f"{path}: not Kaldi CMVN statistics (a matrix or a one-key archive): "
                           f"{type(e).__name__}: {e}") from None
    stats = np.asarray(stats, dtype=np.float64)
    if stats.ndim != 2 or stats.shape[0] != 2 or stats.shape[1] < 2 or not stats[0, -1] >= 1:
        raise AsrdemoError(f"{path}: CMVN statistics must be a 2 x (D+1) matrix with a frame count >= 1 in "
                           f"row 0's last column, got shape {stats.shape}")
    return stats
