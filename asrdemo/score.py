"""Character error rate with sclite-style per-utterance alignments.

    asrdemo score --ref data/test/text --hyp exp/x/decode_test/hyp.txt --out_dir exp/x/decode_test

writes `result.txt` (per utterance: REF/HYP aligned, C/S/D/I counts; then a summary and the most
frequent confusions), `cer.txt` (one summary line first) and `ref.trn`/`hyp.trn` (sclite's input).
Characters are compared after removing spaces, so a stray space never counts as an error.

Both sides are normalised with Unicode NFKC first (`--normalize`, default NFKC; `none` scores the raw
text): the same words in NFD (as macOS writes file names and pasted text), in full-width ASCII
(「ＡＩ１２３？」) or half-width katakana are then the same characters, not substitutions.

With pyopenjtalk installed, both files also give the kana CER: reference and hypothesis converted
to katakana readings (`asrdemo.kana.to_kana`) and scored the same way, so that errors of spelling
only (飼う for 買う: both カウ) can be told from errors of sound. cer.txt's second line is
`kana CER ...`; result.txt ends with the kana alignments.
"""

import collections
import dataclasses
import logging
import unicodedata
from pathlib import Path

from asrdemo.data.datadir import c_sorted, read_kv
from asrdemo.errors import AsrdemoError
from asrdemo.utils.io import atomic_write_lines, atomic_write_text

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Alignment:
    ref: list  # aligned reference units, "" where the hypothesis inserted
    hyp: list  # aligned hypothesis units, "" where the reference was deleted
    ops: list  # "C", "S", "D" or "I" per column

    def count(self, op):
        return self.ops.count(op)

    @property
    def errors(self):
        return len(self.ops) - self.count("C")


NORMALIZATIONS = ("NFKC", "NFC", "none")
DEFAULT_NORMALIZATION = "NFKC"


def normalize(text: str, form: str = DEFAULT_NORMALIZATION) -> str:
    """`text` in Unicode normal form `form` (NFKC, NFC), or unchanged for "none"."""
    if form == "none":
        return text
    if form not in NORMALIZATIONS:
        raise AsrdemoError(f"unknown text normalisation {form!r}; one of {', '.join(NORMALIZATIONS)}")
    return unicodedata.normalize(form, text)


def units(text: str, form: str = DEFAULT_NORMALIZATION):
    """The characters that are scored: `text` normalised with `form`, whitespace dropped."""
    return [c for c in normalize(text, form) if not c.isspace()]


def align(ref, hyp, prefix: bool = False) -> Alignment:
    """Levenshtein alignment of two unit sequences (ties prefer C/S, then D, then I, like sclite).

    ``prefix``: ``hyp`` is a guess at a beginning of ``ref`` (a partial transcript of a stream):
    it is aligned with the shortest prefix of ``ref`` it is closest to, and the rest of ``ref``
    (not yet spoken) is left out of the alignment instead of counted as deletions. Without it,
    a partial 「政府は。」 of 「政府は。来年度。」 could match its 。 to the final one."""
    n, m = len(ref), len(hyp)
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        cost[i][0] = i
    for j in range(1, m + 1):
        cost[0][j] = j
    for i in range(1, n + 1):
        row, prev, r = cost[i], cost[i - 1], ref[i - 1]
        for j in range(1, m + 1):
            row[j] = min(prev[j - 1] + (r != hyp[j - 1]), prev[j] + 1, row[j - 1] + 1)
    a_ref, a_hyp, ops = [], [], []
    i, j = (min(range(n + 1), key=lambda k: cost[k][m]) if prefix else n), m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and cost[i][j] == cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            op = "C" if ref[i - 1] == hyp[j - 1] else "S"
            a_ref.append(ref[i - 1]), a_hyp.append(hyp[j - 1]), ops.append(op)
            i, j = i - 1, j - 1
        elif i > 0 and cost[i][j] == cost[i - 1][j] + 1:
            a_ref.append(ref[i - 1]), a_hyp.append(""), ops.append("D")
            i -= 1
        else:
            a_ref.append(""), a_hyp.append(hyp[j - 1]), ops.append("I")
            j -= 1
    return Alignment(a_ref[::-1], a_hyp[::-1], ops[::-1])


