"""Data augmentation as a data stage: speed-perturbed and noisy copies of a Kaldi data dir.

    asrdemo augment --data_dir data/train --out_dir data/train_sp \
        --speeds 0.9,1.0,1.1 --noise_copies 1 --snr_range 10,30 [--noise_dir DIR] --seed 0 --nj 2

writes a new data dir whose `wav.scp` names 16-bit PCM wavs at `--sample_rate` under
`<out_dir>/wav/`, one per output utterance:

* speed perturbation, as `sox speed f` in Kaldi's `perturb_data_dir_speed.sh` / ESPnet: tempo and
  pitch change together (the waveform is resampled from sr to sr/f and played at sr, so the copy is
  1/f as long and its pitch f times as high). Ids `sp<f>-<utt>`, speakers `sp<f>-<spk>`; the 1.0
  copy keeps the original ids.
* noisy copies of the original (speed 1.0) utterances, as Kaldi's MUSAN recipes: noise added at a
  random SNR from `--snr_range`, measured against the *active* speech power (silences do not lower
  the speech level). Noise comes from the files in `--noise_dir` (a random segment, looped when the
  file is short) or, without one, is generated: white, pink (1/f), brown (1/f^2), or babble (3-5
  other utterances of the same data dir at random offsets). Ids `noise<k>-<utt>`, speakers
  `noise<k>-<spk>`.

Every random draw comes from a generator seeded by (seed, copy, utterance id), so the output is
identical byte for byte for any `--nj`. `utt2aug` records how each output utterance was made.
Resampling goes through `asrdemo.data.audio.resample` (soxr), the project's one resampler.
"""

import logging
import multiprocessing
import os
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asrdemo.data.audio import load_audio, resample
from asrdemo.data.datadir import Utterance, input_digest, read_data_dir, read_kv, write_data_dir
from asrdemo.data.waveform import active_power, add_noise, colored_noise, fit_int16, seeded_rng, write_pcm16
from asrdemo.errors import AsrdemoError
from asrdemo.utils.io import atomic_write_lines, clear_done, done_with, is_done, mark_done

log = logging.getLogger(__name__)

GENERATED_NOISES = ("white", "pink", "brown", "babble")
NOISE_EXTENSIONS = (".wav", ".flac", ".ogg")
BABBLE_VOICES = (3, 5)  # inclusive range of other utterances mixed into one babble noise
OUTPUTS = ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur", "utt2aug")
FORMAT_VERSION = 1  # bump when the same arguments would produce different audio


class AugmentError(AsrdemoError):
    pass


# ---------------------------------------------------------------- speed and noise (the signal utilities: waveform.py)


def speed_perturb(wave: np.ndarray, sr: int, factor: float) -> np.ndarray:
    """`sox speed factor`: resample sr -> sr/factor and treat the result as sr.

    The copy is 1/factor as long and every frequency is factor times higher."""
    if not factor > 0:
        raise AugmentError(f"speed factor must be positive, got {factor}")
    if factor == 1.0:
        return np.asarray(wave, dtype=np.float32)
    return resample(wave, sr, sr / factor)


