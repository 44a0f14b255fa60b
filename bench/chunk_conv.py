"""The Conformer convolution module under a chunk mask: what cutting the look-ahead at chunk ends
costs in training (asrdemo/model/convolution.py, docs/streaming.md section 2).

Times one `ConvolutionModule` forward + backward in training mode on a batch shaped like the
shipped model's training batches (48 utterances x 170 encoder frames x 192 channels, kernel 15),
full context (chunk 0) and at several chunk sizes, with and without `causal`. Prints a markdown
table (median of --rounds rounds, ms) with the machine's load before and after.

    .venv/bin/python bench/chunk_conv.py [--chunks 0 1 4 16] [--rounds 7] [--threads 1]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from asrdemo.model.convolution import ConvolutionModule  # noqa: E402
from machine_state import report_end, report_start  # noqa: E402


def time_module(conv: ConvolutionModule, x: torch.Tensor, chunk: int, rounds: int) -> float:
    """Median ms of forward + backward of `conv` on x (B, T, D) at `chunk` (0: full context)."""
    times = []
    for _ in range(rounds + 1):  # the first round warms up
        start = time.perf_counter()
        y, _ = conv(x, chunk_size=chunk)
        y.sum().backward()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times[1:])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, nargs="+", default=[0, 1, 4, 16])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, nargs=3, default=[48, 170, 192], metavar=("B", "T", "D"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    b, t, d = args.batch
    x = torch.randn(b, t, d, requires_grad=True)
    report_start("the chunk convolution benchmark")
    print(f"\n{b} x {t} frames x {d} channels, kernel 15, forward + backward, {args.threads} thread(s), "
          f"median of {args.rounds} (ms)\n")
    print("| convolution | " + " | ".join("full context" if c == 0 else f"chunk {c}" for c in args.chunks) + " |")
    print("|---|" + "---:|" * len(args.chunks))
    for causal in (False, True):
        conv = ConvolutionModule(d, 15, causal=causal).train()
        row = [time_module(conv, x, c, args.rounds) for c in args.chunks]
        name = "causal" if causal else "look-ahead, cut at chunk ends"
        print(f"| {name} | " + " | ".join(f"{ms:.0f}" for ms in row) + " |")
    print()
    report_end()


if __name__ == "__main__":
    main()
