"""The trace of one utterance through the recognizer: every intermediate a learner may want to
see (`Recognizer.recognize(..., trace=True).trace`), computed in the decode package so that
`asrdemo explain` and the demo only draw it.

    wave (model rate) -> fbank (T, 80) -> CMVN -> encoder (T', D), T' ~ T / subsampling
        (an SSL exp: wave -> SSL model -> weighted sum of its layers -> projection (T, 80), 20 ms frames)
        -> CTC log-posteriors (T', V) -> search (n-best) -> CTC forced alignment of the best
        -> the attention decoder's source attention for the best (L + 1, T')

Each n-best entry's score parts are recomputed exactly (`score_hypotheses`): log p_ctc(y|x) by the
CTC forward algorithm (`F.ctc_loss`), log p_att(y <eos>|x) by one teacher-forced decoder pass, and
their sum by `hypothesis.joint_score`, the formula the searches rank by.
"""

import copy
import dataclasses
import math
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from asrdemo.decode.alignment import CtcAlignment, TokenTime, encoder_frame_seconds, greedy_path
from asrdemo.decode.ctc_greedy import ctc_greedy_search
from asrdemo.decode.hypothesis import Hypothesis, joint_score
from asrdemo.decode.lm_scorer import lm_sequence_logp
from asrdemo.model.attention import store_attention_weights


@dataclasses.dataclass
class HypothesisScores:
    """One n-best entry with its scores recomputed exactly (natural-log probabilities)."""

    rank: int
    text: str
    tokens: List[str]
    token_ids: List[int]
    ctc_score: float  # log p_ctc(y | x): all CTC paths of y summed
    att_score: float  # log p_att(y <eos> | x): teacher-forced decoder, <eos> included
    total_score: float  # (1 - w) att + w ctc + lm_weight lm + penalty (|y| + 1) + spell_lm_weight spell, w = ctc_weight
    search_score: float  # what the search ranked by (equals total_score for joint search)
    lm_score: Optional[float] = None  # log p_lm(y <eos>) when the search used the exp dir's LM (lm_weight > 0)
    lm_weight: float = 0.0  # so lm_weight * lm_score is the LM's share of total_score
    spell_score: Optional[float] = None  # a kana model: log p of the spelling in Mozc's LM (asrdemo/kana.py)
    spell_lm_weight: float = 0.0  # so spell_lm_weight * spell_score is the spelling's share of total_score


