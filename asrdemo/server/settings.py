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

from asrdemo.data.mini_jsut import SEED_UTT
from asrdemo.errors import AsrdemoError
from asrdemo.utils.config import setting, setting_problem

# The seed's sentence (JSUT BASIC5000_0001); `sample/test.wav` speaks it.
SAMPLE_REFERENCE = SEED_UTT[1]  # what sample/test.wav says (mini_jsut.write_sample made it)


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    exp_dir: Path = setting(Path("exp_train_large"), env="ASRDEMO_EXP")
    sample_wav: Path = setting(Path("sample/test.wav"), env="ASRDEMO_SAMPLE")
    max_upload_mb: float = setting(10.0, minimum=0.001, env="ASRDEMO_MAX_UPLOAD_MB", limit=True)
    # long-form decoding keeps the cost of long input linear; docs/demo.md
    max_seconds: float = setting(90.0, minimum=0.1, env="ASRDEMO_MAX_SECONDS", limit=True)
    workers: int = setting(1, minimum=1, env="ASRDEMO_WORKERS", limit=True)
    threads: int = setting(4, minimum=1, env="ASRDEMO_THREADS", limit=True)
    torch_threads: int = setting(0, minimum=0, env="ASRDEMO_TORCH_THREADS", limit=True)
    max_streams: int = setting(3, minimum=0, env="ASRDEMO_MAX_STREAMS", limit=True)
    stream_idle_s: float = setting(10.0, minimum=0.1, env="ASRDEMO_STREAM_IDLE_S", limit=True)
    stream_chunk: int = setting(16, minimum=1, env="ASRDEMO_STREAM_CHUNK", limit=True)
    port: int = setting(8000, minimum=1, env="PORT")

    def __post_init__(self):  # accept str paths
        object.__setattr__(self, "exp_dir", Path(self.exp_dir))
        object.__setattr__(self, "sample_wav", Path(self.sample_wav))

    @classmethod
    def from_env(cls, environ=None, **overrides):
        """Settings from `environ` (default `os.environ`); `overrides` (not None) win over both.
        Raises AsrdemoError naming the variable for a value that is not a number, or out of range."""
        env = os.environ if environ is None else environ
        values = {f.name: _from_env(env, f) for f in dataclasses.fields(cls)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def limits(self) -> dict:
        """What a client may send, and how the server runs (shown by /api/model and the page)."""
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["limit"]}
        return {"max_upload_mb": self.max_upload_mb, "max_upload_bytes": self.max_upload_bytes, **shown}


def _from_env(env, field):
    """The value of `field` from its environment variable, else its default."""
    name, raw = field.metadata["env"], env.get(field.metadata["env"])
    if field.type is Path:
        return field.default if raw is None else raw
    if raw is None or raw.strip() == "":
        return field.default
    try:
        value = field.type(raw)
    except ValueError:
        raise AsrdemoError(f"environment variable {name}={raw!r} is not a valid {field.type.__name__}") from None
    problem = setting_problem(field, value)
    if problem:
        raise AsrdemoError(f"environment variable {name}={raw!r} {problem}")
    return value
