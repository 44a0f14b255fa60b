"""What the web demo's tests share: an exp dir to serve, audio to send, a real gunicorn, HTTP helpers.

The exp dir is a tiny randomly initialised model (its transcripts are garbage, maybe empty) unless
ASRDEMO_TEST_EXP names a trained one; then `demo_exp().trained` is True and the tests also assert a
non-empty transcript. Swapping the model for every demo test is that one variable.
"""

import dataclasses
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from http.client import HTTPConnection
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

REPO = Path(__file__).resolve().parents[1]
SAMPLE_WAV = REPO / "sample" / "test.wav"
FBANK_CONF = {"sample_rate": 16000, "num_mel_bins": 80, "frame_length_ms": 25.0, "frame_shift_ms": 10.0,
              "dither": 0.0}
TINY_MODEL_CONF = {
    "encoder": "transformer",
    "encoder_conf": {"output_size": 16, "attention_heads": 2, "linear_units": 32, "num_blocks": 1,
                     "input_layer": "conv2d", "dropout_rate": 0.0, "positional_dropout_rate": 0.0},
    "decoder_conf": {"attention_heads": 2, "linear_units": 32, "num_blocks": 1, "dropout_rate": 0.0,
                     "positional_dropout_rate": 0.0},
    "ctc_weight": 0.3,
}
TINY_TEST_CER = "CER 87.50 % (N=24, S=18 D=3 I=0, sentences 1, sentence errors 100.0 %)"


@dataclasses.dataclass
class DemoExp:
    path: Path
    trained: bool  # True: a real model, whose transcript of speech must not be empty


def demo_exp(tmp_dir: Path) -> DemoExp:
    """The exp dir every demo test serves: $ASRDEMO_TEST_EXP if set, else a tiny random model."""
    trained = os.environ.get("ASRDEMO_TEST_EXP")
    if trained:
        return DemoExp(Path(trained).resolve(), trained=True)
    return DemoExp(make_tiny_exp_dir(tmp_dir / "exp_tiny"), trained=False)


