"""The demo as it runs in production: the Dockerfile's CMD (gunicorn) on 127.0.0.1, real HTTP.

Also `asrdemo serve` (the development server) and a bounded load test: concurrent clients, no
errors, worker memory stable.
"""

import concurrent.futures
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demo_fixture import (REPO, GunicornServer, assert_token_times, audio_bytes, demo_exp, docker_cmd, free_port, http,
                          http_json, multipart, post_file, proc_status_kb, speechlike)

WORKERS, THREADS = 2, 2
LOAD_CLIENTS, LOAD_REQUESTS = 4, 24


def artifacts_dir() -> Path:
    path = Path(os.environ.get("ASRDEMO_TEST_ARTIFACTS", "/tmp/asrdemo-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    return demo_exp(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def tmpdir_of_server(tmp_path_factory):
    return tmp_path_factory.mktemp("server_tmp")


@pytest.fixture(scope="module")
def server(exp, tmpdir_of_server):
    env = {"ASRDEMO_WORKERS": str(WORKERS), "ASRDEMO_THREADS": str(THREADS), "ASRDEMO_MAX_UPLOAD_MB": "1",
           "ASRDEMO_MAX_SECONDS": "5", "TMPDIR": str(tmpdir_of_server)}
    with GunicornServer(exp.path, artifacts_dir() / "gunicorn.log", env=env) as srv:
        yield srv


def clip(seconds=1.0, rate=16000, seed=0):
    return audio_bytes(speechlike(seconds, rate, seed=seed), rate, subtype="PCM_16")


def test_the_container_command_is_gunicorn_with_our_config():
    cmd = docker_cmd()
    assert cmd == ["gunicorn", "--config", "gunicorn.conf.py", "asrdemo.server:create_app()"]


def test_each_worker_loads_the_model_once(server):
    assert len(server.worker_pids()) == WORKERS
    status, info = http_json("GET", f"{server.url}/api/model")
    assert status == 200 and info["limits"]["workers"] == WORKERS and info["limits"]["threads"] == THREADS
    loads = [line for line in server.log_tail(10**7).splitlines() if GunicornServer.READY in line]
    assert len(loads) == WORKERS, loads
    assert {int(line.split("[")[1].split("]")[0]) for line in loads} == set(server.worker_pids())


def test_recognize_and_bad_inputs_over_http(server, exp):
    status, body = post_file(server.url, clip(1.5, 44100), "a.wav")
    assert status == 200, body
    assert body["duration_s"] == 1.5 and body["sample_rate_in"] == 44100
    assert body["spectrogram"].startswith("data:image/png;base64,")
    if exp.trained:
        assert body["text"].strip()
    assert_token_times(body)
    assert "alignment" not in body
    status, raw = http_json("POST", f"{server.url}/api/recognize?details=1", clip(), "audio/wav")
    assert status == 200 and raw["duration_s"] == 1.0
    assert_token_times(raw)
    frames = raw["alignment"]["num_frames"]
    assert frames > 0 and len(raw["alignment"]["posteriorgram"]["greedy_path"]) == frames
    assert len(raw["alignment"]["attention"]["weights"]) == len(raw["tokens"]) + 1
    for data, expected_status, code in [
        (b"", 400, "empty_input"),
        (b"GIF89a" + bytes(2000), 415, "unsupported_format"),
        (clip()[:9000], 400, "truncated_audio"),
        (audio_bytes(speechlike(6.0, 8000), 8000), 413, "too_long"),
        (bytes(44) + bytes(2_000_000), 413, "too_large"),
    ]:
        status, body = post_file(server.url, data)
        assert (status, body.get("code")) == (expected_status, code), body
    status, body = post_file(server.url, clip())
    assert status == 200, body


def chunked_post(url, data: bytes, path="/api/recognize", content_type="audio/wav", chunk=64 * 1024):
    """POST `data` with Transfer-Encoding: chunked (no Content-Length), as curl does for a pipe."""
    import http.client
    import json
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        conn.request("POST", path, body=(data[i:i + chunk] for i in range(0, len(data), chunk)),
                     headers={"Content-Type": content_type}, encode_chunked=True)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_chunked_uploads_over_the_limit_get_413(server):
    """Issue 12, item 5: a chunked body over the limit (1 MB here) is 413, not cut and decoded."""
    import struct

    big = clip(5.0, 48000)  # 480 kB of 16-bit samples ...
    big = big + bytes(1_200_000 - len(big))  # ... padded past 1 MB
    streamed = bytearray(big)  # and with a streaming writer's unknown sizes, which were decoded cut
    struct.pack_into("<I", streamed, 4, 0xFFFFFFFF)
    struct.pack_into("<I", streamed, 40, 0xFFFFFFFF)
    for data in (big, bytes(streamed)):
        status, body = chunked_post(server.url, data)
        assert (status, body.get("code")) == (413, "too_large"), body
    status, body = chunked_post(server.url, clip(1.0))  # under the limit, chunked: decoded
    assert status == 200 and body["duration_s"] == 1.0, body
    body_parts, ctype = multipart({}, {"file": ("big.wav", big)})
    status, body = chunked_post(server.url, body_parts, content_type=ctype)
    assert (status, body.get("code")) == (413, "too_large"), body


def test_bounded_load_no_errors_memory_stable(server):
    """LOAD_CLIENTS concurrent clients send LOAD_REQUESTS requests in all, twice; every one is
    answered 200 and the workers' resident memory does not keep growing between the rounds."""
    clips = [clip(1.0 + 0.5 * (i % 3), 16000, seed=i) for i in range(LOAD_CLIENTS)]

    def one(i):
        status, body = post_file(server.url, clips[i % len(clips)], timeout=120)
        return status, body.get("code")

    rss_after = []
    for _ in range(2):
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(LOAD_CLIENTS) as pool:
            results = list(pool.map(one, range(LOAD_REQUESTS)))
        assert results == [(200, None)] * LOAD_REQUESTS
        assert time.perf_counter() - started < 120
        rss_after.append({pid: proc_status_kb(pid, "VmRSS") for pid in server.worker_pids()})
    first, second = rss_after
    assert set(first) == set(second), "a worker was restarted under load"
    for pid in first:
        growth_mb = (second[pid] - first[pid]) / 1024
        assert growth_mb < 25, f"worker {pid} grew by {growth_mb:.1f} MB in the second round"
    (artifacts_dir() / "load_rss_kb.txt").write_text(f"{first}\n{second}\n")


def test_nothing_written_to_tmpdir(server, tmpdir_of_server):
    assert post_file(server.url, audio_bytes(speechlike(4.5, 48000, 2), 48000, subtype="PCM_16"))[0] == 200
    assert list(Path(tmpdir_of_server).iterdir()) == []


def test_serve_subcommand_honours_port(exp):
    port = free_port()
    env = {**os.environ, "PORT": str(port), "ASRDEMO_TORCH_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "asrdemo", "serve", "--exp_dir", str(exp.path)], cwd=REPO,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode(errors="replace")
            try:
                status, health = http_json("GET", f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "asrdemo serve did not answer in 60 s"
                time.sleep(0.3)
        assert status == 200 and health["model_loaded"] is True
        status, _, page = http("GET", f"http://127.0.0.1:{port}/")
        assert status == 200 and "日本語音声認識" in page.decode()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
