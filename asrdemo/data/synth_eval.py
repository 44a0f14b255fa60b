"""Evaluation sets the offline recipe keeps: natural sentences, unseen voices, unseen noises.

`make_eval_sets(out_dir, num_sentences, seed, nj)` writes Kaldi data dirs

    <out>/eval_clean/    every voice reads the same `num_sentences` hand-written sentences
    <out>/eval_snr20/    the same audio with noise at 20 dB SNR
    <out>/eval_snr10/    ... 10 dB
    <out>/eval_snr5/     ... 5 dB

(wavs under `<out>/eval_wav/`, 16 kHz), and with `dev_sentences` > 0

    <out>/dev_natural/   the training voices read `dev_sentences` other hand-written sentences

the set to tune decoding settings on (beam size, LM weights: docs/decoding.md), so that the
evaluation sets stay unseen by every choice made. The sentences are the mini corpus's
(`egs/mini_jsut/sentences.txt`) and `egs/synth_ja/eval_sentences.txt`: natural sentences the
generator never produces. The voices are the training voices with renderings drawn from
another seed and kept clean (speed, pitch and warp values the training corpus never used)
and the voices reserved for evaluation (`voices.EVAL_VOICES`, never trained on). Utterance
ids are `<voice>-<n>`, and utt2spk maps each to its voice, so CER is reported per voice.
The noises are ones training never adds: brown (1/f^2) noise and a machine hum (harmonics of
a random 50-200 Hz fundamental with a little broadband hiss).

`asrdemo eval_table` (asrdemo/evaluate.py) turns their decoding into one table.
"""

import logging
import math
import multiprocessing
import os
from pathlib import Path

import numpy as np

from asrdemo.data import voices
from asrdemo.data.datadir import Utterance, read_kv, write_data_dir
from asrdemo.data.mini_jsut import read_sentences, write_wav
from asrdemo.data.sentence_gen import EVAL_SENTENCE_FILES
from asrdemo.data.synth_ja import SAMPLE_RATE, Rendering, render
from asrdemo.data.waveform import eval_noise, seeded_rng, snr_gain
from asrdemo.errors import AsrdemoError
from asrdemo.utils.io import atomic_write_text, done_with, mark_done

log = logging.getLogger(__name__)

EVAL_SETS = {"eval_clean": math.inf, "eval_snr20": 20.0, "eval_snr10": 10.0, "eval_snr5": 5.0}
EVAL_NOISES = ("brown", "hum")
DEV_SET = "dev_natural"


def eval_pool() -> list:
    """Every evaluation sentence, mini corpus first (file order), then the synth_ja additions."""
    out = [t for _, t in read_sentences(EVAL_SENTENCE_FILES[0])]
    extra = EVAL_SENTENCE_FILES[1]
    if extra.is_file():
        out += [ln.strip() for ln in extra.read_text(encoding="utf-8").splitlines()
                if ln.strip() and not ln.startswith("#")]
    return out


def pick_sentences(n: int, seed: int) -> list:
    """`n` sentences of the pool, a fixed random choice for a seed."""
    pool = eval_pool()
    if not 1 <= n <= len(pool):
        raise AsrdemoError(f"--num_sentences must be in 1..{len(pool)}, got {n}")
    idx = np.random.default_rng(seed).permutation(len(pool))[:n]
    return [pool[i] for i in sorted(idx)]


def pick_dev_sentences(n: int, num_eval: int, seed: int) -> list:
    """`n` sentences of the pool that `pick_sentences(num_eval, seed)` did not pick (a fixed
    random choice). Raises AsrdemoError when fewer than `n` are left."""
    picked = set(pick_sentences(num_eval, seed))
    rest = [t for t in eval_pool() if t not in picked]
    if not 1 <= n <= len(rest):
        raise AsrdemoError(f"--dev_sentences must be in 1..{len(rest)} beside {num_eval} evaluation sentences, got {n}")
    idx = np.random.default_rng(seed + 1).permutation(len(rest))[:n]
    return [rest[i] for i in sorted(idx)]


def eval_rendering(rng: np.random.Generator, voice: str) -> Rendering:
    """A clean rendering (no room, no noise, full band) of a voice with freshly drawn settings."""
    hts = voice in voices.HTS_VOICES
    return Rendering(voice=voice, speed=float(rng.uniform(0.9, 1.1)),
                     half_tone=float(rng.uniform(-2.0, 2.0)) if hts else 0.0,
                     warp=float(rng.uniform(0.95, 1.05)), tilt=float(rng.uniform(-0.2, 0.2)),
                     lead_s=0.3, trail_s=0.3, room_rt60_s=0.0, noise="none", snr_db=math.inf,
                     telephone=False, level_dbfs=float(rng.uniform(-30.0, -20.0)), clip=1.0)


def add_noise(wave: np.ndarray, snr_db: float, kind: str, rng: np.random.Generator) -> np.ndarray:
    """`wave` plus `kind` noise at `snr_db` (speech power measured where |x| is above 1 % of peak)."""
    active = wave[np.abs(wave) > 0.01 * np.max(np.abs(wave))]
    noise = eval_noise(kind, len(wave), rng, SAMPLE_RATE) * snr_gain(np.mean(active**2), snr_db)
    out = wave + noise
    peak = np.max(np.abs(out))
    return (out * (0.98 / peak) if peak > 0.98 else out).astype(np.float32)