def make_tiny_exp_dir(exp_dir: Path, seed: int = 0) -> Path:
    """A packaged exp dir with the real layout and a tiny random model (fast to load and run)."""
    import kaldiio
    import torch

    from asrdemo.model.asr_model import ASRModel

    exp_dir.mkdir(parents=True, exist_ok=True)
    chars = sorted(set("水をマレーシアから買わなくてはならないのですあいうえお"))
    tokens = ["<blank>", "<unk>", *chars, "<sos/eos>"]
    (exp_dir / "tokens.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    rng = np.random.default_rng(seed)
    frames = rng.normal(8.0, 3.0, size=(400, 80))
    stats = np.stack([np.append(frames.sum(0), len(frames)), np.append((frames ** 2).sum(0), 0.0)])
    kaldiio.save_mat(str(exp_dir / "cmvn.ark"), stats)
    config = {"frontend": FBANK_CONF, "token_type": "char", "token_list": "tokens.txt", "cmvn": "cmvn.ark",
              "model": TINY_MODEL_CONF}
    (exp_dir / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    torch.manual_seed(seed)
    model = ASRModel.from_config(TINY_MODEL_CONF, 80, len(tokens), cmvn_stats=stats)
    torch.save(model.state_dict(), exp_dir / "valid.acc.ave.pth")
    (exp_dir / "cer.txt").write_text(TINY_TEST_CER + "\n", encoding="utf-8")
    _write_curves(exp_dir / "images")
    return exp_dir


def _write_curves(images: Path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    images.mkdir(exist_ok=True)
    for name in ("loss", "acc", "error"):
        fig = Figure(figsize=(3, 2), dpi=50)
        FigureCanvasAgg(fig)
        fig.add_subplot().plot([1, 2, 3], [3, 2, 1])
        fig.savefig(images / f"{name}.png")


# -- audio ---------------------------------------------------------------------------------------


def speechlike(seconds=1.5, sr=16000, channels=1, seed=0) -> np.ndarray:
    """A voiced, syllable-like signal (harmonics under a 4 Hz envelope + a little noise), float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    wave = 0.3 * voiced * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)) / 3 + 0.01 * rng.standard_normal(len(t))
    wave = wave.astype(np.float32)
    if channels > 1:
        wave = np.stack([wave * (1 - 0.2 * c) for c in range(channels)], axis=1)
    return wave


def audio_bytes(wave: np.ndarray, sr: int, fmt="WAV", subtype=None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def av_bytes(wave: np.ndarray, sr: int, container: str, codec: str) -> bytes:
    """Mono float `wave` encoded with PyAV (FFmpeg): ("mp4", "aac") is what phones record as m4a,
    ("webm", "libopus") what browsers' MediaRecorder makes."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=sr, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.asarray(wave, np.float32).reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def sample_wav(tmp_dir: Path) -> Path:
    """sample/test.wav when it exists, else a stand-in clip (while the sample is being made)."""
    if SAMPLE_WAV.is_file():
        return SAMPLE_WAV
    path = tmp_dir / "sample_standin.wav"
    if not path.exists():
        sf.write(path, speechlike(2.0, 22050), 22050, subtype="PCM_16")
    return path


# -- HTTP over loopback (stdlib only) ------------------------------------------------------------


def multipart(fields: dict, files: dict):
    """-> (body, content_type) of a multipart/form-data request; files: name -> (filename, bytes)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f'Content-Type: application/octet-stream\r\n\r\n'.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def http(method, url, body=None, content_type=None, timeout=60):
    """-> (status, headers, body bytes); 4xx/5xx are returned, not raised. A server may answer
    a body over its limit (413) and close before reading the rest, as gunicorn does: sending then
    fails with a broken pipe, and the answer is read anyway, as curl does (urllib raised instead:
    test_recognize_and_bad_inputs_over_http failed 1 run in 3 on its 2 MB upload)."""
    parts = urllib.parse.urlsplit(url)
    connection = HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        try:
            connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body,
                               headers={"Content-Type": content_type} if content_type else {})
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered before the whole body was sent: the answer waits in the socket
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def http_json(method, url, body=None, content_type=None, timeout=60):
    status, _, data = http(method, url, body, content_type, timeout)
    return status, json.loads(data)


def post_file(base_url, data: bytes, filename="clip.wav", timeout=60, query="", **fields):
    body, ctype = multipart(fields, {"file": (filename, data)})
    return http_json("POST", f"{base_url}/api/recognize{query}", body, ctype, timeout)


# -- what every /api/recognize answer must hold --------------------------------------------------


def spelling(token: str) -> str:
    """What a token adds to the transcript text: <space> and sentencepiece's \u2581 a space, <unk> nothing."""
    if token == "<space>":
        return " "
    if token.startswith("<") and token.endswith(">"):
        return ""
    return token.replace("\u2581", " ")


def assert_token_times(body: dict) -> list:
    """`tokens` of an /api/recognize answer: one object per recognised token, in order, each with
    [start_s, end_s) inside [0, duration_s], monotonic and non-overlapping, spelling `text`.
    Returns the tokens."""
    tokens = body["tokens"]
    duration, frame_s = body["duration_s"], body["encoder_frame_s"]
    assert 0.0 < frame_s < 0.2, frame_s
    spelled = "".join(spelling(t["token"]) for t in tokens)
    assert spelled.split() == body["text"].split(), (spelled, body["text"])
    previous_end, previous_frame = 0.0, 0
    for t in tokens:
        assert set(t) >= {"token", "token_id", "start_s", "end_s", "start_frame", "end_frame"}, t
        assert 0.0 <= previous_end <= t["start_s"] < t["end_s"] <= duration + 1e-3, (t, previous_end, duration)
        assert previous_frame <= t["start_frame"] < t["end_frame"], (t, previous_frame)
        assert abs(t["start_s"] - t["start_frame"] * frame_s) < 1e-3, t  # seconds are encoder frames
        assert abs(t["end_s"] - min(t["end_frame"] * frame_s, duration)) < 1e-3, t
        previous_end, previous_frame = t["end_s"], t["end_frame"]
    return tokens


# -- a real gunicorn, started with the container's own command -----------------------------------


def docker_cmd() -> list:
    """The Dockerfile's CMD (exec form), parsed from the file itself."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    match = re.search(r"^CMD\s+(\[.*\])\s*$", text, re.MULTILINE)
    assert match, "Dockerfile has no exec-form CMD [...]"
    return json.loads(match.group(1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GunicornServer:
    """Runs the Dockerfile's CMD (gunicorn from this venv) on 127.0.0.1:<free port> until stopped."""

    READY = "demo model ready"  # what asrdemo.server.app logs once a worker has loaded the model

    def __init__(self, exp_dir, log_path, env=None, startup_timeout=90):
        cmd = docker_cmd()
        assert cmd[0] == "gunicorn", cmd
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PORT": str(self.port), "ASRDEMO_EXP": str(exp_dir),
                    "ASRDEMO_TORCH_THREADS": "1", "ASRDEMO_SAMPLE": str(SAMPLE_WAV),
                    # gunicorn's own override channel: loopback only, for the tests
                    "GUNICORN_CMD_ARGS": f"--bind=127.0.0.1:{self.port}", **(env or {})}
        self.argv = [sys.executable, "-m", "gunicorn", *cmd[1:]]
        self.workers = int(self.env.get("ASRDEMO_WORKERS", "1"))
        self.log_path = Path(log_path)
        self.startup_timeout = startup_timeout
        self.proc = None

    def __enter__(self):
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:  # until every worker has loaded the model and one answers
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}: {self.log_tail()}")
            if self.log_tail(10**7).count(self.READY) >= self.workers:
                try:
                    if http_json("GET", f"{self.url}/healthz", timeout=2)[0] == 200:
                        return self
                except OSError:
                    pass
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(f"gunicorn did not answer within {self.startup_timeout} s: {self.log_tail()}")

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def worker_pids(self) -> list:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(p) for p in children.read_text().split()]
        except OSError:
            return []

    def log_tail(self, chars=4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else "(no log)"


def proc_status_kb(pid: int, field: str) -> int:
    """A memory field of /proc/<pid>/status in kB: VmRSS (now) or VmHWM (peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


# -- the live transcript's WebSocket (/api/stream) -----------------------------------------------


class StreamClient:
    """A WebSocket client of /api/stream (websocket-client, which selenium brings): `receive(timeout)`
    -> the next JSON message as a dict, or None when none came within `timeout` s (0: just look);
    `send(bytes | str)`; `close()`, also after the server closed."""

    def __init__(self, base_url: str, query: str = "", timeout: float = 60):
        import websocket

        self.ws = websocket.create_connection(base_url.replace("http://", "ws://") + "/api/stream" + query,
                                              timeout=timeout)

    def receive(self, timeout: float = 60):
        import websocket

        self.ws.settimeout(max(timeout, 0.001))
        try:
            return json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            return None

    def send(self, data) -> None:
        if isinstance(data, (bytes, bytearray)):
            self.ws.send_binary(bytes(data))
        else:
            self.ws.send(data)

    def close(self) -> None:
        try:
            self.ws.close()
        except OSError:  # the server already closed it
            pass
