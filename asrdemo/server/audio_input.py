"""Turning a request body into a waveform the recognizer can take — or a clear 4xx reason why not.

Everything happens in memory (`io.BytesIO`): nothing a client sends is written to disk. The bytes
are probed with `soundfile.info` first (format, channels, rate, length), so that an over-long or
unsupported file is refused before any sample is decoded; then `asrdemo.data.audio.load_audio`
(the project's one reader and resampler) decodes and resamples to the model's rate.

Each kind of bad input has its own status and `code`:

| input | status | code |
|---|---|---|
| no bytes | 400 | `empty_input` |
| not audio / a format other than wav, flac, ogg, mp3 (libsndfile), m4a, webm (PyAV) | 415 | `unsupported_format` |
| an audio header that cannot be parsed, or samples that cannot be decoded | 400 | `corrupt_audio` |
| a WAV whose data chunk ends early, an Ogg stream cut mid-page or without its last page, or fewer samples than the header announces | 400 | `truncated_audio` |
| a valid header and no samples | 400 | `no_samples` |
| longer than the configured maximum | 413 | `too_long` |
| valid audio that is silence to the model (DC-removed peak below -60 dBFS; `Recognizer.is_silent`, checked by the app) | 422 | `silent_audio` |

(An over-large body is refused by Flask before it reaches this module: 413 `too_large`.)
A WAV whose RIFF/data size fields are 0 or 0xFFFFFFFF (a streaming writer's "unknown") is read to
the end of the body, as `asrdemo.data.audio.load_audio` reads such a file.
"""

import dataclasses
import io
import struct

import numpy as np
import soundfile as sf

from asrdemo.data.audio import AudioError, load_audio, repair_wav_sizes
from asrdemo.errors import AsrdemoError

# soundfile's container name -> what we call it. Other formats libsndfile reads (AIFF, MP3, ...)
# are refused so that the demo promises only what it is tested with.
SUPPORTED_FORMATS = {"WAV": "wav", "WAVEX": "wav", "FLAC": "flac", "OGG": "ogg", "MP3": "mp3"}
# and, through PyAV when libsndfile does not recognise the data: m4a/mp4 (AAC), webm (Opus)
MAX_CHANNELS = 8
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 768000
LIMIT_GRACE_S = 0.1  # seconds accepted past max_seconds (block rounding of recorders)
_UNKNOWN_LENGTHS = (0, 0xFFFFFFFF)  # what streaming WAV writers put in a size field they cannot know


class BadAudio(AsrdemoError):
    """Input the client can fix; `status` is the HTTP status, `code` a stable machine-readable name."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclasses.dataclass
class DecodedAudio:
    wave: np.ndarray  # mono float32 at the target rate
    sample_rate: int  # the target (model's) rate
    sample_rate_in: int  # the file's own rate
    channels: int
    format: str  # "wav", "flac" or "ogg"
    subtype: str  # e.g. "PCM_16", "VORBIS"
    duration_s: float  # of the input, from its header


def probe(data: bytes) -> sf._SoundFileInfo:
    """`soundfile.info` of in-memory bytes, with libsndfile's failures sorted into 415 / 400."""
    if not data:
        raise BadAudio(400, "empty_input", "the request carried no audio data (0 bytes)")
    try:
        info = sf.info(io.BytesIO(data))
    except sf.LibsndfileError as e:
        reason = getattr(e, "error_string", str(e)).strip()
        if "not recognised" in reason.lower():
            raise BadAudio(415, "unsupported_format",
                           f"not an audio file this demo reads (send wav, flac, ogg, mp3, m4a or webm): {reason}") from None
        raise BadAudio(400, "corrupt_audio", f"the audio header cannot be parsed: {reason}") from None
    except RuntimeError as e:  # older soundfile raises RuntimeError
        raise BadAudio(400, "corrupt_audio", f"the audio header cannot be parsed: {e}") from None
    if info.format not in SUPPORTED_FORMATS:
        raise BadAudio(415, "unsupported_format",
                       f"{info.format_info or info.format} is not supported; send wav, flac, ogg, mp3, m4a or webm")
    return info


