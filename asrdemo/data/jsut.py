"""Stage 1: a JSUT-layout corpus -> Kaldi data dirs `train`, `dev`, `test`.

JSUT ver1.1 (Sonobe et al., 2017) is nine subsets of one female speaker at 48 kHz:

    <root>/<subset>/transcript_utf8.txt     one "UTT_ID:text" line per utterance
    <root>/<subset>/wav/<UTT_ID>.wav

Data preparation and the split follow ESPnet's egs2/jsut/asr1 (local/data_prep.sh and
local/data.sh), so that CERs are comparable with ESPnet's published ones:

* every utterance of every subset, speaker "JS" for all of them (data_prep.sh writes
  `<id> JS` to utt2spk), text = the transcript after the colon, punctuation kept, nothing else
  normalised;
* all utterances sorted by id in C (byte) order; the first 250 are ESPnet's `eval1` (our `test`),
  the next 250 its `dev` (ours too), the remaining 7,196 its `tr_no_dev` (our `train`).
  (data.sh: `subset_data_dir.sh --first data/train 500 deveval`, then `--first deveval 250 eval1`,
  `--last deveval 250 dev`, and `--last train $((N-500)) tr_no_dev`.)

One deliberate difference in form, none in result: ESPnet turns *every* ':' of a transcript
line into a space (`tr ':' ' '`); we split at the first ':' and keep the rest verbatim. JSUT's
transcripts hold exactly one ASCII colon per line, so both give the same text on JSUT.

Data prep does NOT resample: `wav.scp` names the original 48 kHz files and `utt2dur` is read
from their headers (soundfile.info). Resampling happens once, at feature extraction
(`asrdemo.data.audio.load_audio`), see docs/design.md.

Parsing is strict: a malformed line, a duplicate id, a missing or unreadable wav is reported
with its file and line, and nothing is written until the whole corpus is clean. An empty text
(`UTT_ID:`) is a non-speech utterance — noise or silence whose transcript is nothing, which
`--corpus synth_ja` makes so that the model learns to answer nothing; stage 1 says how many.
"""

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import soundfile
from tqdm import tqdm

from asrdemo.data.datadir import FILES, Utterance, c_sorted, write_data_dir
from asrdemo.errors import AsrdemoError
from asrdemo.utils.io import DONE, clear_done, is_done, mark_done

logger = logging.getLogger(__name__)

# Official utterance count of each subset of JSUT ver1.1 (the number in each subset's name;
# the corpus README and Sonobe et al., "JSUT corpus", arXiv:1711.00354): 7,696 in total.
SUBSET_COUNTS: Dict[str, int] = {
    "basic5000": 5000,
    "countersuffix26": 26,
    "loanword128": 128,
    "onomatopee300": 300,
    "precedent130": 130,
    "repeat500": 500,
    "travel1000": 1000,
    "utparaphrase512": 512,
    "voiceactress100": 100,
}
OFFICIAL_TOTAL = sum(SUBSET_COUNTS.values())  # 7696
TRANSCRIPT = "transcript_utf8.txt"
WAV_DIR = "wav"
SPEAKER = "JS"  # ESPnet's local/data_prep.sh: one speaker id for the whole corpus
DEFAULT_NUM_TEST = 250  # ESPnet's eval1
DEFAULT_NUM_DEV = 250  # ESPnet's dev
DEFAULT_NAMES = {"train": "train", "dev": "dev", "test": "test"}

# JSUT ids look like BASIC5000_0001, REPEAT500_set1_001, UT-PARAPHRASE-sent002-phrase1.
UTT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
MAX_REPORTED = 20


class CorpusError(AsrdemoError):
    """The corpus has problems; the message lists them with file:line."""


@dataclass(frozen=True)
class Entry:
    utt_id: str
    wav: Path
    text: str
    where: str  # "transcript path:line", for error messages


class _Problems:
    """Collects every problem so that one run reports them all, not just the first."""

    def __init__(self):
        self.items: List[str] = []

    def add(self, msg: str) -> None:
        self.items.append(msg)

    def raise_if_any(self, what: str) -> None:
        if not self.items:
            return
        shown = self.items[:MAX_REPORTED]
        more = len(self.items) - len(shown)
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise CorpusError(f"{what}: {len(self.items)} problem(s)\n  " + "\n  ".join(shown) + tail)


def _parse_transcript(path: Path, problems: _Problems) -> List[Tuple[str, str, int]]:
    """(utt_id, text, line number) for every utterance line; problems are collected, not skipped."""
    rows = []
    with open(path, "rb") as f:
        raw_lines = f.read().split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()  # the final newline
    for lineno, raw in enumerate(raw_lines, 1):
        where = f"{path}:{lineno}"
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # UTF-8 byte-order mark
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as e:
            problems.add(f"{where}: not valid UTF-8 ({e.reason} at byte {e.start})")
            continue
        if not line.strip():
            continue  # a blank line holds no utterance
        utt_id, colon, text = line.partition(":")
        if not colon:
            problems.add(f"{where}: malformed line (expected UTT_ID:text): {line[:60]!r}")
            continue
        if not UTT_ID.fullmatch(utt_id):
            problems.add(f"{where}: malformed utterance id {utt_id!r} (letters, digits, '_', '-', '.' only)")
            continue
        rows.append((utt_id, text.strip(), lineno))  # an empty text: a non-speech utterance
    return rows


