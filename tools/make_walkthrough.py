#!/usr/bin/env python3
"""Regenerate docs/walkthrough.md's excerpts and figures from a fresh mini run.

    .venv/bin/python tools/make_walkthrough.py --work_dir /tmp/walkthrough            # run, then fill in
    .venv/bin/python tools/make_walkthrough.py --work_dir egs/mini_jsut --no_run      # fill in from a finished run

The walkthrough's commands are the `asrdemo ...` lines of its ```sh blocks, in order: exactly what
`run.sh --corpus mini_jsut` runs in its work dir. This script runs them in WORK_DIR (unless
--no_run), then rewrites every excerpt block of the document,

    <!-- excerpt: NAME -->
    ```text
    (written here)
    ```
    <!-- /excerpt -->

with `EXCERPTS[NAME].make(work_dir)`, and puts the `asrdemo explain` figures into docs/walkthrough/
(palette PNGs, a few hundred kB in all). tests/test_walkthrough.py runs the same commands on a
tiny corpus and checks that every excerpt still has the form that the code writes now
(`Excerpt.form`: exact text, or a normalised form where a number depends on the corpus size).
"""

import argparse
import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "walkthrough.md"
FIGURE_DIR = REPO / "docs" / "walkthrough"
UTT = "BASIC5000_0001"  # the utterance the walkthrough follows (the first of the test set)
EXP = "exp/train_mini"
EXPLAIN_DIR = f"{EXP}/explain_{UTT}"
WORK = "<work>"  # how an absolute work-dir path is shown

EXCERPT_RE = re.compile(r"<!-- excerpt: (\w+) -->\n```text\n(.*?)```\n<!-- /excerpt -->", re.S)
SH_BLOCK_RE = re.compile(r"```sh\n(.*?)```", re.S)
FIGURE_RE = re.compile(r"!\[[^\]]*\]\(walkthrough/([\w.]+\.png)\)")


# --------------------------------------------------------------------------------- the commands


def doc_commands(doc_text: str) -> List[List[str]]:
    """The `asrdemo ...` command lines of the document's ```sh blocks (continuations joined), as argv."""
    commands = []
    for block in SH_BLOCK_RE.findall(doc_text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith("asrdemo "):
                commands.append(shlex.split(line))
    return commands


def localize(argv: List[str], work: Path) -> List[str]:
    """A command as written for egs/mini_jsut -> the same for `work`: the repo's conf/ stays where it
    is, the package goes inside the work dir instead of the repo."""
    out = []
    for a in argv:
        if a == "../../exp_train_large":
            a = str(work / "exp_train_large")
        elif a.startswith("../../"):
            a = str(REPO / a[len("../../"):])
        out.append(a)
    return out


def run_commands(commands: List[List[str]], work: Path, log=print):
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    for argv in commands:
        assert argv[0] == "asrdemo", argv
        log("$ " + " ".join(argv))
        r = subprocess.run([sys.executable, "-m", "asrdemo", *argv[1:]], cwd=work, env=env, capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed in {work} ({r.returncode}):\n{r.stdout}\n{r.stderr}")


# --------------------------------------------------------------------------------- the excerpts


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _head(path: Path, n: int) -> str:
    return "".join(_read(path).splitlines(keepends=True)[:n])


def _show_paths(text: str, work: Path) -> str:
    return text.replace(str(work.resolve()), WORK).replace(str(work), WORK)


def _numbers_as_hash(text: str) -> str:
    """Every number -> '#': the form of a line whose values depend on the corpus size or the model."""
    return re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "#", text)


def _first_column(text: str) -> str:
    """Per line: the first field (the utterance id); what follows may differ, or be empty."""
    return "\n".join(line.split()[0] if line.strip() else "" for line in text.splitlines())


def _names_form(text: str) -> str:
    """A listing's distinct names once numbers are '#': epoch_3.pt and epoch_7.pt are the same kind of file."""
    out = []
    for line in _numbers_as_hash(text).splitlines():
        head, _, names = line.partition(":  ")
        out.append(f"{head}: {' '.join(sorted(set(names.split())))}")
    return "\n".join(out)


def _listing(directory: Path, keep=lambda p: True) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in directory.iterdir()
                   if not p.name.startswith(".") and keep(p))
    return "  ".join(names) + "\n"


