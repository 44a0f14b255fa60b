"""Reading YAML configuration files, the one place where old key names become current ones, and
typed settings with their bounds (`setting`, `setting_problem`), declared once per field.

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
import dataclasses
import math
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


def setting(default, *, minimum=None, maximum=None, above=None, choices=None, env=None, limit=False):
    """A dataclass field for a setting: its default and what a value must be (a number >= `minimum`,
    <= `maximum`, > `above`, or one of `choices`); `env` names the environment variable it is read
    from and `limit` marks what the demo shows as a limit (server/settings.py)."""
    return dataclasses.field(default=default, metadata={
        "minimum": minimum, "maximum": maximum, "above": above, "choices": choices, "env": env, "limit": limit})


def setting_problem(field: dataclasses.Field, value):
    """What is wrong with `value` for the `setting` `field` ("must be ...; got ..."), or None."""
    meta = field.metadata
    if meta.get("choices") is not None:
        return None if value in meta["choices"] else f"must be one of {', '.join(meta['choices'])}; got {value!r}"
    bounds = [(meta.get("minimum"), ">=", lambda v, b: v >= b), (meta.get("above"), ">", lambda v, b: v > b),
              (meta.get("maximum"), "<=", lambda v, b: v <= b)]
    bounds = [(b, op, ok) for b, op, ok in bounds if b is not None]
    if not bounds:
        return None
    wanted = " and ".join(f"{op} {b}" for b, op, _ in bounds)
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not number or not all(ok(value, b) for b, _, ok in bounds):
        return f"must be a number {wanted}, got {value!r}"
    return None


def check_settings(obj, where: str) -> None:
    """Raise AsrdemoError naming `where` and the field for the first value of the dataclass `obj`
    that its `setting` does not allow."""
    for field in dataclasses.fields(obj):
        problem = setting_problem(field, getattr(obj, field.name))
        if problem:
            raise AsrdemoError(f"{where}: {field.name} {problem}")
