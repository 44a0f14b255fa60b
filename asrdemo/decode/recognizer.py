"""The one inference object, the only road from audio to text: `asrdemo decode`, decode.sh, the
demo server, `asrdemo explain` and the benchmarks all call `recognize`/`recognize_batch`.

    rec = Recognizer.from_exp_dir("exp/train", decode_conf="conf/decode.yaml")
    r = rec.recognize(wave, sample_rate)          # any rate, mono (N,) or (N, C)
    r.text, r.token_times, r.hypotheses           # the transcript, its characters' times, the n-best
    rec.recognize(wave, sample_rate, nbest=5, trace=True).trace   # + every intermediate (decode/trace.py)

Inside: `asrdemo.data.audio.resample` -> `asrdemo.data.fbank.Fbank` (the training frontend, from
the exp dir's config.yaml) -> the model's CMVN + encoder -> one of the searches below -> the CTC
forced alignment of the best (asrdemo/decode/alignment.py) for the times. With an SSL exp dir
(config.yaml `frontend: ssl`) the resampled wave itself is the model's input, and the model's
`HuggingFaceFrontend` (asrdemo/model/ssl_frontend.py, loaded offline from the model config.yaml
names) makes the features; the `Fbank` then only frames the silence check, the pause finder and the
demo's spectrogram. Input longer than the
model was trained on is decoded in pieces cut at pauses (asrdemo/decode/segment.py).

| mode                  | what                                                                  |
|-----------------------|-----------------------------------------------------------------------|
| `ctc_greedy`          | best label per frame, repeats collapsed, blanks dropped               |
| `ctc_prefix_beam`     | CTC prefix beam search (WeNet)                                        |
| `attention`           | attention-decoder beam search                                         |
| `joint`               | joint CTC/attention beam search (ESPnet), `ctc_weight`                |
| `attention_rescoring` | CTC prefix beam n-best rescored by the decoder in one pass (WeNet)    |

With `lm_weight` > 0 in the decode config, the exp dir's language model (config.yaml `lm:`, see
asrdemo/decode/lm_scorer.py) is fused into `attention` and `joint` (shallow fusion) and added when
`attention_rescoring` and `ctc_prefix_beam` rank their n-best lists; `ctc_greedy` ignores it.
"""

import dataclasses
import logging
import re
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from asrdemo.data.audio import load_audio, resample
from asrdemo.data.cmvn import load_stats
from asrdemo.data.fbank import Fbank
from asrdemo.data.tokens import TokenList
from asrdemo.decode.alignment import AlignmentError, ctc_forced_align, encoder_frame_seconds, token_times
from asrdemo.decode.beam_search import DecoderStepScorer, joint_beam_search
from asrdemo.decode.ctc_greedy import ctc_greedy_search
from asrdemo.decode.ctc_prefix_beam import attention_rescoring, ctc_prefix_beam_search_batch, teacher_forced_scorer
from asrdemo.decode.decode_config import MODES, DecodeConfig
from asrdemo.decode.hypothesis import Hypothesis, Recognition, empty_hypothesis
from asrdemo.decode.lm_scorer import (LMStepScorer, attached_lm_dir, check_same_tokens, lm_sequence_logp, load_lm,
                                      rescore_with_lm)
from asrdemo.decode.precision import cast_for_inference, encoder_autocast
from asrdemo.decode.segment import split_at_pauses
from asrdemo.decode.trace import build_trace
from asrdemo.errors import AsrdemoError
from asrdemo.kana import spell_scored
from asrdemo.model.mask import make_non_pad_mask
from asrdemo.utils.config import read_yaml

log = logging.getLogger(__name__)

DEFAULT_MODEL_FILE = "valid.acc.ave.pth"
# A clip whose DC-removed peak is below this holds nothing to recognise: the searches would
# invent a sentence from the model's bias. -60 dBFS is a 16-bit recording's noise floor region.
SILENCE_DBFS = -60.0
# The longest piece decoded at once when the exp dir does not record its longest training
# utterance (config.yaml `data: train_max_frames`, written by `asrdemo train`): JSUT's longest are ~15 s.
DEFAULT_MAX_PIECE_S = 20.0


