"""The offline training corpus (`./run.sh --corpus synth_ja`): generated sentences, many voices.

`make_corpus(out_dir, hours, seed, nj)` writes, in JSUT ver1.1's layout so that every later
stage runs unchanged,

    <out>/jsut_ver1.1/README.txt                       what this is and how it was made
    <out>/jsut_ver1.1/renderings.tsv                   voice, speed, pitch, warp, room, noise ... per utterance
    <out>/jsut_ver1.1/basic5000/transcript_utf8.txt    `SYNTH_000123:text` lines
    <out>/jsut_ver1.1/basic5000/wav/SYNTH_000123.wav   16 kHz, 16-bit PCM, mono

The text comes from `asrdemo.data.sentence_gen` (the project's own generator; no evaluation
sentence can appear). Each utterance is read by one training voice (`asrdemo.data.voices`:
two HTS voices, three kokoro voices; the kokoro share is set in hours because kokoro is ~30x
slower) and made into a new speaker and a new recording: speed, pitch, vocal-tract warp
(resampling, the synthesizer pre-compensating duration and pitch), spectral tilt, a synthetic
room, white/pink/babble noise at a random SNR, telephone band (8 kHz) copies, level changes
and clipping. A small share (`--nonspeech_ratio`) are non-speech: white or pink noise alone at
any level, with an empty transcript, so the model learns that noise is not a sentence. All of
it is drawn from (seed, utterance id), so the corpus is the same byte for byte whatever the
number of workers, and a killed run resumes where it stopped (finished wavs are kept; each is
written atomically).
"""

import json
import logging
import math
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from asrdemo.data import voices
from asrdemo.data.sentence_gen import DEFAULT_FREE_RATIO
from asrdemo.data.mini_jsut import write_wav
from asrdemo.data.waveform import (change_gender, corpus_noise, lossy_codec, room, seeded_rng, set_level,
                                    shoebox_room, snr_gain, spectral_tilt, speech_bounds)
from asrdemo.errors import AsrdemoError
from asrdemo.utils.io import atomic_write_lines, atomic_write_text, clear_done, done_with, mark_done

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # the features' rate: no 48 kHz files to store and resample
CORPUS_NAME = "jsut_ver1.1"
SUBSET = "basic5000"
SECONDS_PER_CHAR = 0.16  # average speech per character of generated text (measured on mei/kokoro)
README_MARK = "synthetic corpus made by asrdemo make_synth_ja"
SYNTH_VERSION = 4  # 2: free sentences (sentence_gen.free_ratio); 3: non-speech utterances;
# 4: converted speakers, simulated shoebox rooms, lossy codecs (`draw_rendering`'s `more`)
NONSPEECH = "nonspeech"  # the "voice" of a noise-only utterance (empty transcript)
DEFAULT_NONSPEECH_RATIO = 0.03


@dataclass
class Rendering:
    """Everything that decides one utterance's audio (one row of renderings.tsv)."""

    voice: str
    speed: float  # > 1 faster
    half_tone: float  # pitch shift (HTS voices)
    warp: float  # formant (and, for kokoro, pitch) scale; > 1 = shorter vocal tract
    tilt: float  # y[n] = x[n] - tilt * x[n-1]
    lead_s: float
    trail_s: float
    room_rt60_s: float  # 0 = dry
    noise: str  # none | white | pink | babble
    snr_db: float
    telephone: bool  # band-limited to 8 kHz sampling
    level_dbfs: float
    clip: float  # peak / full scale before clipping (<= 1: no clipping)
    # version 4; the defaults are what versions <= 3 (and the evaluation sets) do
    gender_formant: float = 1.0  # Praat's "Change gender": formant ratio (1: no conversion)
    gender_pitch_hz: float = 0.0  # ... and the new median pitch (0: keep)
    room_kind: str = "synthetic"  # synthetic (decaying-noise response) | shoebox (pyroomacoustics)
    codec: str = "none"  # none | ogg | mp3: a lossy copy
    codec_quality: float = 1.0  # 0..1


