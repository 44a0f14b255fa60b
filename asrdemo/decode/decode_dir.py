"""Stage 5: decode a Kaldi data dir, or a folder of audio files, with an exp dir; score if references exist.

    asrdemo decode --exp_dir exp/train --input data/test --out_dir exp/train/decode_test --nj 2
    asrdemo decode --exp_dir exp_train_large --input ~/my_recordings --out_dir /tmp/mine
    asrdemo decode --exp_dir exp/train --input data/test --out_dir exp/train/decode_test_stream16 \
        --streaming --chunk_size 16       # chunk by chunk, as the demo streams (docs/streaming.md)

INPUT is a data dir (has `wav.scp`, whose entries are audio paths; `text` gives references), a
folder of .wav/.flac/.ogg/.opus/.mp3/.m4a/.mp4/.aac/.webm files (any rate, mono or multi-channel; utterance id = file name without
extension), or a `wav.scp`-style list file. Output in OUT_DIR: `hyp.txt` (`utt text`, C-sorted) and,
with references, `ref.txt`, `ref.trn`, `hyp.trn`, `result.txt`, `cer.txt` (asrdemo.score).
An audio file that cannot be read (missing, not audio, empty) is skipped, not fatal: the others
are decoded and scored, `skipped.txt` lists `utt reason`, and the run ends with an error (exit 1).

The work is done in steps, which decode.sh runs one by one (each job through its --cmd):
  --step split   list INPUT into OUT_DIR/split<N>/wav.<i>.scp, i = 1..N
  --step job     --job i: decode list i into OUT_DIR/split<N>/hyp.<i>.txt
  --step merge   check every job's output, write hyp.txt (+ ref.txt and scores)
  --step all     (default) split, run the N jobs as local processes, merge
A finished OUT_DIR (`.done` with the same settings) is skipped by every step.
"""

import dataclasses
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from tqdm import tqdm

from asrdemo.data.datadir import c_sorted, read_kv, read_text
from asrdemo.decode.decode_config import DTYPES, DecodeConfig
from asrdemo.errors import AsrdemoError
from asrdemo.utils.io import atomic_write_lines, atomic_write_text, clear_done, done_with, mark_done

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".mp4", ".aac", ".webm")


# ------------------------------------------------------------------------------------- input
def list_input(input_path):
    """-> (C-sorted [(utt_id, absolute audio path)], {utt_id: reference text} or None)."""
    src = Path(input_path)
    refs = None
    if src.is_dir() and (src / "wav.scp").is_file():
        wavs = read_kv(src / "wav.scp")
        if (src / "text").is_file():
            refs = read_text(src / "text")
        where = src / "wav.scp"
    elif src.is_dir():
        wavs = {}
        for p in sorted(src.iterdir()):
            if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES:
                utt = "_".join(p.stem.split())  # an utterance id cannot hold whitespace
                if utt in wavs:
                    raise AsrdemoError(f"{src}: two audio files give the utterance id {utt!r} "
                                       f"({Path(wavs[utt]).name}, {p.name}); rename one")
                wavs[utt] = str(p)
        if not wavs:
            raise AsrdemoError(f"{src}: no wav.scp (not a data dir) and no {'/'.join(AUDIO_SUFFIXES)} files")
        where = src
    elif src.is_file():
        wavs, where = read_kv(src), src
    else:
        raise AsrdemoError(f"input {src} does not exist (give a data dir, a folder of audio files, or a wav.scp)")
    utts = []
    for utt, path in wavs.items():
        if path.rstrip().endswith("|"):
            raise AsrdemoError(f"{where}: {utt}: command pipes are not supported in wav.scp; give an audio file path")
        utts.append((utt, os.path.abspath(path)))
    if refs is not None:
        missing = [u for u, _ in utts if u not in refs]
        if missing:
            raise AsrdemoError(f"{src / 'text'}: no reference for {len(missing)} utterance(s), e.g. {missing[:3]}")
    return c_sorted(utts, key=lambda x: x[0]), refs


