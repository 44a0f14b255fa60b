"""Live transcription over a WebSocket: GET /api/stream?sample_rate=48000 (flask-sock, which
runs under gunicorn's threaded worker: one request thread per open stream).

The protocol (docs/demo.md), JSON text messages from the server, one line each:

    server: {"type": "ready", "chunk_s", "streaming_model", "max_seconds", "idle_s", ...}
    client: binary messages, mono 16-bit little-endian PCM at sample_rate, any sizes
    server: {"type": "partial", "text", "chunk", "audio_s", "compute_s"} after each encoder chunk
    client: {"type": "end"}
    server: {"type": "final", "text", "tokens", "duration_s", "finish_s", "truncated", ...}; closes

Anything wrong ends the stream with {"type": "error", "code", "error"} and a close: no model
(`no_model`), a model that cannot stream (`not_streamable`: an SSL frontend), no free slot
(`busy`, at most ASRDEMO_MAX_STREAMS per worker), a bad sample rate or
message (`bad_request`), silence for ASRDEMO_STREAM_IDLE_S (`idle_timeout`). Audio past
ASRDEMO_MAX_SECONDS is not decoded: the stream ends there with its final ("truncated": true).

Memory per stream is bounded by the audio limit: the session keeps no audio, only fbank frames
awaiting their chunk (< one chunk), the encoder output (frames x D) for the second pass and the
attention caches (layers x 2 x frames x D), e.g. ~20 MB for 30 s with 12 layers of 256.
"""

import json
import logging
import threading
import time

import numpy as np
from flask import Flask, current_app, request
from flask_sock import ConnectionClosed, Sock

log = logging.getLogger(__name__)

MIN_RATE, MAX_RATE = 8000, 192000
MAX_MESSAGE_BYTES = 1 << 20  # one message: ~11 s of 48 kHz 16-bit audio; a browser sends ~40 ms
PING_S = 10


class StreamError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def register_stream(app: Flask) -> None:
    """Add /api/stream to the app, with its own count of open streams."""
    # pings: a connection whose client has gone silently (no pong) ends within 2 x PING_S, and with
    # it simple-websocket's reader thread, which a worker waits for when it shuts down
    app.config.setdefault("SOCK_SERVER_OPTIONS", {"max_message_size": MAX_MESSAGE_BYTES, "ping_interval": PING_S})
    app.extensions["asrdemo.streams"] = threading.BoundedSemaphore(max(app.extensions["asrdemo"].settings.max_streams, 1))
    Sock(app).route("/api/stream")(_stream)


def _send(ws, **message) -> None:
    ws.send(json.dumps(message, ensure_ascii=False))


def _stream(ws):
    demo = current_app.extensions["asrdemo"]
    slots = current_app.extensions["asrdemo.streams"]
    try:
        if not demo.loaded:
            raise StreamError("no_model", demo.problem)
        if demo.recognizer.model.frontend is not None:
            from asrdemo.decode.streaming import STREAMING_NEEDS_FBANK

            raise StreamError("not_streamable", STREAMING_NEEDS_FBANK)
        if demo.settings.max_streams == 0:
            raise StreamError("busy", "live transcription is turned off on this server (ASRDEMO_MAX_STREAMS=0)")
        sample_rate = _sample_rate(request.args.get("sample_rate", ""))
        if not slots.acquire(blocking=False):
            raise StreamError("busy", f"this server already runs {demo.settings.max_streams} live transcription(s); "
                                      "try again in a moment, or record and send the clip")
        try:
            final = _run_session(ws, demo, sample_rate)
        finally:
            slots.release()  # before the final goes out: a client may start its next stream on it
        _send(ws, **final)
    except StreamError as e:
        log.info("stream refused or ended: %s (%s)", e.code, e.message)
        _send_error(ws, e.code, e.message)
    except ConnectionClosed:
        log.info("stream closed by the client before its end")
    except Exception as e:  # a failure of this stream must not take the worker down
        log.exception("stream failed")
        _send_error(ws, "internal_error", f"the server failed on this stream ({type(e).__name__})")


def _send_error(ws, code: str, message: str) -> None:
    try:
        _send(ws, type="error", code=code, error=message)
    except ConnectionClosed:  # the client is gone: nobody to tell
        pass


def _sample_rate(text: str) -> int:
    try:
        rate = int(text)
    except ValueError:
        rate = 0
    if not MIN_RATE <= rate <= MAX_RATE:
        raise StreamError("bad_request", f"give the audio's sample rate as ?sample_rate=N, {MIN_RATE}..{MAX_RATE} Hz "
                                         f"(got {text!r})")
    return rate


def _run_session(ws, demo, sample_rate: int) -> dict:
    """Ready, then audio in and partials out until "end" or the audio limit -> the final message."""
    from asrdemo.decode.streaming import StreamingRecognizer  # torch: loaded with the model, not the app

    settings = demo.settings
    streamer = StreamingRecognizer(demo.recognizer, settings.stream_chunk)
    session = streamer.session()
    _send(ws, type="ready", sample_rate_in=sample_rate, chunk_size=streamer.chunk_size,
          chunk_s=round(streamer.chunk_seconds, 4), streaming_model=streamer.model_is_streaming,
          max_seconds=settings.max_seconds, idle_s=settings.stream_idle_s)
    max_samples = int(settings.max_seconds * sample_rate)
    received, truncated = 0, False
    while True:
        message = ws.receive(timeout=settings.stream_idle_s)
        if message is None:
            raise StreamError("idle_timeout", f"no audio for {settings.stream_idle_s:g} s: stream closed")
        if isinstance(message, str):
            if _message_type(message) == "end":
                break
            raise StreamError("bad_request", 'text messages must be {"type": "end"}; audio goes in binary messages')
        if len(message) % 2:
            raise StreamError("bad_request", f"a binary message of {len(message)} bytes is not 16-bit PCM")
        pcm = np.frombuffer(message, dtype="<i2")[: max_samples - received]
        received += len(pcm)
        for chunk in session.accept_waveform(pcm, sample_rate):
            _send(ws, type="partial", text=chunk.text, chunk=chunk.index, audio_s=chunk.audio_end_s,
                  compute_s=round(chunk.compute_s, 4))
        if received >= max_samples:
            truncated = True
            break
    started = time.perf_counter()
    final = session.finish()
    return dict(type="final", text=final.text, tokens=final.tokens, token_ids=final.token_ids,
                duration_s=round(session.duration_s, 3), chunks=len(session.chunks),
                finish_s=round(time.perf_counter() - started, 4), truncated=truncated,
                streaming_model=streamer.model_is_streaming, first_emission_s=session.first_emission_s())


def _message_type(text: str):
    try:
        message = json.loads(text)
    except ValueError:
        return text.strip()
    return message.get("type") if isinstance(message, dict) else None
