"""Training-step throughput on CPU: utterances/s, frames/s, s/step and peak RSS per config.

One fixed batch of random 80-dim features (B utterances x S seconds = S*100 frames) and random
targets (T tokens, ids 1..V-2, no padding) goes through what the trainer does per update:
model forward (CMVN -> encoder -> CTC + label-smoothed attention loss), backward, grad-norm
clipping (the config's grad_clip), Adam step, zero_grad. Train mode (dropout on). SpecAugment
is off by default, as in the ESPnet peer benchmark (/work/shared/peers/espnet/bench_train.py),
whose defaults this matches: batch 8 x 8 s, 40 tokens, 2 threads, 3 warm-up steps, median of 10.

Each config runs in its own process, so its peak RSS is its own.

    .venv/bin/python bench/train_throughput.py                       # mini + JSUT conformer
    .venv/bin/python bench/train_throughput.py --configs conf/train.yaml --batch 4 --specaug
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from machine_state import machine_state, warn_if_busy  # noqa: E402
# config -> vocabulary size (mini: the mini corpus' ~900 characters; JSUT: 3,000 like the peer)
DEFAULT_CONFIGS = {"conf/train_mini.yaml": 900, "conf/train.yaml": 3000}


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(args):
    """Benchmark one config in this process; print one JSON line."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import torch

    sys.path.insert(0, str(REPO))
    from asrdemo.model.asr_model import ASRModel
    from asrdemo.train.trainer import build_optimizer, load_config

    rss_import = peak_rss_mb()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = load_config(REPO / args.one)
    model_conf = dict(config["model"])
    if not args.specaug:
        model_conf["specaug"] = None
    model = ASRModel.from_config(model_conf, 80, args.vocab)
    model.train()
    optimizer = build_optimizer("adam", model.parameters(), {"lr": 1e-3})
    grad_clip = config["train"]["grad_clip"]

    frames = int(args.seconds * 100)
    feats = torch.randn(args.batch, frames, 80)
    feat_lens = torch.full((args.batch,), frames, dtype=torch.long)
    ys = torch.randint(1, args.vocab - 1, (args.batch, args.tokens))
    ys_lens = torch.full((args.batch,), args.tokens, dtype=torch.long)
    readings = ()
    if model.reading_ctc is not None:  # a reading CTC (model.reading_ctc_weight): kana targets as long
        from asrdemo.kana import READING_TOKENS

        readings = (torch.randint(1, len(READING_TOKENS), (args.batch, args.tokens)), ys_lens)

    times, losses = [], []
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.amp == "bf16"):
            loss = model(feats, feat_lens, ys, ys_lens, *readings)["loss"]
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        losses.append(float(loss))
        if step >= args.warmup:
            times.append((t3 - t0, t1 - t0, t2 - t1, t3 - t2))
        print(f"  {args.one} step {step:2d} ({'warm-up' if step < args.warmup else 'timed'}): "
              f"{t3 - t0:.3f} s loss {losses[-1]:.2f}", file=sys.stderr, flush=True)
    median = statistics.median(t[0] for t in times)
    print(json.dumps(dict(
        config=args.one, params_m=sum(p.numel() for p in model.parameters()) / 1e6, vocab=args.vocab,
        median_s=median, min_s=min(t[0] for t in times), max_s=max(t[0] for t in times),
        fwd_s=statistics.median(t[1] for t in times), bwd_s=statistics.median(t[2] for t in times),
        opt_s=statistics.median(t[3] for t in times), utt_per_s=args.batch / median,
        frames_per_s=args.batch * frames / median, audio_s_per_s=args.batch * args.seconds / median,
        peak_rss_mb=peak_rss_mb(), rss_after_import_mb=rss_import, first_loss=losses[0], last_loss=losses[-1],
        specaug=args.specaug, amp=args.amp)))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), help="training YAMLs to measure")
    p.add_argument("--vocab", type=int, default=None, help="vocabulary size (default: 900 mini, 3000 others)")
    p.add_argument("--batch", type=int, default=8, help="utterances per batch (default 8)")
    p.add_argument("--seconds", type=float, default=8.0, help="seconds per utterance, 100 frames/s (default 8)")
    p.add_argument("--tokens", type=int, default=40, help="target tokens per utterance (default 40)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps (default 3)")
    p.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    p.add_argument("--specaug", action="store_true", help="keep the config's SpecAugment (default: off, as the peer)")
    p.add_argument("--amp", choices=["none", "bf16"], default="none",
                   help="bf16: autocast the step as train.use_amp: bf16 does (CPUs with AVX-512 BF16 / AMX)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one config in this process
    args = p.parse_args()
    if args.one:
        return run_one(args)

    results = []
    for config in args.configs:
        vocab = args.vocab or DEFAULT_CONFIGS.get(config, 3000)
        cmd = [sys.executable, __file__, "--one", config, "--vocab", str(vocab), "--batch", str(args.batch),
               "--seconds", str(args.seconds), "--tokens", str(args.tokens), "--threads", str(args.threads),
               "--warmup", str(args.warmup), "--steps", str(args.steps), "--seed", str(args.seed), "--amp", args.amp]
        if args.specaug:
            cmd.append("--specaug")
        state = machine_state()
        warn_if_busy(state, config)
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"{config} failed:\n{out.stderr}")
        results.append({**json.loads(out.stdout.strip().splitlines()[-1]), **state})

    print(f"# asrdemo training throughput: batch {args.batch} x {args.seconds:g} s ({int(args.seconds * 100)} "
          f"frames), {args.tokens} tokens, {args.threads} threads, Adam, {args.warmup} warm-up + median of "
          f"{args.steps}; SpecAugment {'on' if args.specaug else 'off'}; autocast {args.amp}")
    print("\n| config | params | vocab | median s/step | min | max | fwd | bwd | clip+adam | utt/s | frames/s "
          "| audio s/s | peak RSS MB | load / CPU pressure % before |\n|---|" + "---:|" * 13)
    for r in results:
        print(f"| {r['config']} | {r['params_m']:.2f}M | {r['vocab']} | {r['median_s']:.3f} | {r['min_s']:.3f} | "
              f"{r['max_s']:.3f} | {r['fwd_s']:.3f} | {r['bwd_s']:.3f} | {r['opt_s']:.3f} | {r['utt_per_s']:.2f} | "
              f"{r['frames_per_s']:,.0f} | {r['audio_s_per_s']:.1f} | {r['peak_rss_mb']:,.0f} | "
              f"{r['load1']} / {r['cpu_pressure_avg10']} |")
    for r in results:
        print(f"{r['config']}: loss {r['first_loss']:.2f} -> {r['last_loss']:.2f} on the same batch (should fall)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
