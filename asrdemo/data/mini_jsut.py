"""The offline mini corpus: JSUT's layout, synthesized speech, a few hundred sentences.

`make_corpus` reads `egs/mini_jsut/sentences.txt` (`ID:text` lines, JSUT's ids; the file ships inside
the package as `asrdemo/data/mini_jsut_sentences.txt`, and the egs path links to it) and writes

    <out>/jsut_ver1.1/README.txt                          says the corpus is synthetic
    <out>/jsut_ver1.1/pseudo_speakers.tsv                 how each utterance was made
    <out>/jsut_ver1.1/<subset>/transcript_utf8.txt        `ID:text` lines, as in JSUT ver1.1
    <out>/jsut_ver1.1/<subset>/wav/<ID>.wav               48 kHz, 16-bit PCM, mono

so the recipe's data preparation cannot tell it from the real corpus. The speech comes from
pyopenjtalk-plus (one HTS voice, fully offline). A model trained on one voice only learns that
voice, so each utterance is rendered by one of eight pseudo-speakers -- a base pitch and a
timbre (a vocal-tract-length-like frequency warp and a spectral tilt) -- and then varied by
speed, pitch jitter, silences, an optional small room, additive noise at a random SNR and a
random level. Everything is drawn from a generator seeded by (seed, utterance id), so a corpus
is reproducible byte for byte and independent of the number of worker processes.
"""

from __future__ import annotations  # `str | None` annotations on Python 3.9

import contextlib
import hashlib
import io
import json
import logging
import math
import multiprocessing
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from asrdemo.data import waveform
from asrdemo.data.waveform import (corpus_noise, room, seeded_rng, set_level, snr_gain, spectral_tilt, speech_bounds,
                                   write_pcm16)
from asrdemo.errors import AsrdemoError
from asrdemo.utils.io import atomic_write_lines, atomic_write_text, clear_done, done_with, is_done, mark_done, read_lines

logger = logging.getLogger(__name__)

SAMPLE_RATE = 48000  # JSUT's rate, and the HTS voice's
CORPUS_NAME = "jsut_ver1.1"
# package data, so that a non-editable install (`pip install .`) has it too
DEFAULT_SENTENCES = Path(__file__).resolve().with_name("mini_jsut_sentences.txt")
SEED_UTT = ("BASIC5000_0001", "水をマレーシアから買わなくてはならないのです。")
SYNTH_VERSION = 1  # bump when the rendering changes, so old corpora are re-made
README_MARK = "synthetic mini corpus made by asrdemo"

# JSUT ver1.1 subsets: folder name -> id pattern (the ids of the real transcripts).
SUBSET_ID_PATTERNS = {
    "basic5000": r"BASIC5000_\d{4}",
    "countersuffix26": r"COUNTERSUFFIX26_\d{2}",
    "loanword128": r"LOANWORD128_\d{3}",
    "onomatopee300": r"ONOMATOPEE300_\d{3}",
    "precedent130": r"PRECEDENT130_\d{3}",
    "repeat500": r"REPEAT500_set\d_\d{3}",
    "travel1000": r"TRAVEL1000_\d{4}",
    "utparaphrase512": r"UT-PARAPHRASE-sent\d{3}-phrase\d",
    "voiceactress100": r"VOICEACTRESS100_\d{3}",
}
SUBSETS = tuple(SUBSET_ID_PATTERNS)
_SUBSET_RES = {name: re.compile(pattern) for name, pattern in SUBSET_ID_PATTERNS.items()}


def subset_of(utt_id: str) -> str:
    """The JSUT subset folder an utterance id belongs to (`BASIC5000_0001` -> `basic5000`)."""
    for name, pattern in _SUBSET_RES.items():
        if pattern.fullmatch(utt_id):
            return name
    raise ValueError(f"{utt_id!r} is not a JSUT ver1.1 utterance id")


# --------------------------------------------------------------------------- pseudo-speakers


@dataclass(frozen=True)
class Voice:
    """A pseudo-speaker: base pitch (semitones), formant warp (>1 = shorter vocal tract), tilt."""

    name: str
    half_tone: float
    warp: float
    tilt: float  # first-order FIR y[n] = x[n] - tilt * x[n-1]: > 0 brighter, < 0 darker


