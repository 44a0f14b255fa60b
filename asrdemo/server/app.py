"""The demo's Flask app: one packaged exp dir, loaded once per process, behind a page and a JSON API.

    GET  /                 the page (upload, sample, recording; transcript, spectrogram, curves)
    POST /api/recognize    audio (multipart field `file`, or the raw body) -> JSON transcript, each
                           character with its time; `?details=1` adds the posteriorgram and attention
    GET  /api/stream       WebSocket: live transcription, partial text per chunk (server/stream.py)
    GET  /api/model        architecture, parameter count, tokens, test CER, config, limits
    GET  /api/sample       the sample clip (sample/test.wav), for the page's "try the sample"
    GET  /images/<name>    the exp dir's training curves (loss.png, acc.png, error.png)
    GET  /healthz          liveness (200 whether or not a model is loaded)
    GET  /favicon.ico      the page's icon (static/favicon.png)

Without a model the app still starts: every page and endpoint says how to get one.
Uploads stay in memory (`InMemoryRequest`); nothing a client sends touches the disk.
"""

import dataclasses
import io
import logging
import time
from pathlib import Path

from flask import Blueprint, Flask, Request, Response, current_app, jsonify, render_template, request, send_from_directory
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from asrdemo import score
from asrdemo.server import exp_info
from asrdemo.server.audio_input import BadAudio, decode_audio
from asrdemo.server.settings import SAMPLE_REFERENCE, DemoSettings
from asrdemo.server.spectrogram import png_data_uri, spectrogram_png
from asrdemo.server.stream import register_stream

log = logging.getLogger(__name__)
bp = Blueprint("demo", __name__)

# `?details=1`: the posteriorgram's rows (<blank>, the transcript's tokens, then the most likely
# others) and the rounding of its probabilities and of the attention weights.
DETAIL_TOKENS = 24
DETAIL_DECIMALS = 2


class InMemoryRequest(Request):
    """Werkzeug spools uploads over 500 KB to a temporary file; keep them in memory instead.

    The body is bounded by MAX_CONTENT_LENGTH, so memory is too.
    """

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


class ChunkedBodyLimit:
    """WSGI middleware: a body sent without Content-Length (`Transfer-Encoding: chunked`) is read
    here, up to one byte past the upload limit, and replaced by that many bytes in memory.

    Werkzeug caps such a stream at MAX_CONTENT_LENGTH and then simply stops, so an 11 MB chunked
    upload reached the app cut at 10 MB (then 400 `truncated_audio`, or 200 for a WAV with streaming
    size fields). Here a body over the limit is marked, and the app answers it 413 `too_large` as
    it does one that declares its length. The rest of an over-long body is read and dropped (up to
    `drain_bytes`) so that the client gets the answer rather than a reset connection.
    """

    def __init__(self, wsgi_app, limit_bytes: int, drain_bytes: int = 64 * 1024 * 1024):
        self.wsgi_app, self.limit, self.drain = wsgi_app, int(limit_bytes), int(drain_bytes)

    def __call__(self, environ, start_response):
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not environ.get("CONTENT_LENGTH"):
            stream, body = environ["wsgi.input"], bytearray()
            while len(body) <= self.limit:
                block = stream.read(min(64 * 1024, self.limit + 1 - len(body)))
                if not block:
                    break
                body += block
            if len(body) > self.limit:
                environ["asrdemo.body_too_large"] = True
                drained = 0
                while drained < self.drain:
                    block = stream.read(64 * 1024)
                    if not block:
                        break
                    drained += len(block)
                body = bytearray()
            environ["wsgi.input"] = io.BytesIO(bytes(body))
            environ["CONTENT_LENGTH"] = str(len(body))  # now a body of known length, no longer chunked
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self.wsgi_app(environ, start_response)


