"""Long-form decoding (issue 12, item 2): audio far longer than the training utterances is cut at
pauses into pieces no longer than the longest of them, decoded as one batch, and joined.

The speech: the tiny trained model's own training utterances joined with 0.3 s pauses (it knows
them one by one, so per-utterance CER is the yardstick). Real files and the real CLI."""

import logging

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from asrdemo import score
from asrdemo.data.audio import load_audio
from asrdemo.data.datadir import read_kv
from asrdemo.data.fbank import Fbank
from asrdemo.decode.recognizer import Recognizer
from asrdemo.decode.segment import split_at_pauses
from conftest import asrdemo

torch.set_num_threads(1)
GAP_S = 0.3
MODE = "attention_rescoring"


@pytest.fixture(scope="module")
def rec(trained_exp):
    return Recognizer.from_exp_dir(trained_exp, num_threads=1, decode_conf={"mode": MODE, "beam_size": 4})


@pytest.fixture(scope="module")
def joined(trained_exp, rec):
    """(wave at 16 kHz, the references in order, their per-utterance CER in %) for the training
    utterances joined with GAP_S of silence."""
    data = trained_exp.parent.parent / "data" / "train"
    wav_scp, text = read_kv(data / "wav.scp"), read_kv(data / "text")
    waves, refs = [], []
    for utt in sorted(wav_scp):
        wave, _ = load_audio(wav_scp[utt], rec.sample_rate)
        waves += [wave, np.zeros(int(GAP_S * rec.sample_rate), np.float32)]
        refs.append(text[utt])
    hyps = [r.text for r in rec.recognize_batch([(w, rec.sample_rate) for w in waves[::2]])]
    per_utterance = 100.0 * corpus_errors(refs, hyps) / len(score.units("".join(refs)))
    return np.concatenate(waves), refs, per_utterance


def corpus_errors(refs, hyps):
    return sum(score.align(score.units(r), score.units(h)).errors for r, h in zip(refs, hyps))


def joined_cer(refs, text):
    ref = score.units("".join(refs))
    return 100.0 * score.align(ref, score.units(text)).errors / len(ref)


def test_the_exp_dir_knows_its_longest_training_utterance(trained_exp, rec):
    frames = read_kv(trained_exp.parent.parent / "dump" / "fbank" / "train" / "utt2num_frames")
    config = yaml.safe_load((trained_exp / "config.yaml").read_text(encoding="utf-8"))
    assert config["data"]["train_max_frames"] == max(int(v) for v in frames.values())
    assert rec.max_piece_s == pytest.approx((config["data"]["train_max_frames"] - 1) * 0.01 + 0.025)


def test_long_input_is_decoded_in_pieces_as_well_as_utterance_by_utterance(rec, joined, caplog):
    wave, refs, per_utterance = joined
    duration = len(wave) / rec.sample_rate
    assert duration > 3 * rec.max_piece_s  # far longer than any training utterance
    with caplog.at_level(logging.WARNING, logger="asrdemo.decode.recognizer"):
        result = rec.recognize(wave, rec.sample_rate)
    assert any("longer than" in r.getMessage() and "pieces" in r.getMessage() for r in caplog.records)
    long_form = joined_cer(refs, result.text)
    # within 10 % (relative), plus 10 points: this tiny model memorised its 10 utterances (per-utterance
    # CER ~0 %) and is thrown by a piece starting a few ms off the utterance's own first sample
    assert long_form <= 1.1 * per_utterance + 10.0, (long_form, per_utterance)
    # every piece no longer than the training utterances, the pieces covering the audio in order
    # the pieces: in order, inside the audio, none longer than the training utterances, none in a gap
    assert 0 <= result.segments[0][0] and result.segments[-1][1] <= duration
    assert all(a < b <= c for (a, b), (c, _) in zip(result.segments, result.segments[1:]))
    assert all(b - a <= rec.max_piece_s + 1e-6 for a, b in result.segments)
    assert len(result.segments) >= len(refs)
    # global times: one per character, in order, inside the audio, reaching its end
    times = result.token_times
    assert [t.token for t in times] == result.tokens and len(times) > 0
    for a, b in zip(times, times[1:]):
        assert a.end_s <= b.start_s and a.end_frame <= b.start_frame
    assert all(0 <= t.start_s < t.end_s <= duration for t in times)
    assert times[-1].end_s > duration - 2 * rec.max_piece_s
    assert result.trace is None  # no single trace spans the pieces


def test_without_pieces_the_same_speech_is_decoded_far_worse(rec, joined):
    """The old behaviour: the whole input at once, longer than anything the model was trained on."""
    wave, refs, per_utterance = joined
    whole = Recognizer(rec.model, rec.fbank, rec.token_list, rec.decode_conf, max_piece_s=1e9)
    result = whole.recognize(wave, rec.sample_rate)
    assert len(result.segments) == 1
    assert joined_cer(refs, result.text) > 2 * per_utterance + 30, (joined_cer(refs, result.text), per_utterance)


