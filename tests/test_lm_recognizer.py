"""An exp dir that carries its LM: `asrdemo lm attach`, the recognizer's shallow fusion in every
mode, `asrdemo package`, and clear errors. Tiny random models on disk (see test_recognizer.py)."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from asrdemo.decode.beam_search import DecoderStepScorer, joint_beam_search
from asrdemo.decode.ctc_prefix_beam import teacher_forced_scorer
from asrdemo.decode.decode_config import MODES
from asrdemo.decode.lm_scorer import LMStepScorer, lm_sequence_logp
from asrdemo.decode.recognizer import Recognizer
from asrdemo.errors import AsrdemoError
from asrdemo.model.lm import build_lm
from test_recognizer import TOKENS, make_tiny_exp_dir, noise
from test_train import REPO, asrdemo_env

torch.set_num_threads(1)
LM_MODEL = {"lm": "lstm", "lm_conf": {"embed_unit": 16, "unit": 24, "layer": 1}}


def make_lm_dir(d, tokens=TOKENS, seed=0):
    """An LM dir as `asrdemo lm train` leaves it (config.yaml, tokens.txt, valid.loss.ave.pth), random weights."""
    d.mkdir(parents=True)
    (d / "tokens.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    (d / "config.yaml").write_text(yaml.safe_dump({"token_list": "tokens.txt", "vocab_size": len(tokens),
                                                   "model": LM_MODEL}), encoding="utf-8")
    torch.manual_seed(seed)
    lm = build_lm(LM_MODEL, len(tokens))
    with torch.no_grad():
        lm.output_layer.weight.mul_(8.0)  # opinionated, so that fusion changes results
    torch.save(lm.state_dict(), d / "valid.loss.ave.pth")
    return lm.eval()


def attach(lm_dir, exp_dir, check=True):
    return subprocess.run([sys.executable, "-m", "asrdemo", "lm", "attach", "--lm_dir", str(lm_dir), "--exp_dir",
                           str(exp_dir)], cwd=REPO, env=asrdemo_env(), capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def exp_with_lm(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmexp")
    make_tiny_exp_dir(root / "exp")
    lm = make_lm_dir(root / "lm_exp")
    attach(root / "lm_exp", root / "exp")
    return root / "exp", lm


def test_attach_copies_the_lm_and_names_it(exp_with_lm):
    exp, _ = exp_with_lm
    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert config["lm"] == "lm"
    for name in ("config.yaml", "tokens.txt", "valid.loss.ave.pth"):
        assert (exp / "lm" / name).is_file()
    attach(exp.parent / "lm_exp", exp)  # attaching again replaces, never duplicates the key
    assert (exp / "config.yaml").read_text().count("\nlm: lm") == 1


def test_lm_weight_zero_does_not_load_or_use_the_lm(exp_with_lm):
    exp, _ = exp_with_lm
    wave = noise(1.1, 16000, seed=3)
    rec0 = Recognizer.from_exp_dir(exp, decode_conf={"beam_size": 3, "nbest": 3, "lm_weight": 0.0})
    assert rec0.lm is None
    for mode in MODES:
        hyps = rec0.decode_features([rec0.features(wave, 16000)], mode=mode)[0]
        assert all(h.lm_score is None for h in hyps)


def test_every_mode_fuses_the_lm_with_the_documented_score(exp_with_lm):
    exp, lm = exp_with_lm
    lam, w, penalty = 0.7, 0.3, 0.2
    conf = {"beam_size": 4, "nbest": 4, "lm_weight": lam, "ctc_weight": w, "penalty": penalty}
    rec = Recognizer.from_exp_dir(exp, decode_conf=conf)
    rec0 = Recognizer.from_exp_dir(exp, decode_conf={**conf, "lm_weight": 0.0})
    model = rec.model
    feats = [torch.as_tensor(rec.features(noise(s, 16000, 20 + i), 16000)) for i, s in enumerate((1.2, 0.8))]
    differs = 0
    with torch.inference_mode():
        padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
        enc, enc_lens = model.encode(padded, torch.tensor([len(f) for f in feats]))
        mask = (torch.arange(enc.size(1)).unsqueeze(0) < enc_lens.unsqueeze(1)).unsqueeze(1)
        att_fn = teacher_forced_scorer(model.decoder, enc, mask)
        for mode in MODES:
            fused = rec.decode_encoded(enc, enc_lens, mode)
            plain = rec0.decode_encoded(enc, enc_lens, mode)
            for b, hyps in enumerate(fused):
                scores = [h.score for h in hyps]
                assert scores == sorted(scores, reverse=True) and all(np.isfinite(scores)), mode
                differs += [h.token_ids for h in hyps] != [h.token_ids for h in plain[b]]
                for h in hyps:
                    if mode == "ctc_greedy":  # greedy ignores the LM
                        assert h.lm_score is None
                        continue
                    assert h.lm_score == pytest.approx(lm_sequence_logp(lm, [h.token_ids])[0], abs=1e-4), mode
                    if mode == "ctc_prefix_beam":
                        expected = h.ctc_score + lam * h.lm_score + penalty * (len(h.token_ids) + 1)
                    else:
                        ww = 0.0 if mode == "attention" else w
                        ys = torch.tensor([[model.sos] + h.token_ids])
                        att = att_fn(torch.tensor([b]), ys, torch.tensor([ys.size(1)]))[0]
                        att = float(att.gather(1, torch.tensor(h.token_ids + [model.eos]).unsqueeze(1)).sum())
                        assert h.att_score == pytest.approx(att, abs=1e-3), mode
                        expected = (1 - ww) * att + lam * h.lm_score + penalty * (len(h.token_ids) + 1)
                        if ww:
                            expected += ww * h.ctc_score
                    assert h.score == pytest.approx(expected, abs=1e-3), mode
        # the recognizer's joint search is the plain search with an LMStepScorer (wiring)
        direct = joint_beam_search(model.ctc.log_softmax(enc), enc_lens, DecoderStepScorer(model.decoder, enc, mask),
                                   sos=model.sos, eos=model.eos, beam_size=4, ctc_weight=w, penalty=penalty, nbest=4,
                                   lm_scorer=LMStepScorer(lm), lm_weight=lam)
        got = rec.decode_encoded(enc, enc_lens, "joint")
        assert [[h.token_ids for h in u] for u in got] == [[h.token_ids for h in u] for u in direct]
    assert differs > 0  # the LM changed some n-best list


def test_package_carries_the_lm(exp_with_lm, tmp_path):
    exp, _ = exp_with_lm
    from asrdemo.package import package

    out = package(exp, tmp_path / "pkg")
    assert (out / "lm" / "valid.loss.ave.pth").is_file() and not (out / "lm" / "checkpoints").exists()
    assert "language model: lm/" in (out / "README.md").read_text()
    rec = Recognizer.from_exp_dir(out, decode_conf={"lm_weight": 0.5, "mode": "attention_rescoring"})
    assert rec.lm is not None and np.isfinite(rec.recognize(noise(0.8, 16000, 5), 16000).score)


def test_clear_errors(exp_with_lm, tmp_path):
    exp, _ = exp_with_lm
    bare = tmp_path / "bare"
    make_tiny_exp_dir(bare)
    with pytest.raises(AsrdemoError, match="names no LM"):
        Recognizer.from_exp_dir(bare, decode_conf={"lm_weight": 0.3})
    with pytest.raises(AsrdemoError, match="lm_weight must be a number >= 0"):
        Recognizer.from_exp_dir(exp, decode_conf={"lm_weight": -1})
    other = make_lm_dir(tmp_path / "other_lm", tokens=TOKENS[:-2] + ["ん", "<sos/eos>"])  # a different token list
    r = attach(tmp_path / "other_lm", bare, check=False)
    assert r.returncode == 1 and "differs from the ASR model's" in r.stderr
    del other
    broken = tmp_path / "broken"
    shutil.copytree(exp, broken)
    (broken / "lm" / "valid.loss.ave.pth").unlink()
    with pytest.raises(AsrdemoError, match="no LM weights"):
        Recognizer.from_exp_dir(broken, decode_conf={"lm_weight": 0.3})


def test_explain_shows_the_lm_share(exp_with_lm, tmp_path):
    from asrdemo.explain import plot_hypotheses, trace_to_json

    exp, _ = exp_with_lm
    rec = Recognizer.from_exp_dir(exp, decode_conf={"beam_size": 3, "lm_weight": 0.6, "penalty": 0.1})
    trace = rec.recognize(noise(1.0, 16000, seed=9), 16000, mode="joint", nbest=3, trace=True).trace
    for h in trace.hypotheses:
        assert h.lm_score is not None and h.lm_weight == 0.6
        assert h.total_score == pytest.approx(h.search_score, abs=1e-3)  # the LM's share is in the total
    assert "lm_score" in trace_to_json(trace)["decode"]["hypotheses"][0]
    plot_hypotheses(trace, tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 0
    plain = Recognizer.from_exp_dir(exp, decode_conf={"beam_size": 3}).recognize(
        noise(1.0, 16000, seed=9), 16000, mode="joint", nbest=3, trace=True).trace
    assert all(h.lm_score is None for h in plain.hypotheses)


def test_decode_command_lm_weight(exp_with_lm, tmp_path):
    """`asrdemo decode --lm_weight` reaches the recognizer and decode.yaml; a newly attached LM decodes again."""
    import json

    import soundfile as sf

    from test_train import run_inprocess

    exp, _ = exp_with_lm
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(2):
        sf.write(audio / f"u{i}.wav", noise(0.9 + 0.2 * i, 16000, seed=40 + i), 16000)
    out = tmp_path / "out"
    args = ["decode", "--exp_dir", exp, "--input", audio, "--out_dir", out, "--mode", "attention_rescoring",
            "--lm_weight", "0.5"]
    assert run_inprocess(args) == 0
    assert yaml.safe_load((out / "decode.yaml").read_text())["lm_weight"] == 0.5
    done = json.loads((out / ".done").read_text())
    assert done["lm"] is not None
    hyp = (out / "hyp.txt").read_text()
    rec = Recognizer.from_exp_dir(exp, decode_conf={"mode": "attention_rescoring", "lm_weight": 0.5})
    for i in range(2):
        want = rec.recognize(noise(0.9 + 0.2 * i, 16000, seed=40 + i), 16000).text
        assert f"u{i} {want}".rstrip() in hyp.splitlines()
    make_lm_dir(tmp_path / "new_lm", seed=5)
    attach(tmp_path / "new_lm", exp)  # another LM: the same command must decode again
    assert run_inprocess(args) == 0
    assert json.loads((out / ".done").read_text())["lm"] != done["lm"]
    attach(exp.parent / "lm_exp", exp)  # put the module's LM back for the other tests