class Demo:
    """The loaded recognizer of one process (or why there is none) and what the page shows about it."""

    def __init__(self, settings: DemoSettings):
        self.settings = settings
        self.recognizer = None
        self.problem = None  # a message for the user while no model is loaded
        self.info = {}
        exp_dir = settings.exp_dir
        if not (exp_dir / "config.yaml").is_file():
            self.problem = exp_info.how_to_get_a_model(exp_dir)
            log.warning("%s", self.problem)
            return
        try:
            self._load(exp_dir)
        except Exception as e:  # a broken model must not take the server down with it
            log.exception("cannot load the model in %s", exp_dir)
            self.recognizer = None
            self.problem = f"The model in {exp_dir}/ could not be loaded: {e}. " + exp_info.how_to_get_a_model(exp_dir)

    def _load(self, exp_dir: Path):
        from asrdemo.decode.recognizer import Recognizer  # torch is imported here, not at app import

        started = time.perf_counter()
        self.recognizer = Recognizer.from_exp_dir(exp_dir, device="cpu",
                                                  num_threads=self.settings.torch_threads or None)
        config = exp_info.read_config(exp_dir)
        tokens = self.recognizer.token_list.tokens
        model = self.recognizer.model
        self.info = {
            "model_loaded": True,
            "exp_dir": str(exp_dir),
            "architecture": exp_info.architecture(config),
            "num_params": int(sum(p.numel() for p in model.parameters())),
            "token_type": config.get("token_type", "char"),
            "vocab_size": len(tokens),
            "tokens": tokens,
            "sample_rate": int(self.recognizer.sample_rate),
            # an SSL exp: its frontend_conf (model, revision, layer, ...); else the fbank options
            "frontend": (config.get("frontend_conf") if self.recognizer.model.frontend is not None
                         else self.recognizer.fbank.conf),
            "test_cer": exp_info.read_test_cer(exp_dir),
            "curves": exp_info.curve_images(exp_dir),
            "config": config,
        }
        log.info("demo model ready: %s (%s parameters), loaded in %.1f s", exp_dir,
                 f"{self.info['num_params']:,}", time.perf_counter() - started)

    @property
    def loaded(self) -> bool:
        return self.recognizer is not None

    def model_info(self) -> dict:
        return {**self.info, "limits": self.settings.limits()}

    def sample_reference(self) -> str:
        """The sample's transcript: the text file beside the wav (sample/test.txt) if any, else the seed's."""
        text_file = self.settings.sample_wav.with_suffix(".txt")
        text = text_file.read_text(encoding="utf-8").strip() if text_file.is_file() else ""
        return text or SAMPLE_REFERENCE


def create_app(exp_dir=None, settings: DemoSettings = None) -> Flask:
    """The app factory (`gunicorn 'asrdemo.server:create_app()'`): loads the model once, here."""
    settings = settings or DemoSettings.from_env()
    if exp_dir is not None:
        settings = dataclasses.replace(settings, exp_dir=Path(exp_dir))
    app = Flask(__name__)
    app.request_class = InMemoryRequest
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes
    app.wsgi_app = ChunkedBodyLimit(app.wsgi_app, settings.max_upload_bytes)
    app.before_request(_refuse_marked_body)
    app.json.ensure_ascii = False  # Japanese stays readable in the JSON
    app.extensions["asrdemo"] = Demo(settings)
    app.register_blueprint(bp)
    register_stream(app)  # GET /api/stream: live transcription over a WebSocket
    app.register_error_handler(BadAudio, _bad_audio)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _internal_error)
    return app


def _refuse_marked_body():
    if request.environ.get("asrdemo.body_too_large"):
        raise RequestEntityTooLarge()


def _demo() -> Demo:
    return current_app.extensions["asrdemo"]


def _error(status: int, code: str, message: str, **extra):
    return jsonify({"error": message, "code": code, **extra}), status


def _no_model():
    demo = _demo()
    return _error(503, "no_model", demo.problem, model_loaded=False, limits=demo.settings.limits())


# -- pages ---------------------------------------------------------------------------------------


