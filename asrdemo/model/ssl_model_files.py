"""Finding a self-supervised speech model's files offline, and naming the exact version found.

A model is named the way Hugging Face names it: a local folder (``config.json`` + the weights, as
``save_pretrained`` or ``hf download NAME --local-dir DIR`` write them) or a hub name such as
``rinna/japanese-hubert-base``, looked up in the local Hugging Face cache only (``$HF_HUB_CACHE``,
by default ~/.cache/huggingface/hub). Nothing is ever downloaded here: training and decoding must
not depend on a network, and an exp dir must name the exact weights it was trained on.

The version recorded in an exp dir's config.yaml:

* ``revision``: the git commit of the hub snapshot: the cache's ``snapshots/<commit>/`` folder,
  or the commit that ``hf download --local-dir`` notes in ``.cache/huggingface/download/`` (None
  for a folder written by ``save_pretrained``);
* ``weights_sha256``: a SHA-256 over the weight files transformers loads (name and content, in
  name order), which every copy has, so a recognizer can tell that the weights it found are the
  ones trained with.
"""

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Optional

from asrdemo.errors import AsrdemoError

_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclasses.dataclass
class SSLModelFiles:
    name: str  # as the user gave it: a hub name, or the folder (absolute)
    path: Path  # the folder holding config.json and the weights
    revision: Optional[str]  # the hub commit, when known


def download_hint(name: str) -> str:
    """What to run, on a machine with a network, so that `name` is found offline."""
    folder = f"downloads/ssl/{name.rstrip('/').split('/')[-1]}"
    return (f"download it once where there is a network: `hf download {name} --local-dir {folder}` "
            f"(older huggingface_hub: `huggingface-cli download {name} --local-dir {folder}`), then set "
            f"frontend_conf.model: {folder} (run.sh: --ssl_model {folder}); or copy a Hugging Face cache that "
            f"holds it to {hub_cache()}")


def hub_cache() -> str:
    try:
        from huggingface_hub import constants
    except ImportError:
        return "~/.cache/huggingface/hub"
    return str(constants.HF_HUB_CACHE)


def locate(name: str) -> SSLModelFiles:
    """The files of model `name` (a folder, or a hub name in the local cache) -> `SSLModelFiles`.

    Raises AsrdemoError naming the model, where it was looked for and what to download."""
    name = str(name)
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise AsrdemoError(f"SSL model folder {folder} has no config.json: is it a Hugging Face model folder "
                               f"(save_pretrained / hf download --local-dir)?")
        return SSLModelFiles(str(folder.resolve()), folder.resolve(), _local_dir_revision(folder))
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1
    cached = None if looks_like_path else _cached_config(name)
    if cached is None:
        where = ("is not a folder" if looks_like_path
                 else f"is neither a folder nor in the Hugging Face cache ({hub_cache()})")
        raise AsrdemoError(f"SSL model {name!r} is not available offline: it {where}. Nothing is downloaded "
                           f"during training or decoding; " + download_hint(name))
    snapshot = Path(cached).parent
    return SSLModelFiles(name, snapshot, snapshot.name if _COMMIT.fullmatch(snapshot.name) else None)


def _cached_config(repo_id: str) -> Optional[str]:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(repo_id=repo_id, filename="config.json")
    except Exception:  # not a valid repo id
        return None
    return found if isinstance(found, str) else None


def _local_dir_revision(folder: Path) -> Optional[str]:
    """The commit `hf download --local-dir` recorded (first line of its .metadata files), or the
    snapshot folder's name when `folder` is a cache snapshot; None otherwise."""
    if _COMMIT.fullmatch(folder.resolve().name) and folder.resolve().parent.name == "snapshots":
        return folder.resolve().name
    meta = folder / ".cache" / "huggingface" / "download" / "config.json.metadata"
    if meta.is_file():
        first = meta.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0].strip()
        if _COMMIT.fullmatch(first):
            return first
    return None


def weight_files(folder: Path) -> list:
    """The weight files transformers loads from `folder`: its *.safetensors when there are any
    (transformers prefers them), else its *.bin; sub-folders (e.g. a fairseq copy) are not looked at."""
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    # training_args.bin and the like are not weights
    return [p for p in files if not p.name.startswith(("training_args", "optimizer", "scheduler"))]


def weights_digest(folder: Path) -> str:
    """SHA-256 over the weight files of `folder` (each file's name, then its bytes, in name order).
    Raises AsrdemoError when there are none."""
    files = weight_files(folder)
    if not files:
        raise AsrdemoError(f"SSL model folder {folder} has no weights (*.safetensors or *.bin)")
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode("utf-8") + b"\0")
        with open(path, "rb") as f:  # symlinks into the cache's blobs are followed
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
