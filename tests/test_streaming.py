"""The streaming recognizer (asrdemo/decode/streaming.py) on real files: online features equal
offline ones, the result does not depend on how the audio is cut, the chunk-by-chunk encoder
output equals the whole utterance's under the chunk mask, and a streaming-trained model shows
the transcript while the audio still comes in."""

import numpy as np
import pytest
import soundfile as sf
import torch

from asrdemo.data.audio import StreamResampler, load_audio, resample
from asrdemo.data.datadir import read_data_dir
from asrdemo.data.fbank import Fbank
from asrdemo.decode.recognizer import Recognizer
from asrdemo.decode.streaming import StreamingRecognizer, recognize_streaming
from asrdemo.errors import AsrdemoError
from asrdemo.score import cer


def random_pieces(wave, rng, largest=6000):
    """`wave` cut at random places into pieces of 1..largest samples (some of them tiny)."""
    out, start = [], 0
    while start < len(wave):
        n = int(rng.integers(1, largest))
        out.append(wave[start:start + n])
        start += n
    return out


def test_online_features_equal_offline_features(tiny_work):
    utt = read_data_dir(tiny_work / "data" / "train")[0]
    wave_48k, sr = sf.read(utt.wav, dtype="int16")
    fbank = Fbank()
    whole = fbank(resample(wave_48k.astype(np.float32) / 32768.0, sr, fbank.sample_rate))
    resampler, stream, frames = StreamResampler(sr, fbank.sample_rate), fbank.stream(), []
    for piece in random_pieces(wave_48k, np.random.default_rng(0)):
        frames.append(stream.accept_waveform(resampler(piece)))  # int16 pieces, as a browser sends
    frames.append(stream.accept_waveform(resampler(wave_48k[:0], last=True)))
    frames.append(stream.input_finished())
    online = np.concatenate(frames)
    assert online.shape == whole.shape and whole.shape[0] > 100
    np.testing.assert_array_equal(online, whole)


@pytest.fixture(scope="module")
def streaming_rec(trained_streaming_exp):
    rec = Recognizer.from_exp_dir(trained_streaming_exp, decode_conf={"mode": "attention_rescoring", "beam_size": 5})
    assert rec.model.encoder.streaming
    return rec


@pytest.fixture(scope="module")
def utterances(tiny_work):
    return read_data_dir(tiny_work / "data" / "train")[:4]


def test_result_does_not_depend_on_how_the_audio_is_cut(streaming_rec, utterances):
    streamer = StreamingRecognizer(streaming_rec, chunk_size=4)
    rng = np.random.default_rng(1)
    for utt in utterances[:2]:
        wave, sr = sf.read(utt.wav, dtype="float32")  # 48 kHz: resampled on the way in
        whole = recognize_streaming(streamer, wave, sr)
        session = streamer.session()
        for piece in random_pieces(wave, rng, 20000):
            session.accept_waveform(piece, sr)
        final = session.finish()
        assert final.token_ids == whole.result.token_ids and final.text == whole.result.text
        assert [c.text for c in session.chunks] == [c.text for c in whole.chunks]
        enc = torch.cat(session.encoder_out, 1)
        assert torch.allclose(enc, torch.cat(whole.encoder_out, 1), atol=1e-5)


@pytest.mark.parametrize("chunk_size,left", [(4, -1), (8, 1)])
def test_chunk_by_chunk_equals_the_offline_decode_under_the_chunk_mask(streaming_rec, utterances, chunk_size, left):
    """The encoder frames of the stream equal the whole utterance's encoded with the chunk mask,
    and so the two-pass result equals offline attention rescoring of those frames."""
    streamer = StreamingRecognizer(streaming_rec, chunk_size=chunk_size, num_left_chunks=left)
    model = streaming_rec.model
    for utt in utterances:
        wave, _ = load_audio(utt.wav, streaming_rec.sample_rate)
        session = recognize_streaming(streamer, wave, streaming_rec.sample_rate, piece_s=0.1)
        feats = torch.as_tensor(streaming_rec.fbank(wave)).unsqueeze(0)
        with torch.no_grad():
            enc, lens = model.encode(feats, torch.tensor([feats.size(1)]), chunk_size, left)
        streamed = torch.cat(session.encoder_out, 1)
        assert streamed.shape == enc.shape
        assert (streamed - enc).abs().max() < 1e-4
        offline = streaming_rec.decode_encoded(enc, lens, "attention_rescoring")[0][0]
        assert session.result.token_ids == offline.token_ids, (session.result.text, offline.text)


