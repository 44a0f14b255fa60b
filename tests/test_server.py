"""The demo's Flask app through its test client: every endpoint, every kind of bad input, no model.

The model is a tiny random one (tests/demo_fixture.py) unless ASRDEMO_TEST_EXP names a trained one.
"""

import base64
import contextlib
import io
import json
import os
import re
import sys
import threading

import numpy as np
import pytest
import torch
import yaml
from matplotlib.image import imread

from asrdemo import score
from asrdemo.data.audio import load_audio
from asrdemo.errors import AsrdemoError
from asrdemo.server import create_app
from asrdemo.server.settings import SAMPLE_REFERENCE, DemoSettings
from asrdemo.server.spectrogram import spectrogram_png
from demo_fixture import assert_token_times, audio_bytes, demo_exp, multipart, sample_wav, speechlike

torch.set_num_threads(1)

MAX_MB, MAX_S = 1, 5.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    return demo_exp(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return sample_wav(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def app(exp, sample):
    settings = DemoSettings(exp_dir=exp.path, sample_wav=sample, max_upload_mb=MAX_MB, max_seconds=MAX_S,
                            torch_threads=1)
    return create_app(settings=settings)


@pytest.fixture()
def client(app):
    return app.test_client()


def post_file(client, data, filename="clip.wav", query="", **fields):
    body, content_type = multipart(fields, {"file": (filename, data)})
    return client.post("/api/recognize" + query, data=body, content_type=content_type)


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["code"] == code, body
    assert isinstance(body["error"], str) and len(body["error"]) > 10, body
    return body


# -- the model and the page ----------------------------------------------------------------------


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "model_loaded": True}


def test_model_info_describes_the_exp_dir(client, exp):
    from asrdemo.model.asr_model import ASRModel

    info = client.get("/api/model").get_json()
    config = yaml.safe_load((exp.path / "config.yaml").read_text(encoding="utf-8"))
    tokens = (exp.path / config["token_list"]).read_text(encoding="utf-8").splitlines()
    rebuilt = ASRModel.from_config(config["model"], 80, len(tokens))
    assert info["num_params"] == sum(p.numel() for p in rebuilt.parameters())
    assert info["tokens"] == tokens and info["vocab_size"] == len(tokens)
    assert info["architecture"]["encoder"] == config["model"]["encoder"]
    assert info["config"] == config
    assert info["sample_rate"] == 16000 and info["frontend"]["num_mel_bins"] == 80
    assert info["limits"]["max_upload_mb"] == MAX_MB and info["limits"]["max_seconds"] == MAX_S
    assert info["curves"] == ["loss.png", "acc.png", "error.png"]
    if not exp.trained:
        assert info["test_cer"]["cer"] == 87.5 and info["test_cer"]["source"] == "cer.txt"


def test_page_has_every_part_and_no_external_resource(client):
    html = client.get("/").get_data(as_text=True)
    for needle in ("日本語音声認識", "Japanese speech recognition", 'id="file-input"', 'id="send-button"',
                   'id="sample-button"', 'id="record-button"', 'id="level-bar"', 'id="transcript"',
                   'id="spectrogram"', "images/loss.png", "images/acc.png", "images/error.png",
                   SAMPLE_REFERENCE, 'name="viewport"', 'id="char-track"', 'id="span-highlight"',
                   'id="posteriorgram"', 'id="attention"', "CTC 事後確率", "CTC posteriorgram"):
        assert needle in html, needle
    assert b"api/recognize?details=1" in client.get("/static/app.js").data  # the page asks for the plots
    assert re.search(r"テスト CER.*\n\s*<dd[^>]*>CER [0-9.]+ %", html), "the test CER is not on the page"
    # relative URLs only, nothing fetched from another host (no CDN, no web fonts)
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert not re.search(r'(src|href)="/', html)
    for asset in ("static/app.js", "static/style.css", "static/recorder-worklet.js"):
        response = client.get("/" + asset)
        assert response.status_code == 200 and len(response.data) > 200
        assert b"http://" not in response.data and b"https://" not in response.data


def test_favicon_is_served(client):
    """Issue 12, item 16: the icon the page names, and /favicon.ico, which browsers ask for."""
    html = client.get("/").get_data(as_text=True)
    href = re.search(r'<link rel="icon"[^>]* href="([^"]+)"', html).group(1)
    for path in ("/" + href, "/favicon.ico"):
        response = client.get(path)
        assert response.status_code == 200 and response.mimetype == "image/png", path
        assert response.data.startswith(PNG_MAGIC)


def test_training_curves_are_served_and_nothing_else(client):
    response = client.get("/images/loss.png")
    assert response.status_code == 200 and response.data.startswith(PNG_MAGIC)
    assert_error(client.get("/images/other.png"), 404, "not_found")
    assert client.get("/images/..%2Fconfig.yaml").status_code == 404


def test_sample_endpoint_returns_the_sample(client, sample):
    response = client.get("/api/sample")
    assert response.status_code == 200 and response.mimetype == "audio/wav"
    assert response.data == sample.read_bytes()


def test_unknown_api_path_and_wrong_method_answer_json(client):
    assert_error(client.get("/api/nothing"), 404, "not_found")
    assert_error(client.get("/api/recognize"), 405, "method_not_allowed")


# -- recognition ---------------------------------------------------------------------------------


def test_recognize_a_file_uses_the_recognizer(client, exp):
    from asrdemo.decode.recognizer import Recognizer

    wave = speechlike(1.5, 16000)
    data = audio_bytes(wave, 16000, subtype="PCM_16")
    response = post_file(client, data)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["duration_s"] == 1.5 and body["sample_rate_in"] == 16000 and body["channels"] == 1
    assert body["format"] == "wav" and body["rtf"] > 0 and body["recognize_s"] > 0
    assert isinstance(body["text"], str) and isinstance(body["tokens"], list)
    assert {t["token"] for t in body["tokens"]} <= set((exp.path / "tokens.txt").read_text(encoding="utf-8").splitlines())
    # the same answer as the recognizer that `asrdemo decode` uses, called directly
    rec = Recognizer.from_exp_dir(exp.path, num_threads=1)
    direct = rec.recognize(*load_audio(data, rec.sample_rate)[:1], rec.sample_rate)
    assert body["text"] == direct.text
    assert [t["token"] for t in body["tokens"]] == list(direct.tokens)
    # the spectrogram is the recognizer's fbank: one pixel per frame and mel bin
    png = base64.b64decode(body["spectrogram"].removeprefix("data:image/png;base64,"))
    assert png.startswith(PNG_MAGIC)
    assert imread(io.BytesIO(png)).shape[:2] == (80, len(rec.features(wave, 16000)))
    if exp.trained:
        assert body["text"].strip()


TIMED_CLIPS = {  # the random model's transcripts of these are long (it emits a token on most frames)
    "sample": lambda sample: sample.read_bytes(),
    "speechlike_1.5s": lambda sample: _wav(1.5),
    "stereo_44k_2.3s": lambda sample: audio_bytes(speechlike(2.3, 44100, 2, seed=3), 44100, subtype="PCM_16"),
}


@pytest.mark.parametrize("name", list(TIMED_CLIPS))
def test_every_character_comes_with_its_time(client, exp, sample, name):
    """`tokens`: in order, each [start_s, end_s) inside the audio, monotonic, non-overlapping; the
    times are the CTC forced alignment of the transcript that `asrdemo explain` computes."""
    from asrdemo.decode.recognizer import Recognizer

    data = TIMED_CLIPS[name](sample)
    body = post_file(client, data, query="?spectrogram=0").get_json()
    tokens = assert_token_times(body)
    assert tokens, body  # a test that could pass on an empty transcript would prove nothing
    assert tokens[-1]["end_s"] > 0.5 * body["duration_s"]  # spread over the audio, not piled at the start
    rec = Recognizer.from_exp_dir(exp.path, num_threads=1)
    wave, _ = load_audio(data, rec.sample_rate)  # (wave at the model's rate, the file's own rate)
    result = rec.recognize(wave, rec.sample_rate, nbest=1)
    assert tokens == [t.as_dict() for t in result.token_times]


def test_details_give_the_posteriorgram_and_the_attention_map(client, sample):
    plain = post_file(client, sample.read_bytes(), query="?spectrogram=0").get_json()
    assert "alignment" not in plain  # only on request: it is most of the answer's size
    assert "alignment" not in post_file(client, sample.read_bytes(), query="?details=0").get_json()
    body = post_file(client, sample.read_bytes(), query="?details=1&spectrogram=0").get_json()
    assert body["text"] == plain["text"] and body["tokens"] == plain["tokens"]
    tokens = assert_token_times(body)
    a = body["alignment"]
    frames, frame_s = a["num_frames"], body["encoder_frame_s"]
    assert frames > 0 and (frames - 1) * frame_s < body["duration_s"] <= (frames + 3) * frame_s
    # the posteriorgram: <blank> first, at most 24 rows, every recognised token among them
    p = a["posteriorgram"]
    assert p["tokens"][0] == "<blank>" and p["token_ids"][0] == 0 and len(p["tokens"]) <= 24
    assert len(p["tokens"]) == len(p["token_ids"]) == len(p["probs"]) and len(p["greedy_path"]) == frames
    probs = np.array(p["probs"])
    assert probs.shape == (len(p["tokens"]), frames)
    assert probs.min() >= 0 and probs.max() <= 1 and np.all(probs.sum(0) <= 1 + 0.005 * len(probs))
    assert np.all(np.round(probs, 2) == probs)  # compact: two decimals
    assert {t["token_id"] for t in tokens[:10]} <= set(p["token_ids"])
    assert all(t["end_frame"] <= frames for t in tokens)  # spans are frames of this posteriorgram
    # the attention map: one row per output token and <eos>, one column per encoder frame, rows sum to 1
    att = a["attention"]
    weights = np.array(att["weights"])
    assert att["rows"] == [t["token"] for t in tokens] + ["<eos>"]
    assert weights.shape == (len(tokens) + 1, frames)
    assert np.allclose(weights.sum(1), 1.0, atol=0.005 * frames + 0.01)
    values = probs.size + weights.size + frames
    assert len(json.dumps(a, ensure_ascii=False, separators=(",", ":"))) < 5.5 * values + 2000  # ~5 bytes a number


def test_audio_too_short_for_one_encoder_frame(client, app):
    """Issue 12, item 14: too short for one encoder frame is a clear 422, not an empty 200."""
    error = assert_error(post_file(client, _wav(0.05), query="?details=1"), 422, "too_short")["error"]
    assert "0.050 s long, too short to recognise" in error
    rec = app.extensions["asrdemo"].recognizer
    shortest = rec.min_samples / rec.sample_rate  # the shortest clip that is recognised: a 200
    assert post_file(client, _wav(shortest + 1e-4)).status_code == 200
    assert_error(post_file(client, _wav(shortest - 0.002)), 422, "too_short")


def test_raw_body_and_no_spectrogram(client):
    data = audio_bytes(speechlike(1.0, 16000), 16000)
    for content_type in ("audio/wav", None):
        response = client.post("/api/recognize?spectrogram=0", data=data, content_type=content_type)
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        assert body["duration_s"] == 1.0 and "spectrogram" not in body


@pytest.mark.parametrize("fmt, rate, channels, subtype", [
    ("wav", 8000, 1, "PCM_16"),
    ("wav", 44100, 2, "PCM_24"),
    ("wav", 22050, 1, "FLOAT"),
    ("flac", 48000, 2, "PCM_16"),
    ("ogg", 32000, 1, "VORBIS"),
    ("ogg", 48000, 2, "VORBIS"),
])
def test_any_rate_mono_or_stereo_wav_flac_ogg(client, fmt, rate, channels, subtype):
    data = audio_bytes(speechlike(1.2, rate, channels), rate, fmt.upper(), subtype)
    body = post_file(client, data, f"clip.{fmt}").get_json()
    assert (body.get("format"), body.get("sample_rate_in"), body.get("channels")) == (fmt, rate, channels), body
    assert abs(body["duration_s"] - 1.2) < 0.01


@pytest.mark.parametrize("fmt", ["m4a", "webm", "mp3"])
def test_uploads_people_have_m4a_webm_mp3(client, fmt):
    """Issue 12, item 15: phones' m4a (AAC), MediaRecorder's webm (Opus) and mp3 are decoded, within
    the same length limit."""
    from demo_fixture import av_bytes

    def encode(seconds):
        wave = speechlike(seconds, 48000)
        if fmt == "mp3":
            return audio_bytes(wave, 48000, "MP3")
        return av_bytes(wave, 48000, *{"m4a": ("mp4", "aac"), "webm": ("webm", "libopus")}[fmt])

    response = post_file(client, encode(1.5), f"clip.{fmt}")
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["format"] == fmt and body["sample_rate_in"] == 48000 and abs(body["duration_s"] - 1.5) < 0.1
    assert_error(post_file(client, encode(MAX_S + 1)), 413, "too_long")


def test_reference_gives_the_projects_cer(client, sample):
    response = post_file(client, sample.read_bytes(), "test.wav", reference=SAMPLE_REFERENCE)
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["reference"] == SAMPLE_REFERENCE
    assert body["cer"]["ref_chars"] == len(score.units(SAMPLE_REFERENCE))
    assert body["cer"]["cer"] == round(100 * score.cer(SAMPLE_REFERENCE, body["text"]), 2)
    assert "cer" not in post_file(client, sample.read_bytes(), reference="  ").get_json()


# -- bad input: each a clear 4xx, and the app keeps serving ---------------------------------------


def _wav(seconds=1.0, rate=16000, **kw):
    return audio_bytes(speechlike(seconds, rate, **kw), rate, subtype="PCM_16")


def _garble(data, start):
    rng = np.random.default_rng(1)
    return data[:start] + rng.bytes(len(data) - start)


BAD_INPUTS = {
    "empty_body": (lambda: b"", 400, "empty_input"),
    "text_file": (lambda: "これは音声ではありません\n".encode() * 50, 415, "unsupported_format"),
    "aiff": (lambda: audio_bytes(speechlike(1.0), 16000, "AIFF"), 415, "unsupported_format"),
    "wav_header_only": (lambda: _wav()[:30], 400, "corrupt_audio"),
    "garbled_flac": (lambda: _garble(audio_bytes(speechlike(1.0), 16000, "FLAC"), 200), 400, "corrupt_audio"),
    "truncated_wav": (lambda: _wav()[:16000], 400, "truncated_audio"),
    "truncated_flac": (lambda: audio_bytes(speechlike(1.0), 16000, "FLAC")[:9000], 400, "corrupt_audio"),
    "truncated_ogg": (lambda: audio_bytes(speechlike(2.0), 16000, "OGG")[:6000], 400, "truncated_audio"),
    "zero_samples": (lambda: audio_bytes(np.zeros(0, np.float32), 16000), 400, "no_samples"),
    "silent": (lambda: audio_bytes(np.zeros(16000, np.float32), 16000, subtype="PCM_16"), 422, "silent_audio"),
    # issue 12, item 1: silence to the model is also a constant DC offset (what the fbank removes)
    "dc_offset": (lambda: audio_bytes(np.full(32000, 0.3, np.float32), 16000, subtype="PCM_16"), 422,
                  "silent_audio"),
    "too_long": (lambda: _wav(MAX_S + 1, 8000), 413, "too_long"),
    "too_large": (lambda: _wav(6.0, 48000, channels=2), 413, "too_large"),  # 1.15 MB > 1 MB
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_gets_a_clear_4xx(client, name):
    make, status, code = BAD_INPUTS[name]
    data = make()
    assert_error(post_file(client, data), status, code)
    assert_error(client.post("/api/recognize", data=data, content_type="application/octet-stream"), status, code)
    # and the next good request is served
    assert post_file(client, _wav()).status_code == 200


@pytest.mark.parametrize("size", [0, 0xFFFFFFFF])
def test_wav_with_streaming_sizes_is_read_to_the_end(client, size):
    """Issue 12, item 8: the RIFF and data sizes a streaming writer leaves at 0 (or 0xFFFFFFFF)."""
    import struct

    good = _wav(1.5)
    assert good[36:40] == b"data"
    streamed = bytearray(good)
    struct.pack_into("<I", streamed, 4, size)
    struct.pack_into("<I", streamed, 40, size)
    want = post_file(client, good).get_json()
    got = post_file(client, bytes(streamed)).get_json()
    assert got.get("duration_s") == 1.5, got
    assert (got["text"], got["tokens"]) == (want["text"], want["tokens"])


def test_the_length_limit_leaves_room_for_a_recorders_last_block(client):
    """Issue 12, item 12: a recorder stopping on a 2048-sample block boundary at 44.1 kHz sends a
    little more than the limit (1,323,008 samples for 30 s); that is accepted, more is not."""
    rate = 44100
    just_over = audio_bytes(speechlike(MAX_S + 2048 / rate, rate), rate, subtype="PCM_16")
    assert post_file(client, just_over).status_code == 200
    assert_error(post_file(client, _wav(MAX_S + 0.2, rate)), 413, "too_long")


def test_chunked_body_over_the_limit_is_413(client):
    """Issue 12, item 5 (in-process; tests/test_server_gunicorn.py sends real chunked HTTP)."""
    big = _wav(6.0, 48000, channels=2)  # 1.15 MB > 1 MB
    for headers in ({"Transfer-Encoding": "chunked"}, {"Transfer-Encoding": "gzip, chunked"}):
        response = client.post("/api/recognize", input_stream=io.BytesIO(big), content_type="audio/wav",
                               headers=headers, environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""})
        assert_error(response, 413, "too_large")
    small = _wav(1.0)
    response = client.post("/api/recognize", input_stream=io.BytesIO(small), content_type="audio/wav",
                           headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""})
    assert response.status_code == 200 and response.get_json()["duration_s"] == 1.0


