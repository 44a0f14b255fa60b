"""Encoders: fbank (B, T, 80) -> hidden states (B, T', D) at 1/4, 1/6 or 1/8 of the frame rate.

conv2d subsampling (+ positional encoding) -> N encoder blocks -> LayerNorm (pre-norm only).
``TransformerEncoder``: absolute positions, plain MHSA, ReLU FFN.
``ConformerEncoder``: relative positions (or abs_pos), macaron FFNs, convolution module, Swish.

Streaming (WeNet U2, arXiv:2012.05481; docs/streaming.md), all off by default:
``use_dynamic_chunk`` trains with a random chunk-based attention mask per batch
(asrdemo/model/chunk.py), ``static_chunk_size`` always uses one chunk size, and the Conformer's
``causal`` makes its convolution look only at the past (without it, a chunk's convolution sees
zeros after the chunk's end). ``forward(..., decoding_chunk_size=C)`` encodes a whole utterance with
the chunk mask; ``forward_chunk`` encodes the same chunk by chunk, carrying an ``EncoderCache``,
with the same output.
"""

import dataclasses
from typing import List, Optional, Tuple

import torch
from torch import nn

from asrdemo.model.attention import MultiHeadedAttention, RelPositionMultiHeadedAttention
from asrdemo.model.chunk import FULL_CONTEXT, add_chunk_mask, choose_chunk
from asrdemo.model.convolution import ConvolutionModule
from asrdemo.model.embedding import PositionalEncoding, RelPositionalEncoding
from asrdemo.model.encoder_layer import ConformerEncoderLayer, KVCache, TransformerEncoderLayer
from asrdemo.model.mask import make_non_pad_mask
from asrdemo.model.positionwise_feed_forward import PositionwiseFeedForward
from asrdemo.model.subsampling import INPUT_LAYERS, Conv2dSubsampling

ACTIVATIONS = {"relu": nn.ReLU, "swish": nn.SiLU, "gelu": nn.GELU, "tanh": nn.Tanh}
POS_ENCODINGS = {"abs_pos": PositionalEncoding, "rel_pos": RelPositionalEncoding}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation_type must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


@dataclasses.dataclass
class EncoderCache:
    """What chunk-by-chunk encoding carries from one chunk to the next (WeNet's ``offset``,
    ``att_cache``, ``cnn_cache``).

    offset: encoder frames produced so far (the next chunk's first frame; abs_pos needs it).
    att: per layer the self-attention's (k, v), each (1, H, frames kept, d_k); None at the start.
    cnn: per layer the convolution's last inputs (1, D, kernel context), or None.
    """

    offset: int = 0
    att: Optional[List[KVCache]] = None
    cnn: Optional[List[Optional[torch.Tensor]]] = None