def find_model_file(exp_dir: Path) -> Path:
    """valid.acc.ave.pth, else the newest checkpoints/epoch_N.pt."""
    default = exp_dir / DEFAULT_MODEL_FILE
    if default.exists():
        return default
    epochs = []
    for p in (exp_dir / "checkpoints").glob("epoch_*.pt"):
        m = re.fullmatch(r"epoch_(\d+)\.pt", p.name)
        if m:
            epochs.append((int(m.group(1)), p))
    if not epochs:
        raise AsrdemoError(f"{exp_dir}: no model: neither {DEFAULT_MODEL_FILE} nor checkpoints/epoch_*.pt "
                           "(train first, or pass a model file)")
    return max(epochs)[1]


def spell_nbest(hyps: List[Hypothesis], token_list: TokenList, spell_lm_weight: float = 0.0) -> List[Hypothesis]:
    """Fill each hypothesis's `tokens` and `text`; for a kana model (token_list.token_type "kana")
    also its `spell_score` (log p of Mozc's spelling path, asrdemo/kana.py `spell_scored`), and with
    `spell_lm_weight` > 0 add `spell_lm_weight * spell_score` to `score` and sort the list again,
    best first (stable: ties keep the search's order). So among readings the acoustics find alike,
    the one that spells as likely Japanese wins: 「まれーしあ」 (マレーシア) over 「まれいしあ」.
    Returns `hyps`, sorted in place."""
    kana = token_list.token_type == "kana"
    for h in hyps:
        h.tokens = [token_list.tokens[t] for t in h.token_ids]
        if kana:
            h.text, h.spell_score = spell_scored(token_list.decode(h.token_ids))
        else:
            h.text = token_list.to_text(h.token_ids)
    if kana and spell_lm_weight > 0:
        for h in hyps:
            h.score += spell_lm_weight * h.spell_score
        hyps.sort(key=lambda h: -h.score)
    return hyps


def _to_float_wave(wave) -> np.ndarray:
    """int PCM (e.g. int16 from a browser) -> float in [-1, 1); float stays as it is."""
    wave = np.asarray(wave)
    if np.issubdtype(wave.dtype, np.integer):
        return wave.astype(np.float32) / float(np.iinfo(wave.dtype).max + 1)
    return wave.astype(np.float32, copy=False)


