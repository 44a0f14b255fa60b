"""The recognizer's plumbing with a tiny randomly initialised model in a real exp dir on disk.

Random weights make the transcripts garbage; what is checked is that every path (rates, channels,
int PCM, batching, modes, checkpoints, config errors, the model's decoder inside the searches)
gives the same answer as its plain counterpart.
"""

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
import yaml

from asrdemo.data import cmvn
from asrdemo.data.fbank import Fbank
from asrdemo.decode.beam_search import DecoderStepScorer, joint_beam_search
from asrdemo.decode.ctc_prefix_beam import teacher_forced_scorer
from asrdemo.decode.decode_config import MODES
from asrdemo.decode.recognizer import Recognizer
from asrdemo.errors import AsrdemoError

torch.set_num_threads(1)

TOKENS = ["<blank>", "<unk>", *"あいうえおかきくけこ", "<space>", "<sos/eos>"]
TINY_MODEL = {
    "encoder": "conformer",
    "encoder_conf": {"output_size": 32, "attention_heads": 2, "linear_units": 48, "num_blocks": 2,
                     "cnn_module_kernel": 5},
    "decoder_conf": {"attention_heads": 2, "linear_units": 48, "num_blocks": 2},
}


def make_tiny_exp_dir(exp_dir, seed=0, model_file="valid.acc.ave.pth", sample_rate=16000):
    """An exp dir as `asrdemo train` leaves it (config.yaml, tokens.txt, cmvn.ark, a state_dict),
    with random weights. The output bias favours real tokens so the searches emit some text."""
    from asrdemo.model.asr_model import ASRModel

    exp_dir.mkdir(parents=True, exist_ok=True)
    (exp_dir / "tokens.txt").write_text("".join(t + "\n" for t in TOKENS), encoding="utf-8")
    rng = np.random.default_rng(seed)
    stats = cmvn.accumulate(None, rng.normal(8.0, 3.0, (400, 80)))
    import kaldiio

    kaldiio.save_mat(str(exp_dir / "cmvn.ark"), stats)
    torch.manual_seed(seed)
    model = ASRModel.from_config(TINY_MODEL, 80, len(TOKENS), stats)
    with torch.no_grad():
        model.ctc.ctc_lo.bias[0] += 1.0  # blank most frames, as a trained model does
    if model_file:
        torch.save(model.state_dict(), exp_dir / model_file)
    config = {"frontend": {"sample_rate": sample_rate, "num_mel_bins": 80, "frame_length_ms": 25.0,
                           "frame_shift_ms": 10.0, "dither": 0.0},
              "token_type": "char", "token_list": "tokens.txt", "bpe_model": None, "cmvn": "cmvn.ark",
              "model": TINY_MODEL}
    (exp_dir / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return model


def noise(seconds, sr, seed, channels=1):
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    tone = 0.2 * np.sin(2 * np.pi * (200 + 300 * rng.random()) * t)
    wave = tone[:, None] + 0.05 * rng.standard_normal((n, channels))
    return wave[:, 0].astype(np.float32) if channels == 1 else wave.astype(np.float32)


@pytest.fixture(scope="module")
def exp_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("exp")
    make_tiny_exp_dir(d)
    return d


@pytest.fixture(scope="module")
def rec(exp_dir):
    return Recognizer.from_exp_dir(exp_dir, decode_conf={"beam_size": 3, "nbest": 3}, num_threads=1)


def ids(hyp):
    return hyp.token_ids


def test_loads_exp_dir_and_recognizes_every_mode(rec):
    assert rec.sample_rate == 16000 and torch.get_num_threads() == 1
    wave = noise(1.2, 16000, seed=1)
    for mode in MODES:
        hyp = rec.recognize(wave, 16000, mode=mode)
        assert np.isfinite(hyp.score), mode
        assert hyp.tokens == [TOKENS[i] for i in hyp.token_ids]
        assert hyp.text == "".join(" " if t == "<space>" else t for t in hyp.tokens)
        nbest = rec.decode_features([rec.features(wave, 16000)], mode=mode)[0]
        scores = [h.score for h in nbest]
        assert scores == sorted(scores, reverse=True) and len(nbest) <= 3


def test_any_rate_channels_and_int_pcm_are_the_same_audio(rec, tmp_path):
    wave = noise(1.0, 16000, seed=2)
    want = rec.recognize(wave, 16000, mode="ctc_greedy")
    up = soxr.resample(wave, 16000, 48000, quality="VHQ")
    feats_16k, feats_48k = rec.features(wave, 16000), rec.features(up, 48000)
    assert feats_16k.shape == feats_48k.shape
    assert np.abs(feats_16k - feats_48k).mean() < 0.05  # resampled twice: nearly the same fbank
    stereo = np.stack([wave, wave], axis=1)
    assert ids(rec.recognize(stereo, 16000, mode="ctc_greedy")) == ids(want)
    pcm = np.round(wave * 32767).astype(np.int16)
    assert np.allclose(rec.features(pcm, 16000), feats_16k, atol=0.05)
    path = tmp_path / "a.flac"
    sf.write(path, stereo, 16000)
    assert ids(rec.recognize_file(path, mode="ctc_greedy")) == ids(want)


def test_batch_equals_one_by_one(rec):
    items = [(noise(1.5, 16000, 3), 16000), (noise(0.6, 22050, 4), 22050), (noise(1.0, 8000, 5), 8000),
             (np.zeros(50, np.float32), 16000)]
    for mode in MODES:
        batch = rec.recognize_batch(items, mode=mode)
        for (wave, sr), got in zip(items, batch):
            want = rec.recognize(wave, sr, mode=mode)
            assert got.token_ids == want.token_ids, mode
            assert got.score == pytest.approx(want.score, rel=1e-4, abs=1e-3), mode


@pytest.mark.parametrize("samples", [0, 10, 400, 1000])
def test_too_short_input_gives_the_empty_hypothesis(rec, samples):
    """0 samples, less than a frame, 1 frame, fewer frames than the encoder's subsampling needs."""
    for mode in MODES:
        hyp = rec.recognize(np.zeros(samples, np.float32), 16000, mode=mode)
        assert hyp.text == "" and hyp.token_ids == [] and np.isfinite(hyp.score)


def test_model_decoder_steps_equal_teacher_forcing(rec):
    """The cached step scorer (shared memory keys/values, gathered per row) against one full pass."""
    model = rec.model
    feats = [torch.as_tensor(rec.features(noise(s, 16000, 6 + i), 16000)) for i, s in enumerate((1.0, 0.7))]
    with torch.inference_mode():
        padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
        enc, enc_lens = model.encode(padded, torch.tensor([len(f) for f in feats]))
        mask = (torch.arange(enc.size(1)).unsqueeze(0) < enc_lens.unsqueeze(1)).unsqueeze(1)
        g = torch.Generator().manual_seed(0)
        utt = torch.tensor([0, 0, 1, 1, 1])
        ys = torch.cat([torch.full((5, 1), model.sos), torch.randint(1, model.vocab_size - 1, (5, 4), generator=g)], 1)
        full = teacher_forced_scorer(model.decoder, enc, mask)(utt, ys, torch.full((5,), 5))
        for scorer, rows in ((DecoderStepScorer(model.decoder, enc, mask), utt),
                             (DecoderStepScorer(model.decoder, enc[1:2], mask[1:2]), torch.zeros(3, dtype=torch.long))):
            sel = torch.arange(5) if len(rows) == 5 else torch.tensor([2, 3, 4])
            state = scorer.init_state(rows)
            for j in range(ys.size(1)):
                logp, state = scorer.score(ys[sel, : j + 1], state)
                torch.testing.assert_close(logp, full[sel, j], rtol=1e-4, atol=1e-4)


def test_joint_search_with_the_model_batched_equals_single(rec):
    model = rec.model
    feats = [torch.as_tensor(rec.features(noise(s, 16000, 10 + i), 16000)) for i, s in enumerate((1.3, 0.5, 0.9))]
    with torch.inference_mode():
        padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
        enc, enc_lens = model.encode(padded, torch.tensor([len(f) for f in feats]))
        ctc = model.ctc.log_softmax(enc)
        mask = (torch.arange(enc.size(1)).unsqueeze(0) < enc_lens.unsqueeze(1)).unsqueeze(1)
        kw = dict(sos=model.sos, eos=model.eos, beam_size=4, ctc_weight=0.3, nbest=4)
        batched = joint_beam_search(ctc, enc_lens, DecoderStepScorer(model.decoder, enc, mask), **kw)
        for b in range(3):
            n = int(enc_lens[b])
            single = joint_beam_search(ctc[b : b + 1, :n], enc_lens[b : b + 1],
                                       DecoderStepScorer(model.decoder, enc[b : b + 1, :n], mask[b : b + 1, :, :n]), **kw)
            assert [h.token_ids for h in batched[b]] == [h.token_ids for h in single[0]]
            np.testing.assert_allclose([h.score for h in batched[b]], [h.score for h in single[0]], rtol=1e-4, atol=1e-3)


def test_checkpoint_fallback_and_model_file(tmp_path):
    d = tmp_path / "exp"
    make_tiny_exp_dir(d, seed=1, model_file=None)
    with pytest.raises(AsrdemoError, match="no model"):
        Recognizer.from_exp_dir(d)
    (d / "checkpoints").mkdir()
    models = {}
    for epoch, seed in ((9, 2), (10, 3)):  # numeric order: epoch_10 is the newest, not epoch_9
        models[epoch] = make_tiny_exp_dir(tmp_path / f"m{epoch}", seed=seed, model_file=None)
        torch.save({"model": models[epoch].state_dict(), "epoch": epoch, "rng": np.random.get_state()},
                   d / "checkpoints" / f"epoch_{epoch}.pt")
    loaded = Recognizer.from_exp_dir(d).model.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in models[10].state_dict().items())
    explicit = Recognizer.from_exp_dir(d, model_file=d / "checkpoints" / "epoch_9.pt").model.state_dict()
    assert all(torch.equal(v, explicit[k]) for k, v in models[9].state_dict().items())


