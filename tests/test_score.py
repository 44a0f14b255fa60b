"""CER and sclite-style alignment on hand-made pairs."""

import pytest

from asrdemo.errors import AsrdemoError
from asrdemo.score import align, cer, score_files


@pytest.mark.parametrize("ref, hyp, ops", [
    ("abc", "abc", "CCC"),
    ("abc", "axc", "CSC"),
    ("abc", "ac", "CDC"),
    ("abc", "abxc", "CCIC"),
    ("abc", "", "DDD"),
    ("", "ab", "II"),
])
def test_alignment_ops(ref, hyp, ops):
    a = align(list(ref), list(hyp))
    assert "".join(a.ops) == ops
    assert [r for r in a.ref if r] == list(ref) and [h for h in a.hyp if h] == list(hyp)


def test_cer_values():
    assert cer("水をマレーシアから", "水をマレーシアから") == 0
    assert cer("水を買う", "水が買う") == 0.25
    assert cer("水を 買う", "水を買う") == 0  # spaces are not characters
    assert cer("あ", "いうえ") == 3.0
    with pytest.raises(ValueError):
        cer(" ", "a")


def test_score_files(tmp_path):
    (tmp_path / "ref").write_text("u1 水をマレーシアから\nu2 今日は晴れ\n", encoding="utf-8")
    (tmp_path / "hyp").write_text("u2 今日晴れた\nu1 水をマレーシアから\n", encoding="utf-8")
    totals = score_files(tmp_path / "ref", tmp_path / "hyp", tmp_path / "out")
    assert (totals.S, totals.D, totals.I, totals.ref_units) == (0, 1, 1, 14)
    assert (tmp_path / "out" / "cer.txt").read_text().startswith("CER 14.29 % (N=14, S=0 D=1 I=1")
    result = (tmp_path / "out" / "result.txt").read_text()
    assert "id: (u2)\nScores: (#C #S #D #I) 4 0 1 1" in result
    assert "Most frequent deletions:" in result and "は" in result
    assert (tmp_path / "out" / "hyp.trn").read_text().splitlines()[1] == "今 日 晴 れ た (u2)"


def test_score_files_missing_hypothesis(tmp_path):
    (tmp_path / "ref").write_text("u1 あ\nu2 い\n", encoding="utf-8")
    (tmp_path / "hyp").write_text("u1 あ\n", encoding="utf-8")
    with pytest.raises(AsrdemoError, match="no hypothesis"):
        score_files(tmp_path / "ref", tmp_path / "hyp", tmp_path / "out")
    assert not (tmp_path / "out" / "cer.txt").exists()