class Recognizer:
    def __init__(self, model, fbank: Fbank, token_list: TokenList, decode_conf: DecodeConfig = None,
                 device="cpu", lm=None, max_piece_s: float = DEFAULT_MAX_PIECE_S):
        """`lm`: a language model (asrdemo.model.lm) used when decode_conf.lm_weight > 0.
        `max_piece_s`: input longer than this is decoded in pieces cut at pauses (the model's
        longest training utterance; `from_exp_dir` reads it from config.yaml).
        `fbank`: the model's features; for a model with its own frontend (`model.frontend`, SSL), the
        framing of the silence check, the pause finder and `features` (the demo's spectrogram)."""
        self.device = torch.device(device)
        self.max_piece_s = float(max_piece_s)
        self.model = model.to(self.device).eval()
        self.fbank = fbank
        # the frames the encoder reads: the fbank's (10 ms), or the SSL frontend's (20 ms)
        self.input_frames = model.frontend if model.frontend is not None else fbank
        self.token_list = token_list
        self.decode_conf = decode_conf or DecodeConfig()
        if len(token_list) != model.vocab_size:
            raise AsrdemoError(f"token list has {len(token_list)} tokens, the model {model.vocab_size}")
        if self.decode_conf.lm_weight > 0 and lm is None:
            raise AsrdemoError(f"the decode config sets lm_weight {self.decode_conf.lm_weight}, but there is no LM")
        if lm is not None and lm.vocab_size != model.vocab_size:
            raise AsrdemoError(f"the LM has {lm.vocab_size} tokens, the ASR model {model.vocab_size}")
        self.lm = None if lm is None else lm.to(self.device).eval()
        # a search step reads all of the decoder's (and the LM's) weights for a handful of rows:
        # bf16 / int8 weights are fewer bytes (decode/precision.py; all scores stay float32)
        self.model.decoder = cast_for_inference(self.model.decoder, self.decode_conf.dtype, self.device)
        if self.lm is not None:
            self.lm = cast_for_inference(self.lm, self.decode_conf.dtype, self.device)
        # A beam as wide as the vocabulary keeps every token at every step: it finds nothing a
        # narrower one would not, and the joint search's memory and time grow with beam x vocabulary.
        max_beam = max(1, model.vocab_size - 1)
        if self.decode_conf.beam_size > max_beam:
            log.warning("beam_size %d is not below the vocabulary size (%d tokens): using beam_size %d",
                        self.decode_conf.beam_size, model.vocab_size, max_beam)
            self.decode_conf = dataclasses.replace(self.decode_conf, beam_size=max_beam,
                                                   nbest=min(self.decode_conf.nbest, max_beam))

    @classmethod
    def from_exp_dir(cls, exp_dir, model_file=None, device="cpu", decode_conf=None,
                     num_threads: Optional[int] = None) -> "Recognizer":
        """Build from an exp dir (config.yaml, tokens.txt, cmvn.ark, the model file).

        `decode_conf`: a dict, a YAML path, or None for `exp_dir/decode.yaml` when present, else
        the defaults. `num_threads` sets torch's intra-op threads (None: leave as is)."""
        from asrdemo.model.asr_model import ASRModel, load_model_weights

        if num_threads is not None:
            torch.set_num_threads(int(num_threads))
        exp_dir = Path(exp_dir)
        config_path = exp_dir / "config.yaml"
        if not config_path.is_file():
            raise AsrdemoError(f"{exp_dir} is not an exp dir: no config.yaml (an exp dir is made by `asrdemo train` "
                               "or `asrdemo package`)")
        config = read_yaml(config_path, "exp dir config")
        if "model" not in config:
            raise AsrdemoError(f"{config_path}: no 'model:' section; is this an exp dir's config.yaml?")

        def exp_file(key, default=None):
            name = config.get(key, default)
            return None if name is None else exp_dir / name

        frontend = None
        if config.get("frontend") == "ssl":
            from asrdemo.model.ssl_frontend import HuggingFaceFrontend

            frontend_conf = config.get("frontend_conf") or {}
            frontend = HuggingFaceFrontend.from_conf(frontend_conf, expect_weights=frontend_conf.get("weights_sha256"))
            fbank = Fbank({"sample_rate": frontend.sample_rate})
        else:
            fbank = Fbank(config.get("frontend") or {})
        bpe_model = exp_file("bpe_model")
        token_list = TokenList.load(exp_file("token_list", "tokens.txt"), bpe_model, config.get("token_type"))
        cmvn_stats = None
        cmvn_path = exp_file("cmvn")
        if cmvn_path is not None:
            if not cmvn_path.is_file():
                raise AsrdemoError(f"{config_path} names cmvn {cmvn_path.name}, which is missing")
            cmvn_stats = load_stats(cmvn_path)
        input_dim = frontend.output_size() if frontend is not None else fbank.num_mel_bins
        model = ASRModel.from_config(config["model"], input_dim=input_dim, vocab_size=len(token_list),
                                     cmvn_stats=cmvn_stats, frontend=frontend)
        model_path = Path(model_file) if model_file is not None else find_model_file(exp_dir)
        try:
            model.load_state_dict(load_model_weights(model_path))
        except RuntimeError as e:
            raise AsrdemoError(f"{model_path} does not fit the model in {config_path}: {e}") from None
        if decode_conf is None and (exp_dir / "decode.yaml").is_file():
            decode_conf = exp_dir / "decode.yaml"
        log.info("loaded %s (%s)", model_path, exp_dir)
        decode_conf = DecodeConfig.load(decode_conf)
        lm = None
        if decode_conf.lm_weight > 0:  # the LM is loaded only when it is used
            lm_dir = attached_lm_dir(exp_dir, config)
            if lm_dir is None:
                raise AsrdemoError(f"the decode config sets lm_weight {decode_conf.lm_weight}, but {config_path} names "
                                   "no LM (attach one: asrdemo lm attach --lm_dir exp/lm --exp_dir "
                                   f"{exp_dir}), or set lm_weight: 0")
            check_same_tokens(lm_dir, exp_file("token_list", "tokens.txt"))
            lm = load_lm(lm_dir)
            log.info("language model %s (lm_weight %s)", lm_dir, decode_conf.lm_weight)
        max_frames = (config.get("data") or {}).get("train_max_frames")
        max_samples = (config.get("data") or {}).get("train_max_samples")  # an SSL exp's, in samples
        # the audio that many frames span (snip_edges: one window, then a shift per further frame)
        max_piece_s = (((max_frames - 1) * fbank.hop_length + fbank.win_length) / fbank.sample_rate if max_frames
                       else max_samples / fbank.sample_rate if max_samples else DEFAULT_MAX_PIECE_S)
        return cls(model, fbank, token_list, decode_conf, device, lm=lm, max_piece_s=max_piece_s)

    @property
    def sample_rate(self) -> int:
        return self.fbank.sample_rate

    @property
    def encoder_frame_s(self) -> float:
        """Seconds of audio per encoder frame (subsampling x frame shift)."""
        return encoder_frame_seconds(self.model.subsampling_rate, self.input_frames.frame_shift_s)

    # ------------------------------------------------------------------------------- front end
    @property
    def min_samples(self) -> int:
        """The fewest samples (at the model's rate) that give the encoder one output frame; shorter
        input can only be decoded as the empty hypothesis."""
        return self.input_frames.win_length + (self.model.min_input_frames - 1) * self.input_frames.hop_length

    def model_wave(self, wave, sample_rate: int) -> np.ndarray:
        """Any-rate mono (N,) or multi-channel (N, C), int or float wave -> float mono at the model's rate."""
        return resample(_to_float_wave(wave), int(sample_rate), self.sample_rate)

    def features(self, wave, sample_rate: int) -> np.ndarray:
        """Any-rate mono (N,) or multi-channel (N, C) wave -> (T, num_mel_bins) fbank at the model's rate
        (an SSL model's: a log-mel picture of the input, not what the model reads)."""
        return self.fbank(self.model_wave(wave, sample_rate))

    def tail_padded(self, wave: np.ndarray) -> np.ndarray:
        """A float mono wave at the model's rate with the decode config's `tail_padding_s` of silence
        appended (the wave itself when 0)."""
        pad = int(round(self.decode_conf.tail_padding_s * self.sample_rate))
        return np.concatenate([wave, np.zeros(pad, dtype=np.float32)]) if pad else wave

    def model_input(self, wave: np.ndarray) -> np.ndarray:
        """A float mono wave at the model's rate -> what `model.encode` takes for it: the fbank (T, D),
        or with the model's own frontend (SSL) the wave (N,) itself."""
        if self.model.frontend is not None:
            return np.asarray(wave, dtype=np.float32)
        return self.fbank(wave)

    # ------------------------------------------------------------------------------- silence
    def level_dbfs(self, wave: np.ndarray) -> float:
        """The peak of `wave` (float mono at the model's rate, full scale 1.0) in dBFS, after each
        25 ms analysis frame's mean is removed — the DC offset the fbank removes
        (`remove_dc_offset`), so a constant or slowly drifting signal counts as the silence the
        model sees. -inf for an empty or all-constant wave."""
        frames = self.fbank.dc_removed_frames(wave)
        peak = float(np.max(np.abs(frames))) if frames.size else 0.0
        return 20 * np.log10(peak) if peak > 0 else float("-inf")

    def is_silent(self, wave: np.ndarray) -> bool:
        """True when `wave` (model rate) is silence to the model: `level_dbfs` below SILENCE_DBFS."""
        return self.level_dbfs(wave) < SILENCE_DBFS

    # ---------------------------------------------------------------------------------- search
    def recognize(self, wave, sample_rate: int, mode: Optional[str] = None, *, nbest: Optional[int] = None,
                  trace: bool = False) -> Recognition:
        """Any-rate mono (N,) or multi-channel (N, C), int or float wave -> its `Recognition`: the
        n-best (`nbest`, default the decode config's), the best's token times, and with `trace`
        every intermediate. Silence gives the empty hypothesis (see `decode_waves`)."""
        return self.decode_waves([self.model_wave(wave, sample_rate)], ["audio"], mode, nbest=nbest, trace=trace,
                                 input_rates=[sample_rate])[0]

    def recognize_batch(self, items: Sequence[Tuple[np.ndarray, int]], mode: Optional[str] = None, *,
                        nbest: Optional[int] = None, trace: bool = False) -> List[Recognition]:
        """[(wave, sample_rate), ...] -> the `Recognition` of each, decoded as one batch."""
        return self.decode_waves([self.model_wave(w, sr) for w, sr in items], None, mode, nbest=nbest, trace=trace,
                                 input_rates=[sr for _, sr in items])

    def recognize_file(self, path, mode: Optional[str] = None, **kwargs) -> Recognition:
        """An audio file (any format `load_audio` reads) -> its `Recognition`."""
        wave, sample_rate = load_audio(path)
        return self.decode_waves([self.model_wave(wave, sample_rate)], [str(path)], mode,
                                 input_rates=[sample_rate], **kwargs)[0]

    def decode_waves(self, waves: Sequence[np.ndarray], names: Optional[Sequence[str]] = None,
                     mode: Optional[str] = None, *, nbest: Optional[int] = None, trace: bool = False,
                     input_rates: Optional[Sequence[int]] = None) -> List[Recognition]:
        """Float mono waves (N,) at the model's rate -> the `Recognition` of each, decoded as one batch.

        The one silence policy of `asrdemo decode`, decode.sh and the library: a wave that is
        silent to the model (`is_silent`), or too short for one encoder frame (`min_samples`), is
        not decoded; it gets the empty hypothesis and a warning naming it (`names[i]`, default its
        index). A wave longer than `max_piece_s` is decoded as pieces cut at pauses
        (`segment.split_at_pauses`), batched with the rest; its text is the pieces' joined, its
        times global, and a warning says so (a trace is then not kept: it is per piece).
        `input_rates`: the rates the waves came at, for the trace (default: the model's)."""
        names = list(names) if names is not None else [f"#{i}" for i in range(len(waves))]
        rates = list(input_rates) if input_rates is not None else [self.sample_rate] * len(waves)
        pieces = []  # (wave index, start sample, end sample) of every piece to decode
        for i, wave in enumerate(waves):
            if self._decodable(wave, names[i]):
                bounds = self.split_long(wave)
                if len(bounds) > 1:
                    log.warning("%s: %.1f s is longer than a piece of this model (%.1f s: its longest training "
                                "utterance, or 20 s where config.yaml does not record it): decoded in %d pieces "
                                "cut at pauses", names[i], len(wave) / self.sample_rate, self.max_piece_s, len(bounds))
                    # a piece that is only a pause (silent, or too short) stays empty
                    bounds = [(a, b) for a, b in bounds if self._decodable(wave[a:b], None)]
                pieces += [(i, a, b) for a, b in bounds]
        decoded = self._recognize_features([self.model_input(self.tail_padded(waves[i][a:b])) for i, a, b in pieces],
                                           mode, nbest,
                                           keep=trace, durations=[(b - a) / self.sample_rate for _, a, b in pieces])
        results = []
        for i, wave in enumerate(waves):
            mine = [k for k, (j, _, _) in enumerate(pieces) if j == i]
            duration = len(wave) / self.sample_rate
            kept = None
            if not mine:  # silent or too short
                result = Recognition(self._finish([[empty_hypothesis()]])[0], [], duration)
            elif len(mine) == 1 and pieces[mine[0]][1:] == (0, len(wave)):
                result, kept = decoded[mine[0]]
            else:
                result = self._join([(decoded[k][0], pieces[k][1] / self.sample_rate) for k in mine], duration)
            result.segments = [(a / self.sample_rate, b / self.sample_rate) for j, a, b in pieces if j == i]
            if trace and (kept is not None or not mine):  # decoded whole, or not at all
                result.trace = self._trace(wave, rates[i], mode, result, kept)
            results.append(result)
        return results

    def _decodable(self, wave: np.ndarray, name: Optional[str]) -> bool:
        """False (with a warning naming `name`, when given) for silent or too short input."""
        if self.is_silent(wave):
            if name is not None:
                log.warning("%s: silent (peak %.0f dBFS with the DC offset removed, what the model sees): "
                            "empty hypothesis", name, self.level_dbfs(wave))
            return False
        if len(wave) < self.min_samples:
            if name is not None:
                log.warning("%s: too short (%.3f s; the model needs %.3f s): empty hypothesis", name,
                            len(wave) / self.sample_rate, self.min_samples / self.sample_rate)
            return False
        return True

    def split_long(self, wave: np.ndarray) -> List[Tuple[int, int]]:
        """[(start, end)] samples of the pieces `wave` (model rate) is decoded in: one piece when it
        is at most `max_piece_s` long, else cut at pauses, without the silence at their ends
        (`segment.split_at_pauses`)."""
        return split_at_pauses(wave, self.fbank, int(self.max_piece_s * self.sample_rate),
                               step=self.input_frames.hop_length * self.model.subsampling_rate,
                               silence_dbfs=SILENCE_DBFS)

    def _join(self, parts: List[Tuple[Recognition, float]], duration_s: float) -> Recognition:
        """The pieces' best hypotheses joined into one (ids, scores summed), their times shifted by
        each piece's start (`start_frame`/`end_frame` by the nearest whole number of encoder frames)."""
        frame_s = self.encoder_frame_s
        ids, times, score = [], [], 0.0
        for part, offset_s in parts:
            ids += part.best.token_ids
            score += part.best.score
            shift = round(offset_s / frame_s)
            for t in part.token_times:
                times.append(dataclasses.replace(
                    t, start_frame=t.start_frame + shift, end_frame=t.end_frame + shift,
                    start_s=round(min(t.start_s + offset_s, duration_s), 4),
                    end_s=round(min(t.end_s + offset_s, duration_s), 4)))
        best = self._finish([[Hypothesis(token_ids=ids, score=score)]])[0]
        return Recognition(best, times, duration_s)

    def _recognize_features(self, feats_list: Sequence[Union[np.ndarray, torch.Tensor]], mode: Optional[str] = None,
                            nbest: Optional[int] = None, keep: bool = False, durations: Optional[Sequence[float]] = None
                            ) -> List[Tuple[Recognition, Optional[tuple]]]:
        """Fbank matrices (T, D) (with the model's own frontend: waves (N,), `model_input`), decoded as
        one batch -> per input (its `Recognition`, and with `keep` what `_trace` needs: (the input,
        encoder output (1, T', D), CTC log-posteriors (T', V), the best's `CtcAlignment` or None),
        else None).
        `durations`: each input's audio length in seconds (default T x frame shift); token times are
        clipped to it. Input too short for one encoder frame gives the empty hypothesis."""
        mode = self._check_mode(mode)
        nbest = int(nbest or self.decode_conf.nbest)
        frame_s = self.encoder_frame_s
        if durations is None:
            waves = self.model.frontend is not None  # the inputs are waves, not fbank frames
            durations = [len(f) / self.sample_rate if waves else len(f) * self.fbank.frame_shift_s for f in feats_list]
        results = [(Recognition(self._finish([[empty_hypothesis()]])[0], [], d), None) for d in durations]
        usable = [i for i, f in enumerate(feats_list) if len(f) >= self.model.min_input_length]
        if not usable:
            return results
        with torch.inference_mode():
            feats = [torch.as_tensor(np.asarray(feats_list[i]), dtype=torch.float32) for i in usable]
            lengths = torch.tensor([len(f) for f in feats], device=self.device)
            padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True).to(self.device)
            with encoder_autocast(self.device, self.decode_conf.dtype):
                enc, enc_lens = self.model.encode(padded, lengths)
            enc = enc.float()
            ctc_logp = self.model.ctc.log_softmax(enc)
            nbests = self._finish(self._search(enc, enc_lens, ctc_logp, mode, nbest), nbest)
        for b, (i, hyps) in enumerate(zip(usable, nbests)):
            frames = int(enc_lens[b])
            logp = ctc_logp[b, :frames]
            alignment = self._align(logp, hyps[0])
            duration = results[i][0].duration_s
            times = [] if alignment is None else token_times(alignment, self.token_list.tokens, frame_s, duration)
            kept = (feats_list[i], enc[b: b + 1, :frames], logp, alignment) if keep else None
            results[i] = (Recognition(hyps, times, duration), kept)
        return results

    def _align(self, ctc_logp: torch.Tensor, best: Hypothesis):
        """The CTC forced alignment of the best hypothesis on ctc_logp (T', V): where CTC emits each
        of its tokens. None for the empty hypothesis, or when it does not fit the frames."""
        if not best.token_ids:
            return None
        try:
            return ctc_forced_align(ctc_logp, best.token_ids, self.model.blank_id)
        except AlignmentError as e:  # possible only for attention-only output longer than the frames
            log.warning("no CTC alignment of the transcript, so no token times: %s", e)
            return None

    def _trace(self, wave: np.ndarray, input_rate: int, mode: Optional[str], result: Recognition, kept):
        """The trace (decode/trace.py) of one wave decoded in one piece, from what
        `_recognize_features` kept (None when it decoded nothing: silence, too short)."""
        if kept is None:
            kept = (self.model_input(wave), torch.zeros(1, 0, self.model.encoder.output_size(), device=self.device),
                    torch.zeros(0, len(self.token_list), device=self.device), None)
        feats, enc, ctc_logp, alignment = kept
        with torch.inference_mode():
            if self.model.frontend is not None:  # the trace shows the features the encoder reads
                feats = self._frontend_features(wave)
            return build_trace(self.model, wave=wave, original_sample_rate=input_rate, sample_rate=self.sample_rate,
                               feats=feats, enc=enc, ctc_logp=ctc_logp, hyps=result.hypotheses,
                               mode=self._check_mode(mode), decode_conf=self.decode_conf, lm=self.lm,
                               frame_shift_s=self.input_frames.frame_shift_s,
                               frame_length_s=self.input_frames.frame_length_s,
                               token_list=self.token_list.tokens, alignment=alignment, times=result.token_times)

    def _frontend_features(self, wave: np.ndarray) -> np.ndarray:
        """The model's own frontend (SSL) on one wave at the model's rate -> (T, D), the features its
        encoder reads (before CMVN); (0, D) for a wave shorter than one frame."""
        frontend = self.model.frontend
        if len(wave) < frontend.win_length:
            return np.zeros((0, frontend.output_size()), dtype=np.float32)
        x = torch.as_tensor(np.asarray(wave, dtype=np.float32), device=self.device).unsqueeze(0)
        feats, lens = frontend(x, torch.tensor([x.size(1)], device=self.device))
        return feats[0, : int(lens[0])].float().cpu().numpy()

    def decode_features(self, feats_list: Sequence[Union[np.ndarray, torch.Tensor]],
                        mode: Optional[str] = None) -> List[List[Hypothesis]]:
        """Fbank matrices (T, D) -> per utterance its n-best list (`nbest` of the config), best first.

        Input too short for one encoder frame gives the empty hypothesis."""
        return [r.hypotheses for r, _ in self._recognize_features(feats_list, mode)]

    @torch.inference_mode()
    def decode_encoded(self, enc: torch.Tensor, enc_lens: torch.Tensor, mode: Optional[str] = None
                       ) -> List[List[Hypothesis]]:
        """The search alone, on encoder output (B, T', D) with its lengths (B,); the same n-best
        as `decode_features`."""
        mode = self._check_mode(mode)
        return self._finish(self._search(enc, enc_lens, self.model.ctc.log_softmax(enc), mode, self.decode_conf.nbest))

    def _check_mode(self, mode: Optional[str]) -> str:
        mode = mode or self.decode_conf.mode
        if mode not in MODES:
            raise AsrdemoError(f"unknown decoding mode {mode!r}; one of {', '.join(MODES)}")
        return mode

    def _finish(self, results: List[List[Hypothesis]], nbest: Optional[int] = None) -> List[List[Hypothesis]]:
        """Spell each utterance's hypotheses out (a kana model's n-best ranked again with the
        spelling's language model: `spell_nbest`) and keep `nbest` (default the config's)."""
        keep = nbest or self.decode_conf.nbest
        if not self.ranks_spellings:  # the order stays: spell only what is kept
            results = [hyps[:keep] for hyps in results]
        return [spell_nbest(hyps, self.token_list, self.decode_conf.spell_lm_weight)[:keep] for hyps in results]

    def finish_nbest(self, hyps: List[Hypothesis]) -> List[Hypothesis]:
        """One utterance's hypotheses from a search (e.g. the streaming recognizer's final pass) ->
        spelled, ranked as `recognize` ranks them, the config's `nbest` kept."""
        return self._finish([hyps])[0]

    @property
    def ranks_spellings(self) -> bool:
        """True when the n-best is ranked again by its spelling (a kana model, spell_lm_weight > 0):
        the searches then hand over all they found, not only the n-best asked for."""
        return self.token_list.token_type == "kana" and self.decode_conf.spell_lm_weight > 0

    def _search(self, enc: torch.Tensor, enc_lens: torch.Tensor, ctc_logp: torch.Tensor, mode: str,
                nbest: int) -> List[List[Hypothesis]]:
        """enc (B, T', D), enc_lens (B,), ctc_logp (B, T', V) -> per utterance its n-best, best first."""
        conf, model = self.decode_conf, self.model
        lm_weight = conf.lm_weight if self.lm is not None else 0.0
        if mode == "ctc_greedy":
            return ctc_greedy_search(ctc_logp, enc_lens, model.blank_id)
        if mode in ("ctc_prefix_beam", "attention_rescoring"):
            ctc_nbest = ctc_prefix_beam_search_batch(ctc_logp.cpu(), enc_lens.cpu(), conf.beam_size, conf.beam_size,
                                                     model.blank_id)
            lm_fn = (lambda seqs: lm_sequence_logp(self.lm, seqs)) if lm_weight else None
            if mode == "ctc_prefix_beam":
                return rescore_with_lm(ctc_nbest, lm_fn, lm_weight, conf.penalty) if lm_weight else ctc_nbest
            mask = make_non_pad_mask(enc_lens, enc.size(1)).unsqueeze(1)
            return attention_rescoring(ctc_nbest, enc_lens, teacher_forced_scorer(model.decoder, enc, mask),
                                       sos=model.sos, eos=model.eos, ctc_weight=conf.ctc_weight, penalty=conf.penalty,
                                       lm_fn=lm_fn, lm_weight=lm_weight)
        mask = make_non_pad_mask(enc_lens, enc.size(1)).unsqueeze(1)
        ctc_weight = 0.0 if mode == "attention" else conf.ctc_weight
        scorer = DecoderStepScorer(model.decoder, enc, mask) if ctc_weight < 1.0 else None
        return joint_beam_search(
            ctc_logp if ctc_weight > 0 else None, enc_lens, scorer, sos=model.sos, eos=model.eos,
            vocab_size=model.vocab_size, blank_id=model.blank_id, beam_size=conf.beam_size, ctc_weight=ctc_weight,
            penalty=conf.penalty, maxlenratio=conf.maxlenratio, minlenratio=conf.minlenratio,
            pre_beam_ratio=conf.pre_beam_ratio, nbest=max(nbest, conf.beam_size) if self.ranks_spellings else nbest,
            end_detection=conf.end_detection,
            lm_scorer=LMStepScorer(self.lm) if lm_weight else None, lm_weight=lm_weight,
        )
