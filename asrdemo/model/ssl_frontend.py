"""A self-supervised speech model as the ASR model's frontend (``frontend: ssl``), through Hugging
Face transformers (ESPnet's ``S3prlFrontend`` / Hugging Face frontends, built on ``AutoModel``):

    wave (B, N) at 16 kHz -> [per-utterance normalisation, when the model wants it]
        -> wav2vec 2.0 / HuBERT / WavLM: CNN encoder (20 ms frames) + L transformer layers
        -> hidden states h_0 .. h_L, each (B, T, H)
        -> SUPERB weighted sum (layer: weighted_sum; asrdemo/model/layer_weighted_sum.py) or h_N (layer: N)
        -> linear projection H -> output_size (80: the encoder's input_dim)      -> (B, T, output_size)

T = the CNN's frame count (`num_frames`): one frame every `hop_length` samples (320: 20 ms),
each computed from `win_length` samples (400: 25 ms). The encoder then subsamples x2
(``input_layer: conv2d2``) to 40 ms, the frame rate conv2d (x4) gives 10 ms fbank.

Freezing (``freeze``, ``freeze_steps``; ESPnet's FairseqHubertEncoder ``freeze_finetune_updates``):
``freeze: true`` never trains the SSL model: it runs in eval mode under ``torch.no_grad()``, its
parameters have ``requires_grad=False``, and its weights are left out of every state_dict (so of
every checkpoint and model file: a base model is ~95 M parameters, 360 MB in float32), being the
snapshot's. ``freeze: false`` fine-tunes it once `num_updates` (set by the trainer before each step:
the updates done so far) reaches ``freeze_steps``; before that it is frozen as above. Its CNN
feature encoder is never trained (as HF's ``freeze_feature_encoder`` and fairseq's
``feature_grad_mult: 0`` in fine-tuning). The model's own time masking and layerdrop are turned off:
SpecAugment is the ASR model's (``model.specaug``); its dropout stays as its config says.

Padding: models whose CNN normalises with LayerNorm (``feat_extract_norm: layer``, the large ones)
get an attention mask; the GroupNorm ones (base) are given zero padding and no mask, as Hugging
Face advises for them (the padded zeros then enter the first layer's normalisation, so a batch's
output may differ slightly from one utterance's).

Requires the optional extra (``pip install -e .[ssl]``); transformers is imported only here.
"""

import contextlib
import logging
import math
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import nn

from asrdemo.errors import AsrdemoError
from asrdemo.model.layer_weighted_sum import LayerWeightedSum
from asrdemo.model.ssl_model_files import locate, weights_digest

log = logging.getLogger(__name__)

FRONTEND_CONF_DEFAULTS = dict(
    model=None,  # required: a local folder or a Hugging Face hub name (found offline only)
    layer="weighted_sum",  # weighted_sum | N: the hidden state of layer N (0: the transformer's input)
    freeze=True,  # true: never train the SSL model
    freeze_steps=0,  # with freeze: false, fine-tune it after this many updates
    output_size=80,  # the projection's size: the encoder's input_dim
    normalize=None,  # zero-mean unit-variance input per utterance; null: as the model's preprocessor says
)
# what `asrdemo train` adds to config.yaml's frontend_conf: which weights, and their shape
RECORDED_KEYS = ("revision", "weights_sha256", "model_type", "num_hidden_states", "hidden_size", "sample_rate")
NORM_EPS = 1e-7  # transformers' Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm


