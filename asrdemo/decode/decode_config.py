"""Search settings (conf/decode.yaml) -> `DecodeConfig`. Imports no torch, so the light steps of
`asrdemo decode` (split, merge) start fast."""

import dataclasses
from pathlib import Path

from asrdemo.errors import AsrdemoError
from asrdemo.utils.config import check_settings, read_yaml, setting

MODES = ("ctc_greedy", "ctc_prefix_beam", "attention", "joint", "attention_rescoring")
DTYPES = ("float32", "bfloat16", "int8")  # decode/precision.py


@dataclasses.dataclass
class DecodeConfig:
    """Search settings (conf/decode.yaml). Lengths follow ESPnet: maxlenratio 0 = up to one token
    per encoder frame, < 0 = at most -maxlenratio tokens; penalty = score bonus per token;
    lm_weight = weight of the exp dir's language model (0: no LM; docs/decoding.md);
    spell_lm_weight = weight of the spelling's log-probability (Mozc's language model) when a kana
    model's n-best is ranked (0: the best reading, spelled; other token types ignore it);
    tail_padding_s = seconds of silence appended to every input before decoding, offline and
    streaming alike: a causal (streaming) model emits its last characters late and drops them at
    an abrupt end without it (sherpa-onnx's tail paddings; docs/streaming.md);
    dtype = the arithmetic of inference, as ESPnet's `asr_inference.py --dtype`: float32, bfloat16
    or int8 (decode/precision.py; docs/decoding.md, "Inference precision")."""

    mode: str = setting("joint", choices=MODES)
    beam_size: int = setting(10, minimum=1)
    ctc_weight: float = setting(0.3, minimum=0, maximum=1)
    penalty: float = 0.0
    maxlenratio: float = 0.0
    minlenratio: float = 0.0
    pre_beam_ratio: float = setting(1.5, above=0)
    nbest: int = setting(1, minimum=1)
    end_detection: bool = True
    lm_weight: float = setting(0.0, minimum=0)
    spell_lm_weight: float = setting(1.0, minimum=0)
    tail_padding_s: float = setting(0.0, minimum=0)
    dtype: str = setting("float32", choices=DTYPES)

    def __post_init__(self):
        check_settings(self, "decode config")

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
