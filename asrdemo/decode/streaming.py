"""Streaming recognition: audio in pieces -> a partial transcript after every chunk -> a final one.

    streamer = StreamingRecognizer(Recognizer.from_exp_dir("exp/train"), chunk_size=16)
    session = streamer.session()
    for piece in pieces:                              # any sizes, any sample rate, int or float
        for chunk in session.accept_waveform(piece, 48000):
            print(chunk.text)                         # the partial transcript after this chunk
    print(session.finish().text)                      # the rest of the audio, then two-pass

One session is one utterance, in four steps per piece (WeNet's runtime, docs/streaming.md):

1. resample (`asrdemo.data.audio.StreamResampler`) and fbank (`FbankStream`): the same frames
   as the offline frontend computes on the whole wave;
2. CMVN, then the encoder one chunk of ``chunk_size`` encoder frames at a time
   (``forward_chunk``), with the attention keys/values and the convolution state of earlier
   chunks cached, ``num_left_chunks`` of them (< 0: all) — the first pass's latency is one chunk;
3. CTC prefix beam search carried across chunks (`CTCPrefixBeamSearch`): its best prefix is
   the partial transcript;
4. at the end, the second pass: the decoder rescores the CTC n-best with the whole encoder
   output (attention rescoring, U2 section 2.1), as `attention_rescoring` mode does offline.

The final result depends only on the audio, not on how it was cut into pieces. It equals the
offline `attention_rescoring` of the same model run with ``decoding_chunk_size=chunk_size``
(whose convolution, too, sees zeros after each chunk's end). A model trained without chunk masks
can be streamed too, with more errors: `StreamingRecognizer.model_is_streaming` says which.
"""

import dataclasses
import time
from typing import List, Optional

import numpy as np
import torch

from asrdemo.data.audio import StreamResampler
from asrdemo.decode.ctc_prefix_beam import CTCPrefixBeamSearch, attention_rescoring, teacher_forced_scorer
from asrdemo.decode.hypothesis import Hypothesis, empty_hypothesis
from asrdemo.decode.recognizer import spell_nbest
from asrdemo.errors import AsrdemoError
from asrdemo.model.encoder import EncoderCache

DEFAULT_CHUNK_SIZE = 16  # encoder frames: 0.64 s at x4 subsampling and a 10 ms shift (WeNet's default)


@dataclasses.dataclass
class ChunkResult:
    """What one encoder chunk added: the partial transcript after it.

    index: 0, 1, ... ; audio_end_s: the end of the audio this chunk has heard (its last fbank
    window), from the start of the stream; encoder_frames: frames decoded so far; compute_s:
    the time spent on this chunk (encoder + search); text / token_ids: the best CTC prefix."""

    index: int
    audio_end_s: float
    encoder_frames: int
    compute_s: float
    text: str
    token_ids: List[int]

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# an SSL model's transformer layers see the whole utterance: it has no chunk-by-chunk form
STREAMING_NEEDS_FBANK = ("streaming needs an fbank model: this exp dir's SSL frontend (frontend: ssl) attends over "
                         "the whole utterance, so it cannot be fed chunk by chunk; decode whole utterances instead")


class StreamingRecognizer:
    """A `Recognizer`'s model, frontend, tokens and search settings, decoding chunk by chunk.

    chunk_size: encoder frames per chunk (>= 1); num_left_chunks: chunks of left context each
    chunk attends to (< 0: all, which is what a model trained without ``use_dynamic_left_chunk``
    saw); rescoring: run the second pass at the end (else the final is the CTC prefix beam's best).
    From the recognizer's decode config: beam_size, ctc_weight, penalty, and lm_weight with its LM
    in the second pass. Raises AsrdemoError for a chunk_size < 1, or a model with an SSL frontend."""

    def __init__(self, recognizer, chunk_size: int = DEFAULT_CHUNK_SIZE, num_left_chunks: int = -1,
                 rescoring: bool = True):
        if int(chunk_size) < 1:
            raise AsrdemoError(f"chunk_size must be >= 1 encoder frame, got {chunk_size}")
        if recognizer.model.frontend is not None:
            raise AsrdemoError(STREAMING_NEEDS_FBANK)
        self.recognizer = recognizer
        self.chunk_size, self.num_left_chunks, self.rescoring = int(chunk_size), int(num_left_chunks), rescoring
        encoder = recognizer.model.encoder
        self.window = encoder.chunk_input_frames(self.chunk_size)  # fbank frames per chunk
        self.stride = encoder.subsampling_rate * self.chunk_size  # fbank frames between chunk starts
        self.max_cache_frames = self.chunk_size * self.num_left_chunks if self.num_left_chunks >= 0 else -1

    @property
    def model_is_streaming(self) -> bool:
        """Trained with chunk masks (`BaseEncoder.streaming`): chunk by chunk it decodes as it was
        trained. False: it still works, with more errors."""
        return self.recognizer.model.encoder.streaming

    @property
    def chunk_seconds(self) -> float:
        """The audio one chunk adds: its latency beyond the compute."""
        return self.stride * self.recognizer.fbank.frame_shift_s

    def session(self) -> "StreamingSession":
        return StreamingSession(self)


