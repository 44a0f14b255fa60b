"""Kaldi-style data directories: `wav.scp`, `text`, `utt2spk`, `spk2utt`, `utt2dur`.

Files are sorted in C (byte) order, as Kaldi's `utils/validate_data_dir.sh` expects, and every
file lists the same utterances. Writing validates first and writes each file atomically.
"""

import dataclasses
import logging
import re
import unicodedata
from pathlib import Path
from typing import Iterable, List, Optional

from asrdemo.errors import AsrdemoError
from asrdemo.utils.io import atomic_write_lines, read_lines
from asrdemo.utils.io import input_digest as io_input_digest

FILES = ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur")

log = logging.getLogger(__name__)


class DataDirError(AsrdemoError):
    pass


@dataclasses.dataclass
class Utterance:
    utt_id: str
    wav: str  # a path (or a Kaldi rxfilename)
    text: str
    spk: str
    dur: Optional[float] = None  # seconds


def c_sorted(items, key=lambda x: x):
    """Sort like `LC_ALL=C sort`: by the UTF-8 bytes of the key."""
    return sorted(items, key=lambda x: key(x).encode("utf-8"))


def _check(utts: List[Utterance]) -> None:
    seen = set()
    for u in utts:
        if not u.utt_id or any(c.isspace() for c in u.utt_id):
            raise DataDirError(f"bad utterance id {u.utt_id!r}: empty or contains whitespace")
        if not u.spk or any(c.isspace() for c in u.spk):
            raise DataDirError(f"{u.utt_id}: bad speaker id {u.spk!r}")
        if u.utt_id in seen:
            raise DataDirError(f"duplicate utterance id {u.utt_id}")
        seen.add(u.utt_id)
        if "\n" in u.text or "\n" in u.wav:
            raise DataDirError(f"{u.utt_id}: newline inside text or wav entry")
        if u.dur is not None and not u.dur > 0:
            raise DataDirError(f"{u.utt_id}: duration {u.dur} is not positive")


# Unicode categories no transcript should carry: controls (Cc: tab, CR, ...), invisible format
# characters (Cf: zero-width space, BOM, ...), line and paragraph separators (Zl U+2028, Zp U+2029).
# A line separator inside a transcript splits it in two for every reader that uses splitlines().
_DROPPED_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")


def clean_transcript(text: str):
    """-> (text without control/format/separator characters, how many were dropped).

    One that separated words (tab, newline, U+2028, ...) leaves a single space, so words stay apart."""
    out, dropped = [], 0
    for c in text:
        if unicodedata.category(c) in _DROPPED_CATEGORIES:
            dropped += 1
            if c.isspace():
                out.append(" ")
        else:
            out.append(c)
    if not dropped:
        return text, 0
    return re.sub(" {2,}", " ", "".join(out)).strip(), dropped


def write_data_dir(out_dir, utterances: Iterable[Utterance]) -> Path:
    """Validate and write a data dir; returns its path.

    Transcripts lose their control, format and separator characters here (`clean_transcript`),
    at data preparation, with a count in the log; raises DataDirError for anything else wrong."""
    utts = c_sorted(list(utterances), key=lambda u: u.utt_id)
    if not utts:
        raise DataDirError(f"{out_dir}: no utterances to write")
    dropped, changed = 0, []
    for i, u in enumerate(utts):
        text, n = clean_transcript(u.text)
        if n:
            dropped += n
            changed.append(u.utt_id)
            utts[i] = dataclasses.replace(u, text=text)
    if dropped:
        log.warning("%s: dropped %d control/format/separator character(s) from %d transcript(s), e.g. %s",
                    out_dir, dropped, len(changed), ", ".join(changed[:3]))
    _check(utts)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_lines(out / "wav.scp", (f"{u.utt_id} {u.wav}" for u in utts))
    atomic_write_lines(out / "text", (f"{u.utt_id} {u.text.strip()}" for u in utts))
    atomic_write_lines(out / "utt2spk", (f"{u.utt_id} {u.spk}" for u in utts))
    spk2utt = {}
    for u in utts:
        spk2utt.setdefault(u.spk, []).append(u.utt_id)
    atomic_write_lines(out / "spk2utt", (f"{s} {' '.join(ids)}" for s, ids in c_sorted(spk2utt.items(), key=lambda x: x[0])))
    if all(u.dur is not None for u in utts):
        atomic_write_lines(out / "utt2dur", (f"{u.utt_id} {u.dur:.3f}" for u in utts))
    validate_data_dir(out)
    return out