def test_form_without_a_file(client):
    body, content_type = multipart({"reference": "x"}, {})
    assert_error(client.post("/api/recognize", data=body, content_type=content_type), 400, "no_file")
    body, content_type = multipart({}, {"file": ("a.wav", b"")})
    assert_error(client.post("/api/recognize", data=body, content_type=content_type), 400, "empty_input")



def test_audio_sent_as_a_text_field_says_how_to_send_a_file(client, sample):
    """Issue 12, item 11: `curl -F "file=<clip.wav"` sends the file's bytes as a text field."""
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"\r\n\r\n'.encode()
            + sample.read_bytes() + f"\r\n--{boundary}--\r\n".encode())
    response = client.post("/api/recognize", data=body, content_type=f"multipart/form-data; boundary={boundary}")
    error = assert_error(response, 400, "no_file")["error"]
    assert "without a filename" in error and "file=@" in error


# -- nothing is written to disk ------------------------------------------------------------------

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_watch = threading.local()


def _audit(event, args):
    if event == "open" and getattr(_watch, "writes", None) is not None:
        path, mode, flags = args
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (flags or 0) & _WRITE_FLAGS:
            _watch.writes.append(path)


sys.addaudithook(_audit)


@contextlib.contextmanager
def disk_writes():
    """Collects every file this thread opens for writing (Python's audit events) inside the block."""
    _watch.writes = []
    try:
        yield _watch.writes
    finally:
        writes, _watch.writes = _watch.writes, None


