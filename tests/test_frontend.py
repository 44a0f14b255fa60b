"""Audio reading/resampling, Kaldi fbank (checked against an independent numpy implementation), CMVN."""

import io

import numpy as np
import pytest
import soundfile as sf

from asrdemo.data import cmvn
from asrdemo.data.audio import AudioError, load_audio, resample
from asrdemo.data.fbank import Fbank


def kaldi_fbank_reference(wave, sr=16000, num_bins=80, frame_len=400, hop=160, nfft=512):
    """Kaldi's compute-fbank-feats, written out from its definition (feature-fbank.cc, mel-computations.cc)."""
    x = wave.astype(np.float64) * 32768.0
    n = 1 + (len(x) - frame_len) // hop
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame_len) / (frame_len - 1))) ** 0.85

    def mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)

    lo, hi = mel(20.0), mel(sr / 2)
    delta = (hi - lo) / (num_bins + 1)
    fft_mels = mel(np.arange(nfft // 2) * sr / nfft)
    banks = np.zeros((num_bins, nfft // 2))
    for b in range(num_bins):
        left, center, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
        up = (fft_mels > left) & (fft_mels <= center)
        down = (fft_mels > center) & (fft_mels < right)
        banks[b, up] = (fft_mels[up] - left) / (center - left)
        banks[b, down] = (right - fft_mels[down]) / (right - center)
    out = []
    for t in range(n):
        frame = x[t * hop : t * hop + frame_len].copy()
        frame -= frame.mean()
        frame[1:] -= 0.97 * frame[:-1].copy()
        frame[0] -= 0.97 * frame[0]
        power = np.abs(np.fft.rfft(frame * window, nfft)) ** 2
        out.append(np.log(np.maximum(banks @ power[: nfft // 2], np.finfo(np.float32).eps)))
    return np.array(out)


def test_fbank_matches_kaldi_definition():
    t = np.arange(16000) / 16000
    rng = np.random.default_rng(0)
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.sin(2 * np.pi * 3000 * t)
            + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    ours = Fbank()(wave)
    assert ours.shape == (98, 80) and ours.dtype == np.float32
    ref = kaldi_fbank_reference(wave)
    np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=1e-4)
    # the 440 Hz tone peaks in mel bin 13 or 14 (centres 520 and 555 mel; 440 Hz is 550 mel)
    assert ours[:, :30].mean(axis=0).argmax() in (13, 14)


def test_fbank_frames_and_options():
    fb = Fbank({"num_mel_bins": 40})
    assert fb(np.zeros(16000 * 2, np.float32) + 1e-3).shape == (fb.num_frames(32000), 40) == (198, 40)
    assert fb(np.zeros(100, np.float32)).shape == (0, 40)
    with pytest.raises(ValueError, match="unknown fbank options"):
        Fbank({"num_mel_bin": 80})


def _wav_bytes(wave, sr, fmt="WAV", subtype="PCM_16"):
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
def test_load_audio_resamples_any_rate(sr, tmp_path):
    t = np.arange(sr) / sr
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 1000 * t), 0.5 * np.sin(2 * np.pi * 1000 * t)], axis=1)
    path = tmp_path / "a.flac"
    sf.write(path, stereo, sr)
    wave, orig = load_audio(path, 16000)
    assert orig == sr and wave.ndim == 1 and abs(len(wave) - 16000) <= 1
    # the tone survives resampling: peak of the spectrum at 1 kHz
    spec = np.abs(np.fft.rfft(wave[2000:14000]))
    assert abs(np.argmax(spec) * 16000 / 12000 - 1000) < 5


def test_load_audio_bytes_and_errors(tmp_path):
    wave, sr = load_audio(_wav_bytes(np.zeros(800), 8000))
    assert sr == 8000 and len(wave) == 800
    with pytest.raises(AudioError, match="cannot read audio"):
        load_audio(b"this is not audio at all" * 10)
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(AudioError, match="no samples"):
        load_audio(_wav_bytes(np.zeros(0), 16000))
    truncated = _wav_bytes(np.zeros(16000), 16000)[:30]
    with pytest.raises(AudioError):
        load_audio(truncated)


def test_resample_identity_and_length():
    w = np.random.default_rng(1).standard_normal(4800).astype(np.float32)
    assert resample(w, 16000, 16000) is not None and np.array_equal(resample(w, 16000, 16000), w)
    assert len(resample(w, 48000, 16000)) == 1600


def test_cmvn_stats_are_kaldi_layout():
    rng = np.random.default_rng(0)
    a, b = rng.normal(3, 2, (50, 4)), rng.normal(3, 2, (70, 4))
    stats = cmvn.accumulate(cmvn.accumulate(None, a), b)
    assert stats.shape == (2, 5) and stats[0, -1] == 120
    mean, istd = cmvn.stats_to_mean_istd(stats)
    both = np.concatenate([a, b])
    np.testing.assert_allclose(mean, both.mean(0), rtol=1e-5)
    np.testing.assert_allclose(istd, 1 / both.std(0), rtol=1e-4)
    with pytest.raises(ValueError):
        cmvn.stats_to_mean_istd(np.zeros((2, 5)))


# -- issue 12, item 8: a WAV whose size fields a streaming writer could not fill in ---------------


def _streamed(data: bytes, size: int) -> bytes:
    """`data` (a plain 44-byte-header WAV) with the RIFF and data sizes set to `size`."""
    import struct

    assert data[36:40] == b"data"
    out = bytearray(data)
    struct.pack_into("<I", out, 4, size)
    struct.pack_into("<I", out, 40, size)
    return bytes(out)


@pytest.mark.parametrize("size", [0, 0xFFFFFFFF])
def test_wav_with_unknown_sizes_is_read_to_the_end(tmp_path, size):
    sr = 22050
    wave = (0.3 * np.sin(np.arange(3 * sr) * 0.05)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format="WAV", subtype="PCM_16")
    good = buf.getvalue()
    path = tmp_path / "streamed.wav"
    path.write_bytes(_streamed(good, size))
    expected, _ = load_audio(good)
    for src in (path, str(path), path.read_bytes()):
        got, got_sr = load_audio(src)
        assert got_sr == sr and np.array_equal(got, expected)
    empty = tmp_path / "empty.wav"  # a header and nothing after it is still "no samples"
    empty.write_bytes(_streamed(good[:44], size))
    with pytest.raises(AudioError, match="no samples"):
        load_audio(empty)


@pytest.mark.parametrize("suffix, container, codec", [("m4a", "mp4", "aac"), ("webm", "webm", "libopus")])
def test_load_audio_reads_m4a_and_webm_through_pyav(tmp_path, suffix, container, codec):
    """Issue 12, item 15: what phones and browsers record, from a path (decode.sh, explain) or bytes."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from demo_fixture import av_bytes

    t = np.arange(int(1.5 * 48000)) / 48000
    wave = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    path = tmp_path / f"clip.{suffix}"
    path.write_bytes(av_bytes(wave, 48000, container, codec))
    got, sr = load_audio(path, 16000)
    assert sr == 48000 and abs(len(got) / 16000 - 1.5) < 0.1
    assert 0.15 < np.sqrt(np.mean(got[2000:-2000] ** 2)) < 0.25  # the tone, not noise (0.3 / sqrt 2)
    with pytest.raises(AudioError, match="<audio data>: cannot read audio"):
        load_audio("これは音声ではありません\n".encode() * 50)
