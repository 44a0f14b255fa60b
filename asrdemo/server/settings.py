"""The demo server's settings: which exp dir to load, request limits, worker counts.

Read once from the environment (the only configuration channel a container on Cloud Run has);
`asrdemo serve`, `gunicorn.conf.py` and the Flask app all take them from `DemoSettings.from_env()`,
so a limit has one default and one name.

| env var | default | meaning |
|---|---|---|
| `ASRDEMO_EXP` | `exp_train_large` | the packaged exp dir to load |
| `ASRDEMO_SAMPLE` | `sample/test.wav` | the "try the sample" clip |
| `ASRDEMO_MAX_UPLOAD_MB` | 10 | largest request body (413 above it) |
| `ASRDEMO_MAX_SECONDS` | 90 | longest audio accepted (413 above it) |
| `ASRDEMO_WORKERS` | 1 | gunicorn worker processes (each loads the model once) |
| `ASRDEMO_THREADS` | 4 | request threads per worker |
| `ASRDEMO_TORCH_THREADS` | 0 | torch intra-op threads per worker (0: torch's default) |
| `ASRDEMO_MAX_STREAMS` | 3 | live transcription sessions (WebSocket /api/stream) per worker at once; each holds a request thread, so keep it below ASRDEMO_THREADS |
| `ASRDEMO_STREAM_IDLE_S` | 10 | a stream that sends nothing for this long is closed |
| `ASRDEMO_STREAM_CHUNK` | 16 | encoder frames per streaming chunk (docs/streaming.md) |
| `PORT` | 8000 | the port to listen on (Cloud Run sets it) |
"""

import dataclasses
import os
from pathlib import Path

from asrdemo.errors import AsrdemoError

# The seed's sentence (JSUT BASIC5000_0001); `sample/test.wav` speaks it.
SAMPLE_REFERENCE = "水をマレーシアから買わなくてはならないのです。"


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    exp_dir: Path = Path("exp_train_large")
    sample_wav: Path = Path("sample/test.wav")
    max_upload_mb: float = 10.0
    max_seconds: float = 90.0  # long-form decoding keeps the cost linear; docs/demo.md
    workers: int = 1
    threads: int = 4
    torch_threads: int = 0
    max_streams: int = 3
    stream_idle_s: float = 10.0
    stream_chunk: int = 16
    port: int = 8000

    def __post_init__(self):  # accept str paths
        object.__setattr__(self, "exp_dir", Path(self.exp_dir))
        object.__setattr__(self, "sample_wav", Path(self.sample_wav))

    @classmethod
    def from_env(cls, environ=None, **overrides):
        """Settings from `environ` (default `os.environ`); `overrides` (not None) win over both."""
        env = os.environ if environ is None else environ
        values = {
            "exp_dir": env.get("ASRDEMO_EXP", cls.exp_dir),
            "sample_wav": env.get("ASRDEMO_SAMPLE", cls.sample_wav),
            "max_upload_mb": _number(env, "ASRDEMO_MAX_UPLOAD_MB", float, cls.max_upload_mb, minimum=0.001),
            "max_seconds": _number(env, "ASRDEMO_MAX_SECONDS", float, cls.max_seconds, minimum=0.1),
            "workers": _number(env, "ASRDEMO_WORKERS", int, cls.workers, minimum=1),
            "threads": _number(env, "ASRDEMO_THREADS", int, cls.threads, minimum=1),
            "torch_threads": _number(env, "ASRDEMO_TORCH_THREADS", int, cls.torch_threads, minimum=0),
            "max_streams": _number(env, "ASRDEMO_MAX_STREAMS", int, cls.max_streams, minimum=0),
            "stream_idle_s": _number(env, "ASRDEMO_STREAM_IDLE_S", float, cls.stream_idle_s, minimum=0.1),
            "stream_chunk": _number(env, "ASRDEMO_STREAM_CHUNK", int, cls.stream_chunk, minimum=1),
            "port": _number(env, "PORT", int, cls.port, minimum=1),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def limits(self) -> dict:
        """What a client may send, and how the server runs (shown by /api/model and the page)."""
        return {
            "max_upload_mb": self.max_upload_mb,
            "max_upload_bytes": self.max_upload_bytes,
            "max_seconds": self.max_seconds,
            "workers": self.workers,
            "threads": self.threads,
            "torch_threads": self.torch_threads,
            "max_streams": self.max_streams,
            "stream_idle_s": self.stream_idle_s,
            "stream_chunk": self.stream_chunk,
        }


def _number(env, name, kind, default, minimum):
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise AsrdemoError(f"environment variable {name}={raw!r} is not a valid {kind.__name__}") from None
    if value < minimum:
        raise AsrdemoError(f"environment variable {name}={raw!r} must be at least {minimum}")
    return value