def _job(job):
    utt_id, text, voice, seed, wav_dir, sets = job
    rng = seeded_rng(seed, utt_id)
    clean = render(text, eval_rendering(rng, voice), rng, evaluation=True)
    kind = EVAL_NOISES[int(rng.integers(len(EVAL_NOISES)))]
    out = {}
    for name, snr in sets.items():
        wave = clean if math.isinf(snr) else add_noise(clean, snr, kind, rng)
        path = Path(wav_dir) / name / f"{utt_id}.wav"
        write_wav(path, wave, SAMPLE_RATE)
        out[name] = (str(path.absolute()), len(wave) / SAMPLE_RATE)
    return utt_id, text, voice, kind, out


def make_eval_sets(out_dir, num_sentences: int = 80, seed: int = 1000, nj: int = 2, dev_sentences: int = 0) -> dict:
    """Write the four evaluation data dirs under `out_dir` (and `dev_natural/` when
    `dev_sentences` > 0); returns {set: utterance count}.

    Each is skipped when its `.done` records the same arguments. Raises AsrdemoError when the
    pool has too few sentences for `num_sentences` (+ `dev_sentences`).
    """
    out_dir = Path(out_dir)
    counts = _make_sets(out_dir, EVAL_SETS, pick_sentences(num_sentences, seed),
                        voices.TRAIN_VOICES + voices.EVAL_VOICES, seed, nj,
                        {"num_sentences": num_sentences, "seed": seed})
    if dev_sentences > 0:  # other sentences, the training voices only, fresh renderings
        counts.update(_make_sets(out_dir, {DEV_SET: math.inf},
                                 pick_dev_sentences(dev_sentences, num_sentences, seed),
                                 voices.TRAIN_VOICES, seed + 1, nj,
                                 {"dev_sentences": dev_sentences, "num_sentences": num_sentences, "seed": seed}))
    return counts


def _make_sets(out_dir: Path, sets: dict, sentences: list, voice_names: tuple, seed: int, nj: int, args: dict) -> dict:
    """Every voice reads every sentence once; the clean audio and its noisy copies (`sets`:
    name -> SNR in dB, inf for clean) become one data dir each; the first set's `.done` records
    `args`."""
    args = {**args, "voices": list(voice_names)}
    done_file = out_dir / next(iter(sets))
    if done_with(done_file, args) and all((out_dir / s / "text").is_file() for s in sets):
        log.info("skipped: %s holds %s", out_dir, ", ".join(sets))
        return {s: len(read_kv(out_dir / s / "text")) for s in sets}
    jobs = [(f"{voice}-{i:03d}", text, voice, seed, out_dir / "eval_wav", sets)
            for voice in voice_names for i, text in enumerate(sentences)]
    for name in sets:
        (out_dir / "eval_wav" / name).mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    if nj > 1:
        voices.prepare_kokoro()  # the eval voices are kokoro's: assemble its model before the workers race to
        pool = multiprocessing.get_context("spawn").Pool(nj)
        results = list(tqdm(pool.imap_unordered(_job, jobs, chunksize=2), total=len(jobs), desc=", ".join(sets)))
        pool.close()
        pool.join()
    else:
        results = [_job(j) for j in tqdm(jobs, desc=", ".join(sets))]
    counts = {}
    for name in sets:
        utts = [Utterance(u, files[name][0], text, voice, files[name][1]) for u, text, voice, _, files in results]
        write_data_dir(out_dir / name, utts)
        counts[name] = len(utts)
    noisy = [name for name, snr in sets.items() if not math.isinf(snr)]
    if noisy:
        atomic_write_text(out_dir / "eval_wav" / "noise_kinds.txt",
                          "".join(f"{u} {kind}\n" for u, _, _, kind, _ in sorted(results)))
    mark_done(done_file, **args, counts=counts)
    hours = sum(f[next(iter(sets))][1] for *_, f in results) / 3600
    log.info("%s in %s: %d voices x %d sentences, %.2f h clean%s", ", ".join(sets), out_dir, len(voice_names),
             len(sentences), hours, f", SNR copies at {'/'.join(str(int(sets[n])) for n in noisy)} dB" if noisy else "")
    return counts


def add_arguments(parser):
    parser.add_argument("--out_dir", required=True, help="data root: eval_clean/, eval_snr*/ and eval_wav/ go here")
    parser.add_argument("--num_sentences", type=int, default=80, help="sentences each voice reads")
    parser.add_argument("--seed", type=int, default=1000, help="not the training corpus's seed: unseen renderings")
    parser.add_argument("--nj", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--dev_sentences", type=int, default=0,
                        help=f"> 0: also {DEV_SET}/, other hand-written sentences read by the training voices, "
                             "to tune decoding settings on")


def main(args):
    make_eval_sets(args.out_dir, args.num_sentences, args.seed, args.nj, args.dev_sentences)
