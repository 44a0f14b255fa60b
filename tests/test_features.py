"""Stage 2 (`asrdemo fbank`): ark/scp output equals the frontend's, CMVN, --nj independence, errors."""

import subprocess
import sys

import kaldiio
import numpy as np
import soundfile as sf

from asrdemo.data import cmvn
from asrdemo.data.audio import load_audio
from asrdemo.data.datadir import Utterance, write_data_dir
from asrdemo.data.fbank import Fbank


def make_data_dir(root, n=5, sr=48000):
    rng = np.random.default_rng(0)
    utts = []
    for i in range(n):
        t = np.arange(int(sr * (0.5 + 0.1 * i))) / sr
        wave = 0.3 * np.sin(2 * np.pi * (200 + 100 * i) * t) + 0.01 * rng.standard_normal(len(t))
        path = root / "wav" / f"utt{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, wave, sr, subtype="PCM_16")
        utts.append(Utterance(f"utt{i}", str(path), f"テキスト{i}", "spk", len(t) / sr))
    return write_data_dir(root / "data", utts)


def run_fbank(data_dir, out_dir, *extra):
    return subprocess.run([sys.executable, "-m", "asrdemo", "fbank", "--data_dir", str(data_dir),
                           "--out_dir", str(out_dir), *extra], capture_output=True, text=True)


def test_fbank_stage(tmp_path):
    data = make_data_dir(tmp_path)
    r = run_fbank(data, tmp_path / "dump", "--nj", "2", "--cmvn")
    assert r.returncode == 0, r.stderr
    feats = dict(kaldiio.load_scp(str(tmp_path / "dump" / "feats.scp")))
    assert sorted(feats) == [f"utt{i}" for i in range(5)]
    fbank = Fbank()
    stats = None
    for i in range(5):
        wave, sr = load_audio(tmp_path / "wav" / f"utt{i}.wav", 16000)
        expected = fbank(wave)
        np.testing.assert_array_equal(feats[f"utt{i}"], expected)
        stats = cmvn.accumulate(stats, expected)
    assert (tmp_path / "dump" / "utt2num_frames").read_text().splitlines()[0] == f"utt0 {len(feats['utt0'])}"
    np.testing.assert_allclose(kaldiio.load_mat(str(tmp_path / "dump" / "cmvn.ark")), stats)
    for name in ("text", "utt2spk", "wav.scp", "frontend.yaml", ".done"):
        assert (tmp_path / "dump" / name).is_file()
    again = run_fbank(data, tmp_path / "dump", "--cmvn")
    assert again.returncode == 0 and "skipped" in again.stderr
    # a changed data dir makes the features stale
    text = data / "text"
    text.write_text(text.read_text().replace("テキスト0", "テキスト零"))
    redo = run_fbank(data, tmp_path / "dump", "--cmvn")
    assert redo.returncode == 0 and "skipped" not in redo.stderr and "changed" in redo.stderr
    assert "テキスト零" in (tmp_path / "dump" / "text").read_text()
    # --nj does not change the output
    assert run_fbank(data, tmp_path / "dump1", "--nj", "1").returncode == 0
    assert (tmp_path / "dump1" / "feats.ark").read_bytes() == (tmp_path / "dump" / "feats.ark").read_bytes()


def test_fbank_stage_reports_bad_audio(tmp_path):
    data = make_data_dir(tmp_path, n=3)
    (tmp_path / "wav" / "utt1.wav").write_bytes(b"RIFF....garbage")
    sf.write(tmp_path / "wav" / "utt2.wav", np.zeros(100), 48000)  # shorter than one 25 ms frame at 16 kHz
    r = run_fbank(data, tmp_path / "dump")
    assert r.returncode == 1
    assert "2 utterance(s)" in r.stderr and "utt1:" in r.stderr and "utt2: audio" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "dump" / ".done").exists() and not (tmp_path / "dump" / "feats.scp").exists()
