"""Character language models for shallow fusion: a decoder-only Transformer and an LSTM.

Both predict the next token of the ASR token list (`data/lang/tokens.txt`) from the tokens before
it, with `<sos/eos>` (the last id) as the sentence start and end, as ESPnet's LMs do
(`espnet2/lm/transformer_lm.py`, `seq_rnn_lm.py`). Three ways to run one:

* ``forward(ys_pad, ys_lens)`` — training: teacher forcing over whole sentences -> loss statistics;
* ``logits(ys_in, ys_in_lens)`` — teacher forcing, the next-token logits at every position
  (rescoring an n-best list in one pass);
* ``forward_step(tokens, state)`` — the beam search: one new token for N prefixes per call. The
  Transformer's state is every layer's self-attention keys/values (a step projects only the
  newest position, as ``TransformerDecoder.forward_step``); the LSTM's is its (h, c).

``build_lm(conf, vocab_size)`` makes one from the ``model:`` block of `conf/lm.yaml`
(``lm: transformer | lstm`` and ``lm_conf:``).
"""

from typing import List, Optional, Tuple

import torch
from torch import nn

from asrdemo.errors import AsrdemoError
from asrdemo.model.attention import MultiHeadedAttention
from asrdemo.model.dropout import Dropout
from asrdemo.model.embedding import PositionalEncoding
from asrdemo.model.mask import target_mask
from asrdemo.model.positionwise_feed_forward import PositionwiseFeedForward

IGNORE_ID = -1
LM_MODEL_FILE = "valid.loss.ave.pth"  # the averaged LM (lowest validation loss), as ESPnet names it
KV = Tuple[torch.Tensor, torch.Tensor]  # keys, values, each (N, H, L, d_k)


class LanguageModel(nn.Module):
    """What the trainer and the scorers use; subclasses define ``logits``, ``forward_step``,
    ``select_state``. ``sos == eos == vocab_size - 1`` (ESPnet's shared <sos/eos>)."""

    def __init__(self, vocab_size: int):
        super().__init__()
        if vocab_size < 3:
            raise AsrdemoError(f"an LM needs a token list of at least 3 entries, got {vocab_size}")
        self.vocab_size = vocab_size
        self.sos = self.eos = vocab_size - 1

    def logits(self, ys_in: torch.Tensor, ys_in_lens: torch.Tensor) -> torch.Tensor:
        """ys_in (N, L) token ids starting with <sos> (any valid id in the padding), ys_in_lens (N,)
        -> logits (N, L, V): position l predicts the token after ys_in[:, :l+1]."""
        raise NotImplementedError

    def forward_step(self, tokens: torch.Tensor, state):
        """tokens (N,) the newest token of N prefixes (<sos> at the first call, state None)
        -> (log-probs of the next token (N, V), state for the next call)."""
        raise NotImplementedError

    @staticmethod
    def select_state(state, rows: torch.Tensor):
        """The state of rows ``rows`` (M,) of N (beam reordering, finished utterances)."""
        raise NotImplementedError

    def forward(self, ys_pad: torch.Tensor, ys_lens: torch.Tensor) -> dict:
        """Teacher forcing on N sentences: ys_pad (N, L) padded with -1, ys_lens (N,).

        The model reads `<sos> y` and predicts `y <eos>` (|y| + 1 tokens per sentence). Returns
        scalar tensors: ``loss`` the mean negative log-likelihood per predicted token (nats; what
        is minimised, as ESPnet's LM), and per-sentence means that let batches and processes be
        summed exactly: ``nll`` (summed NLL of a sentence), ``ntokens`` (predicted tokens of a
        sentence), ``correct`` (of them, how many are the argmax). Perplexity = exp(nll / ntokens).
        """
        n = ys_pad.size(0)
        ys = ys_pad.masked_fill(ys_pad == IGNORE_ID, self.eos)
        sos = torch.full((n, 1), self.sos, dtype=ys.dtype, device=ys.device)
        ys_in = torch.cat([sos, ys], dim=1)  # (N, L + 1)
        positions = torch.arange(ys_in.size(1), device=ys.device).unsqueeze(0)
        ys_out = torch.cat([ys, sos], dim=1).masked_fill(positions == ys_lens.unsqueeze(1), self.eos)
        ys_out = ys_out.masked_fill(positions > ys_lens.unsqueeze(1), IGNORE_ID)  # (N, L + 1)
        logits = self.logits(ys_in, ys_lens + 1).float()
        nll = nn.functional.cross_entropy(logits.transpose(1, 2), ys_out, ignore_index=IGNORE_ID, reduction="none")
        valid = ys_out != IGNORE_ID
        ntokens = valid.sum()
        correct = ((logits.argmax(-1) == ys_out) & valid).sum()
        return {
            "loss": nll.sum() / ntokens,
            "nll": nll.sum() / n,
            "ntokens": ntokens.float() / n,
            "correct": correct.float() / n,
        }


