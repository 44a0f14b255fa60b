"""`asrdemo explain --streaming`: when each character was first shown while the audio streamed in.

Streams the file through `StreamingRecognizer` (docs/streaming.md) and draws `streaming.png`:
the fbank, each character's span in the full-context CTC alignment (when it was spoken), an arrow
from the end of that span to the moment the partial text first showed it, and the chunk
boundaries. `streaming.json` holds the chunks' partial texts and the per-character latencies.
"""

import json
import logging
from pathlib import Path

from asrdemo.data.audio import load_audio
from asrdemo.explain import new_figure, save_figure, token_label, use_cjk_font
from asrdemo.utils.io import atomic_write_text

log = logging.getLogger(__name__)


def plot_streaming(session, latencies, feats, path: Path, title: str) -> None:
    """feats (T, mel) fbank of the streamed audio; latencies from `token_latencies`."""
    rec = session.rec
    frame_s = rec.fbank.frame_shift_s
    fig = new_figure(10, 4.2)
    ax = fig.add_subplot()
    ax.imshow(feats.T, origin="lower", aspect="auto", interpolation="nearest", cmap="magma",
              extent=[0.0, len(feats) * frame_s, -0.5, feats.shape[1] - 0.5])
    for chunk in session.chunks:
        ax.axvline(chunk.audio_end_s, color="white", linestyle=":", linewidth=0.8, alpha=0.7)
    bins = feats.shape[1]
    for k, t in enumerate(latencies):
        y = bins * (0.85 - 0.12 * (k % 4))  # four rows, so neighbours never overlap
        ax.axvspan(t.start_s, t.end_s, color="cyan", alpha=0.3)
        ax.text(t.start_s, y, token_label(t.token), ha="left", va="center", fontsize=12, color="white",
                bbox=dict(boxstyle="round,pad=0.12", facecolor="black", alpha=0.6))
        if t.first_shown_s is not None:
            ax.annotate("", xy=(t.first_shown_s, y), xytext=(t.end_s, y),
                        arrowprops=dict(arrowstyle="->", color="yellow", linewidth=1.2))
    ax.set_xlim(0, max(session.duration_s, 1e-3))
    ax.set_xlabel("time (s)   cyan: spoken (full-context CTC alignment)   arrow: to its first partial   "
                  "dotted: chunk ends")
    ax.set_ylabel("mel bin")
    ax.set_title(title)
    save_figure(fig, path)


def explain_streaming(exp_dir, audio_path, out_dir, chunk_size: int = 16, num_left_chunks: int = -1,
                      model_file=None, decode_conf=None) -> dict:
    """Stream `audio_path` through the exp dir's model; write streaming.png and streaming.json
    into `out_dir` -> the JSON's content."""
    from asrdemo.decode.recognizer import Recognizer
    from asrdemo.decode.streaming import StreamingRecognizer, recognize_streaming
    from asrdemo.decode.streaming_latency import token_latencies

    rec = Recognizer.from_exp_dir(exp_dir, model_file=model_file, decode_conf=decode_conf)
    streamer = StreamingRecognizer(rec, chunk_size, num_left_chunks)
    wave, _ = load_audio(audio_path, rec.sample_rate)
    session = recognize_streaming(streamer, wave, rec.sample_rate)
    latencies = token_latencies(session, wave)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    use_cjk_font()
    note = "" if streamer.model_is_streaming else " (NOT a streaming model)"
    plot_streaming(session, latencies, rec.fbank(wave), out_dir / "streaming.png",
                   f"streaming, chunk {chunk_size} frames = {streamer.chunk_seconds:.2f} s{note}: "
                   f"{session.result.text}")
    data = {"audio": str(audio_path), "chunk_size": chunk_size, "num_left_chunks": num_left_chunks,
            "chunk_s": streamer.chunk_seconds, "streaming_model": streamer.model_is_streaming,
            "final": session.result.text, "chunks": [c.as_dict() for c in session.chunks],
            "tokens": [{"token": t.token, "start_s": t.start_s, "end_s": t.end_s,
                        "first_shown_s": t.first_shown_s, "latency_s": t.latency_s} for t in latencies]}
    atomic_write_text(out_dir / "streaming.json", json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    log.info("%s -> %s: streamed in %d chunks of %d frames, final %r", audio_path, out_dir / "streaming.png",
             len(session.chunks), chunk_size, session.result.text)
    return data