def test_clear_errors(tmp_path, exp_dir):
    with pytest.raises(AsrdemoError, match="not an exp dir"):
        Recognizer.from_exp_dir(tmp_path)
    with pytest.raises(AsrdemoError, match="does not exist"):
        Recognizer.from_exp_dir(exp_dir, model_file=tmp_path / "nope.pth")
    with pytest.raises(AsrdemoError, match="unknown key"):
        Recognizer.from_exp_dir(exp_dir, decode_conf={"beam": 3})
    with pytest.raises(AsrdemoError, match="mode must be one of"):
        Recognizer.from_exp_dir(exp_dir, decode_conf={"mode": "viterbi"})
    bad = tmp_path / "bad.pth"
    torch.save({"encoder.nope": torch.zeros(1)}, bad)
    with pytest.raises(AsrdemoError, match="does not fit"):
        Recognizer.from_exp_dir(exp_dir, model_file=bad)
    conf = tmp_path / "decode.yaml"
    conf.write_text("mode: ctc_greedy\nbeam_size: 2\n")
    assert Recognizer.from_exp_dir(exp_dir, decode_conf=conf).decode_conf.mode == "ctc_greedy"


def test_other_model_rate(tmp_path):
    """An exp dir trained at 8 kHz: the recognizer resamples to 8 kHz, whatever comes in."""
    d = tmp_path / "exp8k"
    make_tiny_exp_dir(d, sample_rate=8000)
    r = Recognizer.from_exp_dir(d)
    assert r.sample_rate == 8000
    wave = noise(1.0, 8000, seed=3)
    assert r.features(wave, 8000).shape == Fbank({"sample_rate": 8000})(wave).shape
    assert r.features(soxr.resample(wave, 8000, 44100), 44100).shape[0] == 98


