"""Latency of the web demo under load: a real gunicorn (the Dockerfile's CMD) on loopback, a 3-second clip.

    python bench/server_latency.py [--exp_dir exp_train_large] [--workers 1] [--threads 8]
                                   [--concurrency 1 8] [--requests 40] [--torch_threads 1] [--details 1]

For each concurrency level, that many clients send `--requests` POST /api/recognize in all
(multipart WAV, spectrogram included; with `--details 1` also the posteriorgram and attention map,
`?details=1`, as the page sends them). Prints a markdown table: p50/p95
latency, requests/s, the server's CPU time per request (user + system time of the gunicorn
workers, from /proc/<pid>/stat, over the level, divided by its requests: the work a request costs,
whatever else runs on the machine) and each worker's peak RSS (VmHWM). Without a trained model in
--exp_dir it measures the tests' tiny random model and says so. For before/after comparisons of the
demo's per-request work: `--concurrency 1 --details 0` and `--details 1`, on a quiet machine.
"""

import argparse
import concurrent.futures
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from demo_fixture import GunicornServer, audio_bytes, make_tiny_exp_dir, post_file, proc_status_kb, speechlike  # noqa: E402

from asrdemo.data.audio import load_audio  # noqa: E402


def three_second_clip(seconds=3.0):
    """sample/test.wav cut or padded (with its own tail repeated) to `seconds`, else a synthetic clip."""
    sample = REPO / "sample" / "test.wav"
    if sample.is_file():
        wave, sr = load_audio(sample)
        n = int(seconds * sr)
        wave = np.resize(wave, n)  # repeats from the start if shorter
        return audio_bytes(wave, sr, subtype="PCM_16"), f"sample/test.wav fitted to {seconds:g} s @ {sr} Hz"
    return audio_bytes(speechlike(seconds, 16000), 16000, subtype="PCM_16"), f"synthetic {seconds:g} s @ 16 kHz"


def percentile(values, q):
    return float(np.percentile(np.asarray(values), q))


def cpu_seconds(pids) -> float:
    """User + system CPU time of the processes `pids` so far (/proc/<pid>/stat fields 14 and 15)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15; the name is cut off)
    return total / os.sysconf("SC_CLK_TCK")


def run_level(url, clip, concurrency, requests, query="", pids=()):
    def one(_):
        t0 = time.perf_counter()
        status, body = post_file(url, clip, "clip.wav", timeout=300, query=query)
        return time.perf_counter() - t0, status, body.get("code")

    started, cpu_started = time.perf_counter(), cpu_seconds(pids)
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    cpu = (cpu_seconds(pids) - cpu_started) / requests
    errors = [r for r in results if r[1] != 200]
    latencies = [r[0] for r in results]
    return {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95), "rps": requests / wall,
            "errors": len(errors), "cpu": cpu}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--exp_dir", default=str(REPO / "exp_train_large"))
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker")
    p.add_argument("--torch_threads", type=int, default=1, help="torch intra-op threads per worker")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    p.add_argument("--requests", type=int, default=40, help="requests per concurrency level")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--details", type=int, choices=(0, 1), default=1,
                   help="1: ask for ?details=1 (posteriorgram, attention) as the page does; 0: the plain API")
    args = p.parse_args()

    exp_dir = Path(args.exp_dir)
    model_note = str(exp_dir)
    if not (exp_dir / "config.yaml").is_file():
        exp_dir = make_tiny_exp_dir(Path(tempfile.mkdtemp(prefix="asrdemo-bench-")) / "exp_tiny")
        model_note = f"tiny random stand-in (no model in {args.exp_dir})"
    clip, clip_note = three_second_clip()
    env = {"ASRDEMO_WORKERS": str(args.workers), "ASRDEMO_THREADS": str(args.threads),
           "ASRDEMO_TORCH_THREADS": str(args.torch_threads)}
    with GunicornServer(exp_dir, Path(tempfile.gettempdir()) / "asrdemo-bench-gunicorn.log", env=env,
                        startup_timeout=300) as server:
        query = "?details=1" if args.details else ""
        run_level(server.url, clip, 1, args.warmup, query)
        pids = server.worker_pids()
        rows = [(c, run_level(server.url, clip, c, args.requests, query, pids)) for c in args.concurrency]
        peaks = [proc_status_kb(pid, "VmHWM") / 1024 for pid in server.worker_pids()]

    print(f"date {datetime.date.today()}, machine {platform.machine()} {platform.processor() or ''}, "
          f"{os.cpu_count()} CPUs, python {platform.python_version()}")
    print(f"model: {model_note}; clip: {clip_note}; gunicorn {args.workers} worker(s) x {args.threads} threads, "
          f"torch threads {args.torch_threads}; {args.requests} requests per level; details={args.details}")
    print()
    print("| concurrent clients | p50 latency s | p95 latency s | requests/s | CPU s per request | errors "
          "| peak RSS per worker MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    peak = ", ".join(f"{mb:.0f}" for mb in peaks)
    for c, r in rows:
        print(f"| {c} | {r['p50']:.3f} | {r['p95']:.3f} | {r['rps']:.2f} | {r['cpu']:.3f} | {r['errors']} | {peak} |")


if __name__ == "__main__":
    main()