def split_lists(utts, nj):
    """Contiguous chunks of the sorted list, sizes differing by at most one (some may be empty)."""
    base, extra = divmod(len(utts), nj)
    out, start = [], 0
    for i in range(nj):
        size = base + (i < extra)
        out.append(utts[start : start + size])
        start += size
    return out


# --------------------------------------------------------------------------------- settings
def _split_dir(args) -> Path:
    return Path(args.out_dir) / f"split{args.nj}"


def _settings(args) -> dict:
    """What the result depends on; a finished OUT_DIR with other settings is decoded again."""
    conf = DecodeConfig.load(args.decode_config)
    if args.mode:
        conf = dataclasses.replace(conf, mode=args.mode)  # (validated like the file's)
    for name in ("lm_weight", "spell_lm_weight"):
        if getattr(args, name, None) is not None:
            conf = dataclasses.replace(conf, **{name: getattr(args, name)})
    if getattr(args, "dtype", None):
        conf = dataclasses.replace(conf, dtype=args.dtype)
    return {
        "exp_dir": os.path.abspath(args.exp_dir),
        "model_file": os.path.abspath(args.model_file) if args.model_file else None,
        "input": os.path.abspath(args.input),
        "decode_conf": dataclasses.asdict(conf),
        "model": _model_signature(args.exp_dir, args.model_file),  # a retrained model decodes again
        "lm": _lm_signature(args.exp_dir) if conf.lm_weight > 0 else None,  # a newly attached LM decodes again
        # None offline, which a .done from before streaming existed also gives (no such key)
        "streaming": {"chunk_size": args.chunk_size, "num_left_chunks": args.num_left_chunks}
        if getattr(args, "streaming", False) else None,
    }


def _model_signature(exp_dir, model_file):
    """[path, size, mtime_ns] of the model file the jobs load (None when there is none: the jobs
    then fail with the recognizer's error)."""
    from asrdemo.decode.recognizer import find_model_file

    try:
        path = Path(model_file) if model_file else find_model_file(Path(exp_dir))
    except AsrdemoError:
        return None
    signature = _file_signature(path)
    return signature and [str(path.resolve()), *signature]


def _file_signature(path):
    """[size, mtime_ns] of a file, None when it is not one: a file rewritten in place decodes again."""
    path = Path(path)
    return [path.stat().st_size, path.stat().st_mtime_ns] if path.is_file() else None


def _lm_signature(exp_dir):
    """Size and mtime of the exp dir's attached LM weights (None when it has none)."""
    try:
        name = (yaml.safe_load((Path(exp_dir) / "config.yaml").read_text(encoding="utf-8")) or {}).get("lm")
    except (OSError, yaml.YAMLError, AttributeError):
        return None  # the recognizer reports a broken exp dir
    return _file_signature(Path(exp_dir) / str(name) / "valid.loss.ave.pth") if name else None


# ------------------------------------------------------------------------------------ steps
def check_exp_dir(exp_dir):
    """Fail before any job starts (the recognizer checks the rest when it loads)."""
    if not (Path(exp_dir) / "config.yaml").is_file():
        raise AsrdemoError(f"{exp_dir} is not an exp dir: no config.yaml (an exp dir is made by `asrdemo train` "
                           "or `asrdemo package`)")


def step_split(args, settings):
    check_exp_dir(args.exp_dir)
    utts, _ = list_input(args.input)
    out = Path(args.out_dir)
    clear_done(out)
    split = _split_dir(args)
    split.mkdir(parents=True, exist_ok=True)
    for stale in [*split.glob("hyp.*.txt"), *split.glob("skipped.*.txt")]:
        stale.unlink()
    for i, chunk in enumerate(split_lists(utts, args.nj), 1):
        atomic_write_lines(split / f"wav.{i}.scp", (f"{u} {p}" for u, p in chunk))
    log.info("%d utterances from %s in %d job list(s) under %s", len(utts), args.input, args.nj, split)