@bp.get("/")
def index():
    demo = _demo()
    return render_template("index.html", demo=demo, info=demo.model_info(), limits=demo.settings.limits(),
                           sample_available=demo.settings.sample_wav.is_file(),
                           sample_reference=demo.sample_reference())


@bp.get("/images/<name>")
def curve_image(name):
    demo = _demo()
    if not demo.loaded or name not in demo.info["curves"]:
        return _error(404, "not_found", f"no training curve {name!r} in this model's exp dir")
    return send_from_directory((demo.settings.exp_dir / "images").resolve(), name, mimetype="image/png")


@bp.get("/favicon.ico")
def favicon():
    """What browsers and tools ask for when a page names no icon (the page names static/favicon.png)."""
    return send_from_directory(Path(current_app.static_folder), "favicon.png", mimetype="image/png")


@bp.get("/healthz")
def healthz():
    demo = _demo()
    body = {"status": "ok", "model_loaded": demo.loaded}
    if not demo.loaded:
        body["message"] = demo.problem
    return jsonify(body)


# -- API -----------------------------------------------------------------------------------------


@bp.get("/api/model")
def model():
    demo = _demo()
    if not demo.loaded:
        return _no_model()
    return jsonify(demo.model_info())


@bp.get("/api/sample")
def sample():
    demo = _demo()
    path = demo.settings.sample_wav
    if not path.is_file():
        return _error(404, "no_sample", f"the sample clip {path} is not there")
    return Response(path.read_bytes(), mimetype="audio/wav")


@bp.post("/api/recognize")
def recognize():
    """Audio in, transcript out, each character with its time. Optional: `reference` (form field or
    query) adds the CER against it; `?spectrogram=0` leaves the spectrogram out; `?details=1` adds
    `alignment` (the CTC posteriorgram and the decoder's attention, what the page draws)."""
    demo = _demo()
    if not demo.loaded:
        return _no_model()
    started = time.perf_counter()
    data, reference = _read_audio_and_reference()
    audio = decode_audio(data, demo.recognizer.sample_rate, demo.settings.max_seconds)
    if demo.recognizer.is_silent(audio.wave):
        # judged as the model sees it (DC offset removed), by the recognizer's one silence rule
        raise BadAudio(422, "silent_audio",
                       f"the audio is silent (peak {demo.recognizer.level_dbfs(audio.wave):.0f} dBFS once the "
                       "DC offset is removed, as the model hears it); nothing to recognize — check the "
                       "microphone or the file")
    if len(audio.wave) < demo.recognizer.min_samples:
        # an empty transcript and a 3-frame spectrogram would look like a result; say why there is none
        raise BadAudio(422, "too_short", f"the audio is {audio.duration_s:.3f} s long, too short to recognise: "
                                         f"this model needs at least "
                                         f"{demo.recognizer.min_samples / demo.recognizer.sample_rate:.2f} s")
    details = _flag("details", default=False)
    spectrogram = _flag("spectrogram", default=True)
    t0 = time.perf_counter()
    # The one road from audio to text; `details` also keeps the trace (posteriorgram, attention), which
    # costs one more decoder pass. None for audio decoded in pieces (longer than the model was trained on).
    result = demo.recognizer.recognize(audio.wave, audio.sample_rate, nbest=1, trace=details)
    recognize_s = time.perf_counter() - t0
    trace = result.trace
    text = result.text
    body = {
        "text": text,
        "tokens": _token_times(result),
        "duration_s": round(audio.duration_s, 3),
        "encoder_frame_s": round(demo.recognizer.encoder_frame_s, 6),
        "sample_rate_in": audio.sample_rate_in,
        "channels": audio.channels,
        "format": audio.format,
        "recognize_s": round(recognize_s, 4),
        "rtf": round(recognize_s / max(audio.duration_s, 1e-6), 4),
    }
    if len(result.segments) > 1:
        body["segments"] = [[round(a, 3), round(b, 3)] for a, b in result.segments]
    if reference:
        body["reference"] = reference
        body["cer"] = _cer(reference, text)
    if spectrogram:
        # the fbank the model read; an SSL model reads the wave, and the picture is the input's log-mel
        feats = (trace.fbank if trace is not None and trace.frontend == "fbank"
                 else demo.recognizer.features(audio.wave, audio.sample_rate))
        if len(feats):
            body["spectrogram"] = png_data_uri(spectrogram_png(feats))
    if details and trace is not None:
        view = trace.demo_json(max_tokens=DETAIL_TOKENS, decimals=DETAIL_DECIMALS)
        body["alignment"] = {"num_frames": len(trace.ctc_logp), "posteriorgram": view["posteriorgram"],
                             "attention": view["attention"]}
    body["total_s"] = round(time.perf_counter() - started, 4)
    return jsonify(body)