def draw_rendering(rng: np.random.Generator, voice: str, more: np.random.Generator = None) -> Rendering:
    """Per-utterance variety: a new pseudo-speaker and a new recording condition. A non-speech
    utterance draws only its noise (white or pink), length (`lead_s`, 0.5-6 s), band and level
    (-70 to -12 dBFS: from a quiet room to a loud hiss).

    `more` (corpus version 4; None: version 3's renderings, drawn from `rng` exactly as before)
    draws from its own generator, so `rng`'s draws stay those of version 3: 30 % of speech
    utterances become another speaker (Praat's change-gender: a female voice gets formants x
    0.80-0.92 and a median pitch of 85-150 Hz, the male m001 formants x 1.10-1.22 and 170-270 Hz;
    the only male voice in training is HTS, and the unseen male neural voice is the worst one),
    every room is a simulated shoebox (pyroomacoustics) instead of the decaying-noise response,
    and 6 % go through a lossy codec (Vorbis or MP3)."""
    r = _draw_v3(rng, voice)
    if more is None or voice == NONSPEECH:
        return r
    if more.random() < 0.3:
        male = voice in voices.MALE_VOICES
        r.gender_formant = float(more.uniform(1.10, 1.22) if male else more.uniform(0.80, 0.92))
        r.gender_pitch_hz = float(more.uniform(170.0, 270.0) if male else more.uniform(85.0, 150.0))
    if r.room_rt60_s > 0:
        r.room_kind = "shoebox"
    if more.random() < 0.06:
        r.codec = str(more.choice(["ogg", "mp3"]))
        r.codec_quality = float(more.uniform(0.0, 0.6))
    return r


def _draw_v3(rng: np.random.Generator, voice: str) -> Rendering:
    if voice == NONSPEECH:
        return Rendering(voice=voice, speed=1.0, half_tone=0.0, warp=1.0, tilt=0.0,
                         lead_s=float(rng.uniform(0.5, 6.0)), trail_s=0.0, room_rt60_s=0.0,
                         noise=str(rng.choice(["white", "pink"])), snr_db=-math.inf,
                         telephone=bool(rng.random() < 0.08), level_dbfs=float(rng.uniform(-70.0, -12.0)),
                         clip=float(rng.uniform(1.2, 3.0)) if rng.random() < 0.04 else 1.0)
    hts = voice in voices.HTS_VOICES
    noise = str(rng.choice(["none", "white", "pink", "babble"], p=[0.3, 0.25, 0.25, 0.2]))
    return Rendering(
        voice=voice,
        speed=float(rng.uniform(0.8, 1.25)),
        half_tone=float(rng.uniform(-4.0, 4.0)) if hts else 0.0,
        warp=float(rng.uniform(0.86, 1.14) if hts else rng.uniform(0.9, 1.1)),
        tilt=float(rng.uniform(-0.4, 0.5)),
        lead_s=float(rng.uniform(0.05, 0.5)),
        trail_s=float(rng.uniform(0.05, 0.5)),
        room_rt60_s=float(rng.uniform(0.15, 0.7)) if rng.random() < 0.3 else 0.0,
        noise=noise,
        snr_db=float(rng.uniform(5.0, 35.0)) if noise != "none" else math.inf,
        telephone=bool(rng.random() < 0.08),
        level_dbfs=float(rng.uniform(-38.0, -14.0)),
        clip=float(rng.uniform(1.2, 3.0)) if rng.random() < 0.04 else 1.0,
    )


