"""The attention decoder: token embedding + positions -> N decoder blocks -> LayerNorm -> Linear.

Ways to run it:
* ``forward`` — teacher forcing over whole padded label sequences (training, rescoring).
* ``forward_step`` — beam search: one new token per call for N hypotheses. The state is each
  layer's self-attention keys/values, so a step projects only the newest position, and the
  source attention reads keys/values that ``precompute_memory_kv(memory)`` projected once per
  utterance, shared by all of that utterance's hypotheses (no copy per hypothesis). Cost per
  step: the decoder's weights once, plus attention over L earlier positions and T frames.
* ``forward_tree`` — teacher forcing over a prefix tree (attention rescoring): hypotheses that
  share a prefix share its positions, so an n-best list costs its distinct prefixes only.

``precompute_memory_kv`` also serves ``forward(..., memory_kv=)`` and ``forward_tree``: each
utterance's memory is projected once for all of its hypotheses. ``SourceMemory`` keeps that
projection of a batch and hands it out for whatever row layout a search step has (the beam
search's and attention rescoring's decoder scorers both use it).
"""

from typing import List, Optional, Tuple

import torch
from torch import nn

from asrdemo.model.attention import MultiHeadedAttention
from asrdemo.model.decoder_layer import KV, DecoderLayer
from asrdemo.model.embedding import PositionalEncoding
from asrdemo.model.mask import target_mask
from asrdemo.model.positionwise_feed_forward import PositionwiseFeedForward

MemoryKV = List[KV]  # per layer: the source attention's (keys, values), each (B, H, T, d_k)
SelfKV = List[KV]  # per layer: the self-attention's (keys, values) of L positions, each (N, H, L, d_k)


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

    @property
    def input_dtype(self) -> torch.dtype:
        """The dtype the memory must have: the weights' (float32, or bfloat16 when cast for bf16
        inference; int8-quantized linear layers take float32, as the embedding stays)."""
        return self.embed.weight.dtype

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize_before:
            x = self.after_norm(x)
        return self.output_layer(x)

    def forward(self, memory: Optional[torch.Tensor], memory_mask: Optional[torch.Tensor], ys_in_pad: torch.Tensor,
                ys_in_lens: torch.Tensor, memory_kv: Optional[MemoryKV] = None) -> torch.Tensor:
        """Teacher forcing.

        memory (N, T, D), memory_mask (N, 1, T) bool True = valid,
        ys_in_pad (N, L) token ids starting with <sos> (any id in the padding), ys_in_lens (N,)
        -> logits (N, L, V): position l predicts the token after ys_in_pad[:, :l+1].

        ``memory_kv`` = ``precompute_memory_kv`` of B utterances' memory, with N = B * W rows,
        W consecutive rows per utterance (e.g. an n-best list): the memory is then not read
        (pass None) and memory_mask is (B, 1, T), or None when every frame is valid.
        """
        if memory_kv is not None and ys_in_pad.size(0) % memory_kv[0][0].size(0) != 0:
            raise ValueError(f"{ys_in_pad.size(0)} rows do not split evenly over {memory_kv[0][0].size(0)} utterances")
        tgt_mask = target_mask(ys_in_lens, ys_in_pad.size(1))
        x, _ = self.pos_enc(self.embed(ys_in_pad))
        for i, layer in enumerate(self.decoders):
            x = layer(x, tgt_mask, memory, memory_mask, memory_kv=None if memory_kv is None else memory_kv[i])
        return self._project(x)

    def forward_tree(self, memory: Optional[torch.Tensor], memory_mask: Optional[torch.Tensor], tokens: torch.Tensor,
                     positions: torch.Tensor, tree_mask: torch.Tensor,
                     memory_kv: Optional[MemoryKV] = None) -> torch.Tensor:
        """Teacher forcing over a prefix tree: every distinct prefix of a set of hypotheses once.

        tokens (B, U) the token of each node (the root is <sos>), positions (B, U) its depth
        (root 0), tree_mask (B, U, U) bool, True where node j is node i or one of its ancestors.
        -> logits (B, U, V): node i predicts the token after the prefix that ends in it, exactly
        as ``forward`` over that prefix would (a causal decoder sees only the prefix).
        memory / memory_mask / memory_kv as in ``forward`` (one row per utterance here).
        """
        x = self.pos_enc.at(self.embed(tokens), positions)
        for i, layer in enumerate(self.decoders):
            x = layer(x, tree_mask, memory, memory_mask, memory_kv=None if memory_kv is None else memory_kv[i])
        return self._project(x)

    def precompute_memory_kv(self, memory: torch.Tensor) -> MemoryKV:
        """memory (B, T, D) -> per layer (k, v), each (B, H, T, d_k), for ``memory_kv=``.

        Computed once per utterance; ``forward`` and ``forward_step`` share it between all
        hypotheses of an utterance."""
        return [layer.src_attn.project_kv(memory, memory) for layer in self.decoders]

    def forward_step(
        self,
        tokens: torch.Tensor,
        self_kv: Optional[SelfKV],
        memory_kv: MemoryKV,
        memory_mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, SelfKV]:
        """Score the next token of N = B * W prefixes, W consecutive rows per utterance.

        tokens (N,) the newest token of every prefix (<sos> at the first call); self_kv None at
        the first call, else the state returned by the previous call (rows reordered as the beam
        needs with ``select_self_kv``); memory_kv ``precompute_memory_kv`` of the B utterances;
        memory_mask (B, 1, T) bool True = valid, or None when every frame is valid.
        Returns log-probs (N, V), float32 whatever the weights' dtype, of the token after the prefix,
        and the state for the next call.
        """
        n = tokens.size(0)
        if n % memory_kv[0][0].size(0) != 0:
            raise ValueError(f"{n} rows do not split evenly over {memory_kv[0][0].size(0)} utterances")
        position = 0 if self_kv is None else self_kv[0][0].size(2)
        x, _ = self.pos_enc(self.embed(tokens.view(n, 1)), offset=position)
        new_kv = []
        for i, layer in enumerate(self.decoders):
            x, kv = layer.forward_step(x, None if self_kv is None else self_kv[i], memory_kv[i], memory_mask)
            new_kv.append(kv)
        logp = torch.log_softmax(self._project(x.view(n, -1)).float(), dim=-1)  # float32 scores for a bf16 decoder
        return logp, new_kv

    @staticmethod
    def select_self_kv(self_kv: Optional[SelfKV], rows: torch.Tensor) -> Optional[SelfKV]:
        """The ``forward_step`` state of rows ``rows`` (M,) (beam reordering, dropped utterances)."""
        if self_kv is None:
            return None
        return [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in self_kv]


