"""The input's log-mel spectrogram as a PNG, drawn from the project's own fbank features.

The features are the recognizer's own (`Recognizer.features`: `asrdemo.data.fbank.Fbank` of the
resampled input), the 80-dim log-mel the model sees before CMVN: the picture shows what the model
hears, from the very matrix it decoded, not from a second frontend.
Drawn with matplotlib's object API on the Agg canvas (no pyplot state), so request threads can
draw at once.
"""

import base64
import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def spectrogram_png(feats: np.ndarray, frame_shift_s: float, width_in=8.0, height_in=2.4, dpi=96) -> bytes:
    """(T, num_mel_bins) log-mel features -> PNG bytes (time on x in seconds, mel bin on y)."""
    feats = np.asarray(feats, dtype=np.float32)
    if feats.ndim != 2 or feats.shape[0] == 0:
        raise ValueError(f"expected (frames, bins) features with at least one frame, got {feats.shape}")
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    # Clip the lowest values so that a digital-silence gap does not wash out the speech's contrast.
    lo, hi = np.percentile(feats, 2), feats.max()
    image = ax.imshow(feats.T, origin="lower", aspect="auto", cmap="magma", vmin=lo, vmax=max(hi, lo + 1e-3),
                      extent=(0.0, feats.shape[0] * frame_shift_s, 0, feats.shape[1]), interpolation="nearest")
    ax.set_xlabel("time [s]")  # (matplotlib's default font has no kana)
    ax.set_ylabel("mel bin")
    fig.colorbar(image, ax=ax, pad=0.01, label="log energy")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
