"""Cost of the SSL frontend per second of audio on CPU, beside the fbank frontend.

    python bench/ssl_frontend.py [--model hubert|wav2vec2] [--seconds 2 8] [--repeats 3] [--threads 2]
                                 [--finetune] [--json out.json] [--tiny]

The SSL model has a base-size shape (transformers' `HubertConfig` / `Wav2Vec2Config` defaults:
7-layer CNN of 512 channels, 12 transformer layers x 768, ~95M parameters; the shape of
rinna/japanese-hubert-base) with random weights: nothing is downloaded, and the cost does not
depend on the weights. It is wrapped in the project's own `HuggingFaceFrontend` (weighted sum of
the 13 hidden states + projection to 80), so the numbers are what `frontend: ssl` pays:

| row | what | who pays it |
|---|---|---|
| fbank | `Fbank` (kaldi-native-fbank) on the 16 kHz wave | decoding an fbank exp; its training reads dumped features |
| ssl decode | the frontend in eval mode under `inference_mode` | every decode of an SSL exp |
| ssl train (frozen) | forward + backward of the weighted sum and projection (the SSL model under `no_grad`) | each training step of `freeze: true`, on every epoch |
| ssl train (fine-tune) | forward + backward through the SSL model too (`--finetune`) | each step after `freeze_steps` |

Per input length: the median wall time of `--repeats` runs after one warm-up, seconds of compute per
second of audio (RTF), and the peak RSS. The machine's load and CPU pressure are recorded at the
start and the end (bench/machine_state.py), with a warning when it is not quiet. `--tiny` swaps in
a tiny model and one short run: a quick check that the script works, not a measurement.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_state import report_end, report_start  # noqa: E402

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("hubert", "wav2vec2"), default="hubert", help="base shape (default hubert)")
    p.add_argument("--seconds", type=float, nargs="+", default=[2.0, 8.0], help="input lengths (default 2 8)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--finetune", action="store_true", help="also time a training step through the SSL model")
    p.add_argument("--json", default=None, help="also write the rows and the machine state here")
    p.add_argument("--tiny", action="store_true", help="a tiny model, one 1 s run: checks the script, measures nothing")
    args = p.parse_args(argv)
    if args.tiny:
        args.seconds, args.repeats = [1.0], 1
    return args


def build_frontend(kind: str, tiny: bool, freeze: bool):
    """HuggingFaceFrontend around a randomly initialised base-size (or tiny) model."""
    import torch
    import transformers

    from asrdemo.model.ssl_frontend import HuggingFaceFrontend, resolve_frontend_conf

    torch.manual_seed(0)
    shape = TINY if tiny else {}
    if kind == "hubert":
        model = transformers.HubertModel(transformers.HubertConfig(**shape))
    else:
        model = transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**shape))
    conf = resolve_frontend_conf({"model": f"random {kind} ({'tiny' if tiny else 'base'} shape)",
                                  "freeze": freeze})
    conf["normalize"] = model.config.feat_extract_norm == "layer"
    return HuggingFaceFrontend(model.eval(), conf)


def timed(fn, repeats: int) -> list:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    args = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np
    import torch

    from asrdemo.data.fbank import Fbank

    torch.set_num_threads(args.threads)
    state_start = report_start("the SSL frontend benchmark")
    frozen = build_frontend(args.model, args.tiny, freeze=True)
    tuned = build_frontend(args.model, args.tiny, freeze=False) if args.finetune else None
    num_params = sum(p.numel() for p in frozen.ssl.parameters())
    print(f"# SSL frontend: {frozen.conf['model']}, {num_params / 1e6:.1f}M parameters, "
          f"{frozen.num_hidden_states} hidden states of {frozen.proj.in_features} -> {frozen.output_size()}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
          f"median of {args.repeats} after 1 warm-up")
    fbank = Fbank()
    rng = np.random.default_rng(0)
    rows = []

    def row(name, seconds, times):
        med = statistics.median(times)
        rows.append(dict(frontend=name, input_s=seconds, median_s=med, rtf=med / seconds, runs_s=times,
                         peak_rss_mb=peak_rss_mb()))
        print(f"  {name:22s} {seconds:5g} s: {med:.4f} s  RTF {med / seconds:.4f}", flush=True)

    for seconds in args.seconds:
        wave = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
        x, lens = torch.from_numpy(wave).unsqueeze(0), torch.tensor([len(wave)])
        row("fbank", seconds, timed(lambda: fbank(wave), args.repeats))

        def decode():
            with torch.inference_mode():
                frozen.eval()(x, lens)

        def train_step(frontend):
            def step():
                frontend.train()
                frontend.zero_grad(set_to_none=True)
                feats, _ = frontend(x, lens)
                feats.square().mean().backward()
            return step

        row("ssl decode", seconds, timed(decode, args.repeats))
        row("ssl train (frozen)", seconds, timed(train_step(frozen), args.repeats))
        if tuned is not None:
            row("ssl train (fine-tune)", seconds, timed(train_step(tuned), args.repeats))

    state_end = report_end()
    print("\n| frontend | input s | median s | s per s of audio (RTF) | peak RSS MB |\n|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['frontend']} | {r['input_s']:g} | {r['median_s']:.4f} | {r['rtf']:.4f} | "
              f"{r['peak_rss_mb']:,.0f} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(args=vars(args), rows=rows, torch=torch.__version__, ssl_params=num_params,
                           machine_start=state_start, machine_end=state_end), f, indent=1)


if __name__ == "__main__":
    main()
