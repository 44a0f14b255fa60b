"""The offline mini corpus: sentence list, JSUT layout, determinism, voices, resume, CLI sample.

Synthesizes 12 short utterances in all (about 10-20 s on a shared 2-core machine).
"""

import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asrdemo.data import mini_jsut
from asrdemo.data.mini_jsut import (
    DEFAULT_SENTENCES, SAMPLE_RATE, SUBSETS, Rendering, draw_rendering, make_corpus, read_sentences,
    render, select_sentences, subset_of, synthesize,
)
from asrdemo.data.waveform import seeded_rng
from asrdemo.errors import AsrdemoError

REPO = Path(__file__).resolve().parents[1]
SEED_LINE = "BASIC5000_0001:水をマレーシアから買わなくてはならないのです。"
JSUT_ID = re.compile(
    r"BASIC5000_\d{4}|COUNTERSUFFIX26_\d{2}|LOANWORD128_\d{3}|ONOMATOPEE300_\d{3}|PRECEDENT130_\d{3}"
    r"|REPEAT500_set\d_\d{3}|TRAVEL1000_\d{4}|UT-PARAPHRASE-sent\d{3}-phrase\d|VOICEACTRESS100_\d{3}"
)
# Short sentences of the shipped list, from five subsets; the last is cut off by num_utts=5.
CORPUS_IDS = ["BASIC5000_0001", "REPEAT500_set1_012", "TRAVEL1000_0033",
              "UT-PARAPHRASE-sent004-phrase1", "COUNTERSUFFIX26_08", "ONOMATOPEE300_010"]


def f0_median(wave, sr):
    """Median F0 (Hz) of the loudest frames by normalized autocorrelation, searched in 70-500 Hz."""
    import soxr

    x = soxr.resample(wave.astype(np.float64), sr, 16000)
    frame, hop = 640, 320
    frames = np.stack([x[i:i + frame] for i in range(0, len(x) - frame, hop)])
    energy = np.sum(frames**2, axis=1)
    f0s = []
    for fr in frames[energy > np.percentile(energy, 60)]:
        fr = fr - fr.mean()
        ac = np.correlate(fr, fr, "full")[frame - 1:]
        lo, hi = 16000 // 500, 16000 // 70
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.4 * ac[0]:
            f0s.append(16000 / lag)
    assert len(f0s) > 5, "no voiced frames found"
    return float(np.median(f0s))


