"""How late the partial text is: for each character of a streamed utterance, when it was spoken
(its CTC forced alignment in a full-context decode, the reference) and when the partial text
first showed it (`StreamingSession.first_emission_s`).

Japanese has no spaces, so a "word" here is a token (a character): its latency is the time from
the end of its aligned span to the end of the audio the recognizer had heard when the partial
text first began with it, plus the compute time of that chunk (when a live stream shows it).
"""

import dataclasses
from typing import List, Optional

import numpy as np
import torch

from asrdemo.decode.alignment import AlignmentError, ctc_forced_align, encoder_frame_seconds, token_times


@dataclasses.dataclass
class TokenLatency:
    token: str
    start_s: float  # its span in the full-context CTC alignment
    end_s: float
    first_shown_s: Optional[float]  # the audio heard when a partial first showed it; None: none did
    compute_s: float = 0.0  # what that chunk took to compute: a live stream shows it this much later

    @property
    def latency_s(self) -> Optional[float]:
        """From the end of the token to its first partial, compute included (as heard live)."""
        return None if self.first_shown_s is None else self.first_shown_s + self.compute_s - self.end_s


@torch.inference_mode()
def token_latencies(session, wave: np.ndarray) -> List[TokenLatency]:
    """A finished `StreamingSession` and the wave it heard (float mono at the model's rate) ->
    one TokenLatency per token of its final result ([] for an empty result, or when the full-context
    CTC cannot align it)."""
    rec, hyp = session.rec, session.result
    if hyp is None or not hyp.token_ids:
        return []
    feats = torch.as_tensor(rec.fbank(wave), device=rec.device).unsqueeze(0)
    enc, _ = rec.model.encode(feats, torch.tensor([feats.size(1)], device=rec.device), decoding_chunk_size=-1)
    try:
        alignment = ctc_forced_align(rec.model.ctc.log_softmax(enc)[0].float().cpu(), hyp.token_ids,
                                     rec.model.blank_id)
    except AlignmentError:
        return []
    frame_s = encoder_frame_seconds(rec.model.subsampling_rate, rec.fbank.frame_shift_s)
    times = token_times(alignment, rec.token_list.tokens, frame_s, len(wave) / rec.sample_rate)
    chunks = session.chunks
    return [TokenLatency(t.token, t.start_s, t.end_s, None if i is None else chunks[i].audio_end_s,
                         0.0 if i is None else chunks[i].compute_s)
            for t, i in zip(times, session.first_emission_chunks())]
