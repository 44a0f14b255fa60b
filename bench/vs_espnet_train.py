"""Training step time, asrdemo vs ESPnet, interleaved: the comparison that is hard to fool.

Each round runs ESPnet's `../shared/peers/espnet/bench_train.py` (its own venv) and asrdemo's
`bench/train_throughput.py` on the same shape and batch, one after the other, alternating which
goes first (ABBA...), so that a load change hits both sides. Before every run the load average and
the CPU pressure (`/proc/pressure/cpu`, avg10) are recorded; a run that starts on a busy machine
is flagged. Prints per-round medians and their ratio, then the median and range of the ratios over
the quiet rounds (all rounds when none was quiet, with a warning).

    ../shared/peers/espnet/setup.sh     # once: ESPnet's venv (outside the project)
    .venv/bin/python bench/vs_espnet_train.py --rounds 6                      # conformer4_256, vocab 3000
    .venv/bin/python bench/vs_espnet_train.py --rounds 3 --peer_shape bench/shapes/espnet_conformer8_v3000.yaml \\
        --config bench/shapes/conformer8.yaml --amp bf16
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_state import is_busy, machine_state, warn_if_busy  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PEER_DIR = REPO.parent / "shared" / "peers" / "espnet"


def peer_python() -> Path:
    venv = os.environ.get("PEER_VENV") or os.path.join(os.environ.get("TMPDIR", "/tmp"), "espnet_peer_venv")
    return Path(venv) / "bin" / "python"


def run_side(side: str, args, json_path: Path) -> dict:
    """One benchmark run in its own process; returns its JSON plus the machine state before it."""
    common = ["--batch", str(args.batch), "--seconds", str(args.seconds), "--tokens", str(args.tokens),
              "--threads", str(args.threads), "--steps", str(args.steps), "--json", str(json_path)]
    if side == "espnet":
        # a shape file of this repository (bench/shapes/) is passed by its absolute path; else the peer's
        shape = REPO / args.peer_shape if (REPO / args.peer_shape).is_file() else args.peer_shape
        cmd, cwd = [str(peer_python()), "bench_train.py", "--shape", str(shape)] + common, PEER_DIR
    else:
        cmd, cwd = [sys.executable, "bench/train_throughput.py", "--configs", args.config, "--vocab",
                    str(args.vocab), "--amp", args.amp] + common, REPO
    state = machine_state()
    warn_if_busy(state, f"the {side} run")
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{side} run failed ({' '.join(cmd)}):\n{out.stderr[-3000:]}")
    result = json.loads(json_path.read_text())
    result = result[0] if isinstance(result, list) else result
    return {**result, **state, "busy": is_busy(state)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--config", default="bench/shapes/conformer4_256.yaml", help="asrdemo's shape (YAML)")
    p.add_argument("--peer_shape", default="shapes/conformer4_256_v3000.yaml", help="ESPnet's shape: in the peer dir, or this repo's bench/shapes/")
    p.add_argument("--vocab", type=int, default=3000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--tokens", type=int, default=40)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--amp", choices=["none", "bf16"], default="none", help="asrdemo's autocast (ESPnet: fp32)")
    p.add_argument("--json", metavar="PATH", help="also write every run as JSON")
    args = p.parse_args()
    if not peer_python().is_file():
        sys.exit(f"ESPnet's venv is missing ({peer_python()}): run {PEER_DIR / 'setup.sh'} first")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ("espnet", "asrdemo") if r % 2 == 0 else ("asrdemo", "espnet")
            runs = {side: run_side(side, args, Path(tmp) / f"{r}_{side}.json") for side in order}
            rows.append({"round": r + 1, "first": order[0], **{s: runs[s] for s in order}})
            e, a = runs["espnet"], runs["asrdemo"]
            print(f"round {r + 1}: ESPnet {e['median_s']:.3f} s, asrdemo {a['median_s']:.3f} s "
                  f"-> {e['median_s'] / a['median_s']:.2f}x", file=sys.stderr, flush=True)

    print(f"# training step, ESPnet ({args.peer_shape}) vs asrdemo ({args.config}, autocast {args.amp}): "
          f"batch {args.batch} x {args.seconds:g} s, {args.tokens} tokens, {args.threads} threads, median of "
          f"{args.steps} steps per run, {args.rounds} interleaved rounds")
    print("\n| round | first | load / CPU pressure % before (ESPnet; asrdemo) | ESPnet s/step (min-max) "
          "| asrdemo s/step (min-max) | asrdemo faster by | peak RSS ESPnet / asrdemo MB |\n|---:|---|---|---:|---:|---:|---:|")
    for row in rows:
        e, a = row["espnet"], row["asrdemo"]
        flag = " (busy)" if e["busy"] or a["busy"] else ""
        print(f"| {row['round']}{flag} | {row['first']} | {e['load1']} / {e['cpu_pressure_avg10']}; "
              f"{a['load1']} / {a['cpu_pressure_avg10']} | {e['median_s']:.3f} ({e['min_s']:.3f}-{e['max_s']:.3f}) "
              f"| {a['median_s']:.3f} ({a['min_s']:.3f}-{a['max_s']:.3f}) | {e['median_s'] / a['median_s']:.2f}x "
              f"| {e['peak_rss_mb']:,.0f} / {a['peak_rss_mb']:,.0f} |")
    quiet = [row for row in rows if not (row["espnet"]["busy"] or row["asrdemo"]["busy"])]
    if not quiet:
        print("\nWARNING: no round started on a quiet machine: the ratios below are not a measurement",
              file=sys.stderr)
    ratios = [row["espnet"]["median_s"] / row["asrdemo"]["median_s"] for row in (quiet or rows)]
    print(f"\nasrdemo faster by {statistics.median(ratios):.2f}x (median of {len(ratios)} "
          f"{'quiet ' if quiet else ''}rounds; range {min(ratios):.2f}-{max(ratios):.2f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    sys.exit(main())
