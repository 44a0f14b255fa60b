"""Search settings (conf/decode.yaml) -> `DecodeConfig`. Imports no torch, so the light steps of
`asrdemo decode` (split, merge) start fast."""

import dataclasses
from pathlib import Path

from asrdemo.errors import AsrdemoError
from asrdemo.utils.config import read_yaml

MODES = ("ctc_greedy", "ctc_prefix_beam", "attention", "joint", "attention_rescoring")


@dataclasses.dataclass
class DecodeConfig:
    """Search settings (conf/decode.yaml). Lengths follow ESPnet: maxlenratio 0 = up to one token
    per encoder frame, < 0 = at most -maxlenratio tokens; penalty = score bonus per token;
    lm_weight = weight of the exp dir's language model (0: no LM; docs/decoding.md)."""

    mode: str = "joint"
    beam_size: int = 10
    ctc_weight: float = 0.3
    penalty: float = 0.0
    maxlenratio: float = 0.0
    minlenratio: float = 0.0
    pre_beam_ratio: float = 1.5
    nbest: int = 1
    end_detection: bool = True
    lm_weight: float = 0.0

    def __post_init__(self):
        if self.mode not in MODES:
            raise AsrdemoError(f"decode config: mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if not 0.0 <= float(self.ctc_weight) <= 1.0:
            raise AsrdemoError(f"decode config: ctc_weight must be in [0, 1], got {self.ctc_weight}")
        if int(self.beam_size) < 1 or int(self.nbest) < 1:
            raise AsrdemoError("decode config: beam_size and nbest must be >= 1")
        if self.pre_beam_ratio <= 0:
            raise AsrdemoError("decode config: pre_beam_ratio must be > 0")
        if not isinstance(self.lm_weight, (int, float)) or not 0.0 <= float(self.lm_weight) < float("inf"):
            raise AsrdemoError(f"decode config: lm_weight must be a number >= 0, got {self.lm_weight!r}")

    @classmethod
    def load(cls, conf=None) -> "DecodeConfig":
        """None -> defaults; a dict, a DecodeConfig, or a YAML file path."""
        if conf is None:
            return cls()
        if isinstance(conf, cls):
            return dataclasses.replace(conf)
        if isinstance(conf, (str, Path)):
            where = str(conf)
            conf = read_yaml(conf, "decode config")
        else:
            where = "decode config"
        if not isinstance(conf, dict):
            raise AsrdemoError(f"{where}: must be a mapping of settings")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(conf) - known)
        if unknown:
            raise AsrdemoError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**conf)