def resolve_frontend_conf(conf: Optional[dict]) -> dict:
    """The user's ``frontend_conf`` with defaults filled in and values checked (recorded keys of a
    config.yaml are dropped: they describe a run, not settings). Raises AsrdemoError."""
    conf = dict(conf or {})
    for key in RECORDED_KEYS:
        conf.pop(key, None)
    unknown = sorted(set(conf) - set(FRONTEND_CONF_DEFAULTS))
    if unknown:
        raise AsrdemoError(f"frontend_conf: unknown key(s) {unknown}; known: {sorted(FRONTEND_CONF_DEFAULTS)}")
    conf = {**FRONTEND_CONF_DEFAULTS, **conf}
    if not conf["model"]:
        raise AsrdemoError("frontend: ssl needs frontend_conf.model: a local model folder or a Hugging Face name "
                           "such as rinna/japanese-hubert-base (run.sh: --ssl_model NAME)")
    layer = conf["layer"]
    if layer != "weighted_sum" and (isinstance(layer, bool) or not isinstance(layer, int) or layer < 0):
        raise AsrdemoError(f"frontend_conf.layer must be weighted_sum or a layer number >= 0, got {layer!r}")
    if not isinstance(conf["freeze"], bool):
        raise AsrdemoError(f"frontend_conf.freeze must be true or false, got {conf['freeze']!r}")
    steps = conf["freeze_steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise AsrdemoError(f"frontend_conf.freeze_steps must be an integer >= 0, got {steps!r}")
    if conf["freeze"] and steps:
        raise AsrdemoError(f"frontend_conf: freeze: true never trains the SSL model, so freeze_steps: {steps} "
                           "has no effect; set freeze: false to fine-tune it after that many updates")
    if isinstance(conf["output_size"], bool) or not isinstance(conf["output_size"], int) or conf["output_size"] < 1:
        raise AsrdemoError(f"frontend_conf.output_size must be a positive integer, got {conf['output_size']!r}")
    if conf["normalize"] is not None and not isinstance(conf["normalize"], bool):
        raise AsrdemoError(f"frontend_conf.normalize must be true, false or null, got {conf['normalize']!r}")
    conf["model"] = str(conf["model"])
    return conf


def _import_transformers():
    try:
        import transformers
    except ImportError:
        raise AsrdemoError("frontend: ssl needs Hugging Face transformers, an optional extra: "
                           "pip install -e '.[ssl]'") from None
    transformers.logging.set_verbosity_error()  # "weights not used" for a *ForPreTraining checkpoint's heads
    return transformers


def _wants_normalized_input(transformers, folder: Path, config) -> bool:
    """`do_normalize` of the model's preprocessor_config.json; without one, what HF's feature
    extractor does for such a model (normalise when its CNN uses LayerNorm)."""
    if (folder / "preprocessor_config.json").is_file():
        try:
            extractor = transformers.AutoFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
            return bool(getattr(extractor, "do_normalize", False))
        except (OSError, ValueError) as e:
            log.warning("%s/preprocessor_config.json unreadable (%s): normalising as its CNN suggests", folder, e)
    return getattr(config, "feat_extract_norm", "group") == "layer"


class HuggingFaceFrontend(nn.Module):
    """``frontend(wave (B, N) float, lengths (B,) long samples) -> feats (B, T, output_size), lengths (B,) frames``.

    Build it with `from_conf` (a ``frontend_conf`` mapping); `conf` is then the mapping config.yaml
    records (the settings plus the model's revision, weights digest and shape)."""

    def __init__(self, ssl_model: nn.Module, conf: dict, sample_rate: int = 16000):
        super().__init__()
        config = ssl_model.config
        shape = ("conv_kernel", "conv_stride", "hidden_size", "num_hidden_layers")
        speech_model = (all(hasattr(config, a) for a in shape)
                        and hasattr(ssl_model, "_get_feat_extract_output_lengths")
                        and hasattr(ssl_model, "feature_extractor"))
        if not speech_model:
            raise AsrdemoError(f"SSL model {conf['model']} ({type(ssl_model).__name__}) is not a wav2vec 2.0-style "
                                   "speech model (wav2vec2, hubert, wavlm, ...)")
        self.ssl = ssl_model
        self.conf = dict(conf)
        self.layer = conf["layer"]
        self.freeze, self.freeze_steps = bool(conf["freeze"]), int(conf["freeze_steps"])
        self.normalize = bool(conf["normalize"])
        self.use_attention_mask = getattr(config, "feat_extract_norm", "group") == "layer"
        self.sample_rate = int(sample_rate)
        self.num_hidden_states = int(config.num_hidden_layers) + 1
        if self.layer != "weighted_sum" and self.layer >= self.num_hidden_states:
            raise AsrdemoError(f"frontend_conf.layer {self.layer}: {conf['model']} has hidden states 0.."
                               f"{self.num_hidden_states - 1}")
        self.weighted_sum = LayerWeightedSum(self.num_hidden_states) if self.layer == "weighted_sum" else None
        self.proj = nn.Linear(int(config.hidden_size), int(conf["output_size"]))
        self.hop_length = math.prod(int(s) for s in config.conv_stride)
        receptive, step = 1, 1
        for kernel, stride in zip(config.conv_kernel, config.conv_stride):
            receptive, step = receptive + (int(kernel) - 1) * step, step * int(stride)
        self.win_length = receptive
        self.num_updates = 0  # updates done so far: the trainer sets it before each training step
        self._tuning_announced = False
        if self.freeze:
            self.ssl.requires_grad_(False)
        else:
            self.ssl.feature_extractor._freeze_parameters()  # the CNN is never trained
        self.ssl.eval()
        self.register_state_dict_post_hook(_drop_frozen_weights)
        self.register_load_state_dict_pre_hook(_fill_frozen_weights)

    @classmethod
    def from_conf(cls, conf: dict, expect_weights: Optional[str] = None) -> "HuggingFaceFrontend":
        """Load the SSL model named by `conf` (``frontend_conf``) offline and build the frontend.

        `expect_weights`: the weights digest an exp dir recorded; a frozen frontend whose weights
        differ (they are not in the model file) is refused. Raises AsrdemoError when the model cannot
        be found offline (naming what to download), is not a speech SSL model, or is not the one
        expected."""
        conf = resolve_frontend_conf(conf)
        transformers = _import_transformers()
        files = locate(conf["model"])
        digest = weights_digest(files.path)
        if expect_weights and digest != expect_weights:
            message = (f"SSL model {conf['model']} at {files.path} is not the copy this model was trained with "
                       f"(weights sha256 {digest[:12]}..., config.yaml records {expect_weights[:12]}..."
                       f"{', revision ' + str(conf.get('revision')) if conf.get('revision') else ''})")
            if conf["freeze"]:
                raise AsrdemoError(message + ": its weights are not in the model file (freeze: true), so that exact "
                                   "copy is needed")
            log.warning("%s; the fine-tuned weights in the model file replace them", message)
        try:
            config = transformers.AutoConfig.from_pretrained(str(files.path), local_files_only=True)
            for key, value in (("apply_spec_augment", False), ("layerdrop", 0.0)):
                if hasattr(config, key):
                    setattr(config, key, value)
            ssl_model = transformers.AutoModel.from_pretrained(str(files.path), config=config, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise AsrdemoError(f"cannot load SSL model {conf['model']} from {files.path}: {e}") from None
        if conf["normalize"] is None:
            conf["normalize"] = _wants_normalized_input(transformers, files.path, config)
        sample_rate = 16000
        if (files.path / "preprocessor_config.json").is_file():
            try:
                sample_rate = int(transformers.AutoFeatureExtractor.from_pretrained(
                    str(files.path), local_files_only=True).sampling_rate)
            except (OSError, ValueError, AttributeError):
                pass
        conf.update(model=files.name, revision=files.revision, weights_sha256=digest,
                    model_type=getattr(config, "model_type", None), num_hidden_states=int(config.num_hidden_layers) + 1,
                    hidden_size=int(config.hidden_size), sample_rate=sample_rate)
        frontend = cls(ssl_model, conf, sample_rate)
        log.info("SSL frontend: %s (%s, revision %s), %d hidden states of %d, layer %s, %s", files.name,
                 conf["model_type"], files.revision or "unknown", frontend.num_hidden_states, conf["hidden_size"],
                 conf["layer"], "frozen" if conf["freeze"] else f"fine-tuned after {conf['freeze_steps']} updates")
        return frontend

    # ---------------------------------------------------------------------------------- shape
    def output_size(self) -> int:
        return self.proj.out_features

    @property
    def frame_shift_s(self) -> float:
        return self.hop_length / self.sample_rate

    @property
    def frame_length_s(self) -> float:
        return self.win_length / self.sample_rate

    def num_frames(self, num_samples):
        """Samples -> CNN frames (ints or long tensors): each conv's floor((n - kernel) / stride) + 1."""
        lengths = torch.as_tensor(num_samples)
        frames = self.ssl._get_feat_extract_output_lengths(lengths).clamp(min=0)
        return int(frames) if not isinstance(num_samples, torch.Tensor) else frames.to(torch.long)

    def min_samples(self, frames: int) -> int:
        """The fewest samples that give `frames` CNN frames."""
        return self.win_length + (max(int(frames), 1) - 1) * self.hop_length

    def layer_weights(self) -> Optional[torch.Tensor]:
        """softmax of the weighted sum's weights (num_hidden_states,), or None for one fixed layer."""
        return None if self.weighted_sum is None else self.weighted_sum.normalized_weights().detach()

    @property
    def fine_tuning(self) -> bool:
        """True once the SSL model itself trains: not freeze, and freeze_steps updates done."""
        return not self.freeze and self.num_updates >= self.freeze_steps

    # -------------------------------------------------------------------------------- forward
    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if wave.dim() != 2:
            raise ValueError(f"the SSL frontend expects waves (B, N), got shape {tuple(wave.shape)}")
        lengths = lengths.to(wave.device)
        valid = torch.arange(wave.size(1), device=wave.device).unsqueeze(0) < lengths.unsqueeze(1)
        x = wave.float().masked_fill(~valid, 0.0)
        if self.normalize:
            n = lengths.clamp(min=1).unsqueeze(1).to(x.dtype)
            mean = x.sum(1, keepdim=True) / n
            var = ((x - mean).masked_fill(~valid, 0.0) ** 2).sum(1, keepdim=True) / n
            x = ((x - mean) / torch.sqrt(var + NORM_EPS)).masked_fill(~valid, 0.0)
        tune = self.training and self.fine_tuning
        if tune and not self._tuning_announced:
            log.info("SSL frontend: fine-tuning the SSL model from update %d on", self.num_updates)
            self._tuning_announced = True
        if self.ssl.training != tune:
            self.ssl.train(tune)
        with contextlib.nullcontext() if tune else torch.no_grad():
            out = self.ssl(x, attention_mask=valid.long() if self.use_attention_mask else None,
                           output_hidden_states=True)
        hidden = out.hidden_states
        feats = self.weighted_sum(hidden) if self.weighted_sum is not None else hidden[self.layer]
        feat_lens = self.num_frames(lengths).clamp(max=feats.size(1))
        return self.proj(feats), feat_lens

    def train(self, mode: bool = True):
        super().train(mode)
        self.ssl.train(mode and self.fine_tuning)  # frozen: no dropout either
        return self


def _drop_frozen_weights(module, state_dict, prefix, local_metadata) -> None:
    """state_dict post-hook: a frozen SSL model's weights are the snapshot's; keep them out of files."""
    if module.freeze:
        for key in [k for k in state_dict if k.startswith(prefix + "ssl.")]:
            del state_dict[key]


def _fill_frozen_weights(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                         error_msgs) -> None:
    """load_state_dict pre-hook: a frozen SSL model keeps the snapshot's weights where the file has none."""
    if module.freeze:
        for key, value in module.ssl.state_dict().items():
            state_dict.setdefault(prefix + "ssl." + key, value)
