"""The attention decoder: token embedding + positions -> N decoder blocks -> LayerNorm -> Linear.

Two ways to run it:
* ``forward`` — teacher forcing over whole padded label sequences (training, rescoring).
* ``forward_one_step`` — one new token per call with a per-layer cache (beam search).
  ``precompute_memory_kv(memory)`` projects the encoder output for every layer's source
  attention once; pass the result as ``memory_kv`` so the steps do not project it again.
"""

from typing import List, Optional, Tuple

import torch
from torch import nn

from asrdemo.model.attention import MultiHeadedAttention
from asrdemo.model.decoder_layer import DecoderLayer
from asrdemo.model.embedding import PositionalEncoding
from asrdemo.model.mask import subsequent_mask, target_mask
from asrdemo.model.positionwise_feed_forward import PositionwiseFeedForward

MemoryKV = List[Tuple[torch.Tensor, torch.Tensor]]


class TransformerDecoder(nn.Module):
    def __init__(self, vocab_size: int, encoder_output_size: int, attention_heads: int = 4,
                 linear_units: int = 2048, num_blocks: int = 6, dropout_rate: float = 0.1,
                 positional_dropout_rate: float = 0.1, self_attention_dropout_rate: float = 0.0,
                 src_attention_dropout_rate: float = 0.0, normalize_before: bool = True):
        super().__init__()
        d = encoder_output_size
        self.embed = nn.Embedding(vocab_size, d)
        self.pos_enc = PositionalEncoding(d, positional_dropout_rate)
        self.decoders = nn.ModuleList(
            DecoderLayer(
                d,
                MultiHeadedAttention(attention_heads, d, self_attention_dropout_rate),
                MultiHeadedAttention(attention_heads, d, src_attention_dropout_rate),
                PositionwiseFeedForward(d, linear_units, dropout_rate),
                dropout_rate,
                normalize_before,
            )
            for _ in range(num_blocks)
        )
        self.normalize_before = normalize_before
        if normalize_before:
            self.after_norm = nn.LayerNorm(d)
        self.output_layer = nn.Linear(d, vocab_size)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize_before:
            x = self.after_norm(x)
        return self.output_layer(x)

    def forward(self, memory: torch.Tensor, memory_mask: torch.Tensor, ys_in_pad: torch.Tensor,
                ys_in_lens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing.

        memory (B, T, D), memory_mask (B, 1, T) bool True = valid,
        ys_in_pad (B, L) token ids starting with <sos> (any id in the padding), ys_in_lens (B,)
        -> logits (B, L, V): position l predicts the token after ys_in_pad[:, :l+1].
        """
        tgt_mask = target_mask(ys_in_lens, ys_in_pad.size(1))
        x, _ = self.pos_enc(self.embed(ys_in_pad))
        for layer in self.decoders:
            x = layer(x, tgt_mask, memory, memory_mask)
        return self._project(x)

    def precompute_memory_kv(self, memory: torch.Tensor) -> MemoryKV:
        """memory (N, T, D) -> per layer (k, v), each (N, H, T, d_k), for ``memory_kv=``.

        Computed once per utterance; for a beam, index it like the memory (``k[idx]``)."""
        return [layer.src_attn.project_kv(memory, memory) for layer in self.decoders]

    def forward_one_step(
        self,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        ys: torch.Tensor,
        cache: Optional[List[torch.Tensor]] = None,
        memory_kv: Optional[MemoryKV] = None,
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Score the next token of N prefixes.

        memory (N, T, D), memory_mask (N, 1, T) bool; ys (N, L) starting with <sos>, no padding;
        cache None (first call, or no cache) or the cache returned by the previous call, one
        (N, L-1, D) per layer; memory_kv None or ``precompute_memory_kv(memory)``.
        Returns log-probs (N, V) of token L+1, and the new cache, one (N, L, D) per layer.
        """
        length = ys.size(1)
        # with a cache only the last position is a query, and it may see every earlier one
        tgt_mask = None if cache is not None else subsequent_mask(length, ys.device).unsqueeze(0)
        x, _ = self.pos_enc(self.embed(ys))
        new_cache = []
        for i, layer in enumerate(self.decoders):
            x = layer(
                x, tgt_mask, memory, memory_mask,
                cache=None if cache is None else cache[i],
                memory_kv=None if memory_kv is None else memory_kv[i],
            )
            new_cache.append(x)
        logp = torch.log_softmax(self._project(x[:, -1]), dim=-1)
        return logp, new_cache
