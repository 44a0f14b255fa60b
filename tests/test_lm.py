"""The language model: training (perplexity falls, exact resume), its cached steps, and shallow
fusion in the searches (lm_weight 0 is the search without an LM; with an LM the fused search finds
the best combined score over all sequences, by brute force as in test_search.py)."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from asrdemo.decode.ctc_prefix_beam import attention_rescoring, ctc_prefix_beam_search_batch
from asrdemo.decode.lm_scorer import LMStepScorer, lm_sequence_logp, load_lm, perplexity, rescore_with_lm
from asrdemo.model.lm import build_lm
from test_search import TableScorer, assert_sorted_finite, brute_force_ctc, joint, random_ctc_logp
from test_train import REPO, asrdemo_env, run_inprocess

torch.set_num_threads(1)

WORDS = ["きょう", "は", "いい", "てんき", "です", "あした", "も", "あめ", "でした", "わたし", "ねこ", "が", "すき"]
TINY_LM = {"lm": "transformer", "lm_conf": {"att_unit": 32, "head": 2, "unit": 64, "layer": 2, "dropout_rate": 0.1}}


def make_text_task(root, n_train=48, n_valid=8, seed=0):
    """Kaldi text files of word-salad sentences (a learnable character distribution) and their token list."""
    import random

    rng = random.Random(seed)
    lines = [f"s{i:03d} " + "".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5)))
             for i in range(n_train + n_valid)]
    (root / "text").write_text("".join(line + "\n" for line in lines[:n_train]), encoding="utf-8")
    (root / "dev").write_text("".join(line + "\n" for line in lines[n_train:]), encoding="utf-8")
    chars = sorted(set("".join(WORDS)), key=lambda c: c.encode("utf-8"))
    (root / "tokens.txt").write_text("".join(t + "\n" for t in ["<blank>", "<unk>", *chars, "<sos/eos>"]),
                                     encoding="utf-8")
    return root


def write_lm_config(path, **train):
    conf = {"model": TINY_LM, "optim_conf": {"lr": 0.005}, "scheduler_conf": {"warmup_steps": 5},
            "batching": {"batch_bins": 200, "max_batch_size": 8},
            "train": {"max_epochs": 4, "log_interval": 1, "keep_nbest_models": 2, **train}}
    path.write_text(yaml.safe_dump(conf), encoding="utf-8")
    return path


def lm_train_args(task, config, exp, *extra):
    return ["lm", "train", "--config", config, "--token_list", task / "tokens.txt", "--train_text", task / "text",
            "--valid_text", task / "dev", "--exp_dir", exp, *extra]


def test_kana_lm_reads_the_readings_of_its_text(tmp_path):
    """`lm train --token_type kana` (a kana ASR model's LM): written sentences are read into the
    kana token list's units, and `lm perplexity` reads them the same way (no <unk>)."""
    pytest.importorskip("pyopenjtalk")
    from asrdemo.data.tokens import make_token_list
    from asrdemo.kana import to_reading

    sentences = ["今日は良い天気です。", "明日も雨でした。", "私は猫が好きです。", "今日も猫は元気です。"]
    (tmp_path / "text").write_text("".join(f"s{i:03d} {t}\n" for i, t in enumerate(sentences * 6)), encoding="utf-8")
    (tmp_path / "dev").write_text("".join(f"d{i:03d} {t}\n" for i, t in enumerate(sentences)), encoding="utf-8")
    make_token_list(tmp_path / "text", tmp_path, "kana")
    exp = tmp_path / "exp"
    assert run_inprocess(lm_train_args(tmp_path, write_lm_config(tmp_path / "lm.yaml", max_epochs=2), exp,
                                       "--token_type", "kana")) == 0
    assert yaml.safe_load((exp / "config.yaml").read_text())["token_type"] == "kana"
    subprocess.run([sys.executable, "-m", "asrdemo", "lm", "perplexity", "--lm_dir", exp, "--text", tmp_path / "dev",
                    "--out_dir", tmp_path / "ppl"], cwd=REPO, env=asrdemo_env(), check=True, capture_output=True)
    result = json.loads((tmp_path / "ppl" / "ppl.json").read_text())
    assert result["unk"] == 0 and result["tokens"] == sum(len(to_reading(t)) + 1 for t in sentences)


def random_lm(kind, vocab, seed, sharp=1.0):
    torch.manual_seed(seed)
    conf = {"lm": kind, "lm_conf": {"transformer": {"att_unit": 16, "head": 2, "unit": 32, "layer": 2},
                                    "lstm": {"embed_unit": 16, "unit": 24, "layer": 2}}[kind]}
    lm = build_lm(conf, vocab).eval()
    with torch.no_grad():  # sharper than the initial near-uniform output, so the LM matters in a search
        lm.output_layer.weight.mul_(sharp)
    return lm


# ------------------------------------------------------------------------------------- training
def test_lm_perplexity_falls_with_training(tmp_path):
    task = make_text_task(tmp_path)
    exp = tmp_path / "exp"
    assert run_inprocess(lm_train_args(task, write_lm_config(tmp_path / "lm.yaml"), exp)) == 0
    for name in ("config.yaml", "tokens.txt", "train.log", "history.jsonl", ".done", "valid.loss.ave.pth",
                 "images/loss.png", "images/acc.png", "images/ppl.png"):
        assert (exp / name).is_file(), name
    history = [json.loads(line) for line in (exp / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    ppl = [r["valid_ppl"] for r in history]
    assert ppl[-1] < ppl[0] and history[-1]["train_loss"] < history[0]["train_loss"], ppl
    vocab = len((task / "tokens.txt").read_text().splitlines())
    assert ppl[0] < vocab  # better than uniform guessing even after one epoch
    for r in history:
        assert r["valid_ppl"] == pytest.approx(2.718281828 ** r["valid_loss"], rel=1e-6)

    # the validation statistics are exact per-token values: the checkpoint of the last epoch
    # scored by the decoding-side code (eval mode, teacher forcing) gives the same perplexity
    from asrdemo.data.datadir import read_kv
    from asrdemo.data.tokens import TokenList

    tokens = TokenList.load(task / "tokens.txt")
    last = load_lm(exp, model_file=exp / "checkpoints" / "epoch_4.pt")
    assert perplexity(last, tokens, list(read_kv(task / "dev").values()))["ppl"] == pytest.approx(ppl[-1], rel=1e-4)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(next((exp / "tensorboard").glob("events.*")))).Reload()
    for tag in ("train/loss", "train/ppl", "train/acc", "epoch/valid_ppl", "epoch/valid_loss"):
        assert tag in tb.Tags()["scalars"], tag
    done = json.loads((exp / ".done").read_text())
    assert done["model"] == "valid.loss.ave_2best.pth"
    assert "perplexity" in subprocess.run([sys.executable, "-m", "asrdemo", "lm", "perplexity", "--lm_dir", exp,
                                           "--text", task / "dev", "--out_dir", tmp_path / "ppl"], cwd=REPO,
                                          env=asrdemo_env(), capture_output=True, text=True, check=True).stdout
    assert json.loads((tmp_path / "ppl" / "ppl.json").read_text())["sentences"] == 8


def test_lm_config_errors(tmp_path):
    task = make_text_task(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"model": {"lm": "ngram"}}))
    from asrdemo.cli import main

    assert main([str(a) for a in lm_train_args(task, bad, tmp_path / "e1")]) == 1
    bad.write_text(yaml.safe_dump({"model": TINY_LM, "train": {"attention_image_interval": 1}}))
    assert main([str(a) for a in lm_train_args(task, bad, tmp_path / "e2")]) == 1