def scan_corpus(root) -> Tuple[List[Entry], Dict[str, int]]:
    """Parse every subset's transcript and match it with its wavs.

    Returns the entries (transcript order) and the per-subset utterance counts. Structural
    problems raise `CorpusError` listing all of them; counts that differ from JSUT's official
    ones (a trimmed corpus, the mini corpus) and missing subsets are warnings.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"corpus root {root} is not a directory")
    present = [s for s in SUBSET_COUNTS if (root / s).is_dir()]
    if not present:
        raise CorpusError(
            f"{root} does not look like JSUT: none of the subset folders "
            f"{', '.join(SUBSET_COUNTS)} is there (expected <root>/<subset>/{TRANSCRIPT} and <root>/<subset>/{WAV_DIR}/)"
        )
    problems = _Problems()
    entries: List[Entry] = []
    counts: Dict[str, int] = {}
    first_seen: Dict[str, str] = {}
    for subset in present:
        transcript = root / subset / TRANSCRIPT
        wav_dir = root / subset / WAV_DIR
        if not transcript.is_file():
            problems.add(f"{root / subset}: no {TRANSCRIPT}")
            continue
        if not wav_dir.is_dir():
            problems.add(f"{root / subset}: no {WAV_DIR}/ folder")
            continue
        wav_names = {e.name for e in os.scandir(wav_dir) if e.name.endswith(".wav")}
        before = len(problems.items)
        rows = _parse_transcript(transcript, problems)
        if not rows and len(problems.items) == before:
            problems.add(f"{transcript}: no utterances")
        for utt_id, text, lineno in rows:
            where = f"{transcript}:{lineno}"
            if utt_id in first_seen:
                problems.add(f"{where}: duplicate utterance id {utt_id} (first at {first_seen[utt_id]})")
                continue
            first_seen[utt_id] = where
            name = f"{utt_id}.wav"
            if name not in wav_names:
                problems.add(f"{where}: {utt_id}: missing wav {wav_dir / name}")
                continue
            entries.append(Entry(utt_id, wav_dir / name, text, where))
        counts[subset] = len(rows)
        extra = sorted(wav_names - {f"{u}.wav" for u, _, _ in rows})
        if extra and len(problems.items) == before:  # else the bad lines explain them
            logger.warning("%s: %d wav file(s) have no transcript line and are not used (e.g. %s)",
                           wav_dir, len(extra), extra[0])
    problems.raise_if_any(f"corpus {root} is not usable")

    missing = [s for s in SUBSET_COUNTS if s not in counts]
    if missing:
        logger.warning("%s: subset folder(s) missing: %s (fine for a trimmed corpus)", root, ", ".join(missing))
    differ = {s: n for s, n in counts.items() if n != SUBSET_COUNTS[s]}
    if differ:
        logger.warning(
            "%s: utterance counts differ from the official JSUT ver1.1 ones (fine for a subset): %s",
            root, ", ".join(f"{s} {n} (official {SUBSET_COUNTS[s]})" for s, n in differ.items()),
        )
    return entries, counts


def check_layout(root) -> Dict[str, int]:
    """Check JSUT's layout under `root`; return {subset: utterance count}."""
    return scan_corpus(root)[1]


def split_ids(utt_ids, num_test=DEFAULT_NUM_TEST, num_dev=DEFAULT_NUM_DEV) -> Dict[str, List[str]]:
    """ESPnet's JSUT split: sort ids in C order; first `num_test` -> test, next `num_dev` -> dev, rest -> train."""
    ids = c_sorted(utt_ids)
    if num_test < 1 or num_dev < 1:
        raise AsrdemoError(f"--num_test ({num_test}) and --num_dev ({num_dev}) must both be at least 1")
    if len(ids) <= num_test + num_dev:
        raise AsrdemoError(
            f"the corpus has {len(ids)} utterances: too few for {num_test} test + {num_dev} dev and a "
            "non-empty training set; lower --num_test/--num_dev"
        )
    return {
        "test": ids[:num_test],
        "dev": ids[num_test:num_test + num_dev],
        "train": ids[num_test + num_dev:],
    }