def corpus_wav(work: Path) -> str:
    import soundfile as sf

    path = work / f"downloads/jsut_ver1.1/basic5000/wav/{UTT}.wav"
    info = sf.info(str(path))
    return (f"downloads/jsut_ver1.1/basic5000/wav/{UTT}.wav: {info.samplerate} Hz, {info.channels} channel, "
            f"{info.subtype}, {info.frames} samples = {info.frames / info.samplerate:.3f} s\n")


def feats_matrix(work: Path) -> str:
    import kaldiio
    import numpy as np

    cwd = os.getcwd()
    os.chdir(work)  # feats.scp names its arks relative to the work dir
    try:
        feats = dict(kaldiio.load_scp("dump/fbank/test/feats.scp"))[UTT]
    finally:
        os.chdir(cwd)
    np.set_printoptions(precision=2, suppress=True, linewidth=100)
    return (f"kaldiio.load_scp('dump/fbank/test/feats.scp')['{UTT}']: shape {feats.shape}, {feats.dtype}\n"
            f"frame 0, bins 0-7:  {feats[0, :8]}\n"
            f"frame 150, bins 0-7: {feats[150, :8]}\n")


def cmvn_stats(work: Path) -> str:
    import kaldiio

    stats = kaldiio.load_mat(str(work / "dump/fbank/train/cmvn.ark"))
    count = stats[0, -1]
    mean = stats[0, :-1] / count
    return (f"dump/fbank/train/cmvn.ark: shape {stats.shape}, {stats.dtype}; row 0 = sums + frame count "
            f"({int(count)}), row 1 = sums of squares\n"
            f"mean of bins 0-3: {' '.join(f'{m:.2f}' for m in mean[:4])}\n")


def tokens_txt(work: Path) -> str:
    lines = _read(work / "data/lang/tokens.txt").splitlines()
    body = [f"{i} {t}" for i, t in enumerate(lines[:6])]
    return "\n".join(["(line number = id)", *body, "...", f"{len(lines) - 1} {lines[-1]}", ""])


def tokens_form(text: str) -> str:
    """Ids and the special tokens are fixed; which characters come next depends on the training text."""
    out = []
    for line in text.splitlines():
        parts = line.split(" ", 1)
        if len(parts) == 2 and parts[0].isdigit() and not parts[1].startswith("<"):
            line = f"{parts[0]} <char>" if len(parts[1]) == 1 else line
        out.append(_numbers_as_hash(line) if line.endswith("<sos/eos>") else line)
    return "\n".join(out)


def token_ids(work: Path) -> str:
    sys.path.insert(0, str(REPO))
    from asrdemo.data.tokens import TokenList

    tl = TokenList.load(work / "data/lang/tokens.txt")
    text = dict(line.split(" ", 1) for line in _read(work / "data/test/text").splitlines())[UTT]
    ids = tl.encode(text)
    return f"TokenList.load('data/lang/tokens.txt').encode('{text}')\n-> {ids}  ({len(ids)} tokens)\n"


def config_yaml(work: Path) -> str:
    import yaml

    config = yaml.safe_load(_read(work / f"{EXP}/config.yaml"))
    lines = []
    for key, value in config.items():
        if isinstance(value, dict):
            lines.append(f"{key}: {{{', '.join(value)}}}")
        else:
            lines.append(f"{key}: {value}")
    return f"{EXP}/config.yaml, top-level keys (nested ones: their keys):\n" + "\n".join(lines) + "\n"


def exp_dir_listing(work: Path) -> str:
    exp = work / EXP
    return (f"{EXP}/:  " + _listing(exp, keep=lambda p: not p.name.startswith(("decode_", "explain_")))
            + f"{EXP}/checkpoints/:  " + _listing(exp / "checkpoints")
            + f"{EXP}/images/:  " + _listing(exp / "images"))


