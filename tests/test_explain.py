"""`asrdemo explain` on the tiny trained model: every figure, a trace.json whose shapes agree with
the model (subsampling, vocabulary, decoder layers), the same transcript as the recognizer, and
character times in order inside the audio. Real files, the real CLI in a subprocess."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from asrdemo.data.audio import load_audio
from asrdemo.data.datadir import read_kv
from asrdemo.decode.recognizer import Recognizer
from asrdemo.decode.trace import decoder_view
from asrdemo.explain import FIGURES, PLOTS

torch.set_num_threads(1)

FIGURE_NAMES = [name for name, _, _ in FIGURES]


def run_explain(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "asrdemo", "explain", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def clip(trained_exp, tmp_path_factory):
    """A training utterance as stereo FLAC at 22.05 kHz: another rate, format and channel count than
    the 48 kHz mono wavs the model was trained from."""
    data = trained_exp.parent.parent / "data" / "train"
    wav_scp, text = read_kv(data / "wav.scp"), read_kv(data / "text")
    utt = sorted(wav_scp)[0]
    wave, sr = load_audio(wav_scp[utt])
    wave = soxr.resample(wave, sr, 22050)
    stereo = np.stack([wave, 0.8 * wave], axis=1)
    path = tmp_path_factory.mktemp("clip") / f"{utt}.flac"
    sf.write(path, stereo, 22050)
    return path, text[utt]


@pytest.fixture(scope="module")
def explained(trained_exp, clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("explain") / "out"
    r = run_explain(trained_exp, clip[0], "--out", out, "--nbest", 3)
    assert r.returncode == 0, r.stdout + r.stderr
    return out, json.loads((out / "trace.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def rec(trained_exp):
    return Recognizer.from_exp_dir(trained_exp, num_threads=1)


def test_every_figure_is_a_png_and_index_shows_them_in_order(explained):
    out, trace = explained
    assert FIGURE_NAMES == list(PLOTS) == trace["figures"]
    for name in FIGURE_NAMES:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    index = (out / "index.md").read_text(encoding="utf-8")
    positions = [index.index(f"]({name})") for name in FIGURE_NAMES]
    assert positions == sorted(positions)
    assert trace["text"] in index


def test_trace_shapes_agree_with_the_model(explained, rec, trained_exp):
    _, trace = explained
    model = rec.model
    audio = trace["audio"]
    assert audio["original_sample_rate"] == 22050 and audio["sample_rate"] == 16000
    num_frames = rec.fbank.num_frames(audio["num_samples"])
    assert trace["fbank"]["shape"] == [num_frames, 80] == trace["fbank_cmvn"]["shape"]
    enc = trace["encoder"]
    enc_frames = model.encoder.embed.output_lengths(num_frames)
    assert enc["subsampling_rate"] == model.subsampling_rate == 4
    assert enc["input_frames"] == num_frames and enc["output_frames"] == enc_frames > 0
    assert enc["shape"] == [enc_frames, model.encoder.output_size()]
    assert enc["frame_ms"] == 40.0 and enc["receptive_frames"] == 7 and enc["receptive_field_ms"] == 85.0
    vocab = len((trained_exp / "tokens.txt").read_text(encoding="utf-8").splitlines())
    assert trace["ctc"]["shape"] == [enc_frames, vocab] and trace["ctc"]["vocab_size"] == vocab
    assert len(trace["ctc"]["greedy_path"]) == enc_frames
    post = trace["ctc"]["posteriorgram"]
    assert post["token_ids"][0] == 0 and post["tokens"][0] == "<blank>"
    assert np.array(post["probs"]).shape == (len(post["token_ids"]), enc_frames)
    best = trace["decode"]["hypotheses"][0]
    att = trace["attention"]
    assert att["shape"] == [len(model.decoder.decoders), len(best["token_ids"]) + 1, enc_frames]
    assert att["rows"] == best["tokens"] + ["<eos>"]
    assert np.allclose(np.array(att["weights"]).sum(-1), 1.0, atol=2e-3)  # each row is a distribution
    assert 1 <= len(trace["decode"]["hypotheses"]) <= 3


def test_transcript_is_the_recognizers(explained, clip, rec):
    _, trace = explained
    wave, sr = sf.read(clip[0], dtype="float32")
    hyp = rec.recognize(wave, sr)
    assert trace["text"] == hyp.text and trace["decode"]["hypotheses"][0]["token_ids"] == hyp.token_ids
    assert trace["decode"]["hypotheses"][0]["search_score"] == pytest.approx(hyp.score, abs=1e-3)
    # joint search: the recomputed total is the score the search ranked by
    for h in trace["decode"]["hypotheses"]:
        assert h["total_score"] == pytest.approx(h["search_score"], abs=1e-3)
    greedy = trace["ctc"]["greedy_path"]
    collapsed = [t for i, t in enumerate(greedy) if t != 0 and (i == 0 or t != greedy[i - 1])]
    assert collapsed == rec.recognize(wave, sr, mode="ctc_greedy").token_ids


def test_character_times_follow_the_transcript(explained, clip):
    _, trace = explained
    ali = trace["alignment"]
    tokens = ali["tokens"]
    assert [t["token_id"] for t in tokens] == trace["decode"]["hypotheses"][0]["token_ids"]
    assert trace["text"] == clip[1]  # the tiny model memorised its training utterances
    duration = trace["audio"]["duration_s"]
    for a, b in zip(tokens, tokens[1:]):
        assert a["end_s"] <= b["start_s"]
    assert all(0 <= t["start_s"] < t["end_s"] <= duration for t in tokens)
    assert ali["path_score"] <= ali["best_path_score"]


def test_trace_api_any_input_and_nothing_shared_changes(rec, clip):
    wave, sr = sf.read(clip[0], dtype="float32")
    pcm = (wave * 32767).astype(np.int16)  # int PCM, as a browser might send
    trace = rec.recognize(pcm, sr, nbest=1, trace=True).trace
    again = rec.recognize(wave, sr, nbest=1, trace=True).trace
    assert trace.best.text == again.best.text
    demo = trace.demo_json()
    assert demo["text"] == trace.best.text
    starts = [t["start_s"] for t in demo["tokens"]]
    assert starts == sorted(starts) and all(t["end_s"] > t["start_s"] for t in demo["tokens"])
    assert len(demo["attention"]["weights"]) == len(trace.best.token_ids) + 1
    # the attention maps come from a view of the decoder that shares its weights (nothing copied)...
    view = decoder_view(rec.model.decoder)
    assert view.embed.weight is rec.model.decoder.embed.weight and view.decoders[0] is not rec.model.decoder.decoders[0]
    # ...so the recognizer's model keeps no attention weights, and its decoding setting is untouched
    for m in rec.model.modules():
        assert getattr(m, "store_attn", False) is False and getattr(m, "attn", None) is None
    assert rec.decode_conf.nbest == 1


def test_short_and_bad_audio_are_clear_errors(trained_exp, tmp_path):
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(800, dtype=np.float32), 16000)  # 50 ms
    r = run_explain(trained_exp, short, "--out", tmp_path / "out_short")
    assert r.returncode == 1 and "too short" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out_short").exists()
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    r = run_explain(trained_exp, bad, "--out", tmp_path / "out_bad")
    assert r.returncode == 1 and "notes.wav" in r.stderr and "Traceback" not in r.stderr