class BaseEncoder(nn.Module):
    """Subsampling front, a stack of layers (built by the subclass), final LayerNorm."""

    def __init__(self, input_size: int, output_size: int, input_layer: str, pos_enc_layer_type: str,
                 positional_dropout_rate: float, normalize_before: bool, input_layer_channels=None,
                 use_dynamic_chunk: bool = False, use_dynamic_left_chunk: bool = False, static_chunk_size: int = 0):
        super().__init__()
        if input_layer not in INPUT_LAYERS:
            raise ValueError(f"input_layer must be one of {sorted(INPUT_LAYERS)}, got {input_layer!r}")
        if pos_enc_layer_type not in POS_ENCODINGS:
            raise ValueError(f"pos_enc_layer_type must be one of {sorted(POS_ENCODINGS)}, got {pos_enc_layer_type!r}")
        if int(static_chunk_size) < 0:
            raise ValueError(f"static_chunk_size must be >= 0 (0: full context), got {static_chunk_size}")
        self._output_size = output_size
        self.pos_enc_layer_type = pos_enc_layer_type
        pos_enc = POS_ENCODINGS[pos_enc_layer_type](output_size, positional_dropout_rate)
        self.embed = Conv2dSubsampling(input_size, output_size, pos_enc, INPUT_LAYERS[input_layer],
                                       channels=input_layer_channels)
        self.encoders = nn.ModuleList()
        self.normalize_before = normalize_before
        if normalize_before:
            self.after_norm = nn.LayerNorm(output_size)
        self.use_dynamic_chunk = bool(use_dynamic_chunk)
        self.use_dynamic_left_chunk = bool(use_dynamic_left_chunk)
        self.static_chunk_size = int(static_chunk_size)

    def output_size(self) -> int:
        return self._output_size

    @property
    def subsampling_rate(self) -> int:
        return self.embed.rate

    @property
    def streaming(self) -> bool:
        """Trained for chunk-by-chunk decoding: with chunk masks, which also give the convolution
        what a chunk sees (``ConvolutionModule``: causal, or its look-ahead cut at the chunk's end)."""
        return self.use_dynamic_chunk or self.static_chunk_size > 0

    def forward(self, xs: torch.Tensor, xs_lens: torch.Tensor, decoding_chunk_size: int = 0,
                num_decoding_left_chunks: int = -1, intermediate_layer: int = 0):
        """xs (B, T, idim), xs_lens (B,) -> xs (B, T', D), masks (B, 1, T') bool True = valid.

        ``intermediate_layer`` k > 0: also return the output of layer k (1-based), through the
        final layer norm as ESPnet's intermediate CTC does -> (xs, masks, inter (B, T', D)).

        ``decoding_chunk_size`` (encoder frames) > 0: every frame sees only its chunk and the
        ``num_decoding_left_chunks`` before it (< 0: all before it), what chunk-by-chunk decoding
        sees; < 0: full context; 0 (default): the model's own setting (``choose_chunk``: full
        context at inference unless ``static_chunk_size``; a random chunk per batch when training
        with ``use_dynamic_chunk``)."""
        masks = make_non_pad_mask(xs_lens, xs.size(1)).unsqueeze(1)  # (B, 1, T)
        xs, pos_emb, masks = self.embed(xs, masks)
        chunk_size, num_left_chunks = choose_chunk(
            xs.size(1), self.training, self.use_dynamic_chunk, self.use_dynamic_left_chunk,
            self.static_chunk_size, decoding_chunk_size, num_decoding_left_chunks)
        att_masks = add_chunk_mask(masks, chunk_size, num_left_chunks)  # (B, 1, T') or (B, T', T')
        inter = None
        for i, layer in enumerate(self.encoders, start=1):
            xs, _, _ = layer(xs, att_masks, pos_emb, mask_pad=masks, chunk_size=chunk_size)
            if i == intermediate_layer:
                inter = self.after_norm(xs) if self.normalize_before else xs
        if self.normalize_before:
            xs = self.after_norm(xs)
        if intermediate_layer > 0:
            if inter is None:
                raise ValueError(f"intermediate_layer {intermediate_layer}: the encoder has {len(self.encoders)} layers")
            return xs, masks, inter
        return xs, masks

    # ------------------------------------------------------------------------------ streaming
    def chunk_input_frames(self, chunk_size: int) -> int:
        """Input (fbank) frames that give ``chunk_size`` encoder frames: the subsampling's
        receptive field, (chunk_size - 1) * rate + right_context + 1. Consecutive chunks start
        ``rate * chunk_size`` input frames apart, so they overlap by right_context + 1 - rate."""
        return (chunk_size - 1) * self.embed.rate + self.embed.right_context + 1

    def forward_chunk(self, xs: torch.Tensor, cache: EncoderCache, max_cache_frames: int = -1
                      ) -> Tuple[torch.Tensor, EncoderCache]:
        """One chunk of one utterance: xs (1, T, idim) normalised input frames (at most
        ``chunk_input_frames(C)`` of them, and at least the subsampling's receptive field)
        -> (ys (1, T', D) its encoder frames, the cache for the next chunk).

        Each layer attends to the cached keys/values of earlier chunks and to this chunk's, and
        its convolution continues from the cached last inputs; ``max_cache_frames`` (C x left
        chunks; < 0: all) bounds the attention cache, what ``num_decoding_left_chunks`` does in
        ``forward``. Raises ValueError for input shorter than one encoder frame.
        """
        if xs.size(0) != 1:
            raise ValueError(f"forward_chunk encodes one utterance (batch 1), got batch {xs.size(0)}")
        if xs.size(1) < self.embed.min_input_frames:
            raise ValueError(f"a chunk needs at least {self.embed.min_input_frames} input frames, got {xs.size(1)}")
        no_padding = torch.ones(1, 1, xs.size(1), dtype=torch.bool, device=xs.device)
        xs, pos_emb, _ = self.embed(xs, no_padding, offset=cache.offset)
        chunk = xs.size(1)
        cached = 0 if cache.att is None else cache.att[0][0].size(2)
        if pos_emb is not None:  # rel_pos: distances from this chunk's frames to the cached ones too
            pos_emb = self.embed.pos_enc.embedding(chunk, cached + chunk, xs.dtype, xs.device)
        att_caches, cnn_caches = [], []
        for i, layer in enumerate(self.encoders):
            xs, att, cnn = layer(xs, None, pos_emb, att_cache=None if cache.att is None else cache.att[i],
                                 cnn_cache=None if cache.cnn is None else cache.cnn[i])
            if max_cache_frames >= 0:
                att = (att[0][:, :, att[0].size(2) - min(max_cache_frames, att[0].size(2)):],
                       att[1][:, :, att[1].size(2) - min(max_cache_frames, att[1].size(2)):])
            att_caches.append(att)
            cnn_caches.append(cnn)
        if self.normalize_before:
            xs = self.after_norm(xs)
        return xs, EncoderCache(cache.offset + chunk, att_caches, cnn_caches)

    def forward_chunk_by_chunk(self, xs: torch.Tensor, chunk_size: int, num_left_chunks: int = -1) -> torch.Tensor:
        """A whole utterance xs (1, T, idim), normalised, encoded as a stream would be: chunks of
        ``chunk_size`` encoder frames through ``forward_chunk`` -> (1, T', D), the same frames as
        ``forward(xs, [T], decoding_chunk_size=chunk_size, num_decoding_left_chunks=num_left_chunks)``
        (WeNet's ``forward_chunk_by_chunk``)."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        window, stride = self.chunk_input_frames(chunk_size), self.embed.rate * chunk_size
        max_cache = chunk_size * num_left_chunks if num_left_chunks >= 0 else -1
        cache, outputs = EncoderCache(), []
        for start in range(0, xs.size(1) - self.embed.right_context, stride):
            ys, cache = self.forward_chunk(xs[:, start:start + window], cache, max_cache)
            outputs.append(ys)
        if not outputs:
            return xs.new_zeros(1, 0, self.output_size())
        return torch.cat(outputs, dim=1)


class TransformerEncoder(BaseEncoder):
    def __init__(self, input_size: int, output_size: int = 256, attention_heads: int = 4,
                 linear_units: int = 2048, num_blocks: int = 12, dropout_rate: float = 0.1,
                 positional_dropout_rate: float = 0.1, attention_dropout_rate: float = 0.0,
                 input_layer: str = "conv2d", pos_enc_layer_type: str = "abs_pos",
                 activation_type: str = "relu", normalize_before: bool = True, input_layer_channels=None,
                 use_dynamic_chunk: bool = False, use_dynamic_left_chunk: bool = False, static_chunk_size: int = 0):
        if pos_enc_layer_type != "abs_pos":
            raise ValueError("the transformer encoder uses abs_pos (rel_pos is the conformer's)")
        super().__init__(input_size, output_size, input_layer, pos_enc_layer_type,
                         positional_dropout_rate, normalize_before, input_layer_channels,
                         use_dynamic_chunk, use_dynamic_left_chunk, static_chunk_size)
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
                 cnn_module_norm: str = "batch_norm", input_layer_channels=None,
                 use_dynamic_chunk: bool = False, use_dynamic_left_chunk: bool = False, static_chunk_size: int = 0,
                 causal: bool = False):
        super().__init__(input_size, output_size, input_layer, pos_enc_layer_type,
                         positional_dropout_rate, normalize_before, input_layer_channels,
                         use_dynamic_chunk, use_dynamic_left_chunk, static_chunk_size)
        attention_class = RelPositionMultiHeadedAttention if pos_enc_layer_type == "rel_pos" else MultiHeadedAttention

        def ffn():
            return PositionwiseFeedForward(output_size, linear_units, dropout_rate, make_activation(activation_type))

        for _ in range(num_blocks):
            self.encoders.append(ConformerEncoderLayer(
                output_size,
                attention_class(attention_heads, output_size, attention_dropout_rate),
                ffn(),
                ffn() if macaron_style else None,
                ConvolutionModule(output_size, cnn_module_kernel, make_activation(activation_type), cnn_module_norm,
                                  causal)
                if use_cnn_module else None,
                dropout_rate,
                normalize_before,
            ))
