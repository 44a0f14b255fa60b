"""Build small corpora in JSUT ver1.1's layout for tests (independent of the code under test).

    <root>/<subset>/transcript_utf8.txt   "UTT_ID:text" lines
    <root>/<subset>/wav/<UTT_ID>.wav      48 kHz 16-bit mono, 0.2 s of tone + noise

Ids follow JSUT's real patterns (BASIC5000_0001, REPEAT500_set1_001,
UT-PARAPHRASE-sent001-phrase1, ...), so C-order sorting behaves as on the real corpus.
"""

import zipfile
from pathlib import Path

import numpy as np
import soundfile

# Spelled out here on purpose (not imported from asrdemo), with JSUT ver1.1's official counts.
JSUT_SUBSETS = {
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
SAMPLE_RATE = 48000
DURATION = 0.2


def utt_id(subset: str, i: int) -> str:
    """The i-th (1-based) utterance id of a subset, in JSUT's naming."""
    if subset == "basic5000":
        return f"BASIC5000_{i:04d}"
    if subset == "countersuffix26":
        return f"COUNTERSUFFIX26_{i:02d}"
    if subset == "repeat500":  # 5 sets of the same 100 sentences
        return f"REPEAT500_set{(i - 1) // 100 + 1}_{(i - 1) % 100 + 1:03d}"
    if subset == "travel1000":
        return f"TRAVEL1000_{i:04d}"
    if subset == "utparaphrase512":  # two phrases per sentence
        return f"UT-PARAPHRASE-sent{(i - 1) // 2 + 1:03d}-phrase{(i - 1) % 2 + 1}"
    prefix = subset.rstrip("0123456789").upper()
    number = subset[len(prefix):]
    return f"{prefix}{number}_{i:03d}"


def official_ids():
    """All 7,696 ids of a full JSUT ver1.1 (for split tests that need no audio)."""
    return [utt_id(s, i) for s, n in JSUT_SUBSETS.items() for i in range(1, n + 1)]


def sentence(subset: str, i: int) -> str:
    """A Japanese transcript with punctuation, different for every utterance."""
    return f"これは「{subset}」の{i}番目の文です、句読点も残ります。"


def write_wav(path, seed=0, seconds=DURATION, sample_rate=SAMPLE_RATE):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = 0.3 * np.sin(2 * np.pi * (200 + 10 * (seed % 50)) * t) + 0.01 * rng.standard_normal(t.size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), wave.astype(np.float32), sample_rate, subtype="PCM_16")
    return path


def make_jsut_tree(root, per_subset=3, subsets=None):
    """Write a JSUT-layout corpus under `root` (created).

    `per_subset` is an int (same count everywhere) or a {subset: count} dict. Returns
    {utt_id: (subset, text, wav path)}.
    """
    root = Path(root)
    subsets = list(subsets or JSUT_SUBSETS)
    made = {}
    seed = 0
    for subset in subsets:
        n = per_subset[subset] if isinstance(per_subset, dict) else per_subset
        lines = []
        for i in range(1, n + 1):
            uid = utt_id(subset, i)
            text = sentence(subset, i)
            wav = write_wav(root / subset / "wav" / f"{uid}.wav", seed=seed)
            seed += 1
            lines.append(f"{uid}:{text}\n")
            made[uid] = (subset, text, wav)
        (root / subset).mkdir(parents=True, exist_ok=True)
        (root / subset / "transcript_utf8.txt").write_text("".join(lines), encoding="utf-8")
    (root / "README_en.txt").write_text("JSUT-layout test corpus\n", encoding="utf-8")
    return made


def make_jsut_zip(root, zip_path, top="jsut_ver1.1", compression=zipfile.ZIP_DEFLATED):
    """Zip the tree at `root` as `<top>/...`, the way the official archive is laid out."""
    root, zip_path = Path(root), Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=compression) as zf:
        zf.writestr(f"{top}/", "")
        for path in sorted(root.rglob("*")):
            arc = f"{top}/{path.relative_to(root).as_posix()}"
            if path.is_dir():
                zf.writestr(arc + "/", "")
            else:
                zf.write(path, arc)
    return zip_path