class _LMLayer(nn.Module):
    """A pre-norm Transformer block without source attention: causal self-attention, feed-forward."""

    def __init__(self, d: int, heads: int, units: int, dropout_rate: float):
        super().__init__()
        self.self_attn = MultiHeadedAttention(heads, d, 0.0)
        self.feed_forward = PositionwiseFeedForward(d, units, dropout_rate)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout = Dropout(dropout_rate)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (N, L, D), mask (N, L, L) bool True = may attend -> (N, L, D)."""
        h = self.norm1(x)
        x = x + self.dropout(self.self_attn(h, h, h, mask))
        return x + self.dropout(self.feed_forward(self.norm2(x)))

    def forward_step(self, x: torch.Tensor, kv: Optional[KV]) -> Tuple[torch.Tensor, KV]:
        """x (N, 1, D) the newest position; kv the keys/values of the earlier ones (N, H, L-1, d_k)
        or None -> (N, 1, D) and the keys/values of all L positions."""
        h = self.norm1(x)
        k, v = self.self_attn.project_kv(h, h)
        if kv is not None:
            k, v = torch.cat([kv[0], k], dim=2), torch.cat([kv[1], v], dim=2)
        x = x + self.dropout(self.self_attn.forward_fused(h, (k, v), None))  # the newest sees all: no mask
        return x + self.dropout(self.feed_forward(self.norm2(x))), (k, v)


class TransformerLM(LanguageModel):
    """Decoder-only Transformer, as ESPnet's ``lm: transformer`` (espnet2/lm/transformer_lm.py:
    embedding, causal self-attention blocks, linear output), here with sinusoidal positions (ESPnet's
    are optional) and this project's pre-norm blocks: embedding x sqrt(d) + positions -> `layer`
    blocks -> LayerNorm -> Linear. Parameters: `att_unit` model dimension, `head` attention heads,
    `unit` feed-forward units, `layer` blocks, `dropout_rate`."""

    def __init__(self, vocab_size: int, att_unit: int = 256, head: int = 4, unit: int = 1024, layer: int = 4,
                 dropout_rate: float = 0.1):
        super().__init__(vocab_size)
        self.embed = nn.Embedding(vocab_size, att_unit)
        self.pos_enc = PositionalEncoding(att_unit, dropout_rate)
        self.layers = nn.ModuleList(_LMLayer(att_unit, head, unit, dropout_rate) for _ in range(layer))
        self.after_norm = nn.LayerNorm(att_unit)
        self.output_layer = nn.Linear(att_unit, vocab_size)

    def logits(self, ys_in, ys_in_lens):
        mask = target_mask(ys_in_lens, ys_in.size(1))
        x, _ = self.pos_enc(self.embed(ys_in))
        for layer in self.layers:
            x = layer(x, mask)
        return self.output_layer(self.after_norm(x))

    def forward_step(self, tokens: torch.Tensor, state: Optional[List[KV]]):
        """State: per layer (k, v) each (N, H, L, d_k) of the L tokens read so far (None before <sos>)."""
        n = tokens.size(0)
        position = 0 if state is None else state[0][0].size(2)
        x, _ = self.pos_enc(self.embed(tokens.view(n, 1)), offset=position)
        new_state = []
        for i, layer in enumerate(self.layers):
            x, kv = layer.forward_step(x, None if state is None else state[i])
            new_state.append(kv)
        logp = torch.log_softmax(self.output_layer(self.after_norm(x.view(n, -1))).float(), dim=-1)
        return logp, new_state

    @staticmethod
    def select_state(state, rows):
        if state is None:
            return None
        return [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in state]


class LSTMLM(LanguageModel):
    """Embedding -> `layer` LSTM layers -> dropout -> Linear (ESPnet's ``lm: seq_rnn`` with an LSTM)."""

    def __init__(self, vocab_size: int, embed_unit: int = 256, unit: int = 512, layer: int = 2,
                 dropout_rate: float = 0.1):
        super().__init__(vocab_size)
        self.embed = nn.Embedding(vocab_size, embed_unit)
        self.dropout = Dropout(dropout_rate)
        self.lstm = nn.LSTM(embed_unit, unit, num_layers=layer, batch_first=True,
                            dropout=dropout_rate if layer > 1 else 0.0)
        self.output_layer = nn.Linear(unit, vocab_size)

    def logits(self, ys_in, ys_in_lens):
        # padding comes after each sentence's end, so it cannot change the outputs before it
        x, _ = self.lstm(self.dropout(self.embed(ys_in)))
        return self.output_layer(self.dropout(x))

    def forward_step(self, tokens: torch.Tensor, state: Optional[Tuple[torch.Tensor, torch.Tensor]]):
        """State: (h, c) each (layers, N, unit), None before <sos>."""
        x, state = self.lstm(self.dropout(self.embed(tokens.view(-1, 1))), state)
        logp = torch.log_softmax(self.output_layer(self.dropout(x[:, 0])).float(), dim=-1)
        return logp, state

    @staticmethod
    def select_state(state, rows):
        if state is None:
            return None
        return state[0].index_select(1, rows), state[1].index_select(1, rows)


LM_CLASSES = {"transformer": TransformerLM, "lstm": LSTMLM}


def build_lm(model_conf: dict, vocab_size: int) -> LanguageModel:
    """The ``model:`` block of an LM config (``lm: transformer | lstm``, ``lm_conf: {...}``) -> the LM.

    Raises AsrdemoError for an unknown type or option."""
    if not isinstance(model_conf, dict):
        raise AsrdemoError("the LM config's model: block must be a mapping with lm: and lm_conf:")
    unknown = set(model_conf) - {"lm", "lm_conf"}
    if unknown:
        raise AsrdemoError(f"LM model: unknown key(s) {sorted(unknown)}; known: lm, lm_conf")
    kind = model_conf.get("lm", "transformer")
    if kind not in LM_CLASSES:
        raise AsrdemoError(f"LM model: lm must be one of {', '.join(LM_CLASSES)}, got {kind!r}")
    try:
        return LM_CLASSES[kind](vocab_size, **(model_conf.get("lm_conf") or {}))
    except TypeError as e:
        raise AsrdemoError(f"LM model: bad lm_conf for {kind}: {e}") from None
