"""Decoding speed (RTF) of every search mode, end to end through the Recognizer, on CPU.

Comparable with ESPnet's peer benchmark (../shared/peers/espnet/bench_decode.py): the same model
shape (JSUT conformer8: 12 x 256 Conformer, 4 heads, FFN 2048, decoder 6 x 2048, vocab 3000),
random weights, 16 kHz Gaussian noise (std 0.1) as input, beam 10, CTC weight 0.3, 1 thread,
median of 3 runs after 1 warm-up, and the same trick to force exactly N output tokens in the
beam searches: the decoder's output bias for <sos/eos> is -1e4 (it never enters the beam) and
maxlenratio = -N (at most N tokens). The one difference: after the N-th token ESPnet appends
<eos> without scoring it (N decoder calls); our search scores <eos> in one more step (N + 1
calls, checked), so our totals include one extra step. ms/step = search s / decoder calls in
both (ESPnet: search s / N).

Columns as the peer's: fbank s (features), encoder s (CMVN + encoder; the peer's enc_only_s),
encode s (fbank + encoder), search s (everything after the encoder: CTC log-softmax, the search,
token strings), total s (the whole Recognizer.recognize call), RTF = total / input. Also:
min total s, CPU s (process CPU time of the call: less sensitive to other jobs than wall time),
and inside the search the time in the decoder, in the CTC prefix scorer, and the rest.

Shapes: tiny (a smoke test), conformer8 (the peer's), mini (conf/train_mini.yaml's model,
vocabulary 900), synth (conf/train_synth.yaml's: the shipped model's shape, vocabulary 2392).

`--lm` adds rows with a random character LM of conf/lm.yaml's shape attached (lm_weight 0.3;
"LM s" is the time in its steps); `--dtype float32 bfloat16` adds rows decoded with the decode
config's `dtype: bfloat16` (bf16 decoder/LM weights, encoder under autocast) or `int8` (dynamically
quantized decoder/LM linear layers).

    .venv/bin/python bench/decode_rtf.py                       # tiny and conformer8 shapes, 5 s and 10 s
    .venv/bin/python bench/decode_rtf.py --shapes conformer8 --modes joint --seconds 5
    .venv/bin/python bench/decode_rtf.py --shapes mini --json /tmp/decode_rtf.json
    .venv/bin/python bench/decode_rtf.py --shapes synth conformer8 --modes joint --lm --dtype float32 bfloat16

Not a test: it prints a table (run it alone; the machine's other load skews it).
"""

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_state import report_end, report_start  # noqa: E402

from asrdemo.decode.decode_config import DTYPES  # noqa: E402  (imports no torch: threads are set first)

SHAPES = {
    "tiny": dict(vocab=50, model={
        "encoder": "conformer",
        "encoder_conf": {"output_size": 64, "attention_heads": 2, "linear_units": 256, "num_blocks": 2,
                         "cnn_module_kernel": 15},
        "decoder_conf": {"attention_heads": 2, "linear_units": 256, "num_blocks": 1},
    }),
    # ESPnet egs2/jsut/asr1 train_asr_conformer8.yaml, vocabulary 3000 (as the peer benchmark)
    "conformer8": dict(vocab=3000, model={
        "encoder": "conformer",
        "encoder_conf": {"output_size": 256, "attention_heads": 4, "linear_units": 2048, "num_blocks": 12,
                         "input_layer": "conv2d", "cnn_module_kernel": 15, "macaron_style": True,
                         "pos_enc_layer_type": "rel_pos"},
        "decoder_conf": {"attention_heads": 4, "linear_units": 2048, "num_blocks": 6},
    }),
}
ROOT = Path(__file__).resolve().parents[1]
# shapes read from the project's configs, with their corpus' vocabulary sizes (mini ~900 characters,
# the offline corpus' token list 2392)
CONFIG_SHAPES = {"mini": dict(vocab=900, config=ROOT / "conf" / "train_mini.yaml"),
                 "synth": dict(vocab=2392, config=ROOT / "conf" / "train_synth.yaml")}
LM_CONFIG = ROOT / "conf" / "lm.yaml"
LM_WEIGHT = 0.3


def load_shape(name: str) -> dict:
    if name not in CONFIG_SHAPES:
        return SHAPES[name]
    import yaml

    model = yaml.safe_load(CONFIG_SHAPES[name]["config"].read_text(encoding="utf-8"))["model"]
    model.pop("specaug", None)  # training only
    return dict(vocab=CONFIG_SHAPES[name]["vocab"], model=model)