def _flag(name: str, default: bool) -> bool:
    """A yes/no query parameter: 0/false/no/off and 1/true/yes/on; anything else is the default."""
    value = request.args.get(name, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    return default


def _token_times(result) -> list:
    """Each recognised token with the [start_s, end_s) where CTC emits it (its forced alignment).

    Should the transcript not fit the CTC frames (only possible for an attention-only search), its
    tokens come without times (`start_s`/`end_s` null) rather than not at all."""
    if result.token_times or not result.token_ids:
        return [t.as_dict() for t in result.token_times]
    return [{"token": token, "token_id": token_id, "start_frame": None, "end_frame": None, "start_s": None,
             "end_s": None} for token, token_id in zip(result.tokens, result.token_ids)]


def _read_audio_and_reference():
    """The audio bytes (multipart field `file`, or else the raw body) and an optional reference text."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file") or next(iter(request.files.values()), None)
        if upload is None and "file" in request.form:
            # a part named 'file' without a filename is a text field: its bytes were decoded as text
            # and cannot be audio any more (curl's -F "file=<clip.wav" sends exactly that)
            raise BadAudio(400, "no_file", "the field 'file' arrived as a text field, without a filename, "
                                           "so it cannot hold audio; send it as a file part: "
                                           "curl -F \"file=@clip.wav\" (with @, not <), or in a browser "
                                           "FormData.append('file', blob, 'clip.wav')")
        if upload is None:
            raise BadAudio(400, "no_file", "the form has no file; send the audio in a field named 'file' "
                                           "(curl -F \"file=@clip.wav\")")
        return upload.read(), (request.form.get("reference") or request.args.get("reference", "")).strip()
    # Raw body: read it before anything touches request.form (which would consume the stream).
    return request.get_data(cache=False), request.args.get("reference", "").strip()


def _cer(reference: str, hypothesis: str) -> dict:
    """The project's CER (asrdemo.score: characters, spaces ignored) of one pair, with its counts.
    `reference` is stripped and not empty, so it has at least one character."""
    ref = score.units(reference)
    alignment = score.align(ref, score.units(hypothesis))
    return {"cer": round(100.0 * alignment.errors / len(ref), 2), "ref_chars": len(ref),
            "S": alignment.count("S"), "D": alignment.count("D"), "I": alignment.count("I")}


# -- errors: JSON for the API, with the reason in words --------------------------------------------


def _bad_audio(e: BadAudio):
    return _error(e.status, e.code, e.message)


def _http_error(e: HTTPException):
    if isinstance(e, RequestEntityTooLarge):
        limit = _demo().settings.max_upload_mb
        return _error(413, "too_large", f"the upload is larger than this server's limit of {limit:g} MB")
    if request.path.startswith("/api/") or request.path == "/healthz":
        return _error(e.code or 500, (e.name or "error").lower().replace(" ", "_"), e.description or str(e))
    return e


def _internal_error(e: Exception):
    log.exception("unhandled error on %s %s", request.method, request.path)
    return _error(500, "internal_error", f"the server failed on this request ({type(e).__name__}); "
                                         "it keeps serving other requests")