def _all_valid(mask: torch.Tensor) -> Optional[torch.Tensor]:
    """None when the mask lets every frame through (nothing to mask), else the mask."""
    return None if bool(mask.all()) else mask


def _even_groups(utt: torch.Tensor) -> Optional[torch.Tensor]:
    """The utterances of W-row groups if `utt` (N,) is W consecutive rows per utterance (every
    utterance once, the same W), else None. E.g. [4, 4, 7, 7] -> [4, 7]; [0, 0, 1] -> None."""
    n = utt.numel()
    uniq, counts = torch.unique_consecutive(utt, return_counts=True)
    if n == 0 or n % len(uniq) != 0 or not bool((counts == n // len(uniq)).all()):
        return None
    if len(torch.unique(uniq)) != len(uniq):  # an utterance in two separate runs
        return None
    return uniq


class SourceMemory:
    """An utterance batch's encoder output as the source attention reads it: projected once
    (``precompute_memory_kv``), then handed out for a row layout ``utt`` (N,) of hypotheses.

    When the rows come as the beam search lays them out (utterance by utterance, the same number W
    of hypotheses each), an utterance's W hypotheses attend to its one copy of the keys/values
    (ESPnet's batch beam search instead expands the memory to every hypothesis and projects it
    again at every step). Other layouts (any ``utt`` is allowed) get the keys/values gathered per
    row, once per layout."""

    def __init__(self, decoder: TransformerDecoder, memory: torch.Tensor, memory_mask: torch.Tensor):
        """memory (B, T, D) encoder output, memory_mask (B, 1, T) bool True = valid frame."""
        # in the decoder's dtype (bf16 when decoding with dtype: bfloat16)
        self.kv = decoder.precompute_memory_kv(memory.to(decoder.input_dtype))  # per layer (B, H, T, d_k)
        self.mask = memory_mask
        self.everything_valid = bool(memory_mask.all())
        self._layout: Optional[torch.Tensor] = None
        self._picked = None

    def for_rows(self, utt: torch.Tensor) -> Tuple[MemoryKV, Optional[torch.Tensor]]:
        """-> (per layer (k, v) each (B', H, T, d_k), mask (B', 1, T) or None) such that the
        N rows split evenly over the B' entries (B' = N when gathered per row)."""
        if self._layout is not None and torch.equal(self._layout, utt):
            return self._picked
        groups = _even_groups(utt)
        pick = groups if groups is not None else utt  # per utterance group, else per row
        if torch.equal(pick, torch.arange(self.mask.size(0), device=pick.device)):
            kv, mask = self.kv, self.mask  # all utterances in order: nothing to gather
        else:
            kv = [(k.index_select(0, pick), v.index_select(0, pick)) for k, v in self.kv]
            mask = self.mask.index_select(0, pick)
        self._picked = (kv, None if self.everything_valid else _all_valid(mask))
        self._layout = utt.clone()
        return self._picked
