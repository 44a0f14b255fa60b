"""The model's attention decoder as the searches see it.

`DecoderStepScorer` is a `beam_search.DecoderScorer`: one decoder step (`decoder.forward_step`)
for all running hypotheses. The encoder output is projected into every layer's source-attention
keys/values once per batch (`decoder.precompute_memory_kv`). When the rows come as the beam search
lays them out (utterance by utterance, the same number W of hypotheses each), an utterance's W
hypotheses attend to its one copy of those keys/values; ESPnet's batch beam search instead
expands the memory to every hypothesis and projects it again at every step. Other row layouts
(any `utt` is allowed) get the keys/values gathered per row, once per layout.

`teacher_forced_scorer` is attention rescoring's scorer: one decoder pass for all hypotheses over
their prefix tree (each distinct prefix once), with each utterance's memory projected once.
"""

from typing import List, Optional, Tuple

import numpy as np
import torch


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


class _Memory:
    """An utterance batch's projected memory, handed out for a row layout `utt` (N,)."""

    def __init__(self, decoder, memory: torch.Tensor, memory_mask: torch.Tensor):
        # in the decoder's dtype (bf16 when decoding with dtype: bfloat16)
        self.kv = decoder.precompute_memory_kv(memory.to(decoder.output_layer.weight.dtype))  # per layer (B, H, T, d_k)
        self.mask = memory_mask
        self.everything_valid = bool(memory_mask.all())
        self._layout: Optional[torch.Tensor] = None
        self._picked = None

    def for_rows(self, utt: torch.Tensor) -> Tuple[List, Optional[torch.Tensor]]:
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


class DecoderStepScorer:
    def __init__(self, decoder, memory: torch.Tensor, memory_mask: torch.Tensor):
        """memory (B, T, D) encoder output, memory_mask (B, 1, T) bool True = valid frame."""
        self.decoder = decoder
        self.memory = _Memory(decoder, memory, memory_mask)

    def init_state(self, utt: torch.Tensor):
        return {"utt": utt, "kv": None}

    def score(self, ys: torch.Tensor, state):
        """ys (N, L): only the newest token ys[:, -1] is read; the state holds the L-1 before it."""
        cached = 0 if state["kv"] is None else state["kv"][0][0].size(2)
        if cached != ys.size(1) - 1:
            raise ValueError(f"the state holds {cached} positions, ys has {ys.size(1)} (expected one more)")
        memory_kv, mask = self.memory.for_rows(state["utt"])
        logp, kv = self.decoder.forward_step(ys[:, -1], state["kv"], memory_kv, mask)
        return logp, {"utt": state["utt"], "kv": kv}

    def select_state(self, state, rows: torch.Tensor):
        return {"utt": state["utt"].index_select(0, rows), "kv": self.decoder.select_self_kv(state["kv"], rows)}


class PrefixTree:
    """The distinct prefixes of N token sequences, one tree per utterance.

    `PrefixTree(utt, ys_in, ys_in_lens)`: row n is utterance utt[n]'s sequence ys_in[n, :lens[n]]
    (<sos> first, the tree's root). Fields: `utts` (B',) the utterances in order of appearance;
    `tokens`, `positions` (B', U) each node's token and depth (padding: 0); `mask` (B', U, U)
    True where node j is node i or an ancestor (a padding node sees itself only); `node` (N, L)
    the node of every prefix ys_in[n, :l+1] (0 past the row's length); `row_utt` (N,) the index
    into `utts` of every row.
    """

    def __init__(self, utt: torch.Tensor, ys_in: torch.Tensor, ys_in_lens: torch.Tensor):
        utts, trees, row_utt, row_nodes = {}, [], [], []
        for u, seq, n in zip(utt.tolist(), ys_in.tolist(), ys_in_lens.tolist()):
            if u not in utts:
                utts[u] = len(trees)
                trees.append(({}, [], [], []))  # (parent, token) -> node; tokens; depths; parents
            children, tokens, depths, parents = trees[utts[u]]
            node, path = -1, []
            for depth, token in enumerate(seq[:n]):
                child = children.get((node, token))
                if child is None:
                    child = children[(node, token)] = len(tokens)
                    tokens.append(token)
                    depths.append(depth)
                    parents.append(node)
                node = child
                path.append(node)
            row_utt.append(utts[u])
            row_nodes.append(path + [0] * (ys_in.size(1) - len(path)))
        size = max(len(t[1]) for t in trees)
        device = ys_in.device
        tok = np.zeros((len(trees), size), dtype=np.int64)
        pos = np.zeros((len(trees), size), dtype=np.int64)
        mask = np.zeros((len(trees), size, size), dtype=bool)
        for b, (_, tokens, depths, parents) in enumerate(trees):
            tok[b, : len(tokens)], pos[b, : len(tokens)] = tokens, depths
            for i, p in enumerate(parents):  # parents come before their children
                if p >= 0:
                    mask[b, i] = mask[b, p]
                mask[b, i, i] = True
            mask[b, np.arange(len(tokens), size), np.arange(len(tokens), size)] = True
        self.utts = torch.tensor(list(utts), dtype=torch.long, device=device)
        self.tokens, self.positions = torch.from_numpy(tok).to(device), torch.from_numpy(pos).to(device)
        self.mask = torch.from_numpy(mask).to(device)
        self.node = torch.tensor(row_nodes, dtype=torch.long, device=device)
        self.row_utt = torch.tensor(row_utt, dtype=torch.long, device=device)


def teacher_forced_scorer(decoder, memory: torch.Tensor, memory_mask: torch.Tensor):
    """-> score_fn(utt (N,), ys_in (N, L), ys_in_lens (N,)) -> log-probs (N, L, V).

    Hypotheses of an utterance that share a prefix share its decoder positions (`PrefixTree`,
    `decoder.forward_tree`): a CTC n-best list differs in a few late tokens, so this runs the
    decoder over several times fewer positions than one row per hypothesis."""
    mem = _Memory(decoder, memory, memory_mask)

    def score_fn(utt, ys_in, ys_in_lens):
        tree = PrefixTree(utt, ys_in, ys_in_lens)
        memory_kv, mask = mem.for_rows(tree.utts)
        logits = decoder.forward_tree(None, mask, tree.tokens, tree.positions, tree.mask, memory_kv=memory_kv)
        logp = torch.log_softmax(logits.float(), dim=-1)  # (B', U, V)
        return logp[tree.row_utt.unsqueeze(1), tree.node]

    return score_fn