def cer(ref: str, hyp: str, form: str = DEFAULT_NORMALIZATION) -> float:
    """CER of one pair in [0, inf): errors / reference characters (spaces ignored, both sides
    normalised with `form`). Raises ValueError for a reference without characters."""
    r = units(ref, form)
    if not r:
        raise ValueError("reference has no characters")
    return align(r, units(hyp, form)).errors / len(r)


@dataclasses.dataclass
class Totals:
    sentences: int = 0
    sentence_errors: int = 0
    ref_units: int = 0
    C: int = 0
    S: int = 0
    D: int = 0
    I: int = 0  # noqa: E741 (sclite's name)

    @property
    def errors(self):
        return self.S + self.D + self.I

    @property
    def cer(self):
        return 100.0 * self.errors / max(1, self.ref_units)

    def summary(self):
        return (f"CER {self.cer:.2f} % (N={self.ref_units}, S={self.S} D={self.D} I={self.I}, "
                f"sentences {self.sentences}, sentence errors "
                f"{100.0 * self.sentence_errors / max(1, self.sentences):.1f} %)")


def _columns(alignment: Alignment):
    """REF/HYP/Eval lines with columns padded to equal display width (CJK counts as 2)."""
    def width(s):
        return sum(2 if ord(c) > 0x2E80 else 1 for c in s)

    cols = []
    for r, h, op in zip(alignment.ref, alignment.hyp, alignment.ops):
        r, h = r or "*" * width(h), h or "*" * width(r)
        w = max(width(r), width(h), 1)
        e = "" if op == "C" else op
        cols.append((r + " " * (w - width(r)), h + " " * (w - width(h)), e + " " * (w - width(e))))
    return [" ".join(c[k] for c in cols).rstrip() for k in range(3)]


def score(refs: dict, hyps: dict, form: str = DEFAULT_NORMALIZATION):
    """Score `hyps` against `refs` (utt id -> text), both normalised with `form` (NFKC, NFC or
    none). Every reference must have a hypothesis."""
    missing = [u for u in refs if u not in hyps]
    if missing:
        raise AsrdemoError(f"{len(missing)} utterance(s) have no hypothesis, e.g. {missing[:3]}")
    extra = [u for u in hyps if u not in refs]
    if extra:
        raise AsrdemoError(f"{len(extra)} hypothesis id(s) have no reference, e.g. {extra[:3]}")
    totals, blocks = Totals(), []
    confusions = {"S": collections.Counter(), "D": collections.Counter(), "I": collections.Counter()}
    for utt in c_sorted(refs):
        ref_units = units(refs[utt], form)
        if not ref_units:
            raise AsrdemoError(f"{utt}: empty reference text")
        a = align(ref_units, units(hyps[utt], form))
        counts = {op: a.count(op) for op in "CSDI"}
        totals.sentences += 1
        totals.sentence_errors += a.errors > 0
        totals.ref_units += len(ref_units)
        for op in "CSDI":
            setattr(totals, op, getattr(totals, op) + counts[op])
        for r, h, op in zip(a.ref, a.hyp, a.ops):
            if op == "S":
                confusions["S"][f"{r} -> {h}"] += 1
            elif op == "D":
                confusions["D"][r] += 1
            elif op == "I":
                confusions["I"][h] += 1
        ref_line, hyp_line, eval_line = _columns(a)
        blocks.append(
            f"id: ({utt})\nScores: (#C #S #D #I) {counts['C']} {counts['S']} {counts['D']} {counts['I']}\n"
            f"REF:  {ref_line}\nHYP:  {hyp_line}\nEval: {eval_line}\n"
        )
    return totals, blocks, confusions


def write_trn(path, table: dict, form: str = DEFAULT_NORMALIZATION):
    """sclite `trn` format: the scored units (normalised with `form`) separated by spaces, then `(utt_id)`."""
    atomic_write_lines(path, (f"{' '.join(units(table[u], form))} ({u})" for u in c_sorted(table)))


def kana_cer(ref: str, hyp: str) -> float:
    """CER of the katakana readings of one pair (asrdemo.kana; needs pyopenjtalk)."""
    from asrdemo.kana import to_kana

    return cer(to_kana(ref), to_kana(hyp))