MODES = ("ctc_greedy", "ctc_prefix_beam", "attention_rescoring", "attention", "joint")
BEAM_MODES = ("attention", "joint")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES) + list(CONFIG_SHAPES))
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--seconds", type=float, nargs="+", default=[5.0, 10.0])
    p.add_argument("--beam", type=int, default=10)
    p.add_argument("--ctc_weight", type=float, default=0.3)
    p.add_argument("--steps", type=int, default=30, help="output tokens forced in attention/joint (default 30)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--lm", action="store_true", help=f"also decode with a random conf/lm.yaml LM (lm_weight {LM_WEIGHT})")
    p.add_argument("--dtype", nargs="+", default=["float32"], choices=DTYPES,
                   help="the decode config's dtype(s) to run (default float32)")
    p.add_argument("--json", metavar="PATH")
    return p.parse_args()


def count(module):
    """Parameters, counting an int8-quantized linear layer's packed weight and bias too."""
    n = 0
    for m in module.modules():
        n += sum(p.numel() for p in m.parameters(recurse=False))
        if callable(getattr(m, "weight", None)):  # torch.ao dynamic quantized Linear
            n += m.weight().numel() + (m.bias().numel() if m.bias() is not None else 0)
    return n


def make_exp_dir(path: Path, shape: dict, lm: bool = False):
    """A self-describing exp dir with random weights (as tests/test_recognizer.py builds one);
    with `lm`, a random conf/lm.yaml LM attached in lm/ (as `asrdemo lm attach` leaves it)."""
    import kaldiio
    import numpy as np
    import torch
    import yaml

    from asrdemo.data import cmvn
    from asrdemo.model.asr_model import ASRModel

    vocab = shape["vocab"]
    tokens = ["<blank>", "<unk>"] + [chr(0x4E00 + i) for i in range(vocab - 3)] + ["<sos/eos>"]
    (path / "tokens.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    stats = cmvn.accumulate(None, np.random.default_rng(0).normal(8.0, 3.0, (1000, 80)))
    kaldiio.save_mat(str(path / "cmvn.ark"), stats)
    torch.manual_seed(0)
    model = ASRModel.from_config(shape["model"], 80, vocab, stats)
    with torch.no_grad():  # keep <sos/eos> out of the beam until the forced last step
        model.decoder.output_layer.bias[model.eos] = -1e4
    torch.save(model.state_dict(), path / "valid.acc.ave.pth")
    config = {"frontend": {"sample_rate": 16000, "num_mel_bins": 80}, "token_type": "char",
              "token_list": "tokens.txt", "bpe_model": None, "cmvn": "cmvn.ark", "model": shape["model"]}
    if lm:
        from asrdemo.model.lm import LM_MODEL_FILE, build_lm

        lm_conf = yaml.safe_load(LM_CONFIG.read_text(encoding="utf-8"))["model"]
        (path / "lm").mkdir()
        (path / "lm" / "tokens.txt").write_bytes((path / "tokens.txt").read_bytes())
        torch.save(build_lm(lm_conf, vocab).state_dict(), path / "lm" / LM_MODEL_FILE)
        (path / "lm" / "config.yaml").write_text(yaml.safe_dump({"vocab_size": vocab, "model": lm_conf}),
                                                 encoding="utf-8")
        config["lm"] = "lm"
    (path / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")


class Timer:
    """Wall time and calls of a wrapped callable (installed as an instance/class attribute)."""

    def __init__(self, owner, name):
        self.total, self.calls = 0.0, 0
        fn = getattr(owner, name)

        def timed(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.total += time.perf_counter() - t0
                self.calls += 1

        setattr(owner, name, timed)

    def reset(self):
        self.total, self.calls = 0.0, 0


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024



def run_variant(args, rec, shape_name: str, lm: bool, dtype: str, t_ctc, t_lm) -> list:
    """Time every mode and input length with one recognizer -> table rows."""
    import numpy as np
    import torch

    model = rec.model
    label = f"{shape_name}{' +LM' if lm else ''}{'' if dtype == 'float32' else ' ' + dtype}"
    print(f"# {label}: params {count(model) / 1e6:.2f}M (encoder {count(model.encoder) / 1e6:.2f}M, "
          f"decoder {count(model.decoder) / 1e6:.2f}M, ctc {count(model.ctc) / 1e6:.2f}M"
          f"{f', LM {count(rec.lm) / 1e6:.2f}M' if rec.lm is not None else ''}), vocab {model.vocab_size}")
    t_fbank, t_encode = Timer(rec, "features"), Timer(model, "encode")
    t_step, t_full = Timer(model.decoder, "forward_step"), Timer(model.decoder, "forward")
    t_tree = Timer(model.decoder, "forward_tree")
    timers = (t_fbank, t_encode, t_step, t_full, t_tree, t_ctc, t_lm)
    rng = np.random.default_rng(0)
    rows = []
    for seconds in args.seconds:
        wave = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
        for mode in args.modes:
            runs = []
            for r in range(args.warmup + args.repeats):
                for t in timers:
                    t.reset()
                t0, c0 = time.perf_counter(), time.process_time()
                hyp = rec.recognize(wave, 16000, mode=mode)
                total, cpu = time.perf_counter() - t0, time.process_time() - c0
                if mode in BEAM_MODES and (len(hyp.token_ids) != args.steps or t_step.calls != args.steps + 1):
                    print(f"WARNING: {label} {mode} {seconds}s: {len(hyp.token_ids)} tokens, "
                          f"{t_step.calls} decoder calls")
                if r >= args.warmup:
                    runs.append(dict(total=total, cpu=cpu, fbank=t_fbank.total, encoder=t_encode.total,
                                     decoder=t_step.total + t_full.total + t_tree.total, ctc_prefix=t_ctc.total,
                                     lm=t_lm.total, calls=t_step.calls, tokens=len(hyp.token_ids)))
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            search = med["total"] - med["fbank"] - med["encoder"]
            frames = int(model.encoder.embed.output_lengths(len(rec.features(wave, 16000))))
            rows.append(dict(
                shape=shape_name, lm=lm, dtype=dtype, params_m=round(count(model) / 1e6, 2), mode=mode,
                input_s=seconds, frames=frames, fbank_s=med["fbank"], encoder_s=med["encoder"],
                encode_s=med["fbank"] + med["encoder"], search_s=search,
                total_s=med["total"], rtf=med["total"] / seconds, cpu_s=med["cpu"],
                decoder_calls=int(med["calls"]), ms_per_step=1000 * search / med["calls"] if med["calls"] else None,
                search_decoder_s=med["decoder"], search_ctc_prefix_s=med["ctc_prefix"], search_lm_s=med["lm"],
                search_other_s=search - med["decoder"] - med["ctc_prefix"] - med["lm"],
                tokens=int(med["tokens"]), peak_rss_mb=peak_rss_mb(), total_runs_s=[r["total"] for r in runs],
                total_min_s=min(r["total"] for r in runs)))
            row = rows[-1]
            print(f"  {label} {mode:20s} {seconds:4g} s: total {row['total_s']:.3f} s  RTF {row['rtf']:.3f}  "
                  f"(runs {' '.join(f'{x:.3f}' for x in row['total_runs_s'])})", flush=True)
    return rows

def main():
    args = parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import torch

    from asrdemo.decode.beam_search import CTCPrefixScorer
    from asrdemo.decode.lm_scorer import LMStepScorer
    from asrdemo.decode.recognizer import Recognizer

    torch.set_num_threads(args.threads)
    state_start = report_start("the decode benchmark")
    print(f"# asrdemo decode benchmark: torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"device {args.device}, beam {args.beam}, ctc_weight {args.ctc_weight}, "
          f"{args.steps} tokens forced in {'/'.join(BEAM_MODES)}; median of {args.repeats} after {args.warmup} warm-up")
    rows = []
    t_ctc, t_lm = Timer(CTCPrefixScorer, "score"), Timer(LMStepScorer, "score")  # class attributes: once
    variants = [(lm, dtype) for lm in ([False, True] if args.lm else [False]) for dtype in args.dtype]
    for shape_name in args.shapes:
        shape = load_shape(shape_name)
        for lm, dtype in variants:
            conf = dict(beam_size=args.beam, ctc_weight=args.ctc_weight, maxlenratio=-float(args.steps),
                        lm_weight=LM_WEIGHT if lm else 0.0, dtype=dtype)
            with tempfile.TemporaryDirectory() as tmp:
                make_exp_dir(Path(tmp), shape, lm=lm)
                rec = Recognizer.from_exp_dir(tmp, device=args.device, decode_conf=conf)
            rows += run_variant(args, rec, shape_name, lm, dtype, t_ctc, t_lm)

    state_end = report_end()
    hdr = ("shape", "LM", "dtype", "mode", "input s", "frames", "fbank s", "encoder s", "encode s", "search s",
           "total s", "RTF", "ms/step", "min total s", "CPU s", "decoder s", "CTC prefix s", "LM s", "other s",
           "tokens", "peak RSS MB")
    print("\n| " + " | ".join(hdr) + " |\n|" + "---|" * 4 + "---:|" * (len(hdr) - 4))
    for r in rows:
        step = f"{r['ms_per_step']:.1f}" if r["ms_per_step"] else "–"
        print(f"| {r['shape']} | {'yes' if r['lm'] else 'no'} | {r['dtype']} | {r['mode']} | {r['input_s']:g} | "
              f"{r['frames']} | {r['fbank_s']:.3f} | {r['encoder_s']:.3f} | {r['encode_s']:.3f} | {r['search_s']:.3f} | "
              f"{r['total_s']:.3f} | {r['rtf']:.3f} | {step} | {r['total_min_s']:.3f} | {r['cpu_s']:.3f} | "
              f"{r['search_decoder_s']:.3f} | {r['search_ctc_prefix_s']:.3f} | {r['search_lm_s']:.3f} | "
              f"{r['search_other_s']:.3f} | {r['tokens']} | {r['peak_rss_mb']:,.0f} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(args=vars(args), rows=rows, torch=torch.__version__,
                           machine_start=state_start, machine_end=state_end), f, indent=1)


if __name__ == "__main__":
    main()
