"""Encoders: fbank (B, T, 80) -> hidden states (B, T', D) at 1/4, 1/6 or 1/8 of the frame rate.

conv2d subsampling (+ positional encoding) -> N encoder blocks -> LayerNorm (pre-norm only).
``TransformerEncoder``: absolute positions, plain MHSA, ReLU FFN.
``ConformerEncoder``: relative positions (or abs_pos), macaron FFNs, convolution module, Swish.
"""

from typing import Tuple

import torch
from torch import nn

from asrdemo.model.attention import MultiHeadedAttention, RelPositionMultiHeadedAttention
from asrdemo.model.convolution import ConvolutionModule
from asrdemo.model.embedding import PositionalEncoding, RelPositionalEncoding
from asrdemo.model.encoder_layer import ConformerEncoderLayer, TransformerEncoderLayer
from asrdemo.model.mask import make_non_pad_mask
from asrdemo.model.positionwise_feed_forward import PositionwiseFeedForward
from asrdemo.model.subsampling import INPUT_LAYERS, Conv2dSubsampling

ACTIVATIONS = {"relu": nn.ReLU, "swish": nn.SiLU, "gelu": nn.GELU, "tanh": nn.Tanh}
POS_ENCODINGS = {"abs_pos": PositionalEncoding, "rel_pos": RelPositionalEncoding}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation_type must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


class BaseEncoder(nn.Module):
    """Subsampling front, a stack of layers (built by the subclass), final LayerNorm."""

    def __init__(self, input_size: int, output_size: int, input_layer: str, pos_enc_layer_type: str,
                 positional_dropout_rate: float, normalize_before: bool, input_layer_channels=None):
        super().__init__()
        if input_layer not in INPUT_LAYERS:
            raise ValueError(f"input_layer must be one of {sorted(INPUT_LAYERS)}, got {input_layer!r}")
        if pos_enc_layer_type not in POS_ENCODINGS:
            raise ValueError(f"pos_enc_layer_type must be one of {sorted(POS_ENCODINGS)}, got {pos_enc_layer_type!r}")
        self._output_size = output_size
        self.pos_enc_layer_type = pos_enc_layer_type
        pos_enc = POS_ENCODINGS[pos_enc_layer_type](output_size, positional_dropout_rate)
        self.embed = Conv2dSubsampling(input_size, output_size, pos_enc, INPUT_LAYERS[input_layer],
                                       channels=input_layer_channels)
        self.encoders = nn.ModuleList()
        self.normalize_before = normalize_before
        if normalize_before:
            self.after_norm = nn.LayerNorm(output_size)

    def output_size(self) -> int:
        return self._output_size

    @property
    def subsampling_rate(self) -> int:
        return self.embed.rate

    def forward(self, xs: torch.Tensor, xs_lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """xs (B, T, idim), xs_lens (B,) -> xs (B, T', D), masks (B, 1, T') bool True = valid."""
        masks = make_non_pad_mask(xs_lens, xs.size(1)).unsqueeze(1)  # (B, 1, T)
        xs, pos_emb, masks = self.embed(xs, masks)
        for layer in self.encoders:
            xs = layer(xs, masks, pos_emb)
        if self.normalize_before:
            xs = self.after_norm(xs)
        return xs, masks


class TransformerEncoder(BaseEncoder):
    def __init__(self, input_size: int, output_size: int = 256, attention_heads: int = 4,
                 linear_units: int = 2048, num_blocks: int = 12, dropout_rate: float = 0.1,
                 positional_dropout_rate: float = 0.1, attention_dropout_rate: float = 0.0,
                 input_layer: str = "conv2d", pos_enc_layer_type: str = "abs_pos",
                 activation_type: str = "relu", normalize_before: bool = True, input_layer_channels=None):
        if pos_enc_layer_type != "abs_pos":
            raise ValueError("the transformer encoder uses abs_pos (rel_pos is the conformer's)")
        super().__init__(input_size, output_size, input_layer, pos_enc_layer_type,
                         positional_dropout_rate, normalize_before, input_layer_channels)
        for _ in range(num_blocks):
            self.encoders.append(TransformerEncoderLayer(
                output_size,
                MultiHeadedAttention(attention_heads, output_size, attention_dropout_rate),
                PositionwiseFeedForward(output_size, linear_units, dropout_rate, make_activation(activation_type)),
                dropout_rate,
                normalize_before,
            ))


class ConformerEncoder(BaseEncoder):
    def __init__(self, input_size: int, output_size: int = 256, attention_heads: int = 4,
                 linear_units: int = 2048, num_blocks: int = 12, dropout_rate: float = 0.1,
                 positional_dropout_rate: float = 0.1, attention_dropout_rate: float = 0.0,
                 input_layer: str = "conv2d", pos_enc_layer_type: str = "rel_pos",
                 activation_type: str = "swish", normalize_before: bool = True,
                 macaron_style: bool = True, use_cnn_module: bool = True, cnn_module_kernel: int = 15,
                 cnn_module_norm: str = "batch_norm", input_layer_channels=None):
        super().__init__(input_size, output_size, input_layer, pos_enc_layer_type,
                         positional_dropout_rate, normalize_before, input_layer_channels)
        attention_class = RelPositionMultiHeadedAttention if pos_enc_layer_type == "rel_pos" else MultiHeadedAttention

        def ffn():
            return PositionwiseFeedForward(output_size, linear_units, dropout_rate, make_activation(activation_type))

        for _ in range(num_blocks):
            self.encoders.append(ConformerEncoderLayer(
                output_size,
                attention_class(attention_heads, output_size, attention_dropout_rate),
                ffn(),
                ffn() if macaron_style else None,
                ConvolutionModule(output_size, cnn_module_kernel, make_activation(activation_type), cnn_module_norm)
                if use_cnn_module else None,
                dropout_rate,
                normalize_before,
            ))
