"""Stage 6: copy what the demo needs from an exp dir into one self-contained folder.

    asrdemo package --exp_dir egs/mini_jsut/exp/train_mini --decode_dir .../decode_test --out_dir exp_train_large

The folder holds config.yaml, tokens.txt, cmvn.ark (+ bpe.model), the model (`valid.acc.ave.pth`),
images/*.png, the test CER (`cer.txt`, `result.txt`), the search settings that CER was measured with
(`decode.yaml`, which the recognizer then uses by default), the language model when config.yaml names
one (`lm: lm`, the dir `asrdemo lm attach` fills), the run's history.jsonl (and init_param.json), so
a model fine-tuned from the package counts the training it had, and a README.md that says how it
was made. An SSL
exp (`frontend: ssl`) adds its `ssl_layer_weights.json`; the SSL model itself is not copied (a base
model is ~360 MB): the demo machine needs it too, found offline by the name config.yaml records.
It is assembled beside the target and swapped in with renames, so the demo never sees half a model.
"""

import datetime
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import yaml

from asrdemo.errors import AsrdemoError
from asrdemo.utils.io import mark_done

log = logging.getLogger(__name__)

MODEL_FILE = "valid.acc.ave.pth"

HOWTO = """\
## How to fill or replace this folder

The web demo (`asrdemo serve`, or gunicorn, see the top-level README) loads this folder. Fill it by
running the recipe, whose last stage packages the trained model here:

    ./run.sh --corpus mini_jsut          # offline, minutes on a CPU (it recognises little beyond its training text)
    ./run.sh --corpus synth_ja           # the large offline corpus (hours on a CPU; docs/synth_ja.md)
    ./run.sh                             # real JSUT (a GPU is advised)

or package any exp dir by hand:

    asrdemo package --exp_dir egs/jsut/exp/train --decode_dir egs/jsut/exp/train/decode_test --out_dir exp_train_large

Point the demo at another folder with `ASRDEMO_EXP=/path/to/dir`.
"""


def _model_file(exp_dir: Path) -> Path:
    path = exp_dir / MODEL_FILE
    if path.exists():
        return path.resolve()
    raise AsrdemoError(f"{exp_dir} has no {MODEL_FILE} (made at the end of training, stage 4)")


def _training_lines(exp_dir: Path, config: dict) -> list:
    """Model card facts read from the exp dir: parameters, data, epochs, updates, wall time."""
    import json

    lines = []
    model_file = exp_dir / MODEL_FILE
    if model_file.is_file():
        import torch

        state = torch.load(model_file, map_location="cpu", weights_only=True)
        lines.append(f"- parameters: {sum(v.numel() for k, v in state.items() if v.is_floating_point() and 'pos_enc' not in k):,}")
    train_dir = Path(config.get("data", {}).get("train_dir", ""))
    if not train_dir.is_absolute():
        train_dir = exp_dir.parents[1] / train_dir  # stages run in the work dir, exp dirs are work/exp/<tag>
    frames = train_dir / "utt2num_frames"
    if frames.is_file():
        counts = [int(line.split()[1]) for line in frames.read_text(encoding="utf-8").splitlines() if line.strip()]
        lines.append(f"- training data: {len(counts):,} utterances, {sum(counts) / 100 / 3600:.2f} h ({train_dir})")
    corpus_done = exp_dir.parents[1] / "downloads" / "jsut_ver1.1" / ".done"
    if corpus_done.is_file():
        try:
            info = json.loads(corpus_done.read_text(encoding="utf-8"))
        except ValueError:
            info = {}
        if info.get("hours_by_voice"):
            voices = ", ".join(f"{k} {v:.2f} h" for k, v in info["hours_by_voice"].items())
            lines.append(f"- corpus: {info.get('utterances', '?'):,} utterances, {info.get('audio_hours', '?')} h; voices: {voices}")
    if (exp_dir / "history.jsonl").is_file():
        from asrdemo.train.average import read_history, training_summary

        rows = read_history(exp_dir)
        if rows:
            last, run = rows[-1], training_summary(rows)
            lines.append(f"- training: {run['epochs']} epochs, {run['updates']:,} updates, {run['hours']:.2f} h "
                         f"of training steps; last valid acc {last.get('valid_acc') or 0:.3f}, "
                         f"valid CER (CTC greedy) {last.get('valid_cer') or 0:.3f}")
    init = exp_dir / "init_param.json"  # written by `asrdemo train --init_param`
    if init.is_file():
        record = json.loads(init.read_text(encoding="utf-8"))
        before = (f": {record['epochs']} epochs, {record['updates']:,} updates, {record['hours']:.2f} h of training steps"
                  if "epochs" in record else _card_training(Path(record["init_param"]).parent / "README.md"))
        lines.append(f"- fine-tuned from: {record['init_param']}{before} (before the training above)")
    return lines


def _card_training(readme: Path) -> str:
    """": <its training line>" from the card of a package a model was fine-tuned from (a package made
    before packages carried history.jsonl), else ""."""
    if not readme.is_file():
        return ""
    match = re.search(r"^- training: ([^;\n]*)", readme.read_text(encoding="utf-8"), re.MULTILINE)
    return f": {match.group(1)} (its model card)" if match else ""


def _frontend_line(config) -> str:
    if config.get("frontend") != "ssl":
        return str(config.get("frontend", {}))
    fc = config.get("frontend_conf") or {}
    return (f"ssl: {fc.get('model')} (revision {fc.get('revision') or 'unknown'}, weights sha256 "
            f"{str(fc.get('weights_sha256'))[:12]}...), layer {fc.get('layer')}, "
            f"{'frozen' if fc.get('freeze') else 'fine-tuned'}; the demo machine needs that model offline "
            "(docs/jsut.md, self-supervised features)")