def make_noise(kind: str, n: int, rng: np.random.Generator, others=None, sample_rate: int = 16000) -> np.ndarray:
    """`n` samples of noise at unit RMS.

    kind: "white", "pink" (1/f power), "brown" (1/f^2) or "babble"; babble mixes the waves in
    `others` (other utterances at `sample_rate`), each at a random circular offset, looped to `n`
    samples and brought to the same active level, so no single voice dominates."""
    if n <= 0:
        raise AugmentError(f"noise length must be positive, got {n}")
    if kind == "white":
        noise = rng.standard_normal(n)
    elif kind == "pink":
        noise = colored_noise(n, rng, 1.0, sample_rate)
    elif kind == "brown":
        noise = colored_noise(n, rng, 2.0, sample_rate)
    elif kind == "babble":
        if not others:
            raise AugmentError("babble noise needs other utterances to mix")
        noise = np.zeros(n)
        for voice in others:
            voice = np.asarray(voice, dtype=np.float64)
            level = active_power(voice, frame=max(1, sample_rate // 50))
            if level <= 0:
                continue
            shifted = np.roll(np.resize(voice, n), int(rng.integers(0, n)))
            noise += shifted / np.sqrt(level)
    else:
        raise AugmentError(f"unknown noise kind {kind!r} (one of {', '.join(GENERATED_NOISES)})")
    rms = np.sqrt(np.mean(noise**2))
    if rms <= 0:
        raise AugmentError(f"{kind} noise came out silent (the other utterances are silent?)")
    return (noise / rms).astype(np.float32)


# ---------------------------------------------------------------- the data-dir stage


def speed_prefix(factor: float) -> str:
    return f"sp{factor:g}-"


def noise_prefix(k: int) -> str:
    return f"noise{k}-"


def parse_floats(text, what: str):
    """"0.9,1.0,1.1" or "0.9 1.0 1.1" (run.sh passes spaces) -> tuple of floats."""
    if isinstance(text, (tuple, list)):
        return tuple(float(x) for x in text)
    try:
        return tuple(float(x) for x in str(text).replace(",", " ").split())
    except ValueError:
        raise AugmentError(f"--{what}: expected numbers separated by commas or spaces, got {text!r}") from None


def _noise_files(noise_dir):
    d = Path(noise_dir)
    if not d.is_dir():
        raise AugmentError(f"--noise_dir {d}: no such directory")
    files = sorted(str(p) for p in d.rglob("*") if p.suffix.lower() in NOISE_EXTENSIONS and p.is_file())
    if not files:
        raise AugmentError(f"--noise_dir {d}: no {'/'.join(NOISE_EXTENSIONS)} files in it")
    return files


# Worker state (set once per process by _init_worker).
_job = {}


def _init_worker(job):
    _job.clear()
    _job.update(job)
    _job["index"] = {utt_id: i for i, (utt_id, _) in enumerate(job["utts"])}
    _load_noise_file.cache_clear()


@lru_cache(maxsize=16)
def _load_noise_file(path: str, sample_rate: int) -> np.ndarray:
    wave, _ = load_audio(path, sample_rate)
    if not np.any(wave):
        raise AugmentError(f"{path}: noise file is digital silence")
    return wave


def _noise_for(src_id: str, k: int, n: int, rng: np.random.Generator):
    """-> (noise of n samples, description for utt2aug). Draws come from `rng` in a fixed order."""
    sr = _job["sample_rate"]
    if _job["noise_files"]:
        path = _job["noise_files"][int(rng.integers(0, len(_job["noise_files"])))]
        source = _load_noise_file(path, sr)
        start = int(rng.integers(0, len(source)))
        return np.resize(np.roll(source, -start), n), f"file:{path}@{start / sr:.2f}s"
    utts, self_index = _job["utts"], _job["index"][src_id]
    num_others = len(utts) - 1
    kinds = GENERATED_NOISES if num_others else GENERATED_NOISES[:-1]
    kind = kinds[int(rng.integers(0, len(kinds)))]
    voices, names = None, ""
    if kind == "babble":
        count = min(num_others, int(rng.integers(BABBLE_VOICES[0], BABBLE_VOICES[1] + 1)))
        chosen = sorted(rng.choice(num_others, size=count, replace=False))
        picked = [utts[i + (i >= self_index)] for i in chosen]  # skip the utterance itself
        voices = []
        for utt_id, wav in picked:
            try:
                voices.append(load_audio(wav, sr)[0])
            except AsrdemoError as e:
                raise AugmentError(f"{utt_id} (a babble voice for {src_id}): {e}") from None
        names = ":" + "+".join(u for u, _ in picked)
    return make_noise(kind, n, rng, voices, sample_rate=sr), kind + names


def _make_one(task):
    """Write one output utterance -> (out_id, duration s, utt2aug entry, error)."""
    out_id, src_id, src_wav, speed, k = task
    sr = _job["sample_rate"]
    try:
        wave, orig_sr = load_audio(src_wav)
        # one resampling step: original rate -> sr/speed, played at sr (= speed_perturb at sr)
        wave = resample(wave, orig_sr, sr / speed)
        info = f"{src_id} speed={speed:g}"
        if k:
            rng = seeded_rng(_job["seed"], k, src_id, sep="\t")  # independent of the order and the process
            snr = float(rng.uniform(*_job["snr_range"]))
            noise, what = _noise_for(src_id, k, len(wave), rng)
            wave = add_noise(wave, noise, snr, frame=max(1, sr // 50))
            info += f" noise={what} snr={snr:.2f}"
        samples, gain = fit_int16(wave)
        info += f" gain={gain:.4f}"
        if len(samples) == 0:
            raise AugmentError("no samples after resampling")
        write_pcm16(Path(_job["wav_dir"]) / f"{out_id}.wav", samples, sr)
        return out_id, len(samples) / sr, info, None
    except AsrdemoError as e:
        return out_id, None, None, (f"{out_id}: {e}" if out_id == src_id else f"{out_id} (from {src_id}): {e}")


def _run(tasks, job, nj):
    """Yield `_make_one` results (in any order): in this process for nj=1, else in a spawn pool."""
    if nj == 1:
        _init_worker(job)
        yield from map(_make_one, tasks)
        return
    with multiprocessing.get_context("spawn").Pool(nj, initializer=_init_worker, initargs=(job,)) as pool:
        yield from pool.imap_unordered(_make_one, tasks, chunksize=4)


def _settings(data_dir, speeds, noise_copies, snr_range, noise_dir, seed, sample_rate):
    """What the output depends on: recorded in .done and compared to decide whether to redo."""
    return {
        "format": FORMAT_VERSION,
        "data_dir": str(Path(data_dir).absolute()),
        "input_sha256": input_digest(data_dir, ("wav.scp", "text", "utt2spk")),
        "speeds": list(speeds),
        "noise_copies": noise_copies,
        "snr_range": list(snr_range),
        "noise_dir": str(Path(noise_dir).absolute()) if noise_dir else None,
        "noise_files": _noise_files(noise_dir) if noise_dir else [],
        "seed": seed,
        "sample_rate": sample_rate,
    }


def _check_args(speeds, noise_copies, snr_range, sample_rate, nj):
    if not speeds:
        raise AugmentError("--speeds: give at least one factor (1.0 keeps the original speed)")
    if len(set(speeds)) != len(speeds):
        raise AugmentError(f"--speeds: repeated factor in {list(speeds)}")
    for f in speeds:
        if not 0.5 <= f <= 2.0:
            raise AugmentError(f"--speeds: factor {f:g} is outside 0.5..2.0")
    if noise_copies < 0:
        raise AugmentError(f"--noise_copies must be >= 0, got {noise_copies}")
    if len(snr_range) != 2 or snr_range[0] > snr_range[1]:
        raise AugmentError(f"--snr_range: expected LOW,HIGH in dB with LOW <= HIGH, got {list(snr_range)}")
    if sample_rate <= 0:
        raise AugmentError(f"--sample_rate must be positive, got {sample_rate}")
    if nj < 1:
        raise AugmentError(f"--nj must be >= 1, got {nj}")


def augment_data_dir(data_dir, out_dir, speeds=(0.9, 1.0, 1.1), noise_copies=1, snr_range=(10, 30),
                     noise_dir=None, seed=0, nj=1, sample_rate=16000) -> int:
    """Write the augmented data dir; returns its number of utterances.

    Skipped (returns the count from `.done`) when `out_dir/.done` records the same settings and the
    same input files. On any unreadable audio, raises `AugmentError` naming the utterances and
    writes no `.done`."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    speeds = tuple(float(f) for f in parse_floats(speeds, "speeds"))
    snr_range = tuple(float(x) for x in parse_floats(snr_range, "snr_range"))
    _check_args(speeds, noise_copies, snr_range, sample_rate, nj)
    if data_dir.resolve() == out_dir.resolve():
        raise AugmentError(f"--out_dir {out_dir} must differ from --data_dir")
    utts = read_data_dir(data_dir)
    settings = _settings(data_dir, speeds, noise_copies, snr_range, noise_dir, seed, sample_rate)

    if done_with(out_dir, settings, OUTPUTS):
        log.info("skipped: %s is complete for these settings (remove %s/.done to redo)", out_dir, out_dir)
        return len(read_kv(out_dir / "wav.scp"))
    if is_done(out_dir):
        log.info("%s was made with other settings or input; redoing", out_dir)
    clear_done(out_dir)

    tasks, meta = [], {}  # meta: out_id -> (text, speaker)
    for u in utts:
        for f in speeds:
            prefix = "" if f == 1.0 else speed_prefix(f)
            tasks.append((prefix + u.utt_id, u.utt_id, u.wav, f, 0))
            meta[prefix + u.utt_id] = (u.text, prefix + u.spk)
        for k in range(1, noise_copies + 1):
            prefix = noise_prefix(k)
            tasks.append((prefix + u.utt_id, u.utt_id, u.wav, 1.0, k))
            meta[prefix + u.utt_id] = (u.text, prefix + u.spk)

    wav_dir = (out_dir / "wav").absolute()
    wav_dir.mkdir(parents=True, exist_ok=True)
    job = {
        "sample_rate": sample_rate, "seed": seed, "snr_range": snr_range, "wav_dir": str(wav_dir),
        "noise_files": settings["noise_files"], "utts": [(u.utt_id, u.wav) for u in utts],
    }
    results, errors = {}, []
    for out_id, dur, info, error in tqdm(_run(tasks, job, nj), total=len(tasks), desc=f"augment {data_dir.name}",
                                         unit="utt", mininterval=0.5):
        if error:
            errors.append(error)
        else:
            results[out_id] = (dur, info)
    if errors:
        errors.sort()
        shown = "\n  ".join(errors[:10])
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise AugmentError(f"{len(errors)} utterance(s) of {data_dir} could not be augmented:\n  {shown}{more}")

    out_utts = [
        Utterance(out_id, str(wav_dir / f"{out_id}.wav"), meta[out_id][0], meta[out_id][1], dur)
        for out_id, (dur, _) in results.items()
    ]
    write_data_dir(out_dir, out_utts)
    atomic_write_lines(out_dir / "utt2aug", (f"{u.utt_id} {results[u.utt_id][1]}" for u in
                                             sorted(out_utts, key=lambda u: u.utt_id.encode("utf-8"))))
    wanted = {f"{u.utt_id}.wav" for u in out_utts}
    for entry in os.scandir(wav_dir):  # wavs of an earlier run with other settings, temp files of a killed one
        if entry.is_file() and entry.name not in wanted and (entry.name.endswith(".wav") or entry.name.endswith(".tmp")):
            os.unlink(entry.path)
    mark_done(out_dir, **settings, utterances=len(out_utts), hours=round(sum(u.dur for u in out_utts) / 3600, 4))
    return len(out_utts)


def add_arguments(p):
    p.add_argument("--data_dir", required=True, help="input Kaldi data dir, e.g. data/train")
    p.add_argument("--out_dir", required=True, help="output data dir, e.g. data/train_sp (wavs go to OUT_DIR/wav/)")
    p.add_argument("--speeds", default="0.9,1.0,1.1",
                   help="speed factors, commas or spaces (default 0.9,1.0,1.1; 1.0 keeps the original ids)")
    p.add_argument("--noise_copies", type=int, default=1, help="noisy copies per utterance (default 1; 0: none)")
    p.add_argument("--snr_range", default="10,30", help="SNR range in dB for the noisy copies (default 10,30)")
    p.add_argument("--noise_dir", default=None,
                   help="folder of noise recordings (wav/flac/ogg, searched recursively, e.g. MUSAN noise/); "
                        "default: generated white/pink/brown/babble noise")
    p.add_argument("--seed", type=int, default=0, help="seed of SNRs, noise choice and offsets (default 0)")
    p.add_argument("--nj", type=int, default=2, help="parallel worker processes (default 2)")
    p.add_argument("--sample_rate", type=int, default=16000, help="rate of the written wavs (default 16000)")


def main(args):
    start = time.time()
    n = augment_data_dir(args.data_dir, args.out_dir, speeds=args.speeds, noise_copies=args.noise_copies,
                         snr_range=args.snr_range, noise_dir=args.noise_dir, seed=args.seed, nj=args.nj,
                         sample_rate=args.sample_rate)
    log.info("%s: %d utterances (%.1f s)", args.out_dir, n, time.time() - start)
