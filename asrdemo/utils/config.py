"""Reading YAML configuration files, and the one place where old key names become current ones.

Names follow ESPnet: a pluggable part is `<name>: <choice>` with its options in `<name>_conf`
(`encoder`/`encoder_conf`, `decoder`/`decoder_conf`, `specaug`/`specaug_conf`, `optim`/`optim_conf`,
`scheduler`/`scheduler_conf`, the LM's `lm`/`lm_conf`); an option naming a YAML file is `--<name>_config`
(`--train_config`, `--decode_config`, `--fbank_config`, `--lm_config`).

Files written before a rename keep working: an exp dir's config.yaml (also the packaged model's,
and the one `--resume` compares against), a user's training YAML. Every reader passes what it read
through `upgrade_config` (the whole file) or `upgrade_model_conf` (its `model:` block), so the old
names are known here and nowhere else. Renamed so far:

| old | now |
|---|---|
| `model: {specaug: {num_freq_mask: 2, ...}}` | `model: {specaug: specaug, specaug_conf: {num_freq_mask: 2, ...}}` |
"""

import copy
from pathlib import Path

from asrdemo.errors import AsrdemoError


def read_yaml(path, what: str = "config") -> dict:
    """The mapping in the YAML file `path` ({} for an empty file). Raises AsrdemoError naming `what`
    and the file when it is missing, is not valid YAML, or holds something other than a mapping."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise AsrdemoError(f"missing {what} {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise AsrdemoError(f"{path}: not valid YAML ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AsrdemoError(f"{path}: the {what} must be a mapping of keys, got {type(data).__name__}")
    return data


def upgrade_model_conf(model_conf):
    """A `model:` block with old key names -> a copy with the current ones (the same block when
    there is nothing to rename; None stays None)."""
    if not isinstance(model_conf, dict) or not isinstance(model_conf.get("specaug"), dict):
        return model_conf
    # specaug: {options} (up to the one-naming-scheme change) -> specaug: specaug + specaug_conf;
    # options also given in specaug_conf (e.g. an old-style --set on a new-style file) are kept
    conf = copy.deepcopy(model_conf)
    conf["specaug_conf"] = {**(conf.get("specaug_conf") or {}), **conf["specaug"]}
    conf["specaug"] = "specaug"
    return conf


def upgrade_config(config: dict) -> dict:
    """An exp dir's config.yaml or a training YAML with old key names -> the current names."""
    if isinstance(config, dict) and "model" in config:
        config = {**config, "model": upgrade_model_conf(config["model"])}
    return config