class StreamingSession:
    """One utterance being recognised (not thread-safe: one session per stream)."""

    def __init__(self, streamer: StreamingRecognizer):
        self.streamer = streamer
        rec = streamer.recognizer
        self.rec, self.model = rec, rec.model
        self.fbank = rec.fbank.stream()
        self.resampler: Optional[StreamResampler] = None
        self.pending = np.zeros((0, rec.fbank.num_mel_bins), dtype=np.float32)  # fbank frames not yet encoded
        self.fbank_frames_consumed = 0  # frames before `pending`'s first
        self.cache = EncoderCache()
        self.encoder_out: List[torch.Tensor] = []  # each chunk's (1, T', D), for the second pass
        self.search = CTCPrefixBeamSearch(rec.decode_conf.beam_size, self.model.blank_id)
        self.chunks: List[ChunkResult] = []
        self.samples_in = 0  # samples at the model's rate
        self.result: Optional[Hypothesis] = None

    # -------------------------------------------------------------------------------- input
    def accept_waveform(self, wave, sample_rate: int) -> List[ChunkResult]:
        """A piece of audio (N,) or (N, C), int PCM or float in [-1, 1], at ``sample_rate``
        (the same for the whole session) -> the chunks it completed (often none; several for a
        long piece). Raises AsrdemoError after ``finish`` or when the rate changes."""
        if self.result is not None:
            raise AsrdemoError("this streaming session has finished; start a new one")
        if self.resampler is None:
            self.resampler = StreamResampler(int(sample_rate), self.rec.sample_rate)
        elif int(sample_rate) != self.resampler.sample_rate:
            raise AsrdemoError(f"the sample rate changed within a stream ({self.resampler.sample_rate} -> "
                               f"{sample_rate} Hz)")
        wave = self.resampler(wave)
        self.samples_in += len(wave)
        return self._consume(self.fbank.accept_waveform(wave), final=False)

    def finish(self) -> Hypothesis:
        """No more audio: encode what is left (a last, shorter chunk), then the second pass ->
        the final hypothesis (text, token_ids, tokens, scores). Calling it again returns it again."""
        if self.result is not None:
            return self.result
        if self.resampler is not None:
            tail = self.resampler(np.zeros(0, dtype=np.float32), last=True)
            self.samples_in += len(tail)
            self._consume(self.fbank.accept_waveform(tail), final=False)
        padding = self.rec.tail_padded(np.zeros(0, dtype=np.float32))  # as the offline path pads
        if len(padding):
            self._consume(self.fbank.accept_waveform(padding), final=False)
        self._consume(self.fbank.input_finished(), final=True)
        self.result = self._final()
        return self.result

    # ---------------------------------------------------------------------------- decoding
    @property
    def partial(self) -> Hypothesis:
        """The best CTC prefix so far (text and tokens filled in)."""
        return self._spell(self.search.nbest(1)[0])

    @property
    def duration_s(self) -> float:
        return self.samples_in / self.rec.sample_rate

    def _consume(self, frames: np.ndarray, final: bool) -> List[ChunkResult]:
        """Encode every complete chunk window in pending + frames (and at the end the shorter
        rest, if it still makes an encoder frame), as `forward_chunk_by_chunk` cuts the whole."""
        self.pending = np.concatenate([self.pending, frames]) if len(frames) else self.pending
        done = []
        right_context = self.model.encoder.embed.right_context
        while len(self.pending) >= self.streamer.window or (final and len(self.pending) > right_context):
            done.append(self._encode_chunk(self.pending[: self.streamer.window]))
            self.pending = self.pending[self.streamer.stride:]
            self.fbank_frames_consumed += self.streamer.stride
        return done

    @torch.inference_mode()
    def _encode_chunk(self, frames: np.ndarray) -> ChunkResult:
        started = time.perf_counter()
        x = torch.as_tensor(frames, device=self.rec.device).unsqueeze(0)
        enc, self.cache = self.model.encoder.forward_chunk(self.model.cmvn(x), self.cache,
                                                           self.streamer.max_cache_frames)
        self.encoder_out.append(enc)
        self.search.advance(self.model.ctc.log_softmax(enc)[0].cpu())
        best = self.partial
        conf = self.rec.fbank.conf
        last_frame = self.fbank_frames_consumed + len(frames) - 1
        audio_end_s = (last_frame * conf["frame_shift_ms"] + conf["frame_length_ms"]) / 1000.0
        chunk = ChunkResult(len(self.chunks), round(audio_end_s, 4), self.cache.offset,
                            time.perf_counter() - started, best.text, list(best.token_ids))
        self.chunks.append(chunk)
        return chunk

    @torch.inference_mode()
    def _final(self) -> Hypothesis:
        conf, model = self.rec.decode_conf, self.model
        if not self.encoder_out:
            return self._spell(empty_hypothesis())
        nbest = self.search.nbest(conf.beam_size)
        if not self.streamer.rescoring:
            return self.rec.finish_nbest(nbest)[0]
        enc = torch.cat(self.encoder_out, dim=1)  # (1, T', D): the whole utterance, for the decoder
        lengths = torch.tensor([enc.size(1)], device=enc.device)
        mask = torch.ones(1, 1, enc.size(1), dtype=torch.bool, device=enc.device)
        lm = getattr(self.rec, "lm", None)
        lm_weight = conf.lm_weight if lm is not None else 0.0
        lm_fn = None
        if lm_weight:
            from asrdemo.decode.lm_scorer import lm_sequence_logp

            lm_fn = lambda seqs: lm_sequence_logp(lm, seqs)  # noqa: E731
        rescored = attention_rescoring([nbest], lengths, teacher_forced_scorer(model.decoder, enc, mask),
                                       sos=model.sos, eos=model.eos, ctc_weight=conf.ctc_weight,
                                       penalty=conf.penalty, lm_fn=lm_fn, lm_weight=lm_weight)
        return self.rec.finish_nbest(rescored[0])[0]

    def _spell(self, hyp: Hypothesis) -> Hypothesis:
        return spell_nbest([hyp], self.rec.token_list)[0]  # a partial: spelled, not ranked

    # ---------------------------------------------------------------------------- timing
    def first_emission_chunks(self, token_ids: Optional[List[int]] = None) -> List[Optional[int]]:
        """For each token of ``token_ids`` (default: the final result's), the index of the first
        chunk whose partial transcript showed it: aligned to the final's beginning it is closest
        to (Levenshtein, as the CER aligns; ``align(prefix=True)``), the partial has it as a match.
        So one early error in the partial text does not hide the later tokens, and a partial's
        。 is not taken for the final's last one. None for a token no partial ever showed (the
        second pass can add or change tokens)."""
        from asrdemo.score import align

        ids = list(self.result.token_ids if token_ids is None else token_ids)
        first: List[Optional[int]] = [None] * len(ids)
        for chunk in self.chunks:
            k = 0  # position in ids
            for op in align(ids, chunk.token_ids, prefix=True).ops:
                if op == "C" and first[k] is None:
                    first[k] = chunk.index
                k += op != "I"
        return first

    def first_emission_s(self, token_ids: Optional[List[int]] = None) -> List[Optional[float]]:
        """`first_emission_chunks` as the end of the audio those chunks had heard (s)."""
        return [None if i is None else self.chunks[i].audio_end_s for i in self.first_emission_chunks(token_ids)]


def recognize_streaming(streamer: StreamingRecognizer, wave: np.ndarray, sample_rate: int,
                        piece_s: Optional[float] = None) -> StreamingSession:
    """Stream a whole wave through a new session in pieces of ``piece_s`` seconds (None: one
    piece) and finish it -> the finished session (``.result``, ``.chunks``)."""
    session = streamer.session()
    wave = np.asarray(wave)
    step = len(wave) if not piece_s else max(1, int(round(piece_s * sample_rate)))
    for start in range(0, len(wave), max(step, 1)):
        session.accept_waveform(wave[start:start + step], sample_rate)
    session.finish()
    return session
