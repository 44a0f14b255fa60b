"""Live transcription over the WebSocket /api/stream of a real gunicorn (the Dockerfile's command):
partial text while the audio is still coming, a final equal to what the upload path answers,
four streams at once on one worker, and clear refusals of bad input."""

import json
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from asrdemo.data.datadir import read_data_dir
from demo_fixture import GunicornServer, StreamClient, post_file

PIECE_S = 0.04  # what a browser's recorder sends at a time


@pytest.fixture(scope="module")
def server(trained_streaming_exp, tmp_path_factory):
    env = {"ASRDEMO_WORKERS": "1", "ASRDEMO_THREADS": "6", "ASRDEMO_MAX_STREAMS": "4",
           "ASRDEMO_STREAM_IDLE_S": "4", "ASRDEMO_STREAM_CHUNK": "4", "ASRDEMO_MAX_SECONDS": "6"}
    log = tmp_path_factory.mktemp("stream_server") / "gunicorn.log"
    with GunicornServer(trained_streaming_exp, log, env=env) as srv:
        yield srv


@pytest.fixture(scope="module")
def utterances(tiny_work):
    return read_data_dir(tiny_work / "data" / "train")[:4]


def connect(server, query="?sample_rate=48000"):
    return StreamClient(server.url, query)


def receive(ws, timeout=60):
    message = ws.receive(timeout)
    assert message is not None, "no message from the server"
    return message


def stream_file(server, path, realtime=False):
    """Send a file as a browser would (16-bit pieces of 40 ms, then "end") -> (ready, partials
    received before "end" was sent, all partials, final)."""
    wave, sr = sf.read(path, dtype="int16")
    ws = connect(server, f"?sample_rate={sr}")
    try:
        ready = receive(ws)
        assert ready["type"] == "ready", ready
        partials, before_end = [], 0
        step = int(PIECE_S * sr)
        for start in range(0, len(wave), step):
            ws.send(wave[start:start + step].astype("<i2").tobytes())
            if realtime:
                time.sleep(PIECE_S)
            while (message := ws.receive(0)) is not None:
                partials.append(message)
        before_end = len(partials)
        ws.send(json.dumps({"type": "end"}))
        while (message := receive(ws))["type"] == "partial":
            partials.append(message)
        return ready, partials[:before_end], partials, message
    finally:
        ws.close()


def test_partial_text_while_speaking_and_the_final_of_the_upload_path(server, utterances):
    utt = utterances[0]
    ready, early, partials, final = stream_file(server, utt.wav, realtime=True)
    assert ready["streaming_model"] is True and ready["chunk_size"] == 4
    assert final["type"] == "final", final
    assert all(p["type"] == "partial" for p in partials)
    assert [p["chunk"] for p in partials] == list(range(len(partials)))
    assert any(p["text"] for p in early), early  # words shown while the audio still came in
    status, uploaded = post_file(server.url, open(utt.wav, "rb").read(), "clip.wav")
    assert status == 200, uploaded
    assert final["text"] == uploaded["text"] == utt.text
    assert abs(final["duration_s"] - uploaded["duration_s"]) < 0.01
    assert final["truncated"] is False and final["tokens"] and len(final["first_emission_s"]) == len(final["tokens"])


def test_four_streams_at_once_on_one_worker_and_a_fifth_is_told_to_wait(server, utterances):
    results, errors = {}, []

    def run(i):
        try:
            results[i] = stream_file(server, utterances[i].wav, realtime=True)[3]
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    fifth = connect(server)
    try:
        refused = receive(fifth)
    finally:
        fifth.close()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert refused["type"] == "error" and refused["code"] == "busy", refused
    # no cross-talk: each of the four answers what the same file streamed alone answers (the tiny
    # model need not read all four perfectly: its weights move with any change of rounding)
    alone = [stream_file(server, u.wav)[3]["text"] for u in utterances[:4]]
    assert [results[i]["text"] for i in range(4)] == alone
    assert all(alone) and alone[0] == utterances[0].text


@pytest.mark.parametrize("query,send,code", [
    ("", None, "bad_request"),                       # no sample rate
    ("?sample_rate=100", None, "bad_request"),
    ("?sample_rate=16000", b"\x00\x01\x02", "bad_request"),  # not 16-bit PCM
    ("?sample_rate=16000", "hello", "bad_request"),  # a text message other than "end"
    ("?sample_rate=16000", b"", "idle_timeout"),     # then nothing for ASRDEMO_STREAM_IDLE_S
])
def test_bad_input_is_refused_clearly(server, query, send, code):
    ws = connect(server, query)
    try:
        first = receive(ws)
        if first["type"] == "ready":
            if send:
                ws.send(send)
            first = receive(ws)
        assert first["type"] == "error" and first["code"] == code, first
        assert first["error"]
    finally:
        ws.close()
    assert http_ok(server)  # the worker serves on


def test_audio_past_the_limit_ends_the_stream_with_its_final(server):
    ws = connect(server, "?sample_rate=16000")
    try:
        assert receive(ws)["type"] == "ready"
        noise = (np.random.default_rng(0).standard_normal(16000) * 3000).astype("<i2").tobytes()
        final = None
        for _ in range(10):  # 10 s, past ASRDEMO_MAX_SECONDS=6
            ws.send(noise)
            while (message := ws.receive(0)) is not None:
                if message["type"] == "final":
                    final = message
            if final:
                break
        while final is None:
            message = receive(ws)
            final = message if message["type"] == "final" else None
        assert final["truncated"] is True and final["duration_s"] == pytest.approx(6.0, abs=0.05)
    finally:
        ws.close()


def http_ok(server) -> bool:
    from demo_fixture import http_json

    return http_json("GET", f"{server.url}/healthz")[0] == 200