# -- issue 12, item 7: CMVN statistics in Kaldi's archive layout ------------------------------------


def test_cmvn_in_kaldi_archive_layout(tmp_path):
    """`compute-cmvn-stats ... ark:cmvn.ark` writes `key matrix`; one key is global statistics."""
    import kaldiio

    from asrdemo.decode.recognizer import Recognizer

    exp = tmp_path / "exp"
    make_tiny_exp_dir(exp)
    wave = noise(1.0, 16000, seed=3)
    expected = Recognizer.from_exp_dir(exp).recognize(wave, 16000, mode="ctc_greedy").token_ids
    stats = kaldiio.load_mat(str(exp / "cmvn.ark"))
    for text in (False, True):
        kaldiio.save_ark(str(exp / "cmvn.ark"), {"JS": stats}, text=text)
        rec = Recognizer.from_exp_dir(exp)
        assert rec.recognize(wave, 16000, mode="ctc_greedy").token_ids == expected
    rows = "\n".join(" ".join(repr(float(x)) for x in row) for row in stats)
    (exp / "cmvn.ark").write_text(f" [\n{rows} ]\n")  # a bare text matrix (copy-matrix --binary=false)
    assert Recognizer.from_exp_dir(exp).recognize(wave, 16000, mode="ctc_greedy").token_ids == expected

    kaldiio.save_ark(str(exp / "cmvn.ark"), {"spk1": stats, "spk2": stats})
    with pytest.raises(AsrdemoError, match=r"cmvn.ark: a Kaldi archive with 2 matrices \(spk1, spk2\)"):
        Recognizer.from_exp_dir(exp)
    (exp / "cmvn.ark").write_bytes(b"\xf0\x9f not a matrix")
    with pytest.raises(AsrdemoError, match="cmvn.ark: not Kaldi CMVN statistics"):
        Recognizer.from_exp_dir(exp)


