"""Kana CER: reference and hypothesis as katakana readings (pyopenjtalk), scored like characters."""

import subprocess
import sys

import pytest

from asrdemo.score import cer, kana_cer, score_files

pytest.importorskip("pyopenjtalk")


def test_spelling_error_is_not_a_kana_error():
    assert cer("買う", "飼う") == pytest.approx(0.5)  # one of two characters wrong
    assert kana_cer("買う", "飼う") == 0.0  # both カウ: the sound is right
    assert kana_cer("買う", "貸す") > 0  # カウ vs カス: a reading error stays an error


def test_score_files_writes_both_cers(tmp_path):
    (tmp_path / "ref").write_text("u1 今日は買い物に行きます\nu2 猫を飼う\n", encoding="utf-8")
    (tmp_path / "hyp").write_text("u1 今日は買い物に行きます\nu2 猫を買う\n", encoding="utf-8")
    totals = score_files(tmp_path / "ref", tmp_path / "hyp", tmp_path / "out")
    assert totals.S == 1
    lines = (tmp_path / "out" / "cer.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("CER ") and "S=1" in lines[0]  # the first line stays the character CER
    assert lines[1].startswith("kana CER 0.00 %")
    result = (tmp_path / "out" / "result.txt").read_text(encoding="utf-8")
    assert "Sum: CER" in result and "Sum (kana): CER 0.00 %" in result and "ネ コ ヲ カ ウ" in result


def test_score_command_prints_both(tmp_path):
    (tmp_path / "ref").write_text("u1 雨が降る\n", encoding="utf-8")
    (tmp_path / "hyp").write_text("u1 飴が降る\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "asrdemo", "score", "--ref", tmp_path / "ref", "--hyp",
                          tmp_path / "hyp", "--out_dir", tmp_path / "out"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0].startswith("CER 25.00 %") and out[1].startswith("kana CER 0.00 %")
