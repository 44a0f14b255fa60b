"""Reading audio: any file soundfile reads (wav, flac, ogg, mp3), any rate, mono or multi-channel;
and, through PyAV (FFmpeg), what libsndfile does not read but people have: m4a/mp4 (AAC, what
phones record) and webm (Opus, what browsers' MediaRecorder makes).

This is the only place in the project that resamples (soxr, very high quality): the feature stage,
the recognizer and the demo server all come through `load_audio` (or `resample`); a stream of
pieces through `StreamResampler`, which gives the same samples.
"""

import io
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from asrdemo.errors import AsrdemoError


class AudioError(AsrdemoError):
    pass


def to_mono(wave: np.ndarray) -> np.ndarray:
    """(N,) or (N, C) -> (N,) float32, averaging channels."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    elif wave.ndim != 1:
        raise AudioError(f"audio must be (samples,) or (samples, channels), got shape {wave.shape}")
    return wave


def resample(wave: np.ndarray, sample_rate: int, target_sr: int) -> np.ndarray:
    wave = to_mono(wave)
    if sample_rate == target_sr or len(wave) == 0:
        return wave
    if sample_rate <= 0:
        raise AudioError(f"bad sample rate {sample_rate}")
    return soxr.resample(wave, sample_rate, target_sr, quality="VHQ").astype(np.float32, copy=False)


class StreamResampler:
    """Resample a stream of pieces: ``(piece, last)`` -> the samples ready so far, float32 mono at
    ``target_sr``. All pieces together give exactly ``resample`` of the whole (soxr's stream API,
    same quality); soxr holds back a few ms until more input or ``last=True`` arrives.

    Pieces are (N,) or (N, C) float in [-1, 1] or int PCM (scaled by the int type's range)."""

    def __init__(self, sample_rate: int, target_sr: int):
        if sample_rate <= 0:
            raise AudioError(f"bad sample rate {sample_rate}")
        self.sample_rate, self.target_sr = int(sample_rate), int(target_sr)
        self._stream = (None if self.sample_rate == self.target_sr else
                        soxr.ResampleStream(self.sample_rate, self.target_sr, 1, dtype="float32", quality="VHQ"))

    def __call__(self, piece: np.ndarray, last: bool = False) -> np.ndarray:
        piece = np.asarray(piece)
        if np.issubdtype(piece.dtype, np.integer):  # int PCM, e.g. int16 from a browser
            piece = piece.astype(np.float32) / float(np.iinfo(piece.dtype).max + 1)
        piece = to_mono(piece)
        if self._stream is None:
            return piece
        return self._stream.resample_chunk(piece, last=last).astype(np.float32, copy=False)


def _describe(src) -> str:
    return str(src) if isinstance(src, (str, Path)) else "<audio data>"


# What streaming WAV writers (a recorder that cannot seek back, `sox ... -t wav -`, ffmpeg to a
# pipe) leave in the RIFF and data size fields: they did not know the length when they wrote them.
UNKNOWN_WAV_SIZES = (0, 0xFFFFFFFF)


def repair_wav_sizes(data: bytes) -> bytes:
    """A RIFF/WAVE file whose RIFF or data chunk size is 0 or 0xFFFFFFFF -> the same bytes with the
    sizes of what is actually there, so the samples up to the end of the file are read (libsndfile
    reads none for a data size of 0). Anything else, a correct WAV included, is returned as it is."""
    if len(data) < 20 or data[:4] != b"RIFF" or data[8:12] != b"WAVE" or len(data) - 8 > 0xFFFFFFFE:
        return data
    riff_unknown = struct.unpack_from("<I", data, 4)[0] in UNKNOWN_WAV_SIZES
    offset = 12
    while offset + 8 <= len(data):
        chunk_id, size = data[offset:offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        if chunk_id == b"data":
            if size in UNKNOWN_WAV_SIZES and len(data) > offset + 8:
                fixed = bytearray(data)
                struct.pack_into("<I", fixed, offset + 4, len(data) - offset - 8)  # to the end of the file
                struct.pack_into("<I", fixed, 4, len(data) - 8)
                return bytes(fixed)
            break
        offset += 8 + size + (size & 1)  # chunks are padded to an even length
    if riff_unknown:
        fixed = bytearray(data)
        struct.pack_into("<I", fixed, 4, len(data) - 8)
        return bytes(fixed)
    return data


def _repaired(src):
    """`src` (path or bytes), as a file object of repaired bytes if it is a WAV with unknown sizes."""
    if isinstance(src, (str, Path)):
        with open(src, "rb") as f:
            head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return src
        data = Path(src).read_bytes()
    else:
        data = bytes(src)
    fixed = repair_wav_sizes(data)
    if fixed is data and isinstance(src, (str, Path)):
        return src
    return io.BytesIO(fixed)


class AudioTooLong(AudioError):
    """Decoding stopped at the caller's length limit; `seconds` is how far it got."""

    def __init__(self, message, seconds):
        super().__init__(message)
        self.seconds = seconds


# FFmpeg's demuxer names -> what we call the format
AV_FORMATS = {"mov": "m4a", "mp4": "m4a", "m4a": "m4a", "matroska": "webm", "webm": "webm", "aac": "aac"}


def av_format(name: str):
    """FFmpeg's demuxer name (e.g. "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm") -> "m4a" / "webm" / "aac", or None."""
    for part in name.split(","):
        if part in AV_FORMATS:
            return AV_FORMATS[part]
    return None


def decode_with_av(data: bytes, name: str = "<audio data>", max_seconds=None):
    """m4a/mp4 (AAC), webm (Opus) or raw AAC bytes -> (mono float32 wave, rate, channels, format).

    Decoded with PyAV (FFmpeg), mixed to mono by FFmpeg's resampler at the stream's own rate.
    Raises AudioError when PyAV is missing, the data is none of these formats or cannot be decoded,
    and AudioTooLong as soon as more than `max_seconds` have been decoded (containers from
    MediaRecorder often carry no duration, so the limit is enforced while decoding)."""
    try:
        import av
    except ImportError:
        raise AudioError(f"{name}: not a format libsndfile reads, and PyAV (pip install av) is not installed "
                         "for m4a/webm") from None
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, ValueError) as e:  # FFmpeg knows no container in these bytes
        raise AudioError(f"{name}: cannot read audio: not wav, flac, ogg, mp3, m4a or webm ({e})") from None
    try:
        with container:
            fmt = av_format(container.format.name)
            stream = next((st for st in container.streams if st.type == "audio"), None)
            if fmt is None or stream is None:
                raise AudioError(f"{name}: cannot read audio: not wav, flac, ogg, mp3, m4a or webm "
                                 f"({container.format.name}{'' if stream else ', no audio stream'})")
            sr, channels = int(stream.codec_context.sample_rate), int(stream.codec_context.channels)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
            chunks, total = [], 0
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += len(chunk)
                if max_seconds is not None and total > max_seconds * sr:
                    raise AudioTooLong(f"{name}: longer than {max_seconds:g} s", total / sr)
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except AudioError:
        raise
    except (av.error.FFmpegError, ValueError, IndexError, RuntimeError) as e:
        raise AudioError(f"{name}: cannot read audio ({e})") from None
    wave = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    return wave, sr, channels, fmt


def load_audio(src, target_sr=None):
    """Read `src` (a path, bytes, or a binary file object) -> (mono float32 wave in [-1, 1], original rate).

    wav, flac, ogg (Vorbis/Opus) and mp3 through libsndfile; m4a/mp4 (AAC) and webm (Opus) through PyAV.

    A WAV whose size fields are 0 or 0xFFFFFFFF (written while streaming) is read to the end of the file.

    With `target_sr`, the wave is resampled to it. Raises `AudioError` with the file name when the
    data is not audio soundfile can read, or is empty.
    """
    name = _describe(src)
    if isinstance(src, (str, Path)) and not Path(src).is_file():
        raise AudioError(f"{src}: no such file")
    if isinstance(src, (str, Path, bytes, bytearray, memoryview)):
        src = _repaired(src)  # a streamed WAV's zero sizes: read to the end of the file
    try:
        wave, sr = sf.read(src, dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        if "not recognised" not in str(e).lower():
            raise AudioError(f"{name}: cannot read audio ({e})") from None
        # not a format libsndfile knows: m4a (AAC) and webm (Opus) through FFmpeg
        if isinstance(src, (str, Path)):
            data = Path(src).read_bytes()
        else:
            src.seek(0)
            data = src.read()
        wave, sr, _, _ = decode_with_av(data, name)
    if wave.size == 0:
        raise AudioError(f"{name}: no samples")
    wave = to_mono(wave)
    if target_sr is not None:
        wave = resample(wave, sr, target_sr)
    return wave, sr
