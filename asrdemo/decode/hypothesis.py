"""What every search returns: one hypothesis of an utterance, best first in a list."""

import dataclasses
from typing import List, Optional


@dataclasses.dataclass
class Hypothesis:
    """A decoded token sequence and its scores (natural-log probabilities, higher is better).

    `token_ids` never contain <blank> or <sos/eos>. The searches fill the ids and scores; the
    recognizer adds `tokens` (the token strings) and `text` (detokenized).
    `score` is what the search ranked by; `ctc_score` / `att_score` are the unweighted parts
    when the search computed them (CTC: log p(sequence | audio) or, for greedy, of the best path;
    attention: sum of the decoder's token log-probs including <eos>). `lm_score` is the language
    model's log p_lm(y <eos>) when a search fused or rescored with one (lm_weight > 0), else None.
    """

    text: str = ""
    token_ids: List[int] = dataclasses.field(default_factory=list)
    tokens: List[str] = dataclasses.field(default_factory=list)
    score: float = 0.0
    ctc_score: Optional[float] = None
    att_score: Optional[float] = None
    lm_score: Optional[float] = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def empty_hypothesis() -> Hypothesis:
    """The answer for input too short to give a single encoder frame: nothing was said, surely.

    Its score is log 1 = 0: with zero frames, the empty sequence is the only one CTC allows.
    """
    return Hypothesis(token_ids=[], score=0.0, ctc_score=0.0)


def sort_hypotheses(hyps: List[Hypothesis]) -> List[Hypothesis]:
    """Best first; ties keep their order (sorted() is stable)."""
    return sorted(hyps, key=lambda h: -h.score)