def test_a_streaming_model_shows_the_words_before_the_audio_ends(streaming_rec, utterances):
    streamer = StreamingRecognizer(streaming_rec, chunk_size=4)
    assert streamer.model_is_streaming
    errors, chars = 0.0, 0
    for utt in utterances:
        wave, sr = sf.read(utt.wav, dtype="float32")
        session = recognize_streaming(streamer, wave, sr, piece_s=0.05)
        duration = len(wave) / sr
        assert len(session.chunks) >= 3
        assert all(c.audio_end_s <= duration + 0.03 for c in session.chunks)
        early = [c for c in session.chunks if c.text and c.audio_end_s < duration - 0.2]
        assert early, [c.text for c in session.chunks]  # text while audio is still coming
        errors += cer(utt.text, session.result.text) * len(utt.text)
        chars += len(utt.text)
        times = session.first_emission_s()
        shown = [t for t in times if t is not None]
        assert len(shown) >= 0.8 * len(times) and min(shown) < duration - 0.2, times
    assert errors / chars < 0.25, errors / chars  # it memorised these utterances, streaming too


def test_a_full_context_model_streams_too_and_says_so(trained_exp, utterances):
    rec = Recognizer.from_exp_dir(trained_exp, decode_conf={"beam_size": 3})
    streamer = StreamingRecognizer(rec, chunk_size=8)
    assert not streamer.model_is_streaming
    session = recognize_streaming(streamer, *sf.read(utterances[0].wav, dtype="float32"), piece_s=0.2)
    assert session.chunks and isinstance(session.result.text, str)


def test_bad_use_is_a_clear_error(streaming_rec):
    with pytest.raises(AsrdemoError, match="chunk_size"):
        StreamingRecognizer(streaming_rec, chunk_size=0)
    session = StreamingRecognizer(streaming_rec).session()
    session.accept_waveform(np.zeros(100, np.float32), 16000)
    with pytest.raises(AsrdemoError, match="sample rate changed"):
        session.accept_waveform(np.zeros(100, np.float32), 8000)
    assert session.finish().text == ""  # too short for one encoder frame: nothing, no error
    with pytest.raises(AsrdemoError, match="finished"):
        session.accept_waveform(np.zeros(100, np.float32), 16000)