# Spread over pitch and vocal-tract length so that the low, long-tract voices sound male-ish
# and the high, short-tract ones child-ish; the source voice itself is spk1.
VOICES = (
    Voice("spk1", 0.0, 1.00, 0.0),
    Voice("spk2", -3.0, 0.95, 0.3),
    Voice("spk3", -6.0, 0.90, 0.4),
    Voice("spk4", -8.0, 0.87, 0.15),
    Voice("spk5", 2.0, 1.05, -0.2),
    Voice("spk6", 4.0, 1.10, -0.3),
    Voice("spk7", -1.5, 1.06, 0.5),
    Voice("spk8", 1.0, 0.93, -0.45),
)
# A voice no corpus utterance uses: for the demo sample, so the demo plays something unseen.
HELDOUT_VOICE = Voice("demo", -4.5, 0.97, 0.1)
_VOICES_BY_NAME = {v.name: v for v in (*VOICES, HELDOUT_VOICE)}


def get_voice(speaker) -> Voice:
    """`speaker`: a `Voice`, a name (`spk1`..`spk8`, `demo`) or an index into `VOICES`."""
    if isinstance(speaker, Voice):
        return speaker
    if isinstance(speaker, (int, np.integer)):
        if not 0 <= speaker < len(VOICES):
            raise AsrdemoError(f"speaker index {speaker} out of range 0..{len(VOICES) - 1}")
        return VOICES[int(speaker)]
    if speaker in _VOICES_BY_NAME:
        return _VOICES_BY_NAME[speaker]
    raise AsrdemoError(f"unknown speaker {speaker!r}; choose one of {sorted(_VOICES_BY_NAME)}")


@dataclass
class Rendering:
    """Everything that decides one utterance's audio (logged to pseudo_speakers.tsv)."""

    speaker: str
    half_tone: float  # final pitch shift vs. the source voice, semitones
    warp: float  # formant scale
    tilt: float
    speed: float  # > 1 = faster
    lead_s: float  # silence before / after the speech
    trail_s: float
    room_rt60_s: float  # 0 = dry
    noise: str  # none | white | pink | babble
    snr_db: float
    level_dbfs: float  # RMS level of the result


def draw_rendering(rng: np.random.Generator, speaker=None, augment: bool = True) -> Rendering:
    """Pick a pseudo-speaker (unless given) and, with `augment`, per-utterance variations."""
    voice = VOICES[rng.integers(len(VOICES))] if speaker is None else get_voice(speaker)
    if not augment:
        return Rendering(voice.name, voice.half_tone, voice.warp, voice.tilt, 1.0,
                         0.15, 0.2, 0.0, "none", math.inf, -24.0)
    half_tone = voice.half_tone + rng.uniform(-1.0, 1.0)
    warp = voice.warp * rng.uniform(0.98, 1.02)
    tilt = voice.tilt + rng.uniform(-0.1, 0.1)
    speed = rng.uniform(0.85, 1.15)
    lead_s, trail_s = rng.uniform(0.05, 0.45), rng.uniform(0.05, 0.5)
    room_rt60_s = rng.uniform(0.15, 0.5) if rng.random() < 0.3 else 0.0
    noise = str(rng.choice(["white", "pink", "babble"]))
    snr_db = rng.uniform(20.0 if noise == "babble" else 15.0, 40.0)  # babble masks more
    level_dbfs = rng.uniform(-32.0, -18.0)
    return Rendering(voice.name, half_tone, warp, tilt, speed, lead_s, trail_s, room_rt60_s,
                     noise, snr_db, level_dbfs)


# --------------------------------------------------------------------------- rendering


def _tts(text: str, speed: float, half_tone: float) -> np.ndarray:
    """pyopenjtalk-plus TTS as float64 in [-1, 1] at 48 kHz (imported lazily, quietly)."""
    with contextlib.redirect_stdout(io.StringIO()):  # it prints an ONNX-runtime notice on import
        import pyopenjtalk
    wave, sr = pyopenjtalk.tts(text, speed=speed, half_tone=half_tone)
    if sr != SAMPLE_RATE:
        raise AsrdemoError(f"pyopenjtalk returned {sr} Hz, expected {SAMPLE_RATE}")
    return np.asarray(wave, dtype=np.float64) / 32768.0