def test_lm_resume_follows_the_asr_trainers_rules(tmp_path, caplog):
    """`lm train --resume` checks a changed config like `asrdemo train` does: changed batching is
    refused by name and config.yaml is left as it was; another lr is taken and logged."""
    from asrdemo.cli import main

    task = make_text_task(tmp_path)
    config, exp = write_lm_config(tmp_path / "lm.yaml", max_epochs=1), tmp_path / "exp"
    assert run_inprocess(lm_train_args(task, config, exp)) == 0
    (exp / ".done").unlink()  # as a user does to train a finished LM further
    before = (exp / "config.yaml").read_text(encoding="utf-8")
    args = [str(a) for a in lm_train_args(task, config, exp, "--resume", "--max_epochs", 2)]
    assert main(args + ["--set", "batching.batch_bins=300"]) == 1
    assert "batching.batch_bins" in caplog.text
    assert (exp / "config.yaml").read_text(encoding="utf-8") == before
    assert run_inprocess(args + ["--set", "optim_conf.lr=0.002"]) == 0
    assert "optim_conf.lr" in caplog.text and "0.002" in (exp / "config.yaml").read_text(encoding="utf-8")


STEP = re.compile(r"epoch (\d+) step (\d+) \[batch \d+/\d+\]: loss ([\d.]+) ppl ([\d.]+) acc ([\d.]+) "
                  r"lr ([\d.e+-]+) grad_norm ([\d.]+)")