def checkpoint_keys(work: Path) -> str:
    import torch

    ckpt_dir = work / f"{EXP}/checkpoints"
    newest = (ckpt_dir / "latest").read_text().strip()
    ckpt = torch.load(ckpt_dir / newest, map_location="cpu", weights_only=False)
    model = torch.load(work / f"{EXP}/valid.acc.ave.pth", map_location="cpu", weights_only=True)
    lines = [f"torch.load('{EXP}/checkpoints/{newest}').keys():", "  " + ", ".join(ckpt), "",
             f"torch.load('{EXP}/valid.acc.ave.pth'): a state_dict of {len(model)} tensors, e.g."]
    wanted = ("cmvn.", "encoder.embed.conv.0.", "encoder.encoders.0.self_attn.linear_q.weight", "decoder.embed.",
              "ctc.ctc_lo.weight", "decoder.output_layer.weight")
    for name, tensor in model.items():
        if name.startswith(wanted):
            lines.append(f"  {name:46s} {tuple(tensor.shape)}")
    return "\n".join(lines) + "\n"


def checkpoint_form(text: str) -> str:
    # the names are fixed by the code; the epoch and the sizes depend on the config
    return _numbers_as_hash(re.sub(r"\(([\d, ]*)\)", lambda m: f"(rank {len([x for x in m.group(1).split(',') if x.strip()])})", text))


def history_line(work: Path) -> str:
    last = json.loads(_read(work / f"{EXP}/history.jsonl").splitlines()[-1])
    return json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in last.items()}) + "\n"


def result_block(work: Path) -> str:
    text = _read(work / f"{EXP}/decode_test/result.txt")
    block = next(b for b in text.split("\n\n") if b.startswith(f"id: ({UTT})"))
    return block.rstrip("\n") + "\n"


def result_form(text: str) -> str:
    """The line labels and the utterance id are fixed; what was recognised is not."""
    return "\n".join(line.split(":", 1)[0] if not line.startswith("id:") else line for line in text.splitlines())


def trace_excerpt(work: Path) -> str:
    trace = json.loads(_read(work / f"{EXPLAIN_DIR}/trace.json"))
    keep = {
        "audio": {k: trace["audio"][k] for k in ("original_sample_rate", "sample_rate", "num_samples", "duration_s")},
        "fbank": {"shape": trace["fbank"]["shape"], "frame_shift_ms": trace["fbank"]["frame_shift_ms"]},
        "encoder": {k: trace["encoder"][k] for k in ("input_frames", "output_frames", "subsampling_rate", "frame_ms",
                                                      "receptive_field_ms")},
        "ctc": {"shape": trace["ctc"]["shape"], "best_path_score": trace["ctc"]["best_path_score"]},
        "text": trace["text"],
        "alignment": {"path_score": trace["alignment"]["path_score"],
                      "tokens[:3]": [{k: t[k] for k in ("token", "start_s", "end_s")}
                                     for t in trace["alignment"]["tokens"][:3]]},
        "attention": {"shape": trace["attention"]["shape"]},
    }
    return "\n".join(f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in keep.items()) + "\n"


def trace_form(text: str) -> str:
    """Shapes that depend only on the audio stay exact (the same utterance is followed); the subsampling,
    the vocabulary, the model's layers, the scores and what was recognised depend on the training run."""
    out = []
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        if key in ("audio", "fbank"):
            out.append(line)
        elif key == "encoder":  # its input is the audio's; the subsampling is the model config's
            out.append(f"encoder: {json.loads(value)['input_frames']} input frames")
        elif key in ("ctc", "attention"):
            out.append(f"{key}: {len(json.loads(value)['shape'])} dims")
        else:
            out.append(key)
    return "\n".join(out)


@dataclasses.dataclass
class Excerpt:
    make: Callable[[Path], str]  # work dir -> the excerpt's text
    form: Callable[[str], str] = staticmethod(lambda s: s)  # what must agree with a fresh run (default: all)