@dataclasses.dataclass
class UtteranceTrace:
    """Every intermediate of one utterance through a `Recognizer` (arrays on the CPU, numpy)."""

    original_sample_rate: int
    sample_rate: int
    wave: np.ndarray  # (N,) at sample_rate
    fbank: np.ndarray  # (T, D) the features the encoder reads, before CMVN: the fbank, or the SSL frontend's output
    fbank_cmvn: np.ndarray  # (T, D) after the model's GlobalCMVN
    encoder_out: np.ndarray  # (T', D_model)
    ctc_logp: np.ndarray  # (T', V)
    subsampling_rate: int
    receptive_frames: int  # fbank frames one encoder frame is computed from
    frame_shift_s: float
    frame_length_s: float
    mode: str
    ctc_weight: float
    hypotheses: List[HypothesisScores]
    alignment: Optional[CtcAlignment]  # of the best hypothesis (None: empty, or it cannot fit)
    token_times: List[TokenTime]
    attention: np.ndarray  # (layers, L + 1, T') source attention of the best, heads averaged
    token_list: List[str]
    frontend: str = "fbank"  # fbank | ssl
    ssl_model: Optional[str] = None  # ssl: the SSL model's name (config.yaml frontend_conf.model)
    ssl_layer: Optional[object] = None  # ssl: "weighted_sum" or the layer number used
    layer_weights: Optional[np.ndarray] = None  # ssl weighted sum: softmax weights (num_hidden_states,), sum 1

    @property
    def best(self) -> Optional[HypothesisScores]:
        return self.hypotheses[0] if self.hypotheses else None

    @property
    def duration_s(self) -> float:
        return len(self.wave) / self.sample_rate

    @property
    def encoder_frame_s(self) -> float:
        return encoder_frame_seconds(self.subsampling_rate, self.frame_shift_s)

    @property
    def greedy_path(self) -> List[int]:
        return greedy_path(self.ctc_logp)

    @property
    def greedy_token_ids(self) -> List[int]:
        """The CTC greedy transcript: the greedy path with repeats collapsed and blanks dropped."""
        logp = torch.from_numpy(self.ctc_logp).unsqueeze(0)
        return ctc_greedy_search(logp, torch.tensor([len(self.ctc_logp)]))[0][0].token_ids

    def salient_tokens(self, max_tokens: int = 24) -> List[int]:
        """Token ids worth a row in a posteriorgram: <blank>, the transcript's and the greedy path's
        tokens, then the others by their highest posterior; ordered by when they peak."""
        if len(self.ctc_logp) == 0:
            return [0]
        peak = self.ctc_logp.max(axis=0)
        must = [0, *(self.best.token_ids if self.best else []), *self.greedy_path]
        chosen = list(dict.fromkeys(must))[:max_tokens]
        for i in np.argsort(-peak):
            if len(chosen) >= max_tokens or peak[i] < math.log(0.01):
                break
            if int(i) not in chosen and int(i) != len(self.token_list) - 1:
                chosen.append(int(i))
        when = self.ctc_logp.argmax(axis=0)
        return [0] + sorted((i for i in chosen if i != 0), key=lambda i: (when[i], i))

    def demo_json(self, max_tokens: int = 24, decimals: int = 3) -> dict:
        """What the demo page draws: per-token times, the posteriorgram of salient tokens (probabilities,
        tokens x frames) and the last decoder layer's attention (output tokens x frames)."""
        rows = self.salient_tokens(max_tokens)
        best = self.best
        return {
            "text": best.text if best else "",
            "tokens": [t.as_dict() for t in self.token_times],
            "encoder_frame_s": self.encoder_frame_s,
            "duration_s": round(self.duration_s, 4),
            "posteriorgram": {
                "tokens": [self.token_list[i] for i in rows],
                "token_ids": rows,
                "probs": rounded(np.exp(self.ctc_logp[:, rows]).T, decimals),
                "greedy_path": self.greedy_path,
            },
            "attention": {
                "rows": (best.tokens if best else []) + ["<eos>"],
                "weights": rounded(self.attention[-1], decimals) if len(self.attention) else [],
            },
        }


def rounded(array: np.ndarray, decimals: int):
    return np.round(np.asarray(array, dtype=np.float64), decimals).tolist()


def decoder_view(decoder: torch.nn.Module) -> torch.nn.Module:
    """A copy of the decoder's modules that shares its weights (no tensor is copied), so that keeping
    attention weights here never touches the model other threads are decoding with."""
    memo = {id(t): t for t in [*decoder.parameters(), *decoder.buffers()]}
    return copy.deepcopy(decoder, memo)