def test_lm_resume_after_sigkill_is_exact(tmp_path):
    """As tests/test_resume.py for the ASR model: kill mid-epoch after a step checkpoint, --resume,
    and get the per-update losses and the final weights of an uninterrupted run (dropout is on)."""
    task = make_text_task(tmp_path, n_train=60)
    config = write_lm_config(tmp_path / "lm.yaml", max_epochs=3, save_interval_steps=2)
    config_conf = yaml.safe_load(config.read_text())
    config_conf["batching"] = {"batch_bins": 1000, "max_batch_size": 3}  # 20 batches per epoch
    config.write_text(yaml.safe_dump(config_conf))
    full = tmp_path / "full"
    assert run_inprocess(lm_train_args(task, config, full)) == 0
    reference = {int(m.group(2)): tuple(map(float, m.groups()[2:]))
                 for m in STEP.finditer((full / "train.log").read_text())}
    assert sorted(reference) == list(range(1, 61))

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "asrdemo", *map(str, lm_train_args(task, config, killed))],
                            cwd=REPO, env=asrdemo_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            log_file = killed / "train.log"
            if log_file.is_file() and "last.pt (epoch 2," in log_file.read_text():
                os.kill(proc.pid, signal.SIGKILL)
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.002)
        else:
            raise AssertionError("no step checkpoint in epoch 2 within the time limit")
    finally:
        proc.kill()
        proc.wait()
    assert not (killed / ".done").exists()
    assert run_inprocess(lm_train_args(task, config, killed, "--resume")) == 0
    log_text = (killed / "train.log").read_text()
    resumed_from = int(re.search(r"resumed from .*step (\d+)", log_text).group(1))
    assert resumed_from >= 22  # a step checkpoint inside epoch 2 (or later)
    resumed = {int(m.group(2)): tuple(map(float, m.groups()[2:]))
               for m in STEP.finditer(log_text.rsplit("resumed from", 1)[1])}
    assert sorted(resumed) == list(range(resumed_from + 1, 61))
    for step, values in resumed.items():
        assert values == pytest.approx(reference[step], rel=1e-5, abs=1e-4), step
    a = torch.load(killed / "checkpoints/epoch_3.pt", weights_only=False)["model"]
    b = torch.load(full / "checkpoints/epoch_3.pt", weights_only=False)["model"]
    for key in b:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------- cached steps