def render(text: str, r: Rendering, rng: np.random.Generator, evaluation: bool = False) -> np.ndarray:
    """Synthesize `text` as `r` says: float32 wave in [-1, 1] at SAMPLE_RATE.

    The warp resamples the synthesizer's output from sr*warp to SAMPLE_RATE, which scales every
    frequency by `warp` and the duration by 1/warp; speed (and the HTS pitch) are pre-compensated
    so only the formants move for HTS voices (kokoro has no pitch control: its pitch moves too).
    """
    import soxr

    if r.voice == NONSPEECH:
        n = int(r.lead_s * SAMPLE_RATE)
        return _finish(corpus_noise(r.noise, n, np.zeros(0), rng, SAMPLE_RATE), r)
    hts = r.voice in voices.HTS_VOICES
    half_tone = r.half_tone - 12.0 * math.log2(r.warp) if hts else 0.0
    wave, sr = voices.tts(r.voice, text, speed=r.speed / r.warp, half_tone=half_tone, evaluation=evaluation)
    start, end = speech_bounds(wave, frame=sr // 100)
    wave = soxr.resample(wave[start:end], sr * r.warp, SAMPLE_RATE, quality="HQ")
    if r.gender_formant != 1.0:
        wave = change_gender(wave, SAMPLE_RATE, r.gender_formant, r.gender_pitch_hz, seed=int(rng.integers(2**31)))
    if r.tilt:
        wave = spectral_tilt(wave, r.tilt)
    speech = wave
    wave = np.concatenate([np.zeros(int(r.lead_s * SAMPLE_RATE)), speech, np.zeros(int(r.trail_s * SAMPLE_RATE))])
    if r.room_rt60_s > 0:
        wave = (shoebox_room if r.room_kind == "shoebox" else room)(wave, r.room_rt60_s, rng, SAMPLE_RATE)
    if r.noise != "none":
        noise = corpus_noise(r.noise, len(wave), speech, rng, SAMPLE_RATE)
        wave = wave + noise * snr_gain(np.mean(speech**2), r.snr_db)
    return _finish(wave, r)


def _finish(wave: np.ndarray, r: Rendering) -> np.ndarray:
    """The channel: telephone band, lossy codec, level, clipping -> float32 in [-1, 1]."""
    import soxr

    if r.telephone:
        wave = soxr.resample(soxr.resample(wave, SAMPLE_RATE, 8000), 8000, SAMPLE_RATE)
    if r.codec != "none":  # at half of full scale: an encoder clips what exceeds it; the level is set next
        wave = lossy_codec(wave * (0.5 / (np.max(np.abs(wave)) + 1e-12)), SAMPLE_RATE, r.codec, r.codec_quality)
    wave = set_level(wave, r.level_dbfs)
    peak = np.max(np.abs(wave)) + 1e-12
    if r.clip > 1.0:
        wave = np.clip(wave * (r.clip / peak), -1.0, 1.0)
    elif peak > 0.98:
        wave *= 0.98 / peak
    return wave.astype(np.float32)


# --------------------------------------------------------------------------- the corpus plan


def plan(hours: float, seed: int, kokoro_hours: float, free_ratio: float = DEFAULT_FREE_RATIO,
         nonspeech_ratio: float = DEFAULT_NONSPEECH_RATIO) -> list:
    """[(utt_id, text, voice)] whose estimated duration adds up to `hours`, `kokoro_hours` of it kokoro,
    then `nonspeech_ratio` x as many non-speech utterances (`SYNTH_N000000`..., text "", voice
    NONSPEECH; their own ids, so adding them keeps every speech utterance's id).

    Voices are assigned in a fixed rotation (HTS: mei, m001; kokoro: its three training voices),
    so the plan depends only on (hours, seed, kokoro_hours, free_ratio, nonspeech_ratio).
    """
    from asrdemo.data.sentence_gen import generate

    if hours <= 0:
        raise AsrdemoError(f"--hours must be > 0, got {hours}")
    kokoro_hours = min(max(kokoro_hours, 0.0), hours)
    est_utt_s = 22 * SECONDS_PER_CHAR + 0.55
    n = max(int(hours * 3600 / est_utt_s * 1.3) + 50, 60)
    sentences = generate(n, seed, free_ratio)
    out, total_s, kokoro_s, k_hts, k_kok = [], 0.0, 0.0, 0, 0
    kokoro_every = max(1, round(hours / kokoro_hours)) if kokoro_hours > 0 else 0
    for i, text in enumerate(sentences):
        dur = len(text) * SECONDS_PER_CHAR + 0.55
        use_kokoro = kokoro_every and i % kokoro_every == 0 and kokoro_s < kokoro_hours * 3600
        if use_kokoro:
            voice = voices.KOKORO_TRAIN_VOICES[k_kok % len(voices.KOKORO_TRAIN_VOICES)]
            k_kok += 1
            kokoro_s += dur
        else:
            voice = voices.HTS_VOICES[k_hts % len(voices.HTS_VOICES)]
            k_hts += 1
        out.append((f"SYNTH_{i:06d}", text, voice))
        total_s += dur
        if total_s >= hours * 3600:
            break
    return out + [(f"SYNTH_N{i:06d}", "", NONSPEECH) for i in range(round(max(nonspeech_ratio, 0.0) * len(out)))]


def _draw(seed: int, utt_id: str, voice: str, version: int) -> tuple:
    """(the rendering of `utt_id` in corpus `version`, the generator `render` goes on with)."""
    rng = seeded_rng(seed, utt_id)
    return draw_rendering(rng, voice, seeded_rng(seed, utt_id, "v4") if version >= 4 else None), rng


def _synth_job(job):
    """Worker: render one utterance into its wav (atomically); returns (utt_id, text, seconds, rendering)."""
    utt_id, text, voice, seed, version, wav_path = job
    r, rng = _draw(seed, utt_id, voice, version)
    try:
        wave = render(text, r, rng)
    except AsrdemoError as e:
        raise AsrdemoError(f"{utt_id}: {e}") from None
    write_wav(wav_path, wave, SAMPLE_RATE)
    return utt_id, text, len(wave) / SAMPLE_RATE, asdict(r)


def _init_worker():
    os.environ["OMP_NUM_THREADS"] = "1"


def _run(jobs, nj):
    from tqdm import tqdm

    bar = dict(total=len(jobs), desc="synthesize", unit="utt", mininterval=2.0)
    if nj <= 1:
        yield from tqdm(map(_synth_job, jobs), **bar)
        return
    if any(job[2] in voices.KOKORO_TRAIN_VOICES + voices.EVAL_VOICES for job in jobs):
        voices.prepare_kokoro()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(nj, initializer=_init_worker) as pool:
        yield from tqdm(pool.imap_unordered(_synth_job, jobs, chunksize=4), **bar)


def make_corpus(out_dir, hours: float = 10.0, seed: int = 0, nj: int = 2, kokoro_hours: float = None,
                free_ratio: float = DEFAULT_FREE_RATIO, nonspeech_ratio: float = DEFAULT_NONSPEECH_RATIO,
                version: int = SYNTH_VERSION) -> Path:
    """Synthesize the corpus under `<out_dir>/jsut_ver1.1/`; returns that path.

    `version` 3 makes the renderings of corpus version 3 (what the shipped model was trained on),
    4 adds converted speakers, simulated rooms and lossy codecs (`draw_rendering`).
    Resumable: wavs already written are kept when the plan gives their id the same text, voice
    and rendering. Skips entirely when `.done` records the same arguments. Raises AsrdemoError
    when `out_dir` holds something else, or for a version other than 3 or 4.
    """
    if version not in (3, 4):
        raise AsrdemoError(f"--synth_version must be 3 or 4, got {version}")
    root = Path(out_dir) / CORPUS_NAME
    if kokoro_hours is None:
        kokoro_hours = round(0.12 * hours, 3)
    args = {"hours": hours, "seed": seed, "kokoro_hours": kokoro_hours, "free_ratio": free_ratio,
            "nonspeech_ratio": nonspeech_ratio, "version": version}
    if done_with(root, args, (f"{SUBSET}/transcript_utf8.txt", "renderings.tsv")):
        logger.info("skipped: %s holds this corpus already", root)
        return root
    readme = root / "README.txt"
    if root.exists() and any(root.iterdir()) and not (readme.is_file() and README_MARK in readme.read_text(encoding="utf-8")):
        raise AsrdemoError(f"{root} exists and is not an asrdemo synthetic corpus; choose another --out_dir")
    clear_done(root)
    t0 = time.time()
    utts = plan(hours, seed, kokoro_hours, free_ratio, nonspeech_ratio)
    wav_dir = root / SUBSET / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    wanted = {u for u, _, _ in utts}
    for stale in wav_dir.iterdir():  # an earlier, larger or different plan; leftover temp files
        if stale.name.startswith(".") or stale.stem not in wanted:
            stale.unlink()
    atomic_write_text(readme, _readme(len(utts), hours, seed, kokoro_hours, free_ratio, nonspeech_ratio, version))
    log_path = root / "renderings.jsonl"  # appended as wavs finish, so a resumed run keeps the log
    done_rows = {}
    planned = {u: (t, v) for u, t, v in utts}
    if log_path.is_file():
        for line in log_path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill
            # a wav counts as made only if this plan gives its id the same text, voice and rendering
            text, voice = planned.get(row.get("utt_id"), (None, None))
            if voice == row.get("voice") and row.get("text", text) == text \
                    and _same_rendering(row, _draw(seed, row["utt_id"], voice, version)[0]) \
                    and (wav_dir / f"{row['utt_id']}.wav").is_file():
                done_rows[row["utt_id"]] = row
    jobs = [(u, t, v, seed, version, wav_dir / f"{u}.wav") for u, t, v in utts if u not in done_rows]
    jobs.sort(key=lambda j: j[2] in voices.HTS_VOICES)  # slow kokoro jobs first
    logger.info("synth_ja: %d utterances planned (%.1f h estimated, %.1f h kokoro), %d already made, %d to go",
                len(utts), hours, kokoro_hours, len(done_rows), len(jobs))
    with open(log_path, "a", encoding="utf-8") as log:
        for utt_id, text, seconds, r in _run(jobs, nj):
            row = {"utt_id": utt_id, "text": text, "seconds": round(seconds, 3), **r}
            done_rows[utt_id] = row
            log.write(json.dumps(row, ensure_ascii=False) + "\n")
            log.flush()
    texts = {u: t for u, t, _ in utts}
    atomic_write_lines(root / SUBSET / "transcript_utf8.txt", [f"{u}:{texts[u]}" for u in sorted(texts)])
    cols = list(Rendering.__dataclass_fields__)
    atomic_write_lines(root / "renderings.tsv", ["utt_id\tseconds\t" + "\t".join(cols)] +
                       [f"{u}\t{done_rows[u]['seconds']}\t" + "\t".join(str(done_rows[u][c]) for c in cols)
                        for u in sorted(done_rows)])
    total_h = sum(r["seconds"] for r in done_rows.values()) / 3600
    by_voice = {}
    for r in done_rows.values():
        by_voice[r["voice"]] = by_voice.get(r["voice"], 0.0) + r["seconds"] / 3600
    mark_done(root, **args, utterances=len(utts), audio_hours=round(total_h, 3),
              hours_by_voice={k: round(v, 3) for k, v in sorted(by_voice.items())})
    logger.info("synth_ja: wrote %s: %d utterances, %.2f h of audio (%s) in %.0f s", root, len(utts), total_h,
                ", ".join(f"{k} {v:.2f} h" for k, v in sorted(by_voice.items())), time.time() - t0)
    return root


def _same_rendering(row: dict, r: Rendering) -> bool:
    """A logged rendering (a renderings.jsonl row; a field it lacks had its default then) is `r`."""
    fields = Rendering.__dataclass_fields__
    return all(row.get(k, fields[k].default) == v for k, v in asdict(r).items())


def _readme(n: int, hours: float, seed: int, kokoro_hours: float, free_ratio: float, nonspeech_ratio: float,
            version: int) -> str:
    return f"""This is a {README_MARK}, not the JSUT corpus.

It copies the layout of JSUT ver1.1 so that the asrdemo recipe runs unchanged on it. The
{n} sentences were generated by asrdemo's own sentence generator (asrdemo/data/sentence_gen.py,
seed {seed}, {free_ratio:.0%} free sentences) and read offline by the training voices {', '.join(voices.TRAIN_VOICES)}
(kokoro's share {kokoro_hours} h of about {hours} h), each utterance with its own speed, pitch,
vocal-tract warp, tilt, room, noise, band and level (corpus version {version}: also speaker conversion
and lossy codecs when 4; renderings.tsv); {nonspeech_ratio:.0%} more are
non-speech (noise alone, empty transcript, ids SYNTH_N*). The voices
{', '.join(voices.EVAL_VOICES)} are reserved for evaluation and never appear here.

Made with:  asrdemo make_synth_ja --hours {hours} --seed {seed} --kokoro_hours {kokoro_hours} --free_ratio {free_ratio} --nonspeech_ratio {nonspeech_ratio} --synth_version {version}
"""


def add_arguments(parser):
    parser.add_argument("--out_dir", required=True, help="the corpus goes to OUT_DIR/jsut_ver1.1/")
    parser.add_argument("--hours", type=float, default=10.0, help="hours of speech to synthesize (estimated)")
    parser.add_argument("--kokoro_hours", type=float, default=None,
                        help="of which read by the kokoro voices (slow: ~1 s of audio per CPU-second); default 12%%")
    parser.add_argument("--free_ratio", type=float, default=DEFAULT_FREE_RATIO,
                        help="share of free (non-template) sentences (asrdemo/data/sentence_gen.py)")
    parser.add_argument("--nonspeech_ratio", type=float, default=DEFAULT_NONSPEECH_RATIO,
                        help="non-speech (noise-only, empty transcript) utterances per speech utterance")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--synth_version", type=int, default=SYNTH_VERSION, choices=(3, 4),
                        help="4: also converted speakers, simulated rooms and lossy codecs; 3: the renderings "
                             "the shipped model's corpora had")
    parser.add_argument("--nj", type=int, default=os.cpu_count() or 1)


def main(args):
    make_corpus(args.out_dir, hours=args.hours, seed=args.seed, nj=args.nj, kokoro_hours=args.kokoro_hours,
                free_ratio=args.free_ratio, nonspeech_ratio=args.nonspeech_ratio, version=args.synth_version)