def test_cuts_fall_in_pauses_and_respect_the_limit():
    sr, step, fbank = 16000, 640, Fbank()
    rng = np.random.default_rng(0)
    burst = lambda s: 0.3 * rng.standard_normal(int(s * sr)).astype(np.float32)  # noqa: E731
    pause = lambda s: np.zeros(int(s * sr), np.float32)  # noqa: E731
    wave = np.concatenate([burst(2.0), pause(0.4), burst(1.5), pause(0.4), burst(2.5), pause(0.4), burst(1.0)])
    pieces = split_at_pauses(wave, fbank, 4 * sr, step)
    loud = np.abs(wave) > 0
    bursts = np.flatnonzero(np.diff(np.concatenate([[0], loud, [0]])))  # starts and ends of the bursts
    assert pieces == [(int(a), int(b)) for a, b in zip(bursts[::2], bursts[1::2])]  # the pauses left out
    assert split_at_pauses(wave[: 3 * sr], fbank, 4 * sr, step) == [(0, 3 * sr)]
    # pauses with noise (no digital silence): cut inside them, 50 ms from speech
    noisy = wave + 0.003 * rng.standard_normal(len(wave)).astype(np.float32)
    pieces = split_at_pauses(noisy, fbank, 4 * sr, step)
    assert pieces[0][0] == 0 and pieces[-1][1] == len(wave) and all(b - a <= 4 * sr for a, b in pieces)
    for (_, cut), (start, _) in zip(pieces, pieces[1:]):
        assert cut == start and not loud[cut - 800: cut + 800].any(), cut
    # no pause at all: cut anyway, never longer than allowed
    pieces = split_at_pauses(burst(10.0), fbank, 4 * sr, step)
    assert len(pieces) >= 3 and all(b - a <= 4 * sr for a, b in pieces)


def test_decode_command_joins_the_pieces(trained_exp, rec, joined, tmp_path):
    wave, refs, _ = joined
    audio = tmp_path / "in"
    audio.mkdir()
    sf.write(audio / "long.wav", wave, rec.sample_rate)
    out = tmp_path / "out"
    r = asrdemo("decode", "--exp_dir", trained_exp, "--input", audio, "--out_dir", out, "--mode", MODE,
                "--decode_config", _write_conf(tmp_path))
    assert "decoded in" in r.stderr and "pieces" in r.stderr
    hyp = read_kv(out / "hyp.txt", allow_empty_value=True)["long"]
    assert hyp == rec.recognize_file(audio / "long.wav").text.strip()


def test_explain_and_the_demo_give_the_same_global_times(trained_exp, rec, joined, tmp_path):
    """`asrdemo explain` (trace.json, no figures) and POST /api/recognize on the long input: the
    recognizer's text and global times, and the pieces."""
    import json

    from asrdemo.server import create_app
    from demo_fixture import audio_bytes

    data = audio_bytes(joined[0], rec.sample_rate, subtype="PCM_16")  # what both read
    want = rec.recognize(load_audio(data)[0], rec.sample_rate)
    path = tmp_path / "long.wav"
    path.write_bytes(data)
    conf = _write_conf(tmp_path)
    asrdemo("explain", trained_exp, path, "--out", tmp_path / "explain", "--decode_config", conf)
    trace = json.loads((tmp_path / "explain" / "trace.json").read_text(encoding="utf-8"))
    assert trace["text"] == want.text and len(trace["segments"]) == len(want.segments) > 1
    assert trace["alignment"]["tokens"] == [t.as_dict() for t in want.token_times]
    (exp := tmp_path / "package").mkdir()
    for name in ("config.yaml", "tokens.txt", "cmvn.ark", "valid.acc.ave.pth"):
        (exp / name).write_bytes((trained_exp / name).read_bytes())
    (exp / "decode.yaml").write_text(conf.read_text(encoding="utf-8"), encoding="utf-8")
    client = create_app(exp_dir=exp).test_client()
    body = client.post("/api/recognize?details=1", data=data, content_type="audio/wav").get_json()
    assert body["text"] == want.text and len(body["segments"]) > 1 and "alignment" not in body
    starts = [t["start_s"] for t in body["tokens"]]
    assert starts == sorted(starts) and 0 <= starts[0] and body["tokens"][-1]["end_s"] <= body["duration_s"]


def _write_conf(tmp_path):
    path = tmp_path / "decode.yaml"
    path.write_text(f"mode: {MODE}\nbeam_size: 4\n", encoding="utf-8")
    return path
