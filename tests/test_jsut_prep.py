"""Stage 1 (`asrdemo prepare`): JSUT layout -> Kaldi data dirs, ESPnet's split, strict parsing."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from asrdemo.data.datadir import read_data_dir, read_kv, validate_data_dir
from asrdemo.data.jsut import OFFICIAL_TOTAL, SUBSET_COUNTS, check_layout, prepare_jsut, split_ids
from asrdemo.errors import AsrdemoError
from jsut_fixture import JSUT_SUBSETS, make_jsut_tree, official_ids, utt_id

REPO = Path(__file__).resolve().parents[1]
PER_SUBSET = {s: 2 for s in JSUT_SUBSETS} | {"basic5000": 12}  # 28 utterances


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "jsut_ver1.1"
    made = make_jsut_tree(root, per_subset=PER_SUBSET)
    return root, made


def c_order(keys):
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def test_official_counts_match_the_corpus_description():
    assert SUBSET_COUNTS == JSUT_SUBSETS
    assert OFFICIAL_TOTAL == 7696


def test_default_split_is_espnets_on_the_full_id_list():
    ids = official_ids()
    assert len(ids) == 7696
    split = split_ids(list(reversed(ids)))  # input order must not matter
    assert split["test"] == [f"BASIC5000_{i:04d}" for i in range(1, 251)]  # ESPnet's eval1
    assert split["dev"] == [f"BASIC5000_{i:04d}" for i in range(251, 501)]  # ESPnet's dev
    assert len(split["train"]) == 7196 and split["train"][0] == "BASIC5000_0501"  # tr_no_dev
    assert split["train"] == c_order(split["train"])
    assert split["train"][-1] == "VOICEACTRESS100_100"
    assert not set(split["train"]) & (set(split["dev"]) | set(split["test"]))


def test_prepare_writes_three_valid_dirs_with_the_expected_split(tmp_path, corpus):
    root, made = corpus
    counts = prepare_jsut(root, tmp_path / "data", num_test=4, num_dev=3)
    assert counts == {"train": 21, "dev": 3, "test": 4}
    every = c_order(made)
    expected = {"test": every[:4], "dev": every[4:7], "train": every[7:]}
    for name, ids in expected.items():
        d = tmp_path / "data" / name
        validate_data_dir(d)
        utts = read_data_dir(d)
        assert [u.utt_id for u in utts] == ids  # LC_ALL=C order
        for u in utts:
            subset, text, wav = made[u.utt_id]
            assert u.text == text  # after the colon, punctuation kept
            assert u.spk == "JS"
            assert Path(u.wav) == wav.absolute()  # the original file: no resampled copy
            assert soundfile.info(u.wav).samplerate == 48000
            assert u.dur == pytest.approx(0.2, abs=1e-3)
        assert read_kv(d / "spk2utt") == {"JS": " ".join(ids)}
    # the test set is the first ids in C order: BASIC5000_* then COUNTERSUFFIX26_*, as on JSUT
    assert expected["test"] == [utt_id("basic5000", i) for i in range(1, 5)]
    done = json.loads((tmp_path / "data" / ".done").read_text())
    assert done["num_test"] == 4 and done["num_dev"] == 3 and done["counts"]["train"] == 21


def test_cli_skips_when_done_and_redoes_when_the_split_changes(tmp_path, corpus):
    root, _ = corpus
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def run(*extra):
        cmd = [sys.executable, "-m", "asrdemo", "prepare", "--corpus_root", str(root),
               "--out_dir", str(tmp_path / "data"), *extra]
        return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)

    first = run("--num_test", "4", "--num_dev", "3")
    assert first.returncode == 0, first.stderr
    again = run("--num_test", "4", "--num_dev", "3")
    assert again.returncode == 0 and "skipped" in again.stderr
    changed = run("--num_test", "5", "--num_dev", "5", "--train_name", "tr_no_dev", "--test_name", "eval1")
    assert changed.returncode == 0 and "skipped" not in changed.stderr
    assert len(read_kv(tmp_path / "data" / "eval1" / "text")) == 5
    assert len(read_kv(tmp_path / "data" / "dev" / "text")) == 5
    assert len(read_kv(tmp_path / "data" / "tr_no_dev" / "text")) == 18


def test_count_differences_and_missing_subsets_are_warnings(tmp_path, caplog):
    root = tmp_path / "trimmed"
    make_jsut_tree(root, per_subset=3, subsets=["basic5000", "travel1000"])
    with caplog.at_level(logging.WARNING):
        counts = check_layout(root)
    assert counts == {"basic5000": 3, "travel1000": 3}
    assert "subset folder(s) missing" in caplog.text and "voiceactress100" in caplog.text
    assert "basic5000 3 (official 5000)" in caplog.text


def _edit_transcript(root, subset, fn):
    path = root / subset / "transcript_utf8.txt"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(fn(lines)), encoding="utf-8")
    return path


def _prepare_fails(tmp_path, root, *needles):
    out = tmp_path / "data"
    with pytest.raises(AsrdemoError) as err:
        prepare_jsut(root, out, num_test=4, num_dev=3)
    for needle in needles:
        assert needle in str(err.value), str(err.value)
    assert not (out / ".done").exists()
    assert not (out / "train").exists(), "nothing is written while the corpus has problems"
    return str(err.value)


def test_malformed_line_is_reported_with_file_and_line(tmp_path, corpus):
    root, _ = corpus
    path = _edit_transcript(root, "travel1000", lambda ls: ls[:1] + ["TRAVEL1000_0002 no colon here\n"])
    _prepare_fails(tmp_path, root, f"{path}:2", "malformed line")


def test_bad_ids_are_reported_together(tmp_path, corpus):
    root, _ = corpus
    path = _edit_transcript(root, "loanword128", lambda ls: ["LOANWORD128 001:text\n", "LOANWORD128/002:x\n"])
    msg = _prepare_fails(tmp_path, root, f"{path}:1", "malformed utterance id", f"{path}:2")
    assert "2 problem(s)" in msg  # both reported in one run


def test_duplicate_id_is_reported(tmp_path, corpus):
    root, _ = corpus
    path = _edit_transcript(root, "basic5000", lambda ls: ls + [ls[0]])
    _prepare_fails(tmp_path, root, f"{path}:13", "duplicate utterance id BASIC5000_0001", f"{path}:1")


def test_invalid_utf8_is_reported(tmp_path, corpus):
    root, _ = corpus
    path = root / "onomatopee300" / "transcript_utf8.txt"
    path.write_bytes(path.read_bytes() + b"ONOMATOPEE300_003:\xff\xfe\n")
    _prepare_fails(tmp_path, root, f"{path}:3", "not valid UTF-8")


def test_missing_wav_is_reported(tmp_path, corpus):
    root, made = corpus
    made["PRECEDENT130_002"][2].unlink()
    _prepare_fails(tmp_path, root, f"{root / 'precedent130' / 'transcript_utf8.txt'}:2",
                   "PRECEDENT130_002: missing wav")


def test_corrupt_wav_is_reported(tmp_path, corpus):
    root, made = corpus
    made["REPEAT500_set1_002"][2].write_bytes(b"RIFF\x00\x00\x00\x00not really a wav file at all")
    _prepare_fails(tmp_path, root, f"{root / 'repeat500' / 'transcript_utf8.txt'}:2",
                   "REPEAT500_set1_002: unreadable wav")


def test_empty_wav_is_reported(tmp_path, corpus):
    root, made = corpus
    soundfile.write(str(made["VOICEACTRESS100_001"][2]), [], 48000, subtype="PCM_16")
    _prepare_fails(tmp_path, root, "VOICEACTRESS100_001", "holds no audio")


def test_structural_problems(tmp_path, corpus):
    root, _ = corpus
    (root / "countersuffix26" / "transcript_utf8.txt").unlink()
    with pytest.raises(AsrdemoError, match="countersuffix26: no transcript_utf8.txt"):
        check_layout(root)
    with pytest.raises(AsrdemoError, match="does not look like JSUT"):
        check_layout(tmp_path)
    (root / "countersuffix26" / "transcript_utf8.txt").write_text("\n", encoding="utf-8")
    with pytest.raises(AsrdemoError, match="transcript_utf8.txt: no utterances"):
        check_layout(root)


def test_split_too_large_for_the_corpus(tmp_path, corpus):
    root, _ = corpus
    with pytest.raises(AsrdemoError, match="too few"):
        prepare_jsut(root, tmp_path / "data", num_test=20, num_dev=8)  # 28 utterances: no train left
    with pytest.raises(AsrdemoError, match="at least 1"):
        prepare_jsut(root, tmp_path / "data", num_test=0, num_dev=3)


def test_transcript_details(tmp_path, corpus):
    """CRLF endings, a BOM and a blank line are tolerated; text after the first colon is kept whole."""
    root, _ = corpus
    path = root / "utparaphrase512" / "transcript_utf8.txt"
    path.write_bytes(
        "\ufeffUT-PARAPHRASE-sent001-phrase1:時刻は１０：３０です。\r\n\r\n"
        "UT-PARAPHRASE-sent001-phrase2:比率は3:2、？\r\n".encode("utf-8")
    )
    prepare_jsut(root, tmp_path / "data", num_test=4, num_dev=3)
    text = read_kv(tmp_path / "data" / "train" / "text")
    assert text["UT-PARAPHRASE-sent001-phrase1"] == "時刻は１０：３０です。"
    assert text["UT-PARAPHRASE-sent001-phrase2"] == "比率は3:2、？"


def test_an_empty_text_is_a_non_speech_utterance(tmp_path, corpus, caplog):
    """`UTT_ID:` (the synthetic corpus's noise-only utterances) prepares into a data dir whose
    text line has no words, and reads back as an empty transcript."""
    import logging

    root, made = corpus
    last = sorted(made)[-1]
    subset = made[last][0]
    _edit_transcript(root, subset, lambda ls: [f"{last}:\n" if line.startswith(f"{last}:") else line for line in ls])
    with caplog.at_level(logging.INFO):
        prepare_jsut(root, tmp_path / "data", num_test=4, num_dev=3)
    assert f"1 non-speech utterance(s) (empty text, e.g. {last})" in caplog.text
    texts = {u.utt_id: u.text for u in read_data_dir(tmp_path / "data" / "train")}
    assert texts[last] == "" and all(t for u, t in texts.items() if u != last)