def step_job(args, settings):
    from asrdemo.data.audio import load_audio
    from asrdemo.decode.recognizer import Recognizer

    split = _split_dir(args)
    scp = split / f"wav.{args.job}.scp"
    if not scp.is_file():
        raise AsrdemoError(f"missing {scp}: run `--step split` with --nj {args.nj} first")
    utts = list(read_kv(scp).items()) if scp.stat().st_size else []
    rec = Recognizer.from_exp_dir(args.exp_dir, args.model_file, args.device, settings["decode_conf"],
                                  args.num_threads)
    decode_waves = rec.decode_waves
    if settings["streaming"]:
        decode_waves = streaming_decoder(rec, **settings["streaming"], exp_dir=args.exp_dir)
    lines, skipped, audio_s, start = [], [], 0.0, time.perf_counter()
    with tqdm(total=len(utts), desc=f"decode job {args.job}/{args.nj}", unit="utt", disable=None) as bar:
        for b in range(0, len(utts), args.batch_size):
            batch, waves, chunk = [], [], utts[b : b + args.batch_size]
            for utt, path in chunk:
                try:
                    wave, _ = load_audio(path, rec.sample_rate)
                except AsrdemoError as e:
                    # one unreadable file must not cost the others their results: skip it, say so,
                    # and let the merge step list it and fail the run
                    log.warning("utterance %s skipped: %s", utt, e)
                    skipped.append(f"{utt} {' '.join(str(e).split())}")
                    continue
                audio_s += len(wave) / rec.sample_rate
                batch.append((utt, path))
                waves.append(wave)
            # the recognizer's one silence policy: a silent utterance gets the empty hypothesis and
            # a warning naming it, as the demo refuses it
            hyps = decode_waves(waves, [f"utterance {u}" for u, _ in batch]) if waves else []
            for (utt, _), hyp in zip(batch, hyps):
                lines.append(f"{utt} {hyp.text}".rstrip())
            bar.update(len(chunk))
    elapsed = time.perf_counter() - start
    atomic_write_lines(split / f"skipped.{args.job}.txt", skipped)
    atomic_write_lines(split / f"hyp.{args.job}.txt", lines)
    log.info("job %d/%d: %d utterances, %.1f s of audio in %.1f s (RTF %.3f, mode %s)", args.job, args.nj,
             len(utts), audio_s, elapsed, elapsed / max(audio_s, 1e-9),
             f"streaming, chunk {settings['streaming']['chunk_size']}" if settings["streaming"]
             else rec.decode_conf.mode)


def streaming_decoder(rec, chunk_size: int, num_left_chunks: int, exp_dir="the exp dir"):
    """`rec.decode_waves`' contract (waves at the model's rate, names -> hypotheses, the same
    silence policy), but each wave streamed chunk by chunk through a `StreamingRecognizer`: the
    CTC prefix beam search's best with mode ctc_greedy or ctc_prefix_beam, else (the default)
    attention rescoring of its n-best at the end (two-pass)."""
    from asrdemo.decode.streaming import StreamingRecognizer, recognize_streaming

    rescoring = rec.decode_conf.mode not in ("ctc_greedy", "ctc_prefix_beam")
    streamer = StreamingRecognizer(rec, chunk_size, num_left_chunks, rescoring)
    log.info("streaming: chunks of %d encoder frames (%.2f s), %s", chunk_size, streamer.chunk_seconds,
             "two-pass (attention rescoring at the end)" if rescoring else "first pass only (CTC prefix beam)")
    if not streamer.model_is_streaming:
        log.warning("the model of %s was not trained for streaming (no dynamic chunks, or a convolution that "
                    "looks ahead): decoding it chunk by chunk works, with more errors than in full context",
                    exp_dir)

    def decode_waves(waves, names):
        # silent or too short: the recognizer's own answer (the empty hypothesis) and warning
        return [recognize_streaming(streamer, w, rec.sample_rate).result
                if not rec.is_silent(w) and len(w) >= rec.min_samples else rec.decode_waves([w], [name])[0]
                for w, name in zip(waves, names)]

    return decode_waves