def score_hypotheses(model, enc: torch.Tensor, ctc_logp: torch.Tensor, hyps: List[Hypothesis], ctc_weight: float,
                     penalty: float, keep_attention: bool, lm=None, lm_weight: float = 0.0,
                     spell_lm_weight: float = 0.0):
    """Exact CTC and attention log-likelihoods of each hypothesis (and the LM's, with `lm` and
    lm_weight > 0; and a kana model's spelling share, `spell_lm_weight` times its `spell_score`);
    the source attention of the first."""
    num_frames = enc.size(1)
    decoder = decoder_view(model.decoder)
    mask = torch.ones(1, 1, num_frames, dtype=torch.bool, device=enc.device)
    scored, attention = [], None
    for rank, h in enumerate(hyps):
        ids = list(h.token_ids)
        target = torch.tensor(ids, dtype=torch.long)
        if ids:
            ctc = -F.ctc_loss(ctc_logp.cpu().float(), target, torch.tensor([num_frames]), torch.tensor([len(ids)]),
                              blank=model.blank_id, reduction="sum", zero_infinity=False).item()
        else:
            ctc = float(ctc_logp[:, model.blank_id].sum())
        store_attention_weights(decoder, keep_attention and rank == 0)
        ys_in = torch.tensor([[model.sos, *ids]], device=enc.device)
        logits = decoder(enc.to(decoder.input_dtype), mask, ys_in,
                         torch.tensor([len(ids) + 1], device=enc.device))
        logp = torch.log_softmax(logits.float(), -1)[0]  # float32 also when decode dtype is bfloat16
        att = float(logp[torch.arange(len(ids) + 1), torch.tensor([*ids, model.eos])].sum())
        if keep_attention and rank == 0:
            attention = torch.stack([layer.src_attn.attn[0].mean(0) for layer in decoder.decoders]).float().cpu().numpy()
        lm_score = None
        if lm is not None and lm_weight > 0:
            lm_score = lm_sequence_logp(lm, [ids])[0]
        total = joint_score(att, ctc, len(ids), ctc_weight, penalty, lm_score,
                            lm_weight if lm_score is not None else 0.0)
        spell_weight = float(spell_lm_weight) if h.spell_score is not None else 0.0
        if spell_weight:
            total += spell_weight * h.spell_score
        scored.append(HypothesisScores(rank + 1, h.text, list(h.tokens), ids, ctc, att, total, float(h.score),
                                       lm_score, float(lm_weight) if lm_score is not None else 0.0,
                                       h.spell_score, spell_weight))
    return scored, attention


def build_trace(model, *, wave: np.ndarray, original_sample_rate: int, sample_rate: int, feats: np.ndarray,
                enc: torch.Tensor, ctc_logp: torch.Tensor, hyps: List[Hypothesis], mode: str, decode_conf,
                lm, frame_shift_s: float, frame_length_s: float, token_list: List[str],
                alignment: Optional[CtcAlignment], times: List[TokenTime]) -> UtteranceTrace:
    """The trace of one utterance from what the recognizer computed: `wave` (N,) at `sample_rate`,
    `feats` (T, D) its fbank (an SSL model: its frontend's output), `enc` (1, T', D) the encoder
    output (T' = 0 when none), `ctc_logp` (T', V), `hyps` the n-best, `alignment`/`times` the best's
    forced alignment. Adds the CMVN'd features, an SSL frontend's layer weights, each hypothesis's
    exact score parts and the best's source attention (computed on a view of the decoder, so the
    shared model is never modified: thread-safe)."""
    x = torch.as_tensor(feats, dtype=torch.float32, device=enc.device).unsqueeze(0)
    lm_weight = decode_conf.lm_weight if mode != "ctc_greedy" and lm is not None else 0.0
    scored, attention = score_hypotheses(model, enc, ctc_logp, hyps, decode_conf.ctc_weight, decode_conf.penalty,
                                         keep_attention=enc.size(1) > 0, lm=lm, lm_weight=lm_weight,
                                         spell_lm_weight=decode_conf.spell_lm_weight)
    if attention is None:
        attention = np.zeros((0, 0, 0), dtype=np.float32)
    shown_ctc_weight = (float(decode_conf.ctc_weight) if mode in ("joint", "attention_rescoring")
                        else 1.0 if mode.startswith("ctc") else 0.0)
    frontend = getattr(model, "frontend", None)
    weights = frontend.layer_weights() if frontend is not None else None
    return UtteranceTrace(
        original_sample_rate=int(original_sample_rate), sample_rate=sample_rate, wave=wave, fbank=feats,
        fbank_cmvn=model.cmvn(x)[0].cpu().numpy(), encoder_out=enc[0].cpu().numpy(),
        ctc_logp=ctc_logp.float().cpu().numpy(), subsampling_rate=model.subsampling_rate,
        receptive_frames=model.min_input_frames, frame_shift_s=frame_shift_s, frame_length_s=frame_length_s,
        mode=mode, ctc_weight=shown_ctc_weight, hypotheses=scored, alignment=alignment, token_times=times,
        attention=attention, token_list=list(token_list),
        frontend="fbank" if frontend is None else "ssl",
        ssl_model=None if frontend is None else frontend.conf.get("model"),
        ssl_layer=None if frontend is None else frontend.layer,
        layer_weights=None if weights is None else weights.float().cpu().numpy(),
    )
