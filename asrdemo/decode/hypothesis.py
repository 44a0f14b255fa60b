"""What the searches return (`Hypothesis`, n-best lists best first), what the recognizer returns
(`Recognition`: the n-best, the best one's character times, and on request the trace), and the
one formula that ranks a finished hypothesis (`joint_score`)."""

import dataclasses
from typing import TYPE_CHECKING, List, Optional

if TYPE_CHECKING:  # the trace and the times import numpy/torch; a hypothesis does not need them
    from asrdemo.decode.alignment import TokenTime
    from asrdemo.decode.trace import UtteranceTrace


@dataclasses.dataclass
class Hypothesis:
    """A decoded token sequence and its scores (natural-log probabilities, higher is better).

    `token_ids` never contain <blank> or <sos/eos>. The searches fill the ids and scores; the
    recognizer adds `tokens` (the token strings) and `text` (detokenized).
    `score` is what the search ranked by; `ctc_score` / `att_score` are the unweighted parts
    when the search computed them (CTC: log p(sequence | audio) or, for greedy, of the best path;
    attention: sum of the decoder's token log-probs including <eos>). `lm_score` is the language
    model's log p_lm(y <eos>) when a search fused or rescored with one (lm_weight > 0), else None.
    `spell_score`: for a kana model, log p of the text's spelling path in Mozc's language model
    (asrdemo/kana.py `spell_scored`), else None; the recognizer adds `spell_lm_weight` times it to
    `score` and ranks the n-best again (`spell_nbest`).
    """

    text: str = ""
    token_ids: List[int] = dataclasses.field(default_factory=list)
    tokens: List[str] = dataclasses.field(default_factory=list)
    score: float = 0.0
    ctc_score: Optional[float] = None
    att_score: Optional[float] = None
    lm_score: Optional[float] = None
    spell_score: Optional[float] = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def empty_hypothesis() -> Hypothesis:
    """The answer for input too short to give a single encoder frame: nothing was said, surely.

    Its score is log 1 = 0: with zero frames, the empty sequence is the only one CTC allows.
    """
    return Hypothesis(token_ids=[], score=0.0, ctc_score=0.0)


def joint_score(att_score, ctc_score, num_tokens: int, ctc_weight: float, penalty: float = 0.0,
                lm_score=None, lm_weight: float = 0.0):
    """The score of a finished hypothesis y of `num_tokens` tokens in joint CTC/attention decoding
    (Watanabe et al., 2017; ESPnet's and WeNet's weighting):

        (1 - ctc_weight) log p_att(y <eos> | x) + ctc_weight log p_ctc(y | x)
            + lm_weight log p_lm(y <eos>) + penalty (|y| + 1)

    Floats or tensors alike. A part whose weight is 0 is not read (it may be None)."""
    score = (1.0 - ctc_weight) * att_score if ctc_weight < 1.0 else 0.0
    if ctc_weight > 0.0:
        score = score + ctc_weight * ctc_score
    score = score + penalty * (num_tokens + 1)  # (the terms in this order: rankings stay bit-identical)
    if lm_weight:
        score = score + lm_weight * lm_score
    return score


@dataclasses.dataclass
class Recognition:
    """Everything the recognizer can tell about one input (`Recognizer.recognize`).

    `hypotheses`: the n-best, best first (at least one; the empty hypothesis for silence).
    `token_times`: the best hypothesis's tokens at their times in seconds from the start of the
    input (CTC forced alignment; empty when the transcript cannot be laid on the frames).
    `duration_s`: the input's length. `trace`: with `trace=True`, every intermediate
    (asrdemo/decode/trace.py: features, CTC posteriors, attention, score parts), else None.
    `segments`: [(start_s, end_s)] of the pieces a long input was decoded in (one piece otherwise).
    """

    hypotheses: List[Hypothesis]
    token_times: List["TokenTime"]
    duration_s: float
    trace: Optional["UtteranceTrace"] = None
    segments: List[tuple] = dataclasses.field(default_factory=list)

    @property
    def best(self) -> Hypothesis:
        return self.hypotheses[0]

    @property
    def text(self) -> str:
        return self.best.text

    @property
    def token_ids(self) -> List[int]:
        return self.best.token_ids

    @property
    def tokens(self) -> List[str]:
        return self.best.tokens

    @property
    def score(self) -> float:
        return self.best.score