def step_merge(args, settings):
    from asrdemo.score import score_files

    utts, refs = list_input(args.input)
    split = _split_dir(args)
    hyps, skipped = {}, {}
    for i in range(1, args.nj + 1):
        scp, hyp, skip = split / f"wav.{i}.scp", split / f"hyp.{i}.txt", split / f"skipped.{i}.txt"
        if not hyp.is_file():
            raise AsrdemoError(f"job {i}/{args.nj} left no {hyp}; see {Path(args.out_dir) / 'log' / f'decode.{i}.log'}")
        expected = set(read_kv(scp)) if scp.stat().st_size else set()
        got = read_kv(hyp, allow_empty_value=True) if hyp.stat().st_size else {}
        lost = read_kv(skip) if skip.is_file() and skip.stat().st_size else {}
        if set(got) | set(lost) != expected:
            raise AsrdemoError(f"{hyp} does not cover the utterances of {scp}")
        hyps.update(got)
        skipped.update(lost)
    if set(hyps) | set(skipped) != {u for u, _ in utts}:
        raise AsrdemoError(f"the job lists under {split} do not match {args.input}; run the split step again")
    out = Path(args.out_dir)
    decoded = [u for u, _ in utts if u in hyps]
    atomic_write_lines(out / "hyp.txt", (f"{u} {hyps[u]}".rstrip() for u in decoded))
    atomic_write_lines(out / "skipped.txt", (f"{u} {skipped[u]}" for u in c_sorted(skipped)))
    summary = None
    if refs is not None and decoded:
        atomic_write_lines(out / "ref.txt", (f"{u} {refs[u]}".rstrip() for u in decoded))
        totals = score_files(out / "ref.txt", out / "hyp.txt", out)
        summary = totals.summary()
        if skipped:
            summary += f" [{len(decoded)} of {len(utts)} utterances; {len(skipped)} skipped]"
        log.info("%s: %s", out / "cer.txt", summary)
    if skipped:
        # the results of the others are kept, but the run did not do what was asked: no .done,
        # a non-zero exit, and every skipped utterance named
        shown = "\n  ".join(f"{u}: {skipped[u]}" for u in c_sorted(skipped)[:10])
        more = f"\n  ... and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        raise AsrdemoError(f"{len(skipped)} of {len(utts)} utterance(s) could not be read and were skipped "
                           f"(listed in {out / 'skipped.txt'}); the other {len(decoded)} are in "
                           f"{out / 'hyp.txt'}:\n  {shown}{more}")
    # the search settings these results came from; `asrdemo package` ships them with the model
    atomic_write_text(out / "decode.yaml", yaml.safe_dump(settings["decode_conf"], sort_keys=False))
    mark_done(out, **settings, num_utterances=len(utts), cer=summary)
    log.info("wrote %s (%d utterances)", out / "hyp.txt", len(utts))


def run_jobs_locally(args):
    """Each job in its own process (`python -m asrdemo decode --step job`), logs under OUT_DIR/log/."""
    log_dir = Path(args.out_dir) / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(1, args.nj + 1):
        cmd = [sys.executable, "-m", "asrdemo", "decode", *_common_argv(args), "--step", "job", "--job", str(i)]
        log_path = log_dir / f"decode.{i}.log"
        with open(log_path, "w", encoding="utf-8") as f:
            procs.append((i, log_path, subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)))
    failed = [(i, p) for i, p, proc in procs if proc.wait() != 0]
    if failed:
        i, p = failed[0]
        tail = p.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        raise AsrdemoError(f"{len(failed)} of {args.nj} decoding job(s) failed; job {i} ({p}): " + " | ".join(tail))


def _common_argv(args):
    argv = ["--exp_dir", args.exp_dir, "--input", args.input, "--out_dir", args.out_dir, "--nj", str(args.nj),
            "--batch_size", str(args.batch_size), "--num_threads", str(args.num_threads), "--device", args.device]
    for name in ("mode", "decode_config", "model_file", "dtype"):
        if getattr(args, name):
            argv += [f"--{name}", str(getattr(args, name))]
    if args.streaming:
        argv += ["--streaming", "--chunk_size", str(args.chunk_size), "--num_left_chunks", str(args.num_left_chunks)]
    for name in ("lm_weight", "spell_lm_weight"):
        if getattr(args, name) is not None:
            argv += [f"--{name}", str(getattr(args, name))]
    return argv