def spectral_centroid(wave, sr, fmax=8000.0):
    spec = np.abs(np.fft.rfft(wave.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(wave), 1.0 / sr)
    band = f < fmax
    return float(np.sum(spec[band] * f[band]) / np.sum(spec[band]))


# ----------------------------------------------------------------------------- sentence list


def test_sentence_list_is_jsut_like_and_unique():
    raw = DEFAULT_SENTENCES.read_text(encoding="utf-8").splitlines()
    assert raw[0] == SEED_LINE
    sentences = read_sentences()  # also validates ids and uniqueness
    assert len(sentences) == len(raw) >= 330
    ids = [u for u, _ in sentences]
    texts = [t for _, t in sentences]
    assert len(set(ids)) == len(ids) and len(set(texts)) == len(texts)
    assert all(JSUT_ID.fullmatch(u) for u in ids)
    assert {subset_of(u) for u in ids} == set(SUBSETS)
    assert all(8 <= len(t) <= 40 and t[-1] in "。？" for t in texts)
    # the first 50 lines already mix subsets, so a small --num_utts is not all basic5000
    assert len({subset_of(u) for u in ids[:50]}) >= 5


def test_select_sentences_keeps_seed_and_checks_input(tmp_path):
    sentences = read_sentences()
    assert select_sentences(sentences, num_utts=7) == sentences[:7]
    travel = select_sentences(sentences, num_utts=3, subsets={"travel1000"})
    assert [subset_of(u) for u, _ in travel] == ["travel1000"] * 3
    shuffled = sentences[1:10] + sentences[:1]
    assert select_sentences(shuffled, num_utts=4)[0][0] == "BASIC5000_0001"
    with pytest.raises(AsrdemoError, match="unknown subset"):
        select_sentences(sentences, subsets={"basic500"})
    with pytest.raises(AsrdemoError, match="num_utts"):
        select_sentences(sentences, num_utts=0)

    bad = tmp_path / "bad.txt"
    bad.write_text("BASIC5000_0001:一つ目の文です。\nBASIC5000_0002:一つ目の文です。\n", encoding="utf-8")
    with pytest.raises(AsrdemoError, match=r"bad.txt:2: sentence already used on line 1"):
        read_sentences(bad)
    bad.write_text("BASIC_0001:文です。\n", encoding="utf-8")
    with pytest.raises(AsrdemoError, match=r"bad.txt:1: .*not a JSUT"):
        read_sentences(bad)


# ----------------------------------------------------------------------------- the corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """5 utterances of 5 subsets, made by 2 spawned worker processes."""
    base = tmp_path_factory.mktemp("mini")
    by_id = dict(read_sentences())
    sentences = base / "sentences.txt"
    sentences.write_text("".join(f"{u}:{by_id[u]}\n" for u in CORPUS_IDS), encoding="utf-8")
    root = make_corpus(base / "downloads", num_utts=5, seed=0, nj=2, sentences_file=sentences)
    return root, sentences, by_id


def test_layout_matches_jsut(corpus):
    root, _, by_id = corpus
    assert root.name == "jsut_ver1.1" and (root / ".done").is_file()
    assert "synthetic" in (root / "README.txt").read_text(encoding="utf-8")
    made = CORPUS_IDS[:5]
    subsets = sorted(subset_of(u) for u in made)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == subsets
    seen = []
    for subset in subsets:
        lines = (root / subset / "transcript_utf8.txt").read_text(encoding="utf-8").splitlines()
        wavs = sorted(p.stem for p in (root / subset / "wav").iterdir())
        assert [line.split(":", 1)[0] for line in lines] == wavs  # one wav per line, nothing else
        for line in lines:
            utt_id, text = line.split(":", 1)
            assert text == by_id[utt_id] and subset_of(utt_id) == subset
            info = sf.info(str(root / subset / "wav" / f"{utt_id}.wav"))
            assert (info.samplerate, info.channels, info.subtype, info.format) == (48000, 1, "PCM_16", "WAV")
            assert 1.0 < info.duration < 10.0
            seen.append(utt_id)
    assert sorted(seen) == sorted(made)  # num_utts=5 left out the sixth line
    tsv = (root / "pseudo_speakers.tsv").read_text(encoding="utf-8").splitlines()
    assert tsv[0].startswith("utt_id\tduration\tspeaker") and len(tsv) == 6


def test_same_seed_same_bytes_in_any_process(corpus, tmp_path):
    root, sentences, by_id = corpus
    # two of the utterances again, in this process (nj=1) and restricted by `subsets`
    other = make_corpus(tmp_path, seed=0, nj=1, subsets=["repeat500", "travel1000"], sentences_file=sentences)
    assert sorted(p.name for p in other.iterdir() if p.is_dir()) == ["repeat500", "travel1000"]
    for utt_id in ("REPEAT500_set1_012", "TRAVEL1000_0033"):
        rel = f"{subset_of(utt_id)}/wav/{utt_id}.wav"
        assert (other / rel).read_bytes() == (root / rel).read_bytes()
    # different utterances and a different seed give different audio
    waves = {u: sf.read(str(root / subset_of(u) / "wav" / f"{u}.wav"))[0] for u in CORPUS_IDS[:5]}
    assert len({w.tobytes() for w in waves.values()}) == 5
    u = "TRAVEL1000_0033"
    reseeded, _ = synthesize(by_id[u], seed=1, key=u)
    seed0, _ = synthesize(by_id[u], seed=0, key=u)
    assert np.array_equal(mini_jsut.to_int16(seed0), sf.read(str(root / subset_of(u) / "wav" / f"{u}.wav"), dtype="int16")[0])
    assert len(reseeded) != len(seed0) or not np.allclose(reseeded, seed0)


def test_done_skips_and_interrupted_run_resumes(corpus, caplog):
    root, sentences, _ = corpus
    wavs = sorted(root.glob("*/wav/*.wav"))
    mtimes = {p: p.stat().st_mtime_ns for p in wavs}
    with caplog.at_level(logging.INFO, logger="asrdemo.data.mini_jsut"):
        make_corpus(root.parent, num_utts=5, seed=0, nj=2, sentences_file=sentences)
    assert "skipped" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in wavs} == mtimes

    # as if killed: .done gone, one wav missing, a temp file left behind
    (root / ".done").unlink()
    lost = root / "basic5000" / "wav" / "BASIC5000_0001.wav"
    lost_bytes = lost.read_bytes()
    lost.unlink()
    leftover = root / "basic5000" / "wav" / ".BASIC5000_0001.wav.abc123.tmp"
    leftover.write_bytes(b"half a wav")
    stale = root / "basic5000" / "wav" / "BASIC5000_0999.wav"  # from some other sentence list
    stale.write_bytes(lost_bytes)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="asrdemo.data.mini_jsut"):
        make_corpus(root.parent, num_utts=5, seed=0, nj=1, sentences_file=sentences)
    assert "reusing 4 of 5" in caplog.text
    assert lost.read_bytes() == lost_bytes and not leftover.exists() and not stale.exists()
    assert (root / ".done").is_file()
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items() if p != lost)