@pytest.mark.parametrize("kind", ["transformer", "lstm"])
def test_cached_lm_steps_equal_teacher_forcing(kind):
    """Step by step through LMStepScorer, with the rows shuffled between steps as a beam does,
    the log-probs equal one teacher-forced pass; lm_sequence_logp equals their sum."""
    vocab, n, length = 11, 5, 7
    lm = random_lm(kind, vocab, seed=3)
    g = torch.Generator().manual_seed(4)
    ys = torch.randint(1, vocab - 1, (n, length), generator=g)
    ys_in = torch.cat([torch.full((n, 1), lm.sos), ys], dim=1)
    with torch.no_grad():
        expected = torch.log_softmax(lm.logits(ys_in, torch.full((n,), length + 1)), dim=-1)  # (N, L+1, V)
    scorer = LMStepScorer(lm)
    state = scorer.init_state(torch.zeros(n, dtype=torch.long))
    order = torch.arange(n)  # row i holds sequence order[i]
    with torch.no_grad():
        for t in range(length + 1):
            logp, state = scorer.score(ys_in[order, : t + 1], state)
            torch.testing.assert_close(logp, expected[order, t], rtol=1e-4, atol=1e-5)
            perm = torch.randperm(n, generator=g)
            state, order = scorer.select_state(state, perm), order[perm]
    seq_logp = lm_sequence_logp(lm, [s.tolist() for s in ys] + [[]])
    targets = torch.cat([ys, torch.full((n, 1), lm.eos)], dim=1)
    by_hand = expected.gather(2, targets.unsqueeze(2)).squeeze(2).sum(1)
    assert seq_logp[:n] == pytest.approx(by_hand.tolist(), abs=1e-4)
    assert seq_logp[n] == pytest.approx(float(expected[0, 0, lm.eos]), abs=1e-5)  # the empty sentence: <eos> only


def test_lm_state_must_follow_the_prefix():
    lm = random_lm("transformer", 7, seed=0)
    scorer = LMStepScorer(lm)
    _, state = scorer.score(torch.tensor([[6]]), scorer.init_state(torch.tensor([0])))
    with pytest.raises(ValueError, match="holds 1 tokens"):
        scorer.score(torch.tensor([[6, 2, 3]]), state)


# ------------------------------------------------------------------------------- shallow fusion
class CountingLM(LMStepScorer):
    calls = 0

    def score(self, ys, state):
        CountingLM.calls += 1
        return super().score(ys, state)


def test_lm_weight_zero_is_exactly_the_search_without_lm():
    vocab, lengths = 8, torch.tensor([19, 7, 12])
    logp = random_ctc_logp(3, 19, vocab, seed=31, sharp=1.0)
    decoder = TableScorer(3, vocab, seed=32)
    lm = random_lm("transformer", vocab, seed=33, sharp=5.0)
    CountingLM.calls = 0
    for w in (0.0, 0.3, 1.0):
        plain = joint(logp, lengths, decoder, beam_size=4, ctc_weight=w, nbest=4)
        fused0 = joint(logp, lengths, decoder, beam_size=4, ctc_weight=w, nbest=4, lm_scorer=CountingLM(lm),
                       lm_weight=0.0)
        assert [[(h.token_ids, h.score, h.ctc_score, h.att_score) for h in u] for u in plain] == \
               [[(h.token_ids, h.score, h.ctc_score, h.att_score) for h in u] for u in fused0]
        assert all(h.lm_score is None for u in fused0 for h in u)
    assert CountingLM.calls == 0  # lm_weight 0: the LM is never called
    nbest = ctc_prefix_beam_search_batch(logp, lengths, beam_size=4, nbest=4)
    kw = dict(sos=vocab - 1, eos=vocab - 1, ctc_weight=0.3)
    plain = attention_rescoring(nbest, lengths, decoder.teacher_forced, **kw)
    fused0 = attention_rescoring(nbest, lengths, decoder.teacher_forced, **kw, lm_fn=lambda s: 1 / 0, lm_weight=0.0)
    assert [[(h.token_ids, h.score) for h in u] for u in plain] == [[(h.token_ids, h.score) for h in u] for u in fused0]
    with pytest.raises(ValueError, match="needs an LM"):
        joint(logp, lengths, decoder, beam_size=4, ctc_weight=0.3, lm_weight=0.5)


