"""Kaldi data dirs: round trip, C-order sorting, validation errors that name the file."""

import pytest

from asrdemo.data.datadir import DataDirError, Utterance, read_data_dir, validate_data_dir, write_data_dir


def utts():
    # C order puts upper case before lower case and "_" (0x5f) before "a"
    return [
        Utterance("spk1_b", "/x/b.wav", "こんにちは。", "spk1", 1.5),
        Utterance("SPK0_a", "/x/a.wav", "水を 買う", "SPK0", 0.5),
        Utterance("spk1_a", "/x/c.wav", "テスト", "spk1", 2.0),
    ]


def test_round_trip_sorted(tmp_path):
    write_data_dir(tmp_path, utts())
    assert (tmp_path / "wav.scp").read_text().splitlines()[0] == "SPK0_a /x/a.wav"
    assert (tmp_path / "spk2utt").read_text() == "SPK0 SPK0_a\nspk1 spk1_a spk1_b\n"
    assert (tmp_path / "utt2dur").read_text().splitlines()[1] == "spk1_a 2.000"
    back = read_data_dir(tmp_path)
    assert [u.utt_id for u in back] == ["SPK0_a", "spk1_a", "spk1_b"]
    assert back[0] == Utterance("SPK0_a", "/x/a.wav", "水を 買う", "SPK0", 0.5)


@pytest.mark.parametrize("bad, message", [
    (Utterance("u 1", "/a.wav", "x", "s"), "bad utterance id"),
    (Utterance("spk1_b", "/a.wav", "x", "s"), "duplicate"),
    (Utterance("u1", "/a.wav", "x", "s", 0.0), "not positive"),
])
def test_write_rejects_bad_utterances(tmp_path, bad, message):
    with pytest.raises(DataDirError, match=message):
        write_data_dir(tmp_path, utts() + [bad])
    assert not (tmp_path / "wav.scp").exists()  # nothing half-written


def test_validate_names_file_and_line(tmp_path):
    write_data_dir(tmp_path, utts())
    text = tmp_path / "text"
    lines = text.read_text().splitlines()
    utt2spk = tmp_path / "utt2spk"
    good = utt2spk.read_text()
    utt2spk.write_text("\n".join(good.splitlines()[:2] + ["spk1_b"]) + "\n")  # (text may be empty: non-speech)
    with pytest.raises(DataDirError, match=r"utt2spk:3: no value for spk1_b"):
        validate_data_dir(tmp_path)
    utt2spk.write_text(good)
    text.write_text("\n".join(reversed(lines)) + "\n")
    with pytest.raises(DataDirError, match="not sorted"):
        validate_data_dir(tmp_path)
    text.write_text("\n".join(lines[:2]) + "\n")
    with pytest.raises(DataDirError, match="differ from wav.scp"):
        validate_data_dir(tmp_path)
    (tmp_path / "utt2spk").unlink()
    with pytest.raises(DataDirError, match="missing file"):
        validate_data_dir(tmp_path)


# -- issue 12, items 9 and 10: files as other tools write them, and characters no transcript should hold --


def test_read_kv_bom_tabs_crlf_and_line_separators(tmp_path):
    from asrdemo.data.datadir import read_kv

    f = tmp_path / "text"
    f.write_bytes("u1\tこんにちは\r\nu2  水を\u2028買う \nu3\t\tA\u3000B\n".encode("utf-8-sig"))
    assert read_kv(f) == {"u1": "こんにちは", "u2": "水を\u2028買う", "u3": "A\u3000B"}
    f.write_bytes(b"u1 ok\nu2 \xff\n")
    with pytest.raises(DataDirError, match=r"text:2: not valid UTF-8"):
        read_kv(f)


def test_data_dir_with_bom_and_tabs_validates(tmp_path):
    write_data_dir(tmp_path, utts())
    for name in ("wav.scp", "text", "utt2spk", "spk2utt"):
        p = tmp_path / name
        p.write_text(p.read_text(encoding="utf-8").replace(" ", "\t", 1), encoding="utf-8-sig")
    validate_data_dir(tmp_path)
    assert [u.text for u in read_data_dir(tmp_path)] == ["水を 買う", "テスト", "こんにちは。"]


def test_control_and_separator_characters_dropped_at_prep(tmp_path, caplog):
    bad = [Utterance("a1", "/x/a.wav", "水を\u2028買う", "s"), Utterance("a2", "/x/b.wav", "テ\u200bスト\x07", "s"),
           Utterance("a3", "/x/c.wav", "普通の文", "s")]
    with caplog.at_level("WARNING"):
        write_data_dir(tmp_path, bad)
    assert "dropped 3 control/format/separator character(s) from 2 transcript(s)" in caplog.text
    assert (tmp_path / "text").read_text(encoding="utf-8") == "a1 水を 買う\na2 テスト\na3 普通の文\n"


def test_an_empty_transcript_round_trips(tmp_path):
    """A non-speech utterance has an empty text: written as the id alone, read back as ""."""
    write_data_dir(tmp_path, utts() + [Utterance("spk1_c", "/c.wav", "", "spk1", 1.0)])
    assert [u.text for u in read_data_dir(tmp_path)][-1] == ""
