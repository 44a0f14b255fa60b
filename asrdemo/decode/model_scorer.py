"""The model's attention decoder as the searches see it.

`DecoderStepScorer` is a `beam_search.DecoderScorer`: one cached decoder step for all running
hypotheses. The encoder output is projected into every layer's source-attention keys/values once
per batch (`decoder.precompute_memory_kv`), not once per step and hypothesis as in ESPnet; they are
gathered per row only when the set of running utterances changes, not at every step.

`teacher_forced_scorer` is attention rescoring's scorer: one full decoder pass for all hypotheses.
"""

import torch


class DecoderStepScorer:
    def __init__(self, decoder, memory: torch.Tensor, memory_mask: torch.Tensor):
        """memory (B, T, D) encoder output, memory_mask (B, 1, T) bool True = valid frame."""
        self.decoder = decoder
        self.memory = memory
        self.memory_mask = memory_mask
        self.memory_kv = decoder.precompute_memory_kv(memory)
        self._rows_utt = None  # the utterance index the gathered tensors below were made for
        self._rows = None

    def init_state(self, utt: torch.Tensor):
        return {"utt": utt, "cache": None}

    def _gather(self, utt: torch.Tensor):
        """memory, mask and keys/values for rows belonging to utterances `utt` (N,)."""
        if self._rows_utt is not None and torch.equal(self._rows_utt, utt):
            return self._rows
        # Materialised (not a broadcast view, even for one utterance): matmul would copy an
        # expanded view at every step and layer.
        def pick(t):
            return t.index_select(0, utt)

        self._rows = (pick(self.memory), pick(self.memory_mask), [(pick(k), pick(v)) for k, v in self.memory_kv])
        self._rows_utt = utt.clone()
        return self._rows

    def score(self, ys: torch.Tensor, state):
        memory, mask, memory_kv = self._gather(state["utt"])
        logp, cache = self.decoder.forward_one_step(memory, mask, ys, state["cache"], memory_kv=memory_kv)
        return logp, {"utt": state["utt"], "cache": cache}

    def select_state(self, state, rows: torch.Tensor):
        cache = state["cache"]
        return {"utt": state["utt"][rows], "cache": None if cache is None else [c[rows] for c in cache]}


def teacher_forced_scorer(decoder, memory: torch.Tensor, memory_mask: torch.Tensor):
    """-> score_fn(utt (N,), ys_in (N, L), ys_in_lens (N,)) -> log-probs (N, L, V)."""

    def score_fn(utt, ys_in, ys_in_lens):
        logits = decoder(memory.index_select(0, utt), memory_mask.index_select(0, utt), ys_in, ys_in_lens)
        return torch.log_softmax(logits.float(), dim=-1)

    return score_fn
