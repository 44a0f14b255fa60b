"""The offline recipe's evaluation table: CER per voice and SNR, the demo sample, noise and silence.

Reads the evaluation data dirs of `asrdemo.data.synth_eval` and their decoding
(`<decode_root>/<set>/hyp.txt`, as `asrdemo decode` writes them) and prints one markdown table;
with `--exp_dir` it also decodes the demo sample and 3 s of white noise and of silence with the
recognizer (the sample must come back right, noise and silence empty).
"""

import math
from pathlib import Path

import numpy as np

from asrdemo.data import voices
from asrdemo.data.datadir import read_data_dir, read_kv
from asrdemo.data.mini_jsut import SEED_UTT
from asrdemo.data.synth_eval import EVAL_SETS
from asrdemo.errors import AsrdemoError

REPO = Path(__file__).resolve().parents[1]


def _group_of(voice: str) -> str:
    return "unseen voices" if voice in voices.EVAL_VOICES else "training voices"


def eval_table(data_root, decode_root) -> str:
    """Markdown table of CER per voice (and group) and per SNR from `<decode_root>/<set>/hyp.txt`.

    Raises AsrdemoError when a set has not been decoded.
    """
    from asrdemo.score import score

    data_root, decode_root = Path(data_root), Path(decode_root)
    rows = {}
    for name in EVAL_SETS:
        hyp_path = decode_root / name / "hyp.txt"
        if not hyp_path.is_file():
            raise AsrdemoError(f"{hyp_path} is missing: decode {data_root / name} first")
        utts = read_data_dir(data_root / name)
        refs = {u.utt_id: u.text for u in utts}
        hyps = read_kv(hyp_path, allow_empty_value=True)
        groups = {}
        for u in utts:
            for key in (u.spk, _group_of(u.spk), "all"):
                groups.setdefault(key, []).append(u.utt_id)
        for key, ids in groups.items():
            totals, _, _ = score({u: refs[u] for u in ids}, {u: hyps.get(u, "") for u in ids})
            rows.setdefault(key, {})[name] = totals.cer
    order = list(voices.TRAIN_VOICES) + ["training voices"] + list(voices.EVAL_VOICES) + ["unseen voices", "all"]
    cols = ["clean" if math.isinf(s) else f"{int(s)} dB" for s in EVAL_SETS.values()]
    lines = ["| voices | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for key in order:
        if key in rows:
            b = "**" if key in ("training voices", "unseen voices", "all") else ""
            lines.append(f"| {b}{key}{b} | " + " | ".join(f"{rows[key][s]:.1f} %" for s in EVAL_SETS) + " |")
    return "\n".join(lines) + "\n" + _settings_line(decode_root / next(iter(EVAL_SETS)) / "decode.yaml")


def _settings_line(path: Path) -> str:
    """How the sets were decoded (the decode.yaml `asrdemo decode` wrote beside hyp.txt), in one line."""
    if not path.is_file():
        return ""
    import yaml

    conf = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    keys = ("mode", "beam_size", "ctc_weight", "penalty", "lm_weight", "spell_lm_weight")
    return "\nDecoded with " + ", ".join(f"{k} {conf[k]}" for k in keys if k in conf) + ".\n"


def probe_lines(exp_dir, mode=None) -> str:
    """The sample's transcript and CER, and what 3 s of white noise and of silence decode to."""
    from asrdemo.decode.recognizer import Recognizer
    from asrdemo.score import cer

    import soundfile as sf

    rec = Recognizer.from_exp_dir(exp_dir)
    wave, sr = sf.read(str(REPO / "sample" / "test.wav"), dtype="float32")
    sample = rec.recognize(wave, sr, mode=mode).text
    rng = np.random.default_rng(0)
    noise = rec.recognize((0.1 * rng.standard_normal(3 * 16000)).astype(np.float32), 16000, mode=mode).text
    silence = rec.recognize(np.zeros(3 * 16000, dtype=np.float32), 16000, mode=mode).text
    return (f"- sample/test.wav: 「{sample}」 (CER {100 * cer(SEED_UTT[1], sample):.1f} %)\n"
            f"- 3 s white noise: 「{noise}」\n- 3 s silence: 「{silence}」\n")


EVAL_BEGIN, EVAL_END = "<!-- eval_table: begin -->", "<!-- eval_table: end -->"


def add_to_package(package_dir, table: str) -> None:
    """Write eval_table.md into a package and put the table into its README.md's evaluation section."""
    from asrdemo.utils.io import atomic_write_text

    package_dir = Path(package_dir)
    readme = package_dir / "README.md"
    if not readme.is_file():
        raise AsrdemoError(f"{package_dir} is not a package (no README.md): run stage 6 first")
    atomic_write_text(package_dir / "eval_table.md", table)
    text = readme.read_text(encoding="utf-8")
    section = (f"{EVAL_BEGIN}\n## Evaluation (unseen sentences; `asrdemo eval_table`)\n\n{table}{EVAL_END}\n")
    if EVAL_BEGIN in text and EVAL_END in text:
        text = text[:text.index(EVAL_BEGIN)] + section + text[text.index(EVAL_END) + len(EVAL_END) + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    atomic_write_text(readme, text)


def add_arguments(p):
    p.add_argument("--data_root", required=True, help="where eval_clean/ and eval_snr*/ are (e.g. data)")
    p.add_argument("--decode_root", required=True, help="where <set>/hyp.txt are (e.g. exp/TAG/decode)")
    p.add_argument("--exp_dir", default=None, help="also decode the sample, noise and silence with this model")
    p.add_argument("--mode", default=None, help="search mode for those (default: the exp dir's decode.yaml)")
    p.add_argument("--out", default=None, help="also write the table here (markdown)")
    p.add_argument("--package_dir", default=None, help="also put the table into this package (README.md, eval_table.md)")


def main(args):
    text = eval_table(args.data_root, args.decode_root)
    if args.exp_dir:
        text += "\n" + probe_lines(args.exp_dir, args.mode)
    print(text)
    if args.out:
        from asrdemo.utils.io import atomic_write_text

        atomic_write_text(args.out, text)
    if args.package_dir:
        add_to_package(args.package_dir, text)
