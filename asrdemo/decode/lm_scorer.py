"""The language model as the searches see it, and where an exp dir keeps it.

Shallow fusion (Gulcehre et al. 2015; Kannan et al. 2018) adds a weighted external LM score to
every hypothesis. ESPnet's beam search sums its scorers with weights (`espnet/nets/beam_search.py`,
`weighted_sum += weights[k] * scores[k]`), which with a decoder, CTC and an LM gives

    score(y) = (1 - ctc_weight) * log p_att(y<eos> | x) + ctc_weight * log p_ctc(y | x)
               + lm_weight * log p_lm(y<eos>) + penalty * (|y| + 1)

* `LMStepScorer(lm)` is a `beam_search.DecoderScorer`: one LM step for all N running hypotheses
  per search step, with the LM's own state cache (Transformer: every layer's keys/values, so a
  step costs one position; LSTM: (h, c)), reordered with the beam like the decoder's.
* `lm_sequence_logp(lm, seqs)` is the rescoring modes' scorer: log p_lm(y <eos>) of whole
  sequences in one teacher-forced pass.
* An exp dir carries its LM in a sub-directory named by config.yaml's `lm:` key (`asrdemo lm
  attach`): that dir's config.yaml, tokens.txt (the ASR token list) and `valid.loss.ave.pth`.
  `load_lm(dir)` rebuilds it.
"""

import logging
import math
import re
import shutil
from pathlib import Path
from typing import List, Optional, Sequence

import torch
import yaml

from asrdemo.errors import AsrdemoError
from asrdemo.model.lm import LM_MODEL_FILE
from asrdemo.utils.config import read_yaml
from asrdemo.utils.io import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

ATTACHED_DIR = "lm"  # exp/<tag>/lm/
LM_FILES = ("config.yaml", "tokens.txt", LM_MODEL_FILE)  # what an attached (or packaged) LM dir holds


class LMStepScorer:
    """`init_state(utt)`, `score(ys, state) -> (log-probs (N, V), state)`, `select_state(state, rows)`.

    Only the newest token `ys[:, -1]` is read at each call; the state holds what came before, so
    the search must call `score` once per appended token (as it does for the decoder)."""

    def __init__(self, lm):
        self.lm = lm

    def init_state(self, utt: torch.Tensor):
        return {"len": 0, "state": None}

    def score(self, ys: torch.Tensor, state):
        """ys (N, L) prefixes starting with <sos> -> log p_lm(next token | prefix) (N, V) float32."""
        if state["len"] != ys.size(1) - 1:
            raise ValueError(f"the LM state holds {state['len']} tokens, ys has {ys.size(1)} (expected one more)")
        logp, new = self.lm.forward_step(ys[:, -1], state["state"])
        return logp.float(), {"len": ys.size(1), "state": new}

    def select_state(self, state, rows: torch.Tensor):
        return {"len": state["len"], "state": self.lm.select_state(state["state"], rows)}


@torch.inference_mode()
def lm_sequence_logp(lm, seqs: Sequence[Sequence[int]], max_rows: int = 256) -> List[float]:
    """log p_lm(y <eos>) (natural log, <eos> included) of every token sequence y, teacher-forced in
    batches of `max_rows` rows (each row is `<sos> y`, padded with <eos>)."""
    out: List[float] = []
    device = next(lm.parameters()).device
    for start in range(0, len(seqs), max_rows):
        chunk = [list(s) for s in seqs[start : start + max_rows]]
        length = max(len(s) for s in chunk) + 1
        ys_in = torch.full((len(chunk), length), lm.eos, dtype=torch.long, device=device)
        targets = torch.full((len(chunk), length), lm.eos, dtype=torch.long, device=device)
        for i, s in enumerate(chunk):
            ys_in[i, 0] = lm.sos
            if s:
                ys_in[i, 1 : len(s) + 1] = torch.tensor(s, device=device)
                targets[i, : len(s)] = torch.tensor(s, device=device)
        lens = torch.tensor([len(s) + 1 for s in chunk], device=device)
        logp = torch.log_softmax(lm.logits(ys_in, lens).float(), dim=-1)
        token_logp = logp.gather(2, targets.unsqueeze(2)).squeeze(2)
        valid = torch.arange(length, device=device).unsqueeze(0) < lens.unsqueeze(1)
        out += token_logp.masked_fill(~valid, 0.0).sum(dim=1).tolist()
    return out


def rescore_with_lm(nbest, lm_fn, lm_weight: float, penalty: float = 0.0):
    """Rerank n-best lists by `h.score + lm_weight * log p_lm(y <eos>) + penalty * (|y| + 1)`
    (the `ctc_prefix_beam` mode with an LM: its score is log p_ctc(y | x), so this is the joint
    formula with ctc_weight 1). One `lm_fn` call for all hypotheses of all utterances.
    -> new lists of new Hypothesis objects (lm_score set), best first."""
    from asrdemo.decode.hypothesis import Hypothesis

    seqs = [h.token_ids for hyps in nbest for h in hyps]
    if not seqs:
        return [list(h) for h in nbest]
    lm = iter(lm_fn(seqs))
    out = []
    for hyps in nbest:
        rescored = []
        for h in hyps:
            lm_score = next(lm)
            rescored.append(Hypothesis(token_ids=list(h.token_ids), score=h.score + lm_weight * lm_score
                                       + penalty * (len(h.token_ids) + 1), ctc_score=h.ctc_score,
                                       att_score=h.att_score, lm_score=lm_score))
        out.append(sorted(rescored, key=lambda h: -h.score))
    return out