EXCERPTS: Dict[str, Excerpt] = {
    "transcript": Excerpt(lambda w: _head(w / "downloads/jsut_ver1.1/basic5000/transcript_utf8.txt", 2)),
    "corpus_wav": Excerpt(corpus_wav),
    "data_listing": Excerpt(lambda w: "data/test/:  " + _listing(w / "data/test")),
    "wav_scp": Excerpt(lambda w: _show_paths(_head(w / "data/test/wav.scp", 2), w)),
    "text": Excerpt(lambda w: _head(w / "data/test/text", 2)),
    "utt2spk": Excerpt(lambda w: _head(w / "data/test/utt2spk", 2)),
    "utt2dur": Excerpt(lambda w: _head(w / "data/test/utt2dur", 2)),
    "dump_listing": Excerpt(lambda w: "dump/fbank/train/:  " + _listing(w / "dump/fbank/train")
                            + "dump/fbank/test/:   " + _listing(w / "dump/fbank/test")),
    "feats_scp": Excerpt(lambda w: _head(w / "dump/fbank/test/feats.scp", 2)),
    "utt2num_frames": Excerpt(lambda w: _head(w / "dump/fbank/test/utt2num_frames", 2)),
    "feats_matrix": Excerpt(feats_matrix),
    "cmvn": Excerpt(cmvn_stats, _numbers_as_hash),
    "tokens": Excerpt(tokens_txt, tokens_form),
    "token_ids": Excerpt(token_ids, _numbers_as_hash),
    "exp_listing": Excerpt(exp_dir_listing, _names_form),
    "config_yaml": Excerpt(config_yaml, lambda s: "\n".join(line.split(":", 1)[0] for line in s.splitlines())),
    "checkpoint": Excerpt(checkpoint_keys, checkpoint_form),
    "history": Excerpt(history_line, lambda s: ", ".join(json.loads(s))),
    "hyp_txt": Excerpt(lambda w: _head(w / f"{EXP}/decode_test/hyp.txt", 2), _first_column),
    "result": Excerpt(result_block, result_form),
    "cer": Excerpt(lambda w: _head(w / f"{EXP}/decode_test/cer.txt", 1), _numbers_as_hash),  # the character CER line
    "package_listing": Excerpt(lambda w: "exp_train_large/:  " + _listing(w / "exp_train_large")),
    "trace": Excerpt(trace_excerpt, trace_form),
}


def doc_excerpts(doc_text: str) -> Dict[str, str]:
    """NAME -> the excerpt's text as the document has it."""
    found = {}
    for name, body in EXCERPT_RE.findall(doc_text):
        if name in found:
            raise ValueError(f"excerpt {name} appears twice")
        found[name] = body
    return found


def fill_excerpts(doc_text: str, work: Path) -> str:
    missing = set(doc_excerpts(doc_text)) ^ set(EXCERPTS)
    if missing:
        raise ValueError(f"excerpts in the document and in EXCERPTS differ: {sorted(missing)}")
    return EXCERPT_RE.sub(lambda m: f"<!-- excerpt: {m.group(1)} -->\n```text\n{EXCERPTS[m.group(1)].make(work)}```\n"
                                    f"<!-- /excerpt -->", doc_text)


# --------------------------------------------------------------------------------- the figures


def doc_figures(doc_text: str) -> List[str]:
    return FIGURE_RE.findall(doc_text)


def copy_figures(names: List[str], work: Path, dest: Path) -> int:
    """The explain figures (and the training curves) the document shows -> dest, as palette PNGs."""
    from PIL import Image

    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.png"):
        if old.name not in names:
            old.unlink()
    total = 0
    for name in names:
        src = work / EXPLAIN_DIR / name
        if not src.exists():
            src = work / EXP / "images" / name
        with Image.open(src) as im:
            im.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(dest / name, optimize=True)
        total += (dest / name).stat().st_size
    return total


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work_dir", required=True, help="where the mini run goes (or is, with --no_run)")
    p.add_argument("--no_run", action="store_true", help="use the finished run in --work_dir")
    p.add_argument("--doc", default=str(DOC))
    args = p.parse_args(argv)
    work, doc = Path(args.work_dir).resolve(), Path(args.doc)
    text = doc.read_text(encoding="utf-8")
    if not args.no_run:
        run_commands([localize(c, work) for c in doc_commands(text)], work)
    text = fill_excerpts(text, work)
    doc.write_text(text, encoding="utf-8")
    size = copy_figures(doc_figures(text), work, FIGURE_DIR)
    print(f"{doc}: {len(EXCERPTS)} excerpts; {FIGURE_DIR}: {len(doc_figures(text))} figures, {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
