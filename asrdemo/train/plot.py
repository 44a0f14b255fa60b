"""Training curves from `history.jsonl`: images/loss.png, acc.png, error.png (ESPnet's layout).

    asrdemo plot --exp_dir exp/mini
"""

import logging
from pathlib import Path

from asrdemo.errors import AsrdemoError
from asrdemo.utils.io import atomic_path

log = logging.getLogger(__name__)

# file name -> (title, y label, [(history key, legend label, line style)])
FIGURES = {
    "loss.png": ("Loss", "loss", [
        ("train_loss", "train", "-"), ("valid_loss", "valid", "-"),
        ("train_loss_ctc", "train (CTC)", ":"), ("valid_loss_ctc", "valid (CTC)", ":"),
        ("train_loss_att", "train (attention)", "--"), ("valid_loss_att", "valid (attention)", "--"),
    ]),
    "acc.png": ("Attention decoder token accuracy", "accuracy", [
        ("train_acc", "train", "-"), ("valid_acc", "valid", "-"),
    ]),
    "error.png": ("Validation character error rate (CTC greedy)", "CER", [
        ("valid_cer", "valid", "-"),
    ]),
}
COLORS = {"train": "tab:blue", "valid": "tab:orange"}


def plot_history(history, images_dir, figures=None):
    """Draw every figure of `figures` (default: FIGURES, the ASR model's) from a list of per-epoch
    dicts; returns the written paths.

    Uses matplotlib's object API with the Agg canvas (no pyplot, no global state), so it is safe
    to call from a background thread while training goes on."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    images_dir = Path(images_dir)
    images_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (title, ylabel, curves) in (figures or FIGURES).items():
        fig = Figure(figsize=(6.4, 4.0), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for key, label, style in curves:
            points = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, style, marker="." if len(xs) < 30 else None, label=label,
                        color=COLORS[key.split("_")[0]])
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        fig.tight_layout()
        with atomic_path(images_dir / name) as tmp:
            fig.savefig(tmp, format="png")
        written.append(images_dir / name)
    return written


def add_arguments(p):
    p.add_argument("--exp_dir", required=True, help="an exp dir with history.jsonl")


def main(args):
    from asrdemo.train.average import read_history

    history = read_history(args.exp_dir)
    if not history:
        raise AsrdemoError(f"{args.exp_dir}/history.jsonl has no epochs yet")
    paths = plot_history(history, Path(args.exp_dir) / "images")
    log.info("wrote %s", ", ".join(str(p) for p in paths))