def perplexity(lm, token_list, sentences: Sequence[str]) -> dict:
    """Perplexity of `sentences` (each scored with its <eos>, as ESPnet's `lm_calc_perplexity`):
    exp(-sum log p / number of predicted tokens). -> {"ppl", "nll_per_token", "sentences", "tokens",
    "unk"}; `<unk>` tokens are scored like any other (so an LM can look better on text it cannot spell)."""
    seqs = [token_list.encode(s) for s in sentences]
    seqs = [s for s in seqs if s]
    if not seqs:
        raise AsrdemoError("perplexity: no sentences")
    total = sum(lm_sequence_logp(lm, seqs))
    tokens = sum(len(s) + 1 for s in seqs)
    nll = -total / tokens
    return {"ppl": math.exp(min(nll, 700.0)), "nll_per_token": nll, "sentences": len(seqs), "tokens": tokens,
            "unk": sum(t == token_list.unk_id for s in seqs for t in s)}


def load_lm(lm_dir, device="cpu", model_file=None):
    """An LM exp dir (`asrdemo lm train`, or an exp dir's attached `lm/`) -> the LM in eval mode.

    Raises AsrdemoError naming the file when something is missing or does not fit."""
    from asrdemo.model.lm import build_lm

    lm_dir = Path(lm_dir)
    config_path = lm_dir / "config.yaml"
    if not config_path.is_file():
        raise AsrdemoError(f"{lm_dir} is not an LM dir: no config.yaml (made by `asrdemo lm train`)")
    config = read_yaml(config_path, "LM config")
    if not isinstance(config.get("vocab_size"), int):
        raise AsrdemoError(f"{config_path}: no vocab_size; is this an LM config written by `asrdemo lm train`?")
    lm = build_lm(config.get("model"), config["vocab_size"])
    path = Path(model_file) if model_file else lm_dir / LM_MODEL_FILE
    if not path.is_file():
        raise AsrdemoError(f"{lm_dir}: no LM weights {path.name} (made at the end of `asrdemo lm train`)")
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a training checkpoint also holds RNG states and the like
            state = torch.load(path, map_location="cpu", weights_only=False)
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]
        lm.load_state_dict(state)
    except Exception as e:
        raise AsrdemoError(f"{path} does not fit the LM in {config_path}: {e}") from None
    return lm.to(device).eval()


def check_same_tokens(lm_dir, token_list_path):
    """The LM must score the ASR model's tokens: its tokens.txt must equal the ASR one."""
    lm_tokens, asr_tokens = Path(lm_dir) / "tokens.txt", Path(token_list_path)
    if not lm_tokens.is_file():
        raise AsrdemoError(f"{lm_dir} has no tokens.txt")
    if lm_tokens.read_bytes() != asr_tokens.read_bytes():
        raise AsrdemoError(f"the LM's token list {lm_tokens} differs from the ASR model's {asr_tokens}: train the "
                           "LM with the ASR token list (asrdemo lm train --token_list data/lang/tokens.txt)")


def attach_lm(exp_dir, lm_dir):
    """Copy an LM (config.yaml, tokens.txt, valid.loss.ave.pth) into `exp_dir/lm/` and name it in
    exp_dir/config.yaml (`lm: lm`), so that the exp dir carries its LM (the recognizer and
    `asrdemo package` find it there). Returns the attached dir."""
    exp_dir, lm_dir = Path(exp_dir), Path(lm_dir)
    config_path = exp_dir / "config.yaml"
    if not config_path.is_file():
        raise AsrdemoError(f"{exp_dir} is not an exp dir: no config.yaml")
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    check_same_tokens(lm_dir, exp_dir / config.get("token_list", "tokens.txt"))
    load_lm(lm_dir)  # fails here, not at decoding time, if the LM is incomplete
    target = exp_dir / ATTACHED_DIR
    target.mkdir(exist_ok=True)
    for name in LM_FILES:
        with atomic_path(target / name) as tmp:
            shutil.copyfile((lm_dir / name).resolve(), tmp)  # the averaged model may be a symlink
    text = config_path.read_text(encoding="utf-8")
    line = f"lm: {ATTACHED_DIR}"
    # a line edit keeps the file's header comment and layout (a YAML round trip would drop them)
    text, n = re.subn(r"^lm:.*$", line, text, flags=re.M)
    if n == 0:
        text = text.rstrip("\n") + f"\n{line}\n"
    atomic_write_text(config_path, text)
    log.info("attached the LM of %s to %s (%s/)", lm_dir, exp_dir, target)
    return target


def attached_lm_dir(exp_dir, config: dict) -> Optional[Path]:
    """The LM dir an exp dir's config.yaml names (`lm:`), or None. Raises if it is named but missing."""
    name = config.get("lm")
    if not name:
        return None
    if not isinstance(name, str) or Path(name).name != name or name in (".", ".."):
        raise AsrdemoError(f"{Path(exp_dir) / 'config.yaml'}: lm: must name a sub-directory of the exp dir "
                           f"(e.g. lm), got {name!r}")
    path = Path(exp_dir) / name
    if not (path / "config.yaml").is_file():
        raise AsrdemoError(f"{Path(exp_dir) / 'config.yaml'} names lm: {name}, but {path}/config.yaml is missing")
    return path