def test_refuses_to_overwrite_a_real_corpus(tmp_path):
    real = tmp_path / "jsut_ver1.1"
    (real / "basic5000").mkdir(parents=True)
    (real / "README.txt").write_text("JSUT corpus ver1.1\n", encoding="utf-8")
    with pytest.raises(AsrdemoError, match="refusing to overwrite"):
        make_corpus(tmp_path, num_utts=1)
    assert (real / "basic5000").is_dir()


# ----------------------------------------------------------------------------- voices


def _key_with(pred, seed=0):
    """First utterance key whose drawn rendering satisfies `pred` (drawing is cheap, no audio)."""
    for i in range(5000):
        key = f"key{i}"
        if pred(draw_rendering(seeded_rng(seed, key))):
            return key
    raise AssertionError("no key found")


def test_pseudo_speakers_differ_in_pitch_and_speed():
    text = "今日は晴れています。"
    clean = lambda r: r.snr_db > 32 and r.room_rt60_s == 0 and r.noise != "babble"  # noqa: E731
    low_slow = _key_with(lambda r: r.speaker == "spk4" and r.speed < 0.92 and clean(r))
    high_fast = _key_with(lambda r: r.speaker == "spk6" and r.speed > 1.08 and clean(r))
    results = {}
    for key in (low_slow, high_fast):
        r = draw_rendering(seeded_rng(0, key))
        wave, sr = synthesize(text, seed=0, key=key)
        assert sr == SAMPLE_RATE and wave.dtype == np.float32 and np.max(np.abs(wave)) <= 1.0
        speech_s = len(wave) / sr - r.lead_s - r.trail_s
        results[key] = (f0_median(wave, sr), speech_s)
    (f0_low, dur_slow), (f0_high, dur_fast) = results[low_slow], results[high_fast]
    assert f0_high / f0_low > 1.5  # spk6 sits 12 semitones above spk4 (+-1 of jitter)
    assert dur_slow / dur_fast > 1.12  # speed < 0.92 vs > 1.08


def test_warp_moves_formants_not_pitch_or_tempo():
    """The resample warp is pre-compensated in the synthesizer: only the spectral envelope moves."""
    text = "今日は晴れています。"
    base = dict(speaker="x", half_tone=0.0, tilt=0.0, speed=1.0, lead_s=0.1, trail_s=0.1,
                room_rt60_s=0.0, noise="none", snr_db=99.0, level_dbfs=-24.0)
    short_tract = mini_jsut._voice_tts(text, Rendering(warp=1.12, **base))
    long_tract = mini_jsut._voice_tts(text, Rendering(warp=0.88, **base))
    assert spectral_centroid(short_tract, SAMPLE_RATE) / spectral_centroid(long_tract, SAMPLE_RATE) > 1.08
    assert 0.92 < f0_median(short_tract, SAMPLE_RATE) / f0_median(long_tract, SAMPLE_RATE) < 1.08
    assert 0.98 < len(short_tract) / len(long_tract) < 1.02
    # and render() turns it into a bounded float32 wave with the requested silences around it
    wave = render(text, Rendering(warp=1.12, **base), np.random.default_rng(0))
    assert wave.dtype == np.float32 and np.max(np.abs(wave)) <= 0.98
    assert abs(20 * np.log10(np.sqrt(np.mean(wave.astype(np.float64) ** 2))) - (-24.0)) < 0.1
    assert np.all(wave[: int(0.1 * SAMPLE_RATE)] == 0)


# ----------------------------------------------------------------------------- CLI


def test_cli_writes_the_demo_sample(tmp_path):
    out = tmp_path / "s" / "test.wav"
    proc = subprocess.run(
        [sys.executable, "-m", "asrdemo", "make_mini_jsut", "--sample_out", str(out), "--sample_rate", "16000"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stderr and str(out) in proc.stderr
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert 2.0 < info.duration < 5.0
    # the shipped sample is what this command writes (see sample/README.md); bit-exact here,
    # allowed a few LSB elsewhere (SIMD / FFT rounding differs between CPUs)
    made, _ = sf.read(str(out), dtype="int16")
    shipped, _ = sf.read(str(REPO / "sample" / "test.wav"), dtype="int16")
    assert made.shape == shipped.shape
    assert np.max(np.abs(made.astype(np.int32) - shipped)) <= 4


def test_cli_reports_bad_input(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "asrdemo", "make_mini_jsut", "--out_dir", str(tmp_path), "--subsets", "nope"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1 and "unknown subset" in proc.stderr and "Traceback" not in proc.stderr
