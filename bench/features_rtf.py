"""Real-time factor of the frontend: read + resample (soxr) + 80-dim fbank, per input sample rate.

    python bench/features_rtf.py [--seconds 10] [--repeats 5] [--threads 1]

Prints a markdown table (median of the repeats). RTF = processing time / audio duration.
"""

import argparse
import io
import platform
import resource
import statistics
import time

import numpy as np
import soundfile as sf

from asrdemo.data.audio import load_audio
from asrdemo.data.fbank import Fbank


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    fbank = Fbank()
    rng = np.random.default_rng(0)
    print(f"machine: {platform.machine()} {platform.processor() or ''}, python {platform.python_version()}")
    print("| input | read+resample s | fbank s | total s | RTF |")
    print("|---|---:|---:|---:|---:|")
    for sr in (8000, 16000, 44100, 48000):
        wave = (0.1 * rng.standard_normal(int(sr * args.seconds))).astype(np.float32)
        buf = io.BytesIO()
        sf.write(buf, wave, sr, format="WAV", subtype="PCM_16")
        data = buf.getvalue()
        reads, feats = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            w, _ = load_audio(data, fbank.sample_rate)
            t1 = time.perf_counter()
            fbank(w)
            t2 = time.perf_counter()
            reads.append(t1 - t0)
            feats.append(t2 - t1)
        r, f = statistics.median(reads), statistics.median(feats)
        print(f"| {args.seconds:g} s wav @ {sr} Hz | {r:.4f} | {f:.4f} | {r + f:.4f} | {(r + f) / args.seconds:.4f} |")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