def test_disk_write_watch_sees_a_spooled_upload():
    """The watch below can fail: Werkzeug's own parser spools a > 500 KB upload to a temporary file."""
    from werkzeug.formparser import default_stream_factory

    with disk_writes() as writes:
        spool = default_stream_factory(total_content_length=900_000, content_type="audio/wav", filename="a.wav")
        spool.write(bytes(600_000))
    assert writes


def test_nothing_is_written_to_disk(client):
    big = _wav(4.5, 48000, channels=2)  # 864 kB: above Werkzeug's 500 kB spooling threshold
    assert 500_000 < len(big) < MAX_MB * 1024 * 1024 - 10_000
    post_file(client, _wav())  # warm up (matplotlib's font cache, lazy imports)
    with disk_writes() as writes:
        assert post_file(client, big, "big.wav").status_code == 200
        assert client.post("/api/recognize", data=big, content_type="audio/wav").status_code == 200
        assert_error(post_file(client, _wav()[:16000]), 400, "truncated_audio")
    assert writes == []


# -- settings and the model-less server ----------------------------------------------------------


def test_settings_from_env(monkeypatch, exp):
    env = {"ASRDEMO_EXP": "/x", "ASRDEMO_MAX_UPLOAD_MB": "2.5", "ASRDEMO_MAX_SECONDS": "12",
           "ASRDEMO_WORKERS": "3", "ASRDEMO_THREADS": "5", "PORT": "9123"}
    settings = DemoSettings.from_env(env)
    assert (str(settings.exp_dir), settings.max_upload_mb, settings.max_seconds, settings.workers,
            settings.threads, settings.port) == ("/x", 2.5, 12.0, 3, 5, 9123)
    assert settings.max_upload_bytes == int(2.5 * 1024 * 1024)
    assert DemoSettings.from_env({}) == DemoSettings()
    with pytest.raises(AsrdemoError, match="ASRDEMO_MAX_SECONDS"):
        DemoSettings.from_env({"ASRDEMO_MAX_SECONDS": "ten"})
    with pytest.raises(AsrdemoError, match="ASRDEMO_WORKERS"):
        DemoSettings.from_env({"ASRDEMO_WORKERS": "0"})
    # create_app() with no arguments (gunicorn's call) reads the same variables
    monkeypatch.setenv("ASRDEMO_EXP", str(exp.path))
    monkeypatch.setenv("ASRDEMO_MAX_SECONDS", "2")
    client = create_app().test_client()
    assert client.get("/api/model").get_json()["limits"]["max_seconds"] == 2.0
    assert_error(post_file(client, _wav(2.5)), 413, "too_long")