def _voice_tts(text: str, r: Rendering) -> np.ndarray:
    """TTS with pitch r.half_tone, speed r.speed and every frequency (formants) scaled by r.warp.

    Resampling from SAMPLE_RATE*warp to SAMPLE_RATE scales all frequencies by `warp` and the
    duration by 1/warp; the synthesizer pre-compensates both, so only the formants move.
    """
    import soxr

    wave = _tts(text, speed=r.speed / r.warp, half_tone=r.half_tone - 12.0 * math.log2(r.warp))
    if abs(r.warp - 1.0) > 1e-6:
        wave = soxr.resample(wave, SAMPLE_RATE * r.warp, SAMPLE_RATE, quality="HQ")
    if r.tilt:
        wave = spectral_tilt(wave, r.tilt)
    return wave


def render(text: str, r: Rendering, rng: np.random.Generator) -> np.ndarray:
    """Synthesize `text` as rendering `r` describes; float32 in [-1, 1] at SAMPLE_RATE."""
    wave = _voice_tts(text, r)
    start, end = speech_bounds(wave)
    if end <= start or not np.any(wave):
        raise AsrdemoError(f"pyopenjtalk produced no speech for {text!r}")
    speech = wave[start:end]
    wave = np.concatenate([np.zeros(int(r.lead_s * SAMPLE_RATE)), speech,
                           np.zeros(int(r.trail_s * SAMPLE_RATE))])
    if r.room_rt60_s > 0:
        wave = room(wave, r.room_rt60_s, rng, SAMPLE_RATE)
    if r.noise != "none":
        noise = corpus_noise(r.noise, len(wave), speech, rng, SAMPLE_RATE)
        wave = wave + noise * snr_gain(np.mean(speech**2), r.snr_db)
    wave = set_level(wave, r.level_dbfs)
    peak = np.max(np.abs(wave))
    if peak > 0.98:  # never clip: lower the level instead
        wave *= 0.98 / peak
    return wave.astype(np.float32)


def synthesize(text: str, seed: int = 0, speaker=None, augment: bool = True, key: str | None = None):
    """Speech for `text`: `(np.float32 wave in [-1, 1], 48000)`.

    The pseudo-speaker (unless `speaker` names one) and, with `augment`, speed, pitch jitter,
    silences, room, noise and level are drawn from (seed, key); `key` defaults to the text
    (the corpus uses the utterance id). `augment=False` gives the voice alone: normal speed,
    short silences, no noise.
    """
    rng = seeded_rng(seed, text if key is None else key)
    rendering = draw_rendering(rng, speaker=speaker, augment=augment)
    return render(text, rendering, rng), SAMPLE_RATE


def to_int16(wave: np.ndarray) -> np.ndarray:
    """The synthetic corpora's float -> int16 (x 32767: waveform.CORPUS_PCM_SCALE)."""
    return waveform.to_int16(wave, waveform.CORPUS_PCM_SCALE)


def write_wav(path, wave: np.ndarray, sample_rate: int) -> None:
    """A synthetic corpus's 16-bit PCM mono wav (mini_jsut, synth_ja, synth_eval), written atomically."""
    write_pcm16(path, to_int16(wave), sample_rate)


# --------------------------------------------------------------------------- sentences


def read_sentences(path=None) -> list[tuple[str, str]]:
    """`ID:text` lines -> [(utt_id, text)] in file order; ids must be JSUT ids, both unique."""
    path = Path(path) if path is not None else DEFAULT_SENTENCES
    if not path.is_file():
        raise AsrdemoError(f"sentence list not found: {path}")
    out, seen_ids, seen_texts = [], {}, {}
    for lineno, line in enumerate(read_lines(path), 1):  # "\n" only, BOM removed
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        utt_id, sep, text = line.partition(":")
        utt_id, text = utt_id.strip(), text.strip()
        where = f"{path}:{lineno}"
        if not sep or not text:
            raise AsrdemoError(f"{where}: expected `ID:text`, got {line!r}")
        try:
            subset_of(utt_id)
        except ValueError as e:
            raise AsrdemoError(f"{where}: {e}") from None
        if utt_id in seen_ids:
            raise AsrdemoError(f"{where}: id {utt_id} already used on line {seen_ids[utt_id]}")
        if text in seen_texts:
            raise AsrdemoError(f"{where}: sentence already used on line {seen_texts[text]}")
        seen_ids[utt_id], seen_texts[text] = lineno, lineno
        out.append((utt_id, text))
    if not out:
        raise AsrdemoError(f"{path}: no sentences")
    return out


