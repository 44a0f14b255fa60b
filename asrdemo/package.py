"""Stage 6: copy what the demo needs from an exp dir into one self-contained folder.

    asrdemo package --exp_dir egs/mini_jsut/exp/train_mini --decode_dir .../decode_test --out_dir exp_train_large

The folder holds config.yaml, tokens.txt, cmvn.ark (+ bpe.model), the model (`valid.acc.ave.pth`),
images/*.png, the test CER (`cer.txt`, `result.txt`), the search settings that CER was measured with
(`decode.yaml`, which the recognizer then uses by default), the language model when config.yaml names
one (`lm: lm`, the dir `asrdemo lm attach` fills) and a README.md that says how it was made.
It is assembled beside the target and swapped in with renames, so the demo never sees half a model.
"""

import datetime
import logging
import os
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

    ./run.sh --corpus mini_jsut          # offline, minutes on a CPU
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
        f"- frontend: {config.get('frontend', {})}",
        "",
        "Training curves: images/loss.png, images/acc.png, images/error.png. Per-utterance errors: result.txt.",
        "",
        HOWTO,
    ]
    return "\n".join(lines)


def package(exp_dir, out_dir, decode_dir=None, corpus="unknown"):
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

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for f in files:
            shutil.copyfile(f, tmp / f.name)
        shutil.copyfile(model_file, tmp / MODEL_FILE)
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


def main(args):
    out = package(args.exp_dir, args.out_dir, args.decode_dir, args.corpus)
    log.info("packaged %s -> %s (serve it with: asrdemo serve --exp_dir %s)", args.exp_dir, out, out)