def _readme(exp_dir, config, cer_line, corpus):
    model = config.get("model", {})
    enc = model.get("encoder_conf", {})
    dec = model.get("decoder_conf", {})
    lines = [
        "# Packaged asrdemo model",
        "",
        f"- packaged: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} from `{exp_dir}`",
        f"- corpus: {corpus}",
        f"- test CER: {cer_line or 'not decoded'}",
        f"- encoder: {model.get('encoder', '?')} ({enc.get('num_blocks', '?')} blocks x "
        f"{enc.get('output_size', '?')}, input layer {enc.get('input_layer', '?')})",
        f"- decoder: transformer ({dec.get('num_blocks', '?')} blocks); ctc_weight {model.get('ctc_weight', '?')}",
        f"- tokens: {config.get('token_type', 'char')}, {config.get('vocab_size', '?')} entries",
        "- language model: " + (f"{config['lm']}/ (used when decode.yaml has lm_weight > 0)" if config.get("lm")
                                else "none"),
        f"- frontend: {_frontend_line(config)}",
        *_training_lines(exp_dir, config),
        "",
        "Training curves: images/loss.png, images/acc.png, images/error.png. Per-utterance errors: result.txt.",
        "",
        HOWTO,
    ]
    return "\n".join(lines)


def _write_model(src: Path, dst: Path, half: bool) -> None:
    """Copy the model file; with `half`, store floating-point tensors as float16 (half the size;
    loading copies them back into the model's float32 parameters)."""
    if not half:
        shutil.copyfile(src, dst)
        return
    import torch

    state = torch.load(src, map_location="cpu", weights_only=True)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, dst)


def package(exp_dir, out_dir, decode_dir=None, corpus="unknown", half=False, extra_files=()):
    """Assemble `out_dir` from `exp_dir` (+ `decode_dir`'s scores and `extra_files`); returns out_dir.

    `half` stores the weights as float16 (for a model committed to git). Raises AsrdemoError when a
    file the package needs is missing."""
    exp_dir, out_dir = Path(exp_dir), Path(out_dir)
    config_path = exp_dir / "config.yaml"
    if not config_path.is_file():
        raise AsrdemoError(f"{exp_dir} is not an exp dir: no config.yaml (made by stage 4, training)")
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    files = [config_path]
    for key in ("token_list", "cmvn", "bpe_model"):
        if config.get(key):
            path = exp_dir / config[key]
            if not path.is_file():
                raise AsrdemoError(f"{config_path} names {key}: {config[key]}, but {path} is missing")
            files.append(path)
    model_file = _model_file(exp_dir)
    lm_dir = None
    if config.get("lm"):  # the exp dir carries its LM: config.yaml, tokens.txt, valid.loss.ave.pth
        from asrdemo.decode.lm_scorer import attached_lm_dir

        lm_dir = attached_lm_dir(exp_dir, config)
    cer_line = None
    if decode_dir is not None:
        decode_dir = Path(decode_dir)
        for name in ("cer.txt", "result.txt", "decode.yaml"):  # decode.yaml: the demo searches the same way
            if not (decode_dir / name).is_file():
                raise AsrdemoError(f"missing {decode_dir / name} (made by stage 5, decoding)")
            files.append(decode_dir / name)
        cer_line = (decode_dir / "cer.txt").read_text(encoding="utf-8").splitlines()[0]
    from asrdemo.train.training_input import LAYER_WEIGHTS_FILE

    if (exp_dir / LAYER_WEIGHTS_FILE).is_file():  # an SSL exp's
        files.append(exp_dir / LAYER_WEIGHTS_FILE)
    for name in ("history.jsonl", "init_param.json"):  # what a model fine-tuned from the package counts
        if (exp_dir / name).is_file():
            files.append(exp_dir / name)
    for f in map(Path, extra_files):
        if not f.is_file():
            raise AsrdemoError(f"missing {f}")
        files.append(f)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for f in files:
            shutil.copyfile(f, tmp / f.name)
        _write_model(model_file, tmp / MODEL_FILE, half)
        if (exp_dir / "images").is_dir():
            shutil.copytree(exp_dir / "images", tmp / "images")
        if lm_dir is not None:
            from asrdemo.decode.lm_scorer import LM_FILES

            (tmp / lm_dir.name).mkdir()
            for name in LM_FILES:
                shutil.copyfile((lm_dir / name).resolve(), tmp / lm_dir.name / name)
        (tmp / "README.md").write_text(_readme(exp_dir, config, cer_line, corpus), encoding="utf-8")
        mark_done(tmp, exp_dir=str(exp_dir), model=str(model_file))
        os.chmod(tmp, 0o755)
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def add_arguments(p):
    p.add_argument("--exp_dir", required=True)
    p.add_argument("--decode_dir", default=None, help="decode dir whose cer.txt/result.txt to include")
    p.add_argument("--out_dir", default="exp_train_large")
    p.add_argument("--corpus", default="unknown", help="recorded in the README")
    p.add_argument("--half", action="store_true", help="store the weights as float16 (half the size)")
    p.add_argument("--extra_file", action="append", default=[], help="another file to include (repeatable)")


def main(args):
    out = package(args.exp_dir, args.out_dir, args.decode_dir, args.corpus, args.half, args.extra_file)
    log.info("packaged %s -> %s (serve it with: asrdemo serve --exp_dir %s)", args.exp_dir, out, out)