def select_sentences(sentences, num_utts=None, subsets=None):
    """Restrict to `subsets`, then keep the first `num_utts` in file order (seed line kept)."""
    if subsets is not None:
        unknown = sorted(set(subsets) - set(SUBSETS))
        if unknown:
            raise AsrdemoError(f"unknown subset(s) {unknown}; JSUT's are {list(SUBSETS)}")
        sentences = [s for s in sentences if subset_of(s[0]) in subsets]
    if num_utts is not None:
        if num_utts < 1:
            raise AsrdemoError(f"--num_utts must be >= 1, got {num_utts}")
        head = sentences[:num_utts]
        seed_line = next((s for s in sentences if s[0] == SEED_UTT[0]), None)
        if seed_line is not None and seed_line not in head:  # the demo's test utterance stays
            head = [seed_line] + head[: num_utts - 1]
        sentences = head
    if not sentences:
        raise AsrdemoError("no sentences left after selecting subsets / num_utts")
    return sentences


# --------------------------------------------------------------------------- the corpus


def _synth_job(job):
    """Worker: render one utterance into its wav (atomically). Top-level, so spawn can pickle it."""
    utt_id, text, seed, wav_path = job
    rng = seeded_rng(seed, utt_id)
    rendering = draw_rendering(rng)
    try:
        wave = render(text, rendering, rng)
    except AsrdemoError as e:
        raise AsrdemoError(f"{utt_id}: {e}") from None
    write_wav(wav_path, wave, SAMPLE_RATE)
    return utt_id


def _run_jobs(jobs, nj):
    from tqdm import tqdm

    bar = dict(total=len(jobs), desc="synthesize", unit="utt", mininterval=1.0)
    if nj <= 1 or len(jobs) <= 1:
        yield from tqdm(map(_synth_job, jobs), **bar)
        return
    ctx = multiprocessing.get_context("spawn")  # no fork: pyopenjtalk holds a global engine + lock
    with ctx.Pool(min(nj, len(jobs))) as pool:
        yield from tqdm(pool.imap_unordered(_synth_job, jobs), **bar)


def _readme(n_utts: int, seed: int, minutes: float) -> str:
    return f"""This is a {README_MARK}, not the JSUT corpus.

It copies the layout of JSUT ver1.1 (https://sites.google.com/site/shinnosuketakamichi/publication/jsut)
so that the asrdemo recipe runs unchanged on it, but the speech is synthetic: pyopenjtalk-plus
(the HTS voice that ships in its wheel) read {n_utts} sentences written for asrdemo
(egs/mini_jsut/sentences.txt), rendered by eight pseudo-speakers with random speed, pitch,
timbre, room and noise (seed {seed}; {minutes:.1f} minutes of audio). pseudo_speakers.tsv
lists how each utterance was made. Only BASIC5000_0001's sentence is JSUT's own.

Made with:  asrdemo make_mini_jsut --seed {seed} --num_utts {n_utts}
Sentences: Apache-2.0, as the rest of asrdemo.
"""


def _check_ours(root: Path) -> None:
    """Refuse to touch a directory that holds something other than our synthetic corpus."""
    readme = root / "README.txt"
    if not root.exists() or not any(root.iterdir()):
        return
    ours = readme.is_file() and README_MARK in readme.read_text(encoding="utf-8", errors="replace")
    ours = ours or (root / ".synth_config.json").is_file()
    if not ours:
        raise AsrdemoError(
            f"{root} exists and is not a synthetic mini corpus (no asrdemo README.txt); "
            "refusing to overwrite it -- choose another --out_dir"
        )


