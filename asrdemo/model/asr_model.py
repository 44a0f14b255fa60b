"""The joint CTC/attention model (Watanabe et al., 2017; ESPnet's ``ESPnetASRModel``, WeNet's
``ASRModel``).

    feats -> GlobalCMVN -> SpecAugment (training only) -> encoder -> enc (B, T', D)

With a ``frontend`` module (``frontend: ssl``, asrdemo/model/ssl_frontend.py) the input is the
waveform instead, (B, N) samples with lengths in samples, and the frontend makes the features:
``wave -> frontend -> feats (B, T, D) -> GlobalCMVN (identity) -> ...``. Without one (fbank) the
features come from outside (the dump dir, the recognizer's `Fbank`), exactly as before.
    enc -> CTC linear                           -> loss_ctc
    enc + <sos> y -> attention decoder          -> loss_att (label-smoothed), acc
    loss = ctc_weight * loss_ctc + (1 - ctc_weight) * loss_att

With ``reading_ctc_weight`` > 0 an auxiliary CTC on the utterance's katakana reading
(asrdemo/kana.py `READING_TOKENS`, 89 symbols) reads the output of encoder layer
``reading_ctc_layer``: the lower layers learn the sounds every word shares, the upper ones the
spelling in characters (hierarchical multitask CTC: Sanabria & Metze, SLT 2018; Higuchi et al.,
"Hierarchical conditional end-to-end ASR with CTC and multi-granular subword units", ICASSP 2022).
    enc_k (layer k) -> reading CTC linear      -> loss_reading_ctc
    loss += reading_ctc_weight * loss_reading_ctc
It is a training aid only: decoding never reads it.

Losses are per utterance (summed over the batch, divided by the batch size), as ESPnet and
WeNet with ``length_normalized_loss: false``; with ``true`` the attention loss is per token.

Token ids: <blank> = 0, <sos> = <eos> = vocab_size - 1, label padding = -1.
"""

import copy
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from asrdemo.errors import AsrdemoError
from asrdemo.model.cmvn import GlobalCMVN
from asrdemo.model.ctc import CTC
from asrdemo.model.decoder import TransformerDecoder
from asrdemo.model.encoder import ConformerEncoder, TransformerEncoder
from asrdemo.model.mask import make_non_pad_mask
from asrdemo.model.label_smoothing_loss import LabelSmoothingLoss, th_accuracy
from asrdemo.model.specaug import SpecAugment
from asrdemo.utils.config import upgrade_model_conf

IGNORE_ID = -1

# The defaults: ESPnet's JSUT conformer recipe shape (egs2/jsut/asr1 train_asr_conformer8.yaml).
COMMON_ENCODER_DEFAULTS = dict(
    output_size=256, attention_heads=4, linear_units=2048, num_blocks=12, dropout_rate=0.1,
    positional_dropout_rate=0.1, attention_dropout_rate=0.0, input_layer="conv2d", normalize_before=True,
    input_layer_channels=None,  # channels of the subsampling convs (null: output_size, as ESPnet)
    # streaming (docs/streaming.md): a random chunk mask per training batch / one fixed chunk (0: off)
    use_dynamic_chunk=False, use_dynamic_left_chunk=False, static_chunk_size=0,
)
ENCODER_DEFAULTS = {
    "conformer": dict(
        COMMON_ENCODER_DEFAULTS, pos_enc_layer_type="rel_pos", activation_type="swish", macaron_style=True,
        use_cnn_module=True, cnn_module_kernel=15, cnn_module_norm="batch_norm",
        causal=False,  # streaming: the convolution sees only the past (same parameters either way)
    ),
    "transformer": dict(COMMON_ENCODER_DEFAULTS, pos_enc_layer_type="abs_pos", activation_type="relu"),
}
ENCODER_CLASSES = {"conformer": ConformerEncoder, "transformer": TransformerEncoder}
DECODER_DEFAULTS = dict(
    attention_heads=4, linear_units=2048, num_blocks=6, dropout_rate=0.1, positional_dropout_rate=0.1,
    self_attention_dropout_rate=0.0, src_attention_dropout_rate=0.0, normalize_before=True,
)
SPECAUG_DEFAULTS = dict(
    num_freq_mask=2, freq_mask_width=27, num_time_mask=2, time_mask_width_ratio=0.05, time_warp=0,
)
MODEL_DEFAULTS = dict(
    encoder="conformer", encoder_conf={}, decoder="transformer", decoder_conf={}, ctc_weight=0.3,
    lsm_weight=0.1, length_normalized_loss=False, specaug=None, specaug_conf=None,
    reading_ctc_weight=0.0, reading_ctc_layer=None,  # None: the middle layer (num_blocks // 2)
)