@pytest.mark.parametrize("broken", ["missing", "bad_checkpoint"])
def test_without_a_model_every_page_says_how_to_get_one(tmp_path, exp, broken):
    exp_dir = tmp_path / "exp_train_large"
    if broken == "bad_checkpoint":
        exp_dir.mkdir()
        for name in ("config.yaml", "tokens.txt", "cmvn.ark"):
            (exp_dir / name).write_bytes((exp.path / name).read_bytes())
        (exp_dir / "valid.acc.ave.pth").write_bytes(b"not a checkpoint")
    client = create_app(settings=DemoSettings(exp_dir=exp_dir)).test_client()
    html = client.get("/").get_data(as_text=True)
    assert 'id="no-model"' in html and "run.sh --corpus mini_jsut" in html and str(exp_dir) in html
    health = client.get("/healthz")
    assert health.status_code == 200 and health.get_json()["model_loaded"] is False
    for response in (client.get("/api/model"), post_file(client, _wav())):
        body = assert_error(response, 503, "no_model")
        assert "run.sh --corpus mini_jsut" in body["error"]
        if broken == "bad_checkpoint":
            assert "could not be loaded" in body["error"]


def test_spectrogram_png_refuses_empty_features():
    assert spectrogram_png(np.random.default_rng(0).normal(size=(50, 80))).startswith(PNG_MAGIC)
    with pytest.raises(ValueError):
        spectrogram_png(np.zeros((0, 80)))