def _durations(entries: List[Entry]) -> Dict[str, float]:
    """Duration of every wav from its header (no decoding); unreadable or empty wavs are errors."""
    problems = _Problems()
    durs, rates = {}, {}
    for e in tqdm(entries, desc="wav headers", unit="wav", mininterval=0.5):
        try:
            info = soundfile.info(str(e.wav))
        except (RuntimeError, OSError, ValueError) as err:  # soundfile.LibsndfileError is a RuntimeError
            problems.add(f"{e.where}: {e.utt_id}: unreadable wav {e.wav}: {str(err).strip()}")
            continue
        if info.frames <= 0 or info.samplerate <= 0:
            problems.add(f"{e.where}: {e.utt_id}: wav {e.wav} holds no audio")
            continue
        durs[e.utt_id] = info.frames / info.samplerate
        rates[info.samplerate] = rates.get(info.samplerate, 0) + 1
    problems.raise_if_any("some wav files cannot be used")
    logger.info("sample rates found: %s (kept as they are; features resample)",
                ", ".join(f"{r} Hz x{n}" for r, n in sorted(rates.items())))
    return durs


def _resolve_names(names: Optional[dict]) -> Dict[str, str]:
    resolved = dict(DEFAULT_NAMES)
    resolved.update(names or {})
    if set(resolved) != set(DEFAULT_NAMES):
        raise AsrdemoError(f"names must map exactly train/dev/test to folder names, got {names}")
    dirs = list(resolved.values())
    if len(set(dirs)) != 3 or any(not d or "/" in d or d.startswith(".") for d in dirs):
        raise AsrdemoError(f"set names must be three different plain folder names, got {resolved}")
    return resolved


def prepare_jsut(corpus_root, out_dir, num_test=DEFAULT_NUM_TEST, num_dev=DEFAULT_NUM_DEV,
                 names: Optional[dict] = None) -> Dict[str, int]:
    """Write `<out_dir>/<train|dev|test name>/` Kaldi dirs; return {set name: utterance count}.

    Skips when `<out_dir>/.done` records the same corpus and split arguments.
    """
    names = _resolve_names(names)
    out_dir = Path(out_dir)
    corpus_root = Path(corpus_root)
    args = {"corpus_root": str(corpus_root.absolute()), "num_test": num_test, "num_dev": num_dev, "names": names}
    if is_done(out_dir) and all(is_done_set(out_dir / d) for d in names.values()):
        try:
            info = json.loads((out_dir / DONE).read_text(encoding="utf-8"))
        except ValueError:
            info = {}
        if all(info.get(k) == v for k, v in args.items()):
            logger.info("skipped: %s is prepared with the same arguments", out_dir)
            return {d: int(info.get("counts", {}).get(d, 0)) for d in names.values()}
        logger.info("%s was prepared with other arguments; preparing again", out_dir)
    clear_done(out_dir)

    entries, subset_counts = scan_corpus(corpus_root)
    logger.info("%s: %d utterances in %d subsets", corpus_root, len(entries), len(subset_counts))
    nonspeech = [e.utt_id for e in entries if not e.text]
    if nonspeech:
        logger.info("%d non-speech utterance(s) (empty text, e.g. %s): the model learns to answer nothing for them",
                    len(nonspeech), nonspeech[0])
    split = split_ids([e.utt_id for e in entries], num_test, num_dev)
    durs = _durations(entries)
    by_id = {e.utt_id: e for e in entries}

    counts = {}
    for role in ("train", "dev", "test"):
        utts = [
            Utterance(u, str(by_id[u].wav.absolute()), by_id[u].text, SPEAKER, durs[u]) for u in split[role]
        ]
        write_data_dir(out_dir / names[role], utts)
        counts[names[role]] = len(utts)
        hours = sum(u.dur for u in utts) / 3600
        logger.info("%-10s %5d utterances  %6.2f h  (%s .. %s)", names[role], len(utts), hours,
                    split[role][0], split[role][-1])
    mark_done(out_dir, **args, counts=counts, subsets=subset_counts)
    return counts


def is_done_set(data_dir: Path) -> bool:
    return all((data_dir / f).is_file() and (data_dir / f).stat().st_size > 0 for f in FILES)


def add_arguments(parser):
    parser.add_argument("--corpus_root", default="downloads/jsut_ver1.1", help="JSUT-layout corpus folder")
    parser.add_argument("--out_dir", default="data", help="where the data dirs go (default: data)")
    parser.add_argument("--num_test", type=int, default=DEFAULT_NUM_TEST,
                        help="first N ids (C order) -> test; ESPnet's eval1 (default: %(default)s)")
    parser.add_argument("--num_dev", type=int, default=DEFAULT_NUM_DEV,
                        help="next N ids -> dev; ESPnet's dev (default: %(default)s)")
    parser.add_argument("--train_name", default=DEFAULT_NAMES["train"], help="ESPnet calls it tr_no_dev")
    parser.add_argument("--dev_name", default=DEFAULT_NAMES["dev"])
    parser.add_argument("--test_name", default=DEFAULT_NAMES["test"], help="ESPnet calls it eval1")


def main(args):
    counts = prepare_jsut(
        args.corpus_root, args.out_dir, num_test=args.num_test, num_dev=args.num_dev,
        names={"train": args.train_name, "dev": args.dev_name, "test": args.test_name},
    )
    logger.info("data dirs: %s", ", ".join(f"{args.out_dir}/{k} ({v})" for k, v in counts.items()))