def _with_defaults(conf, defaults: dict, where: str) -> dict:
    """Fill missing keys from ``defaults``; an unknown key is a user error (likely a typo)."""
    conf = {} if conf is None else conf
    if not isinstance(conf, dict):
        raise AsrdemoError(f"model config: {where} must be a mapping, got {type(conf).__name__}")
    unknown = sorted(set(conf) - set(defaults))
    if unknown:
        raise AsrdemoError(f"model config: unknown key(s) {unknown} in {where}; known: {sorted(defaults)}")
    return {**copy.deepcopy(defaults), **conf}


def resolve_model_conf(model_conf: Optional[dict]) -> dict:
    """The full model config: every key present, defaults filled in, names checked (old names
    first become current ones: asrdemo/utils/config.py)."""
    conf = _with_defaults(upgrade_model_conf(model_conf), MODEL_DEFAULTS, "model")
    if conf["encoder"] not in ENCODER_DEFAULTS:
        raise AsrdemoError(f"model config: encoder must be one of {sorted(ENCODER_DEFAULTS)}, got {conf['encoder']!r}")
    if conf["decoder"] != "transformer":
        raise AsrdemoError(f"model config: decoder must be 'transformer', got {conf['decoder']!r}")
    conf["encoder_conf"] = _with_defaults(conf["encoder_conf"], ENCODER_DEFAULTS[conf["encoder"]],
                                          f"encoder_conf ({conf['encoder']})")
    conf["decoder_conf"] = _with_defaults(conf["decoder_conf"], DECODER_DEFAULTS, "decoder_conf")
    if conf["specaug"] not in (None, "specaug"):
        raise AsrdemoError(f"model config: specaug must be 'specaug' or null, got {conf['specaug']!r}")
    if conf["specaug"] is not None:
        conf["specaug_conf"] = _with_defaults(conf["specaug_conf"], SPECAUG_DEFAULTS, "specaug_conf")
    if not 0.0 <= float(conf["ctc_weight"]) <= 1.0:
        raise AsrdemoError(f"model config: ctc_weight must be in [0, 1], got {conf['ctc_weight']}")
    if not 0.0 <= float(conf["lsm_weight"]) < 1.0:
        raise AsrdemoError(f"model config: lsm_weight must be in [0, 1), got {conf['lsm_weight']}")
    if float(conf["reading_ctc_weight"]) < 0.0:
        raise AsrdemoError(f"model config: reading_ctc_weight must be >= 0, got {conf['reading_ctc_weight']}")
    num_blocks = int(conf["encoder_conf"]["num_blocks"])
    if conf["reading_ctc_layer"] is None:
        conf["reading_ctc_layer"] = max(1, num_blocks // 2)
    if not 1 <= int(conf["reading_ctc_layer"]) <= num_blocks:
        raise AsrdemoError(f"model config: reading_ctc_layer must be in [1, {num_blocks}] (encoder layers), "
                           f"got {conf['reading_ctc_layer']}")
    return conf


class ASRModel(nn.Module):
    def __init__(self, vocab_size: int, cmvn: GlobalCMVN, encoder: nn.Module, decoder: TransformerDecoder,
                 ctc: CTC, specaug: Optional[SpecAugment] = None, ctc_weight: float = 0.3,
                 lsm_weight: float = 0.1, length_normalized_loss: bool = False, frontend: Optional[nn.Module] = None,
                 reading_ctc: Optional[CTC] = None, reading_ctc_weight: float = 0.0, reading_ctc_layer: int = 0):
        super().__init__()
        self.frontend = frontend  # None (fbank): no module, so an fbank model's state_dict keys stay as they were
        self.vocab_size = vocab_size
        self.blank_id = 0
        self.sos = vocab_size - 1
        self.eos = vocab_size - 1
        self.ignore_id = IGNORE_ID
        self.ctc_weight = ctc_weight
        self.cmvn = cmvn
        self.specaug = specaug
        self.encoder = encoder
        self.decoder = decoder
        self.ctc = ctc
        self.criterion_att = LabelSmoothingLoss(vocab_size, IGNORE_ID, lsm_weight, length_normalized_loss)
        self.reading_ctc = reading_ctc  # None: no module, so the state_dict keys stay as they were
        self.reading_ctc_weight = reading_ctc_weight
        self.reading_ctc_layer = reading_ctc_layer if reading_ctc is not None else 0

    @classmethod
    def from_config(cls, model_conf: Optional[dict], input_dim: int, vocab_size: int, cmvn_stats=None,
                    frontend: Optional[nn.Module] = None) -> "ASRModel":
        """Build from the ``model:`` block of a training YAML (see docs/model.md).

        cmvn_stats: Kaldi global stats (2, D+1) or None (no normalisation). frontend: a module
        mapping waves (B, N), lengths -> features (B, T, input_dim), lengths (e.g.
        `HuggingFaceFrontend`), or None when the input is already features."""
        conf = resolve_model_conf(model_conf)
        if vocab_size < 3:
            raise AsrdemoError(f"vocab_size {vocab_size} is too small (needs <blank>, a token, <sos/eos>)")
        cmvn = GlobalCMVN.identity(input_dim) if cmvn_stats is None else GlobalCMVN.from_kaldi_stats(cmvn_stats, input_dim)
        try:
            encoder = ENCODER_CLASSES[conf["encoder"]](input_dim, **conf["encoder_conf"])
            decoder = TransformerDecoder(vocab_size, encoder.output_size(), **conf["decoder_conf"])
            specaug = SpecAugment(**conf["specaug_conf"]) if conf["specaug"] is not None else None
        except ValueError as e:  # a bad value in the config
            raise AsrdemoError(f"model config: {e}") from e
        ctc = CTC(vocab_size, encoder.output_size())
        reading_ctc = None
        if float(conf["reading_ctc_weight"]) > 0:
            from asrdemo.kana import READING_TOKENS

            reading_ctc = CTC(len(READING_TOKENS), encoder.output_size())
        return cls(vocab_size, cmvn, encoder, decoder, ctc, specaug, float(conf["ctc_weight"]),
                   float(conf["lsm_weight"]), bool(conf["length_normalized_loss"]), frontend,
                   reading_ctc, float(conf["reading_ctc_weight"]), int(conf["reading_ctc_layer"]))

    @property
    def subsampling_rate(self) -> int:
        return self.encoder.subsampling_rate

    @property
    def min_input_frames(self) -> int:
        """The shortest input (in feature frames) the encoder can turn into one output frame."""
        return self.encoder.embed.min_input_frames

    @property
    def min_input_length(self) -> int:
        """The shortest input `encode` takes, in its own unit: feature frames, or samples with a frontend."""
        if self.frontend is None:
            return self.min_input_frames
        return self.frontend.min_samples(self.min_input_frames)

    def encode(self, feats: torch.Tensor, feat_lens: torch.Tensor, decoding_chunk_size: int = 0,
               num_decoding_left_chunks: int = -1, intermediate_layer: int = 0):
        """feats (B, T, D), feat_lens (B,) -> enc (B, T', D_model), enc_lens (B,); with a frontend,
        waves (B, N) and their lengths in samples instead of feats. ``intermediate_layer`` k > 0:
        -> (enc, enc_lens, the output of encoder layer k (B, T', D_model)), for the reading CTC.
        ``decoding_chunk_size`` / ``num_decoding_left_chunks``: the encoder's chunk mask
        (asrdemo/model/encoder.py; default: the model's own setting, full context at inference).
        Raises AsrdemoError for input shorter than `min_input_length`."""
        if self.frontend is not None:
            if feats.size(1) < self.min_input_length:
                raise AsrdemoError(
                    f"input has {feats.size(1)} samples; the model needs at least {self.min_input_length} "
                    f"({self.min_input_length / self.frontend.sample_rate * 1000:.0f} ms: {self.min_input_frames} "
                    f"frames of the SSL frontend, subsampling x{self.subsampling_rate})")
            feats, feat_lens = self.frontend(feats, feat_lens)
        if feats.size(1) < self.min_input_frames:
            raise AsrdemoError(
                f"input has {feats.size(1)} frames; the model needs at least {self.min_input_frames} "
                f"(subsampling x{self.subsampling_rate}), i.e. about {self.min_input_frames * 10} ms of audio"
            )
        x = self.cmvn(feats)
        if self.training and self.specaug is not None:
            x = self.specaug(x, feat_lens)
        if intermediate_layer > 0:
            enc, masks, inter = self.encoder(x, feat_lens, decoding_chunk_size, num_decoding_left_chunks,
                                             intermediate_layer)
            return enc, masks.squeeze(1).sum(dim=1), inter
        enc, masks = self.encoder(x, feat_lens, decoding_chunk_size, num_decoding_left_chunks)
        return enc, masks.squeeze(1).sum(dim=1)

    def add_sos_eos(self, ys_pad: torch.Tensor, ys_lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """ys (B, L) -> decoder input [<sos>, y...] padded with <eos>, and target [y..., <eos>]
        padded with -1; both (B, L+1). Only the first ys_lens[b] entries of row b are read."""
        batch, length = ys_pad.shape
        valid = torch.arange(length, device=ys_pad.device).unsqueeze(0) < ys_lens.unsqueeze(1)
        ys_in = torch.full((batch, length + 1), self.eos, dtype=torch.long, device=ys_pad.device)
        ys_in[:, 0] = self.sos
        ys_in[:, 1:] = torch.where(valid, ys_pad, ys_in[:, 1:])
        ys_out = torch.full((batch, length + 1), self.ignore_id, dtype=torch.long, device=ys_pad.device)
        ys_out[:, :length] = torch.where(valid, ys_pad, ys_out[:, :length])
        ys_out[torch.arange(batch, device=ys_pad.device), ys_lens] = self.eos
        return ys_in, ys_out

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor, ys_pad: torch.Tensor,
                ys_lens: torch.Tensor, rs_pad: Optional[torch.Tensor] = None,
                rs_lens: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """-> {"loss", "loss_ctc", "loss_att", "acc"} scalar tensors (see the module docstring);
        with a reading CTC, its targets rs_pad (B, R) / rs_lens (B,) (asrdemo/kana.py
        `reading_ids`) are required and "loss_reading_ctc" is added. Raises ValueError without them."""
        enc, enc_lens, *inter = self.encode(feats, feat_lens, intermediate_layer=self.reading_ctc_layer)
        return self.losses(enc, enc_lens, ys_pad, ys_lens, *inter, rs_pad=rs_pad, rs_lens=rs_lens)

    def losses(self, enc: torch.Tensor, enc_lens: torch.Tensor, ys_pad: torch.Tensor,
               ys_lens: torch.Tensor, inter: Optional[torch.Tensor] = None,
               rs_pad: Optional[torch.Tensor] = None, rs_lens: Optional[torch.Tensor] = None
               ) -> Dict[str, torch.Tensor]:
        """The losses of `forward` from encoder output enc (B, T', D), enc_lens (B,) (and with a
        reading CTC, layer `reading_ctc_layer`'s output inter (B, T', D)) — for a caller that
        keeps the encoder output too (validation's CTC greedy CER), so it runs once."""
        loss_ctc = self.ctc(enc, enc_lens, ys_pad, ys_lens)

        ys_in, ys_out = self.add_sos_eos(ys_pad, ys_lens)
        memory_mask = make_non_pad_mask(enc_lens, enc.size(1)).unsqueeze(1)
        logits = self.decoder(enc, memory_mask, ys_in, ys_lens + 1)
        loss_att = self.criterion_att(logits, ys_out)
        acc = th_accuracy(logits.detach(), ys_out, self.ignore_id)

        loss = self.ctc_weight * loss_ctc + (1.0 - self.ctc_weight) * loss_att
        out = {"loss": loss, "loss_ctc": loss_ctc.detach(), "loss_att": loss_att.detach(), "acc": acc}
        if self.reading_ctc is not None:
            if inter is None or rs_pad is None or rs_lens is None:
                raise ValueError("this model has a reading CTC: pass the intermediate encoder output and "
                                 "the reading targets (rs_pad, rs_lens)")
            loss_reading = self.reading_ctc(inter, enc_lens, rs_pad, rs_lens)
            out["loss"] = loss + self.reading_ctc_weight * loss_reading
            out["loss_reading_ctc"] = loss_reading.detach()
        return out


def load_model_weights(path) -> Dict[str, torch.Tensor]:
    """The model state_dict in a model file (valid.acc.ave.pth) or a training checkpoint (its
    "model" entry), on CPU: for the recognizer and `asrdemo train --init_param`.

    Raises AsrdemoError when the file is missing, unreadable or holds no state_dict.
    """
    path = Path(path)
    if not path.is_file():
        raise AsrdemoError(f"model file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a training checkpoint also holds RNG states and the like
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise AsrdemoError(f"cannot read model file {path}: {e}") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]  # a training checkpoint: {"model": state_dict, "optimizer": ...}
    if not isinstance(obj, dict):
        raise AsrdemoError(f"{path}: not a state_dict or a checkpoint with a 'model' entry")
    return obj