# Kaldi's whitespace (" \t\n\r\f\v"): the key ends at the first run of it, as in Kaldi's readers.
# Not Python's str.split(), which also splits at U+3000 and U+2028 inside Japanese text.
_KALDI_SPACE = re.compile(r"[ \t\r\f\v]+")


def read_text(path):
    """A data dir's or dump dir's `text` ({utt_id: transcript}) as `read_kv` reads it, except that
    an empty transcript (the id alone) is legal: a non-speech utterance (docs/design.md)."""
    return read_kv(path, allow_empty_value=True)


def read_kv(path, allow_empty_value=False):
    """Read a Kaldi `key value...` file into an ordered dict, with file:line in every error.

    Like Kaldi: the key ends at the first space or tab (`key<TAB>value` is fine), the value is the
    rest without surrounding ASCII whitespace. Lines are split at "\n" only (`read_lines`), and a
    UTF-8 byte-order mark at the start is ignored. Raises DataDirError (file:line) for a missing
    file, a file that is not UTF-8, an empty line, an empty value or a duplicate key."""
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"missing file {path}")
    try:
        lines = read_lines(path)
    except UnicodeDecodeError as e:
        lineno = e.object[: e.start].count(b"\n") + 1
        raise DataDirError(f"{path}:{lineno}: not valid UTF-8 ({e.reason})") from None
    table = {}
    for lineno, line in enumerate(lines, 1):
        parts = _KALDI_SPACE.split(line, maxsplit=1)
        key = parts[0]
        value = parts[1].strip(" \t\r\f\v") if len(parts) > 1 else ""
        if not key:
            raise DataDirError(f"{path}:{lineno}: empty line or leading whitespace")
        if not value and not allow_empty_value:
            raise DataDirError(f"{path}:{lineno}: no value for {key}")
        if key in table:
            raise DataDirError(f"{path}:{lineno}: duplicate key {key}")
        table[key] = value
    return table


def validate_data_dir(data_dir) -> None:
    """Raise `DataDirError` unless the dir is complete, C-sorted and consistent."""
    d = Path(data_dir)
    tables = {}
    for name in ("wav.scp", "text", "utt2spk", "spk2utt"):
        tables[name] = read_text(d / name) if name == "text" else read_kv(d / name)
        keys = list(tables[name])
        if keys != c_sorted(keys):
            raise DataDirError(f"{d / name}: not sorted in C order (LC_ALL=C sort)")
    if (d / "utt2dur").exists():
        tables["utt2dur"] = read_kv(d / "utt2dur")
    utts = set(tables["wav.scp"])
    for name in ("text", "utt2spk", "utt2dur"):
        if name in tables and set(tables[name]) != utts:
            diff = sorted(set(tables[name]) ^ utts)[:5]
            raise DataDirError(f"{d / name}: utterances differ from wav.scp (e.g. {diff})")
    from_spk2utt = {u: s for s, us in tables["spk2utt"].items() for u in us.split()}
    if from_spk2utt != tables["utt2spk"]:
        raise DataDirError(f"{d}: spk2utt does not match utt2spk")


def read_data_dir(data_dir) -> List[Utterance]:
    d = Path(data_dir)
    validate_data_dir(d)
    wavs, texts, spks = read_kv(d / "wav.scp"), read_text(d / "text"), read_kv(d / "utt2spk")
    durs = read_kv(d / "utt2dur") if (d / "utt2dur").exists() else {}
    return [
        Utterance(u, wavs[u], texts[u], spks[u], float(durs[u]) if u in durs else None) for u in wavs
    ]


def input_digest(data_dir, names=("wav.scp", "text")) -> str:
    """`utils.io.input_digest` of the data dir's files `names`, in that order: what a stage records
    in its `.done` (`utils.io.done_with`) so that a changed data dir makes its outputs stale."""
    return io_input_digest(Path(data_dir) / name for name in names)