def _remove_stale(root: Path, wanted: dict) -> None:
    """Delete wavs / subset folders of an earlier, different corpus and leftover temp files."""
    for subset in SUBSETS:
        sub_dir = root / subset
        if not sub_dir.is_dir():
            continue
        keep = wanted.get(subset, set())
        for tmp in sub_dir.glob("**/.*.tmp"):
            tmp.unlink()
        wav_dir = sub_dir / "wav"
        for wav in wav_dir.glob("*.wav") if wav_dir.is_dir() else ():
            if wav.stem not in keep:
                wav.unlink()
        if not keep:
            shutil.rmtree(sub_dir)


def make_corpus(out_dir, num_utts=None, seed=0, nj=2, subsets=None, sentences_file=None) -> Path:
    """Synthesize the mini corpus under `<out_dir>/jsut_ver1.1/`; returns that root.

    `num_utts`: the first N sentences in file order (BASIC5000_0001 always kept), None = all.
    `subsets`: restrict to these JSUT subset names. A finished corpus with the same settings
    is skipped (`.done`); an interrupted one resumes, keeping the wavs it already wrote.
    """
    t0 = time.time()
    sentences_path = Path(sentences_file) if sentences_file is not None else DEFAULT_SENTENCES
    chosen = select_sentences(read_sentences(sentences_path), num_utts=num_utts,
                              subsets=set(subsets) if subsets is not None else None)
    root = Path(out_dir) / CORPUS_NAME
    by_subset: dict[str, list] = {}
    for utt_id, text in chosen:
        by_subset.setdefault(subset_of(utt_id), []).append((utt_id, text))
    wav_rel = {u: f"{subset_of(u)}/wav/{u}.wav" for u, _ in chosen}
    required = ["README.txt", "pseudo_speakers.tsv",
                *(f"{s}/transcript_utf8.txt" for s in by_subset), *wav_rel.values()]
    config = {
        "synth_version": SYNTH_VERSION,
        "seed": int(seed),
        "utts_sha1": hashlib.sha1("\n".join(f"{u}:{t}" for u, t in chosen).encode("utf-8")).hexdigest(),
        "num_utts": len(chosen),
    }

    if done_with(root, config, required):
        logger.info("skipped: %s already holds these %d utterances (seed %d)", root, len(chosen), seed)
        return root
    if is_done(root, required):
        logger.info("%s holds a different mini corpus; re-making it", root)

    _check_ours(root)
    root.mkdir(parents=True, exist_ok=True)
    clear_done(root)
    # A wav depends only on (synth version, seed, id, text): keep every old wav that still
    # matches (a resumed run, or a larger --num_utts), delete the rest before synthesizing.
    config_path = root / ".synth_config.json"
    try:
        old = json.loads(config_path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        old = {}
    old_texts = old.get("texts", {}) if (old.get("synth_version"), old.get("seed")) == (SYNTH_VERSION, seed) else {}
    keep = {u for u, t in chosen if old_texts.get(u) == t}
    _remove_stale(root, {s: {u for u, _ in utts if u in keep} for s, utts in by_subset.items()})
    atomic_write_text(config_path, json.dumps({"synth_version": SYNTH_VERSION, "seed": int(seed),
                                               "texts": dict(chosen)}, ensure_ascii=False, indent=0) + "\n")
    jobs = [(u, t, int(seed), str(root / wav_rel[u])) for u, t in chosen if not (root / wav_rel[u]).is_file()]
    jobs.sort(key=lambda j: -len(j[1]))  # long ones first: less waiting on the last worker
    if len(jobs) < len(chosen):
        logger.info("reusing %d of %d wavs already there (same seed and text)", len(chosen) - len(jobs), len(chosen))
    logger.info("synthesizing %d utterances with nj=%d into %s", len(jobs), nj, root)
    for _ in _run_jobs(jobs, nj):
        pass

    for subset, utts in by_subset.items():
        atomic_write_lines(root / subset / "transcript_utf8.txt", (f"{u}:{t}" for u, t in sorted(utts)))
    minutes = _write_pseudo_speakers(root, sorted(u for u, _ in chosen), wav_rel, seed) / 60.0
    atomic_write_text(root / "README.txt", _readme(len(chosen), seed, minutes))
    elapsed = time.time() - t0
    mark_done(root, **config, minutes=round(minutes, 2), seconds=round(elapsed, 1), nj=nj)
    logger.info("wrote %d utterances (%.1f min of audio, %d subsets) to %s in %.1f s",
                len(chosen), minutes, len(by_subset), root, elapsed)
    return root


def _write_pseudo_speakers(root: Path, utt_ids, wav_rel, seed) -> float:
    """pseudo_speakers.tsv: each utterance's duration and rendering; returns the total seconds.

    A rendering depends only on (seed, utt id), so it is re-drawn here rather than carried
    back from the workers -- which also covers wavs kept from an interrupted run.
    """
    import soundfile as sf

    columns = ["utt_id", "duration", *Rendering.__dataclass_fields__]
    rows, total = ["\t".join(columns)], 0.0
    for u in utt_ids:
        duration = sf.info(str(root / wav_rel[u])).duration
        total += duration
        rec = {"utt_id": u, "duration": duration, **asdict(draw_rendering(seeded_rng(seed, u)))}
        rows.append("\t".join(f"{rec[c]:.3f}" if isinstance(rec[c], float) else str(rec[c]) for c in columns))
    atomic_write_lines(root / "pseudo_speakers.tsv", rows)
    return total


def write_sample(path, text: str = SEED_UTT[1], sample_rate: int = 16000, seed: int = 0,
                 speaker=HELDOUT_VOICE.name, snr_db: float = 35.0) -> Path:
    """One clean-ish utterance for the demo: a voice the corpus never uses, light white noise."""
    import soxr

    wave, sr = synthesize(text, seed=seed, speaker=speaker, augment=False)
    if snr_db is not None and math.isfinite(snr_db):
        rng = seeded_rng(seed, "sample-noise")
        start, end = speech_bounds(wave)
        power = np.mean(wave[start:end].astype(np.float64) ** 2)
        wave = wave + (rng.standard_normal(len(wave)) * snr_gain(power, snr_db)).astype(np.float32)
    if sample_rate != sr:
        wave = soxr.resample(wave, sr, sample_rate, quality="VHQ")
    wave = wave * min(1.0, 0.98 / (np.max(np.abs(wave)) + 1e-12))
    write_wav(path, wave, sample_rate)
    return Path(path)


# --------------------------------------------------------------------------- CLI


def add_arguments(parser):
    parser.add_argument("--out_dir", default="downloads",
                        help="the corpus goes to OUT_DIR/jsut_ver1.1 (default: downloads)")
    parser.add_argument("--num_utts", type=int, default=None,
                        help="first N sentences of the list (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of voices, speeds, noise (default 0)")
    parser.add_argument("--nj", type=int, default=2, help="parallel synthesis processes (default 2)")
    parser.add_argument("--subsets", default=None,
                        help=f"comma-separated JSUT subsets to make (default: all of {','.join(SUBSETS)})")
    parser.add_argument("--sentences", default=None,
                        help="ID:text sentence list (default: egs/mini_jsut/sentences.txt)")
    parser.add_argument("--sample_out", default=None,
                        help="instead of the corpus, write one clean-ish sample wav here")
    parser.add_argument("--sample_text", default=SEED_UTT[1], help="text of the sample")
    parser.add_argument("--sample_rate", type=int, default=16000, help="sample's rate (default 16000)")


def main(args):
    if args.sample_out:
        t0 = time.time()
        path = write_sample(args.sample_out, text=args.sample_text, sample_rate=args.sample_rate, seed=args.seed)
        logger.info("wrote %s (%r, voice %s, %d Hz) in %.1f s",
                    path, args.sample_text, HELDOUT_VOICE.name, args.sample_rate, time.time() - t0)
        return
    subsets = [s for s in args.subsets.split(",") if s] if args.subsets else None
    make_corpus(args.out_dir, num_utts=args.num_utts, seed=args.seed, nj=args.nj,
                subsets=subsets, sentences_file=args.sentences)