def test_beam_at_or_above_the_vocabulary_is_clamped(exp_dir, caplog):
    """Issue 12, item 6: beam 1000 with a 14-token vocabulary: a warning, then the usual search."""
    wave = noise(1.0, 16000, seed=5)
    with caplog.at_level("WARNING"):
        rec = Recognizer.from_exp_dir(exp_dir, decode_conf={"beam_size": 1000, "nbest": 1000})
    assert f"beam_size 1000 is not below the vocabulary size ({len(TOKENS)} tokens)" in caplog.text
    assert rec.decode_conf.beam_size == len(TOKENS) - 1 == rec.decode_conf.nbest
    same = Recognizer.from_exp_dir(exp_dir, decode_conf={"beam_size": len(TOKENS) - 1})
    for mode in MODES:
        assert rec.recognize(wave, 16000, mode=mode).token_ids == same.recognize(wave, 16000, mode=mode).token_ids


# -- issue 12, item 1: silence that is not digital zero -------------------------------------------


def test_silence_is_judged_as_the_model_sees_it(rec, caplog):
    """Constant DC, zeros and a slow drift are silence once the fbank's DC removal is applied: the
    empty hypothesis in every mode, and a warning naming the input; a quiet real signal riding on a
    DC offset is still decoded."""
    sr = 16000
    t = np.arange(2 * sr) / sr
    silent = {"dc": np.full(2 * sr, 0.3, np.float32), "zeros": np.zeros(2 * sr, np.float32),
              "drift": (0.3 + 0.05 * t / 2).astype(np.float32)}
    for name, wave in silent.items():
        assert rec.is_silent(wave), (name, rec.level_dbfs(wave))
        for mode in MODES:
            caplog.clear()
            with caplog.at_level("WARNING"):
                assert rec.recognize(wave, sr, mode=mode).text == ""
            assert "audio: silent" in caplog.text
    quiet = (0.3 + 0.01 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)  # -40 dBFS on a DC offset
    assert not rec.is_silent(quiet)
    with caplog.at_level("WARNING"):
        caplog.clear()
        batch = rec.recognize_batch([(silent["dc"], sr), (noise(1.0, sr, 7), sr)], mode="ctc_greedy")
    assert batch[0].text == "" and batch[1].token_ids == rec.recognize(noise(1.0, sr, 7), sr, "ctc_greedy").token_ids
    assert "#0: silent" in caplog.text and "#1" not in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # too short for one encoder frame: the same policy, its own reason
        assert rec.recognize(noise(0.03, sr, 8), sr).text == ""
    assert "audio: too short (0.030 s" in caplog.text


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_low_precision_inference_keeps_float32_scores_near_float32(exp_dir, dtype):
    """dtype: bfloat16 holds the decoder in bf16 and runs the encoder under bf16 autocast; int8
    quantizes the decoder's linear layers (decode/precision.py). Every mode and the trace still
    work, scores are float32 and close to float32's, and the encoder's weights are untouched."""
    conf = {"beam_size": 3, "nbest": 3}
    fp32 = Recognizer.from_exp_dir(exp_dir, decode_conf=conf)
    low = Recognizer.from_exp_dir(exp_dir, decode_conf={**conf, "dtype": dtype})
    if dtype == "bfloat16":
        assert {p.dtype for p in low.model.decoder.parameters()} == {torch.bfloat16}
    else:
        linears = [m for m in low.model.decoder.modules() if "Linear" in type(m).__name__]
        assert linears and all(type(m).__module__.startswith("torch.ao.nn.quantized") for m in linears)
    assert {p.dtype for p in low.model.encoder.parameters()} == {torch.float32}
    wave = noise(1.2, 16000, seed=21)
    for mode in MODES:
        want, got = fp32.recognize(wave, 16000, mode=mode), low.recognize(wave, 16000, mode=mode)
        assert isinstance(got.score, float) and np.isfinite(got.score), mode
        # bf16 keeps 8 significant bits, int8 ~7: per-token log-probs move by ~1e-2 relative
        assert abs(got.score - want.score) <= 0.05 * abs(want.score) + 0.5, (mode, got.score, want.score)
    traced = low.recognize(wave, 16000, mode="joint", trace=True)
    assert traced.trace is not None and np.isfinite(traced.trace.hypotheses[0].att_score)


def test_unknown_dtype_is_refused(exp_dir):
    with pytest.raises(AsrdemoError, match="dtype must be one of"):
        Recognizer.from_exp_dir(exp_dir, decode_conf={"dtype": "float16"})