# -------------------------------------------------------------------------------------- CLI
def add_arguments(p):
    p.add_argument("--exp_dir", required=True, help="exp dir (config.yaml, tokens.txt, cmvn.ark, model)")
    p.add_argument("--input", required=True, help="data dir, folder of audio files, or wav.scp")
    p.add_argument("--out_dir", required=True, help="where hyp.txt (and the scores) go")
    p.add_argument("--nj", type=int, default=1, help="parallel jobs (default 1)")
    p.add_argument("--mode", default=None, help="search mode; overrides the decode config's "
                   "(ctc_greedy, ctc_prefix_beam, attention, joint, attention_rescoring)")
    p.add_argument("--decode_config", default=None,
                   help="YAML with the search settings (e.g. conf/decode.yaml); default: the exp dir's "
                        "decode.yaml if present, else built-in defaults")
    p.add_argument("--model_file", default=None, help="default: EXP_DIR/valid.acc.ave.pth, else the newest checkpoint")
    p.add_argument("--lm_weight", type=float, default=None,
                   help="overrides the decode config's lm_weight (> 0: use the exp dir's LM, see `asrdemo lm attach`)")
    p.add_argument("--spell_lm_weight", type=float, default=None,
                   help="overrides the decode config's spell_lm_weight (a kana model: weight of the spelling's "
                        "log p in Mozc's language model when ranking the n-best; 0: off)")
    p.add_argument("--dtype", default=None, choices=DTYPES,
                   help="overrides the decode config's dtype (bfloat16: bf16 decoder/LM weights and encoder autocast; "
                        "int8: dynamically quantized decoder/LM linear layers, CPU; docs/decoding.md)")
    p.add_argument("--batch_size", type=int, default=1, help="utterances per batch within a job (default 1)")
    p.add_argument("--num_threads", type=int, default=1, help="torch threads per job (default 1)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    p.add_argument("--streaming", action="store_true",
                   help="decode each utterance chunk by chunk as a stream (CTC prefix beam search per chunk, then "
                        "attention rescoring unless --mode is ctc_greedy/ctc_prefix_beam; docs/streaming.md), "
                        "to measure streaming CER")
    p.add_argument("--chunk_size", type=int, default=16, help="with --streaming: encoder frames per chunk (default 16)")
    p.add_argument("--num_left_chunks", type=int, default=-1,
                   help="with --streaming: chunks of left context (default -1: all)")
    p.add_argument("--step", default="all", choices=["all", "split", "job", "merge"],
                   help="all (default), or one step as decode.sh runs them")
    p.add_argument("--job", type=int, default=None, help="with --step job: which list, 1..NJ")


def main(args):
    if args.nj < 1 or args.batch_size < 1 or args.num_threads < 1:
        raise AsrdemoError("--nj, --batch_size and --num_threads must be >= 1")
    if args.streaming and args.chunk_size < 1:
        raise AsrdemoError("--chunk_size must be >= 1 encoder frame")
    if args.decode_config is None and (Path(args.exp_dir) / "decode.yaml").is_file():
        args.decode_config = str(Path(args.exp_dir) / "decode.yaml")
    settings = _settings(args)
    out = Path(args.out_dir)
    if done_with(out, settings, ("hyp.txt",)):
        if args.step in ("all", "merge"):
            log.info("skipped: %s is complete (same exp dir, input and settings)", out / "hyp.txt")
        return
    if args.step == "job":
        if args.job is None or not 1 <= args.job <= args.nj:
            raise AsrdemoError(f"--step job needs --job in 1..{args.nj}")
        return step_job(args, settings)
    if args.step == "split":
        return step_split(args, settings)
    if args.step == "merge":
        return step_merge(args, settings)
    step_split(args, settings)
    if args.nj == 1:
        args.job = 1
        step_job(args, settings)
    else:
        run_jobs_locally(args)
    step_merge(args, settings)
