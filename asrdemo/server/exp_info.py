"""What the demo shows about its packaged exp dir: architecture, test CER, training curves.

A packaged dir (`asrdemo package`) holds config.yaml, tokens.txt, cmvn.ark, valid.acc.ave.pth,
images/{loss,acc,error}.png, cer.txt and README.md; only the first four are needed to recognize,
the rest are shown when present.
"""

import re
from pathlib import Path

import yaml

CURVE_NAMES = ("loss.png", "acc.png", "error.png")
_CER_RE = re.compile(r"CER\W{0,3}([0-9]+(?:\.[0-9]+)?)\s*%?", re.IGNORECASE)


def how_to_get_a_model(exp_dir) -> str:
    """The message every page shows while no model is loaded."""
    return (
        f"No trained model at {exp_dir}/. To get one, either run the mini recipe "
        "(`./run.sh --corpus mini_jsut`, a few minutes on a laptop CPU; its last stage packages the model "
        "into exp_train_large/), or copy a packaged exp dir (config.yaml, tokens.txt, cmvn.ark, "
        f"valid.acc.ave.pth) to {exp_dir}/, or point ASRDEMO_EXP at one. Then restart the server. / "
        f"{exp_dir}/ に学習済みモデルがありません。`./run.sh --corpus mini_jsut` を実行するか、"
        "パッケージ済みの exp ディレクトリをコピーしてから、サーバーを再起動してください。"
    )


def read_config(exp_dir) -> dict:
    with open(Path(exp_dir) / "config.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def read_test_cer(exp_dir):
    """{"cer": float percent, "summary": str, "source": file name} from the first file that has one, or None.

    Looked for in `cer.txt` (first line like `CER 12.34 % (N=..., S=.. D=.. I=..)`), then README.md;
    read loosely, since it is only shown.
    """
    exp_dir = Path(exp_dir)
    for name in ("cer.txt", "README.md"):
        path = exp_dir / name
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _CER_RE.search(line)
            if match:
                return {"cer": float(match.group(1)), "summary": line.strip(" #|-*"), "source": name}
    return None


def curve_images(exp_dir) -> list:
    """Names of the training-curve PNGs present under exp_dir/images/, in the page's order."""
    images = Path(exp_dir) / "images"
    return [name for name in CURVE_NAMES if (images / name).is_file()]


def architecture(config: dict) -> dict:
    """The model block of config.yaml, reduced to what a reader compares models by."""
    model = config.get("model") or {}
    enc, dec = model.get("encoder_conf") or {}, model.get("decoder_conf") or {}
    return {
        "encoder": model.get("encoder"),
        "encoder_layers": enc.get("num_blocks"),
        "d_model": enc.get("output_size"),
        "attention_heads": enc.get("attention_heads"),
        "ffn_units": enc.get("linear_units"),
        "subsampling": enc.get("input_layer"),
        "decoder": model.get("decoder", "transformer"),
        "decoder_layers": dec.get("num_blocks"),
        "ctc_weight": model.get("ctc_weight"),
    }
