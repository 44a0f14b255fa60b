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


@pytest.mark.parametrize("ref, hyp, ops", [
    ("政府は。来年度。", "政府は。", "CCCC"),  # not C C C D D D D C: the 。 is the first one
    ("政府は。来年度。", "政府が。来", "CCSCC"),
    ("abc", "abc", "CCC"),
    ("abc", "", ""),
    ("ab", "abxy", "CCII"),
])
def test_a_partial_aligns_with_the_beginning_of_the_final(ref, hyp, ops):
    """``prefix=True``, for streaming's first emissions: the rest of the final is not yet spoken."""
    a = align(list(ref), list(hyp), prefix=True)
    assert "".join(a.ops) == ops
    assert "".join(r for r in a.ref if r) == ref[:len([o for o in ops if o != "I"])]


def test_without_prefix_a_partial_can_match_the_final_s_last_token():
    """Why ``prefix`` exists: equal cost, and the backtrace from the end takes the last 。."""
    assert "".join(align(list("政府は。来年度。"), list("政府は。")).ops) == "CCCDDDDC"


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


# -- Unicode normalisation (issue 12, item 3): the same text in another Unicode form is no error --


@pytest.mark.parametrize("ref, hyp", [
    ("がぎぐげご", "\u304b\u3099\u304d\u3099\u304f\u3099\u3051\u3099\u3053\u3099"),  # NFD, as macOS writes it
    ("ＡＩ１２３？", "AI123?"),  # full-width ASCII
    ("ｶﾞｲﾄﾞ", "ガイド"),  # half-width katakana
])
def test_other_unicode_forms_score_as_equal(ref, hyp):
    assert cer(ref, hyp) == 0 and cer(hyp, ref) == 0
    assert cer(ref, hyp, form="none") > 0  # the raw comparison still exists, on request


def test_score_files_normalises_both_sides_and_says_so(tmp_path):
    import unicodedata

    ref = "水をマレーシアから買わなくてはならないのです。"
    hyp = "水をマレーシアから買わなくてはならないのです"
    (tmp_path / "ref_nfc").write_text(f"u1 {ref}\n", encoding="utf-8")
    (tmp_path / "ref_nfd").write_text(f"u1 {unicodedata.normalize('NFD', ref)}\n", encoding="utf-8")
    (tmp_path / "hyp").write_text(f"u1 {unicodedata.normalize('NFD', hyp)}\n", encoding="utf-8")
    nfc = score_files(tmp_path / "ref_nfc", tmp_path / "hyp", tmp_path / "a")
    nfd = score_files(tmp_path / "ref_nfd", tmp_path / "hyp", tmp_path / "b")
    assert (nfc.errors, nfc.ref_units) == (nfd.errors, nfd.ref_units) == (1, len(ref))
    assert "normalised with Unicode NFKC" in (tmp_path / "a" / "result.txt").read_text(encoding="utf-8")
    raw = score_files(tmp_path / "ref_nfc", tmp_path / "hyp", tmp_path / "c", form="none")
    assert raw.errors > 1
    assert "raw text" in (tmp_path / "c" / "result.txt").read_text(encoding="utf-8")


def test_score_cli_normalize_option(tmp_path):
    import subprocess
    import sys

    (tmp_path / "ref").write_text("u1 ＡＩ１２３？\n", encoding="utf-8")
    (tmp_path / "hyp").write_text("u1 AI123?\n", encoding="utf-8")

    def run(*extra):
        return subprocess.run([sys.executable, "-m", "asrdemo", "score", "--ref", str(tmp_path / "ref"),
                               "--hyp", str(tmp_path / "hyp"), "--out_dir", str(tmp_path / "out"), *extra],
                              capture_output=True, text=True, check=True).stdout
    assert run().startswith("CER 0.00 %")
    assert run("--normalize", "none").startswith("CER 100.00 %")