def test_decode_sh_streaming_measures_streaming_cer(trained_streaming_exp, tiny_work, tmp_path):
    """`decode.sh --streaming true --chunk_size N` on a data dir (2 jobs): the same hypotheses as
    the streaming recognizer in this process, scored; `asrdemo decode` skips a finished dir only
    for the same chunk settings (an offline decode is not mistaken for it, nor chunk 4 for 8)."""
    import json
    import os
    import subprocess
    from pathlib import Path

    import yaml

    from asrdemo import cli
    from asrdemo.data.datadir import read_kv

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    data, out = tiny_work / "data" / "test", tmp_path / "decode_stream4"
    p = subprocess.run(["./decode.sh", "--nj", "2", "--mode", "attention_rescoring", "--streaming", "true",
                        "--chunk_size", "4", str(trained_streaming_exp), str(data), str(out)],
                       cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "two-pass" in (out / "log" / "decode.1.log").read_text()
    hyps = read_kv(out / "hyp.txt", allow_empty_value=True)
    assert (out / "cer.txt").read_text().startswith("CER")
    assert json.loads((out / ".done").read_text())["streaming"] == {"chunk_size": 4, "num_left_chunks": -1}
    # decode.sh's settings: conf/decode.yaml (the exp dir has no decode.yaml), mode from the command line
    rec = Recognizer.from_exp_dir(trained_streaming_exp, decode_conf={**yaml.safe_load(
        (repo / "conf" / "decode.yaml").read_text()), "mode": "attention_rescoring"})
    streamer = StreamingRecognizer(rec, chunk_size=4)
    for utt, path in read_kv(data / "wav.scp").items():
        wave, _ = load_audio(path, rec.sample_rate)
        assert hyps[utt] == recognize_streaming(streamer, wave, rec.sample_rate).result.text

    def decode(*options):
        argv = ["decode", "--exp_dir", str(trained_streaming_exp), "--input", str(data), "--out_dir", str(out),
                "--nj", "2", "--mode", "attention_rescoring", *options]
        before = (out / "hyp.txt").stat().st_mtime_ns
        assert cli.main(argv) == 0
        return (out / "hyp.txt").stat().st_mtime_ns != before

    assert not decode("--streaming", "--chunk_size", "4")  # the same settings: skipped
    assert decode("--streaming", "--chunk_size", "8")  # other settings: decoded again
    assert decode()  # offline, into the same dir: decoded again
    bad = subprocess.run(["./decode.sh", "--streaming", "maybe", str(trained_streaming_exp), str(data),
                          str(tmp_path / "x")], cwd=repo, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "--streaming must be true or false" in bad.stderr


def test_explain_streaming_draws_when_each_character_was_first_shown(trained_streaming_exp, utterances, tmp_path):
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "explain"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "asrdemo", "explain", str(trained_streaming_exp), utterances[1].wav,
                        "--out", str(out), "--streaming", "--chunk_size", "4"], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert (out / "streaming.png").stat().st_size > 10_000 and (out / "trace.json").is_file()
    data = json.loads((out / "streaming.json").read_text(encoding="utf-8"))
    # the text streaming gives (the tiny model need not get its training sentence exactly right)
    rec = Recognizer.from_exp_dir(trained_streaming_exp)
    wave, _ = load_audio(utterances[1].wav, rec.sample_rate)
    expected = recognize_streaming(StreamingRecognizer(rec, chunk_size=4), wave, rec.sample_rate).result.text
    assert data["streaming_model"] is True and data["final"] == expected and cer(utterances[1].text, expected) < 0.3
    assert [c["index"] for c in data["chunks"]] == list(range(len(data["chunks"])))
    assert "".join(t["token"] for t in data["tokens"]) == data["final"]
    shown = [t for t in data["tokens"] if t["first_shown_s"] is not None]
    assert shown and all(t["first_shown_s"] >= t["start_s"] for t in shown)  # never before it was spoken
    assert all(t["latency_s"] == pytest.approx(t["first_shown_s"] - t["end_s"], abs=1.0) for t in shown)


def test_bench_streaming_runs_on_a_tiny_model(trained_streaming_exp, tiny_work):
    """bench/streaming.py end to end (in-process numbers and 4 real-time streams on one gunicorn
    worker) on four utterances: it must finish without errors and print its table."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "bench/streaming.py", "--exp_dir", str(trained_streaming_exp), "--data_dir",
                        str(tiny_work / "data" / "train"), "--chunk_size", "4", "--sessions", "4", "--num_utts", "4"],
                       cwd=repo, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                       timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "RTF per chunk" in r.stdout and "end of a character" in r.stdout
    assert "4 concurrent real-time streams on one gunicorn worker" in r.stdout and ", 0 errors" in r.stdout


def test_tail_padding_is_the_same_silence_after_the_audio_offline_and_streaming(trained_streaming_exp, utterances):
    """`tail_padding_s`: a causal model emits its last characters late, so speech that ends abruptly
    loses them (the streaming fine-tune of the shipped model dropped 「です。」 from the sample).
    Both paths append the same silence: the stream's encoder frames equal the padded wave's under
    the chunk mask, offline decoding equals decoding the padded wave, and the audio's own length
    (what times are clipped to) does not change."""
    conf = {"mode": "attention_rescoring", "beam_size": 5}
    rec = Recognizer.from_exp_dir(trained_streaming_exp, decode_conf={**conf, "tail_padding_s": 0.3})
    plain = Recognizer.from_exp_dir(trained_streaming_exp, decode_conf=conf)
    streamer = StreamingRecognizer(rec, chunk_size=4)
    sr = rec.sample_rate
    for utt in utterances[:2]:
        wave, _ = load_audio(utt.wav, sr)
        padded = np.concatenate([wave, np.zeros(int(0.3 * sr), dtype=np.float32)])
        session = recognize_streaming(streamer, wave, sr, piece_s=0.1)
        assert session.samples_in == len(wave)
        feats = torch.as_tensor(rec.fbank(padded)).unsqueeze(0)
        with torch.no_grad():
            enc, _ = rec.model.encode(feats, torch.tensor([feats.size(1)]), 4, -1)
        streamed = torch.cat(session.encoder_out, 1)
        assert streamed.shape == enc.shape and (streamed - enc).abs().max() < 1e-4
        assert len(plain.features(wave, sr)) < feats.size(1)  # the padding is there
        offline = rec.recognize(wave, sr)
        assert offline.token_ids == plain.recognize(padded, sr).token_ids
        assert offline.duration_s == pytest.approx(len(wave) / sr)