@pytest.mark.parametrize("seed,ctc_weight", [(s, w) for s in range(3) for w in (0.0, 0.4)])
def test_fused_search_finds_the_best_combined_score(seed, ctc_weight):
    """A synthetic decoder, a random Transformer LM (through its cached steps): the search's best
    is the best over ALL sequences of (1 - w) att + w ctc + lm_weight lm + penalty (|y| + 1)."""
    frames, vocab, lm_weight, penalty = 4, 5, 0.8, 0.3
    logp = random_ctc_logp(1, frames, vocab, seed)
    eos = vocab - 1
    decoder = TableScorer(1, vocab, seed + 100)
    lm = random_lm("transformer", vocab, seed + 200, sharp=6.0)
    if ctc_weight > 0:
        ctc_table = {s: p for s, p in brute_force_ctc(logp[0].double().numpy()).items() if p > -1000}
    else:  # every label sequence up to one token per frame, no CTC term
        import itertools

        ctc_table = {s: 0.0 for n in range(frames + 1) for s in itertools.product(range(1, vocab - 1), repeat=n)}
    seqs = list(ctc_table)
    lm_table = dict(zip(seqs, lm_sequence_logp(lm, seqs)))
    combined = {s: (1 - ctc_weight) * decoder.sequence_logp(0, s, eos, eos) + ctc_weight * ctc_table[s]
                + lm_weight * lm_table[s] + penalty * (len(s) + 1) for s in seqs}
    without_lm = {s: v - lm_weight * lm_table[s] for s, v in combined.items()}
    best = max(combined, key=combined.get)
    beam = (vocab - 2) ** (frames + 1)
    with torch.no_grad():
        hyps = joint(logp, torch.tensor([frames]), decoder, beam_size=beam, ctc_weight=ctc_weight, nbest=5,
                     pre_beam_ratio=vocab, penalty=penalty, end_detection=False, lm_scorer=LMStepScorer(lm),
                     lm_weight=lm_weight)[0]
    assert_sorted_finite(hyps)
    assert tuple(hyps[0].token_ids) == best
    assert hyps[0].score == pytest.approx(combined[best], abs=1e-4)
    for h in hyps:
        assert h.lm_score == pytest.approx(lm_table[tuple(h.token_ids)], abs=1e-4)
        assert h.score == pytest.approx(combined[tuple(h.token_ids)], abs=1e-4)
    # and rescoring an n-best list adds the same LM term
    nbest = [[h for h in hyps]]
    for h in nbest[0]:
        h.score = without_lm[tuple(h.token_ids)]
    rescored = rescore_with_lm(nbest, lambda s: lm_sequence_logp(lm, s), lm_weight)
    assert [tuple(h.token_ids) for h in rescored[0]] == sorted((tuple(h.token_ids) for h in hyps),
                                                               key=lambda s: -combined[s])


def test_the_lm_changes_some_fused_results():
    """The brute-force test above has teeth: with these weights the LM moves the best sequence."""
    import itertools

    frames, vocab, moved = 4, 5, 0
    for seed in range(6):
        decoder = TableScorer(1, vocab, seed + 100)
        lm = random_lm("transformer", vocab, seed + 200, sharp=6.0)
        seqs = [s for n in range(frames + 1) for s in itertools.product(range(1, vocab - 1), repeat=n)]
        att = {s: decoder.sequence_logp(0, s, vocab - 1, vocab - 1) for s in seqs}
        lm_table = dict(zip(seqs, lm_sequence_logp(lm, seqs)))
        moved += max(seqs, key=att.get) != max(seqs, key=lambda s: att[s] + 0.8 * lm_table[s])
    assert moved > 0