def check_wav_complete(data: bytes) -> None:
    """Raise `truncated_audio` if a RIFF/WAVE file's data chunk announces more bytes than arrived.

    libsndfile silently clamps such a file to what is there, so a cut-off upload would otherwise
    be recognized as if it were whole.
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return  # RIFX / WAVEX variants without a plain RIFF header: nothing we can check cheaply
    offset = 12
    while offset + 8 <= len(data):
        chunk_id, size = data[offset:offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        body = offset + 8
        if chunk_id == b"data":
            arrived = len(data) - body
            if size not in _UNKNOWN_LENGTHS and arrived < size:
                raise BadAudio(400, "truncated_audio",
                               f"the WAV file is truncated: its header announces {size} bytes of "
                               f"samples but only {arrived} arrived")
            return
        offset = body + size + (size & 1)  # chunks are padded to an even length


def check_ogg_complete(data: bytes) -> None:
    """Raise `truncated_audio` if an Ogg stream's last page is cut short or the stream never ends.

    Ogg declares no total length; instead every page states its own size and the last one carries
    the end-of-stream flag, which is what a cut-off upload lacks.
    """
    offset, last_flags = 0, None
    while offset < len(data):
        if data[offset:offset + 4] != b"OggS" or offset + 27 > len(data):
            raise BadAudio(400, "truncated_audio", f"the ogg file is truncated or damaged at byte {offset}")
        segments = data[offset + 26]
        table = data[offset + 27:offset + 27 + segments]
        end = offset + 27 + segments + sum(table)
        if len(table) < segments or end > len(data):
            raise BadAudio(400, "truncated_audio",
                           f"the ogg file is truncated: its last page needs {end - offset} bytes, "
                           f"{len(data) - offset} arrived")
        last_flags, offset = data[offset + 5], end
    if last_flags is not None and not last_flags & 0x04:
        raise BadAudio(400, "truncated_audio", "the ogg file is truncated: the stream has no end-of-stream page")


def decode_audio(data: bytes, target_sr: int, max_seconds: float) -> DecodedAudio:
    """Validate and decode one uploaded clip; raises `BadAudio` for every kind of bad input.

    m4a (AAC, phones) and webm (Opus, browsers' MediaRecorder), which libsndfile does not read, are
    decoded with PyAV under the same size and length limits (`_decode_other`).

    A WAV with unknown (0 / 0xFFFFFFFF) size fields, as streaming writers leave them, is taken to
    run to the end of the body (`repair_wav_sizes`) before it is probed."""
    data = repair_wav_sizes(data)
    try:
        info = probe(data)
    except BadAudio as e:
        if e.code != "unsupported_format" or not data:
            raise
        return _decode_other(data, target_sr, max_seconds, e)
    fmt = SUPPORTED_FORMATS[info.format]
    if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE:
        raise BadAudio(400, "corrupt_audio", f"implausible sample rate {info.samplerate} Hz in the header")
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise BadAudio(400, "corrupt_audio", f"{info.channels} channels; at most {MAX_CHANNELS} are accepted")
    if fmt == "wav":
        check_wav_complete(data)
    elif fmt == "ogg":
        check_ogg_complete(data)
    if info.frames <= 0:
        raise BadAudio(400, "no_samples",
                       f"the {fmt} file has a valid header but no audio samples (empty or truncated)")
    duration_s = info.frames / info.samplerate
    # a recorder that stops on a block boundary may run a block past the limit (2048 samples at
    # 44.1 kHz = 46 ms): that much more is accepted, so "at most 30 s" never refuses a 30.0 s clip
    if duration_s > max_seconds + LIMIT_GRACE_S:
        raise BadAudio(413, "too_long",
                       f"the audio is {duration_s:.1f} s long; this server accepts at most {max_seconds:g} s")
    try:
        wave, sample_rate_in = load_audio(data, target_sr)
    except AudioError as e:
        raise BadAudio(400, "corrupt_audio", f"the audio cannot be decoded (corrupt or truncated): {e}") from None
    expected = info.frames * target_sr / sample_rate_in
    if len(wave) < 0.99 * expected - 1:
        raise BadAudio(400, "truncated_audio",
                       f"the {fmt} file is truncated: its header announces {info.frames} samples, "
                       f"about {len(wave) * sample_rate_in / target_sr:.0f} could be decoded")
    if not np.all(np.isfinite(wave)):
        raise BadAudio(400, "corrupt_audio", "the audio contains NaN or infinite samples")
    # silence (422 silent_audio) is the recognizer's judgement, made by the app: Recognizer.is_silent
    return DecodedAudio(wave=wave, sample_rate=target_sr, sample_rate_in=int(sample_rate_in),
                        channels=int(info.channels), format=fmt, subtype=str(info.subtype),
                        duration_s=float(duration_s))


def _decode_other(data: bytes, target_sr: int, max_seconds: float, refused: BadAudio) -> DecodedAudio:
    """m4a / webm through PyAV, or `refused` (415) when it is none of them either."""
    from asrdemo.data.audio import AudioTooLong, decode_with_av, resample

    try:
        wave, rate, channels, fmt = decode_with_av(data, "the upload", max_seconds + LIMIT_GRACE_S)
    except AudioTooLong:
        raise BadAudio(413, "too_long", f"the audio is longer than this server's limit of {max_seconds:g} s") from None
    except AudioError as e:
        if "not wav, flac, ogg, mp3, m4a or webm" in str(e) or "PyAV" in str(e):
            raise BadAudio(415, "unsupported_format",
                           f"not an audio file this demo reads (send wav, flac, ogg, mp3, m4a or webm): "
                           f"{refused.message}") from None
        raise BadAudio(400, "corrupt_audio", f"the audio cannot be decoded (corrupt or truncated): {e}") from None
    if len(wave) == 0:
        raise BadAudio(400, "no_samples", f"the {fmt} file has no audio samples")
    if not np.all(np.isfinite(wave)):
        raise BadAudio(400, "corrupt_audio", "the audio contains NaN or infinite samples")
    return DecodedAudio(wave=resample(wave, rate, target_sr), sample_rate=target_sr, sample_rate_in=rate,
                        channels=channels, format=fmt, subtype={"m4a": "AAC", "webm": "OPUS"}.get(fmt, fmt.upper()),
                        duration_s=len(wave) / rate)