def score_kana(refs: dict, hyps: dict):
    """`score` on katakana readings -> (Totals, blocks, confusions, utterances left out), or None
    without pyopenjtalk. A reference whose reading is empty (only symbols) is left out."""
    from asrdemo.kana import kana_available, to_kana

    if not kana_available():
        log.warning("pyopenjtalk is not installed: no kana CER (pip install -e '.[mini]')")
        return None
    kana_refs = {u: to_kana(t) for u, t in refs.items()}
    left_out = [u for u, k in kana_refs.items() if not units(k)]
    kana_refs = {u: k for u, k in kana_refs.items() if units(k)}
    if not kana_refs:
        return None
    kana_hyps = {u: to_kana(hyps.get(u, "")) for u in kana_refs}
    return (*score(kana_refs, kana_hyps), left_out)


def _header(form: str) -> str:
    if form == "none":
        how = "raw text (no Unicode normalisation)"
    else:
        how = f"reference and hypothesis both normalised with Unicode {form}"
    return f"Scoring: characters of the {how}; whitespace ignored.\n"


def _summary_block(totals, confusions, top, unit="#Chr", title="Sum"):
    names = {"S": "substitutions (ref -> hyp)", "D": "deletions", "I": "insertions"}
    tail = [f"{'=' * 70}\n{title}: {totals.summary()}\n"
            f"     #Snt {totals.sentences}  {unit} {totals.ref_units}  Corr {totals.C}  Sub {totals.S}  "
            f"Del {totals.D}  Ins {totals.I}  Err {totals.errors}  S.Err {totals.sentence_errors}\n"]
    for op in "SDI":
        common = confusions[op].most_common(top)
        if common:
            tail.append(f"Most frequent {names[op]}:\n" + "".join(f"  {n:5d}  {k}\n" for k, n in common))
    return tail


def score_files(ref_path, hyp_path, out_dir, top=20, kana=True, form: str = DEFAULT_NORMALIZATION):
    """Read Kaldi `text`-style files, write result.txt, cer.txt, ref.trn, hyp.trn; return Totals
    (of the characters). With `kana` (and pyopenjtalk) the kana CER is added to both files.

    `form`: the Unicode normalisation applied to both sides before scoring (NFKC, NFC or none)."""
    normalize("", form)  # an unknown form fails before anything is read or written
    refs = read_kv(ref_path)
    hyps = read_kv(hyp_path, allow_empty_value=True)  # an empty hypothesis is a result, not an error
    totals, blocks, confusions = score(refs, hyps, form)
    out = Path(out_dir)
    tail = _summary_block(totals, confusions, top)
    cer_lines = [totals.summary()]
    kana_result = score_kana(refs, hyps) if kana else None
    if kana_result is not None:
        k_totals, k_blocks, k_confusions, left_out = kana_result
        note = f" ({len(left_out)} utterance(s) without a reading left out)" if left_out else ""
        cer_lines.append(f"kana {k_totals.summary()}{note}")
        tail += [f"{'=' * 70}\nKana: the same, on katakana readings (pyopenjtalk g2p); an error that is gone "
                 f"here is spelling only{note}\n"] + k_blocks + _summary_block(k_totals, k_confusions, top, "#Kana",
                                                                                   "Sum (kana)")
    atomic_write_text(out / "result.txt", "\n".join([_header(form)] + blocks + tail))
    atomic_write_text(out / "cer.txt", "".join(line + "\n" for line in cer_lines))
    write_trn(out / "ref.trn", refs, form)
    write_trn(out / "hyp.trn", hyps, form)
    return totals


def add_arguments(p):
    p.add_argument("--ref", required=True, help="reference `text` (utt_id text)")
    p.add_argument("--hyp", required=True, help="hypothesis file (utt_id text)")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--normalize", default=DEFAULT_NORMALIZATION, choices=NORMALIZATIONS,
                   help="Unicode normalisation of both sides before scoring (default NFKC; none: raw text)")


def main(args):
    totals = score_files(args.ref, args.hyp, args.out_dir, form=args.normalize)
    log.info("%s -> %s/result.txt", totals.summary(), args.out_dir)
    print((Path(args.out_dir) / "cer.txt").read_text(encoding="utf-8"), end="")
