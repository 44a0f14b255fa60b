"""`asrdemo augment`: speed-perturbed and noisy copies of a data dir, checked on real wav files.

The input utterances are tone bursts (silence, a tone, silence) whose layout the tests know, so
lengths, pitch and SNR are measured here with plain numpy, independently of the code under test.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asrdemo.data.augment import (
    AugmentError, add_noise, augment_data_dir, make_noise, speed_perturb,
)
from asrdemo.data.datadir import Utterance, c_sorted, read_data_dir, read_kv, write_data_dir

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
LEAD, TONE, TAIL = 0.25, 0.75, 0.25  # seconds of silence, tone, silence
AMPLITUDE = 0.1
# (utt id, speaker, tone Hz, file rate); one 48 kHz file exercises resampling
SOURCES = [("A_001", "A", 300.0, SR), ("A_002", "A", 400.0, 48000), ("B_001", "B", 500.0, SR), ("B_002", "B", 600.0, SR)]


def tone_burst(freq, sr):
    t = np.arange(int(TONE * sr)) / sr
    return np.concatenate([np.zeros(int(LEAD * sr)), AMPLITUDE * np.sin(2 * np.pi * freq * t), np.zeros(int(TAIL * sr))])


def make_data_dir(root: Path) -> Path:
    utts = []
    for utt_id, spk, freq, sr in SOURCES:
        path = root / "wav" / f"{utt_id}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        wave = tone_burst(freq, sr)
        soundfile.write(path, wave, sr, subtype="PCM_16")
        utts.append(Utterance(utt_id, str(path), f"{utt_id}の文です", spk, len(wave) / sr))
    return write_data_dir(root / "data", utts)


def read_wav(path):
    wave, sr = soundfile.read(path, dtype="float64")
    assert sr == SR and wave.ndim == 1
    return wave


def peak_hz(wave, sr=SR):
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return np.fft.rfftfreq(len(wave), 1 / sr)[np.argmax(spectrum)]


def aug_info(out_dir):
    """utt2aug -> {utt: {"src": ..., "speed": ..., "noise": ..., "snr": ..., "gain": ...}}"""
    table = {}
    for utt, value in read_kv(Path(out_dir) / "utt2aug").items():
        src, *fields = value.split()
        table[utt] = dict(f.split("=", 1) for f in fields) | {"src": src}
    return table


def measured_snr(noisy, clean):
    """Speech power over the tone (the known active part) / power of what was added."""
    tone = clean[int(LEAD * SR): int((LEAD + TONE) * SR)]
    return 10 * np.log10(np.mean(tone**2) / np.mean((noisy - clean) ** 2))


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("src"))


@pytest.fixture(scope="module")
def augmented(src, tmp_path_factory):
    out = tmp_path_factory.mktemp("aug") / "train_sp"
    n = augment_data_dir(src, out, speeds=(0.9, 1.0, 1.1), noise_copies=3, snr_range=(5, 25), seed=0, nj=1)
    return out, n


def test_ids_counts_text_speakers_and_sorting(augmented):
    out, n = augmented
    ids = [u for u, *_ in SOURCES]
    expected = set(ids) | {f"{p}-{u}" for u in ids for p in ("sp0.9", "sp1.1", "noise1", "noise2", "noise3")}
    assert n == len(expected) == 24
    utts = {u.utt_id: u for u in read_data_dir(out)}  # validates: C-sorted, consistent files
    assert set(utts) == expected
    speakers = {u: s for u, s, _, _ in SOURCES}
    for utt_id, u in utts.items():
        prefix, _, orig = utt_id.rpartition("-") if "-" in utt_id else ("", "", utt_id)
        assert u.spk == (f"{prefix}-{speakers[orig]}" if prefix else speakers[orig])
        assert u.text == f"{orig}の文です"
        assert Path(u.wav).parent == out.absolute() / "wav"
        info = soundfile.info(u.wav)
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
        assert u.dur == pytest.approx(info.frames / SR, abs=0.0006)
    lines = (out / "utt2spk").read_text(encoding="utf-8").splitlines()
    assert lines == c_sorted(lines)
    # Kaldi's rule: utt2spk sorted by utterance is also sorted by speaker
    spks = [line.split()[1] for line in lines]
    assert spks == c_sorted(spks)
    assert sorted(os.listdir(out / "wav")) == sorted(f"{u}.wav" for u in expected)


def test_speed_copies_are_shorter_and_higher(augmented):
    out, _ = augmented
    for utt_id, _, freq, sr in SOURCES:
        base = read_wav(out / "wav" / f"{utt_id}.wav")
        assert len(base) == round(len(tone_burst(freq, sr)) * SR / sr)
        assert peak_hz(base) == pytest.approx(freq, abs=2)
        for f in (0.9, 1.1):
            copy = read_wav(out / "wav" / f"sp{f:g}-{utt_id}.wav")
            assert abs(len(copy) - len(base) / f) <= 1
            assert peak_hz(copy) == pytest.approx(freq * f, abs=2)


def test_speed_perturb_function():
    wave = tone_burst(1000.0, SR).astype(np.float32)
    fast = speed_perturb(wave, SR, 1.25)
    assert abs(len(fast) - len(wave) / 1.25) <= 1
    assert peak_hz(fast) == pytest.approx(1250, abs=2)
    np.testing.assert_array_equal(speed_perturb(wave, SR, 1.0), wave)
    with pytest.raises(AugmentError):
        speed_perturb(wave, SR, 0)


def test_noisy_copies_have_the_drawn_snr(augmented):
    out, _ = augmented
    info = aug_info(out)
    kinds = set()
    for utt, entry in info.items():
        if not utt.startswith("noise"):
            assert "noise" not in entry
            continue
        assert entry["speed"] == "1" and float(entry["gain"]) == 1.0
        snr = float(entry["snr"])
        assert 5 <= snr <= 25
        clean = read_wav(out / "wav" / f"{entry['src']}.wav")  # the 1.0 copy: same resampled samples
        noisy = read_wav(out / "wav" / f"{utt}.wav")
        assert len(noisy) == len(clean)
        assert measured_snr(noisy, clean) == pytest.approx(snr, abs=0.5), (utt, entry)
        kinds.add(entry["noise"].split(":")[0])
    assert len(kinds) >= 2  # the copies do not all use one noise
    snrs = [float(e["snr"]) for u, e in info.items() if u.startswith("noise")]
    assert len(set(snrs)) == len(snrs)  # drawn per copy


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "babble"])
def test_add_noise_reaches_the_snr_on_active_speech(kind):
    rng = np.random.default_rng(1)
    clean = tone_burst(440.0, SR)
    others = [tone_burst(f, SR) for f in (700.0, 900.0, 1100.0)]
    noise = make_noise(kind, len(clean), rng, others if kind == "babble" else None, sample_rate=SR)
    assert np.sqrt(np.mean(noise.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
    for snr in (0.0, 12.5, 30.0):
        noisy = add_noise(clean, noise, snr, frame=SR // 50)
        assert measured_snr(noisy, clean) == pytest.approx(snr, abs=0.5)
    if kind == "babble":  # the voices are in it
        spectrum = np.abs(np.fft.rfft(noise))
        freqs = np.fft.rfftfreq(len(noise), 1 / SR)
        top3 = sorted(freqs[np.argsort(spectrum)[-200:]])
        for f in (700.0, 900.0, 1100.0):
            assert min(abs(t - f) for t in top3) < 5


def test_noise_colors_have_their_spectral_slope():
    """Power per octave: white rises 3 dB, pink stays flat, brown falls 3 dB."""
    n = SR * 8

    def octave_ratio_db(wave):
        power = np.abs(np.fft.rfft(wave)) ** 2
        freqs = np.fft.rfftfreq(n, 1 / SR)
        low = power[(freqs >= 500) & (freqs < 1000)].sum()
        high = power[(freqs >= 1000) & (freqs < 2000)].sum()
        return 10 * np.log10(high / low)

    rng = np.random.default_rng(0)
    assert octave_ratio_db(make_noise("white", n, rng)) == pytest.approx(3.0, abs=0.5)
    assert octave_ratio_db(make_noise("pink", n, rng)) == pytest.approx(0.0, abs=0.5)
    assert octave_ratio_db(make_noise("brown", n, rng)) == pytest.approx(-3.0, abs=0.5)
    with pytest.raises(AugmentError, match="babble"):
        make_noise("babble", n, rng)
    with pytest.raises(AugmentError, match="unknown noise kind"):
        make_noise("purple", n, rng)


def test_same_seed_same_files_for_any_nj_other_seed_differs(src, augmented, tmp_path):
    out, _ = augmented
    again = tmp_path / "again"
    augment_data_dir(src, again, speeds=(0.9, 1.0, 1.1), noise_copies=3, snr_range=(5, 25), seed=0, nj=2)
    for name in ("text", "utt2spk", "spk2utt", "utt2dur", "utt2aug"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    for wav in os.listdir(out / "wav"):
        assert (again / "wav" / wav).read_bytes() == (out / "wav" / wav).read_bytes(), wav
    other = tmp_path / "other_seed"
    augment_data_dir(src, other, speeds=(1.0,), noise_copies=1, snr_range=(5, 25), seed=1, nj=1)
    assert (other / "wav" / "A_001.wav").read_bytes() == (out / "wav" / "A_001.wav").read_bytes()
    assert (other / "wav" / "noise1-A_001.wav").read_bytes() != (out / "wav" / "noise1-A_001.wav").read_bytes()


def test_second_run_is_skipped_and_other_settings_redo(src, tmp_path, caplog):
    out = tmp_path / "sp"
    assert augment_data_dir(src, out, speeds="0.9 1.0", noise_copies=1, seed=0) == 12
    stamps = {p.name: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    caplog.set_level("INFO")
    assert augment_data_dir(src, out, speeds="0.9,1.0", noise_copies=1, seed=0) == 12
    assert "skipped" in caplog.text
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps

    # other settings: redone, and the wavs of the old settings are removed
    assert augment_data_dir(src, out, speeds="1.0,1.1", noise_copies=0, seed=0) == 8
    names = set(os.listdir(out / "wav"))
    assert names == {f"{p}{u}.wav" for u, *_ in SOURCES for p in ("", "sp1.1-")}
    assert len(read_data_dir(out)) == 8


def test_bad_arguments_are_clear_errors(src, tmp_path):
    for kwargs, message in [
        ({"speeds": "0.9,abc"}, "--speeds"),
        ({"speeds": "0.9,0.9"}, "repeated"),
        ({"speeds": "3.0"}, "outside"),
        ({"snr_range": "30,10"}, "--snr_range"),
        ({"noise_copies": -1}, "--noise_copies"),
        ({"noise_dir": tmp_path / "nowhere"}, "no such directory"),
        ({"noise_dir": tmp_path}, "no .wav"),
    ]:
        with pytest.raises(AugmentError, match=message):
            augment_data_dir(src, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out" / ".done").exists()


def test_noise_dir_files_are_looped_segments_at_the_snr(src, tmp_path):
    noise_dir = tmp_path / "noise" / "sub"
    noise_dir.mkdir(parents=True)
    rng = np.random.default_rng(5)
    soundfile.write(noise_dir / "hum.wav", 0.3 * rng.standard_normal(2400), 8000, subtype="PCM_16")  # 0.3 s at 8 kHz
    soundfile.write(noise_dir / "fan.flac", 0.05 * rng.standard_normal((SR, 2)), SR)  # stereo flac
    out = tmp_path / "noisy"
    augment_data_dir(src, out, speeds=(1.0,), noise_copies=2, snr_range=(0, 20), noise_dir=tmp_path / "noise", seed=3)
    info = aug_info(out)
    used = set()
    for utt, entry in info.items():
        if utt.startswith("noise"):
            used.add(Path(entry["noise"].split("@")[0].removeprefix("file:")).name)
            clean = read_wav(out / "wav" / f"{entry['src']}.wav")
            noisy = read_wav(out / "wav" / f"{utt}.wav")
            assert measured_snr(noisy, clean) == pytest.approx(float(entry["snr"]), abs=0.5)
    assert used == {"hum.wav", "fan.flac"}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "asrdemo", "augment", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_and_corrupt_wav_names_the_utterance(tmp_path):
    data = make_data_dir(tmp_path / "src")
    out = tmp_path / "train_sp"
    ok = run_cli("--data_dir", data, "--out_dir", out, "--speeds", "1.0 1.1", "--noise_copies", "1", "--nj", "1")
    assert ok.returncode == 0, ok.stderr
    assert len(read_data_dir(out)) == 12 and (out / ".done").is_file()

    bad = tmp_path / "src" / "wav" / "B_001.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage, not a wav")
    out2 = tmp_path / "train_sp2"
    res = run_cli("--data_dir", data, "--out_dir", out2, "--nj", "2")
    assert res.returncode == 1
    assert "B_001" in res.stderr and str(bad) in res.stderr
    assert "Traceback" not in res.stderr
    assert not (out2 / ".done").exists() and not (out2 / "wav.scp").exists()
