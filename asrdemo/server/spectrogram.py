"""The input's log-mel spectrogram as a PNG, drawn from the project's own fbank features.

The features are the recognizer's own (`Recognizer.features`: `asrdemo.data.fbank.Fbank` of the
resampled input), the 80-dim log-mel the model sees before CMVN: the picture shows what the model
hears, from the very matrix it decoded, not from a second frontend.

One pixel per frame and mel bin, colour-mapped (magma) and written as a PNG by matplotlib; the
page draws the axes in HTML. A full matplotlib figure with axes costs 0.3-0.6 s per request on a
small CPU (more than a tiny model's recognition); this costs a few milliseconds.
"""

import base64
import io

import matplotlib
import numpy as np
from matplotlib.image import imsave

_MAGMA = matplotlib.colormaps["magma"]


def spectrogram_png(feats: np.ndarray) -> bytes:
    """(T, num_mel_bins) log-mel features -> PNG bytes, T pixels wide, low frequencies at the bottom."""
    feats = np.asarray(feats, dtype=np.float32)
    if feats.ndim != 2 or feats.shape[0] == 0:
        raise ValueError(f"expected (frames, bins) features with at least one frame, got {feats.shape}")
    # Clip the lowest values so that a digital-silence gap does not wash out the speech's contrast.
    lo, hi = np.percentile(feats, 2), feats.max()
    scaled = np.clip((feats - lo) / max(hi - lo, 1e-3), 0.0, 1.0)
    buf = io.BytesIO()
    imsave(buf, _MAGMA(scaled.T[::-1]), format="png")
    return buf.getvalue()


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
