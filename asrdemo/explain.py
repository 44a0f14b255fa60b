"""`asrdemo explain EXP_DIR AUDIO --out DIR`: follow one utterance from waveform to text.

    asrdemo explain exp/train_mini sample/test.wav --out /tmp/explain

The recognizer that `asrdemo decode` and the demo use computes everything
(`Recognizer.recognize(wave, rate, trace=True)`, asrdemo/decode/trace.py):

    wave (any rate) -> resample -> fbank (T, 80) -> CMVN -> encoder (T', D), T' ~ T / subsampling
        -> CTC log-posteriors (T', V) -> search (n-best) -> CTC forced alignment of the best
        -> the attention decoder's source attention for the best (L + 1, T')

and this module only draws it: one PNG per stage, `trace.json` (every shape and number in the
figures, and the per-token times) and `index.md` (the figures in order, each with what it shows).
With an SSL exp dir (`frontend: ssl`) figure 2 shows the SSL frontend's output instead of the fbank,
and `08_layer_weights.png` how much of each of the SSL model's layers the weighted sum takes.
Audio longer than the model was trained on is decoded in pieces (asrdemo/decode/segment.py):
then only the transcript and its character times are written, as no single trace covers it.
"""

import dataclasses
import json
import logging
import math
from pathlib import Path

import numpy as np

from asrdemo.data.audio import load_audio
from asrdemo.decode.alignment import best_path_score
from asrdemo.decode.trace import UtteranceTrace, rounded
from asrdemo.errors import AsrdemoError
from asrdemo.utils.io import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

FIGURES = (  # file name -> the sentences of index.md (formatted with the trace's numbers)
    ("01_waveform.png", "The waveform",
     "The audio as the model hears it: {duration_s:.2f} s, resampled from {original_sample_rate} Hz to "
     "{sample_rate} Hz ({num_samples} samples). Amplitude is in [-1, 1]; silence at the edges is normal."),
    ("02_fbank.png", "80-dim log-mel filterbank, before and after CMVN",
     "Top: the Kaldi fbank, {num_frames} frames (one every {frame_shift_ms:g} ms, each a "
     "{frame_length_ms:g} ms window) x {num_mel_bins} mel bins, log energy. Bottom: the same after global "
     "CMVN (the training set's mean subtracted, divided by its standard deviation, per bin): what the "
     "encoder actually reads; values near 0 are 'average'."),
    ("03_subsampling.png", "Subsampling: {num_frames} fbank frames -> {encoder_frames} encoder frames",
     "The convolutional front of the encoder keeps one frame in {subsampling_rate}: {num_frames} frames of "
     "{frame_shift_ms:g} ms become {encoder_frames} encoder frames, one every {encoder_frame_ms:g} ms. The "
     "shaded box marks the {receptive_frames} fbank frames ({receptive_field_ms:g} ms of audio) that one "
     "encoder frame (the outlined column below) is computed from, before self-attention mixes in the rest."),
    ("04_ctc_posteriorgram.png", "CTC posteriorgram with the greedy path",
     "For each encoder frame, the CTC layer's probability of every token ({vocab_size} in all; the "
     "{shown_tokens} most salient shown). Most frames say <blank>; each character 'spikes' on a frame or "
     "two. Dots: the greedy path (the best token per frame); boxes: the forced alignment of the final "
     "transcript."),
    ("05_alignment.png", "Each character at its time",
     "The final transcript placed on the fbank: every character is drawn at the frames where CTC emits it "
     "in the forced alignment of the transcript (times in trace.json, `alignment.tokens`)."),
    ("06_attention.png", "Decoder source attention",
     "For each output token (rows, ending with <eos>), where the attention decoder looked among the "
     "{encoder_frames} encoder frames while predicting it, one panel per decoder layer (heads averaged). "
     "A diagonal means the decoder reads the audio left to right as it writes."),
    ("07_hypotheses.png", "The beam's best hypotheses",
     "The top {num_hypotheses} hypotheses of the {mode} search with their CTC log-likelihood "
     "log p_ctc(y|x), attention log-likelihood log p_att(y|x) and the total score "
     "(1 - {ctc_weight:g}) x attention + {ctc_weight:g} x CTC (+ length penalty) that ranks them."),
)
# an SSL exp dir (trace.frontend == "ssl"): these replace figure 2's and 3's words, and figure 8 is added
SSL_FIGURES = {
    "02_fbank.png": ("SSL features: {ssl_source}, projected to {num_mel_bins} dims",
                     "The self-supervised model `{ssl_model}` reads the {sample_rate} Hz waveform itself: its CNN "
                     "makes one frame every {frame_shift_ms:g} ms (each from {frame_length_ms:g} ms of audio), and "
                     "{ssl_source} of its hidden states, projected by a learned linear layer to {num_mel_bins} "
                     "dims, is what the encoder reads: {num_frames} frames. Unlike fbank these numbers have no "
                     "physical unit; global CMVN is not used."),
    "03_subsampling.png": ("Subsampling: {num_frames} SSL frames -> {encoder_frames} encoder frames",
                           "The convolutional front of the encoder keeps one frame in {subsampling_rate}: "
                           "{num_frames} SSL frames of {frame_shift_ms:g} ms become {encoder_frames} encoder "
                           "frames, one every {encoder_frame_ms:g} ms. The shaded box marks the {receptive_frames} "
                           "SSL frames that one encoder frame (the outlined column below) is computed from (each "
                           "SSL frame has itself seen the whole utterance through the model's self-attention)."),
    "08_layer_weights.png": ("Which layers of the SSL model the ASR model uses",
                             "The learned weights of the weighted sum (SUPERB, Yang et al. 2021): softmax over "
                             "{num_hidden_states} hidden states (0: the transformer's input, l: layer l's output), so "
                             "they sum to 1. The dashed line is where they started, 1/{num_hidden_states} each; "
                             "most weight is on layer {top_layer}."),
}


# ------------------------------------------------------------------------------------ trace.json


def _stats(a: np.ndarray) -> dict:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return {"shape": list(a.shape)}
    return {"shape": list(a.shape), "min": round(float(a.min()), 4), "max": round(float(a.max()), 4),
            "mean": round(float(a.mean()), 4), "std": round(float(a.std()), 4)}


def trace_numbers(trace: UtteranceTrace, max_tokens: int = 24) -> dict:
    """The flat numbers the figure captions use (index.md)."""
    weights = trace.layer_weights
    return {
        "ssl_model": trace.ssl_model, "num_hidden_states": None if weights is None else len(weights),
        "top_layer": None if weights is None or not len(weights) else int(np.argmax(weights)),
        "ssl_source": ("the learned weighted sum" if trace.ssl_layer == "weighted_sum"
                       else f"layer {trace.ssl_layer}" if trace.ssl_layer is not None else None),
        "duration_s": trace.duration_s, "original_sample_rate": trace.original_sample_rate,
        "sample_rate": trace.sample_rate, "num_samples": len(trace.wave),
        "num_frames": len(trace.fbank), "num_mel_bins": trace.fbank.shape[1],
        "frame_shift_ms": trace.frame_shift_s * 1000, "frame_length_ms": trace.frame_length_s * 1000,
        "encoder_frames": len(trace.encoder_out), "subsampling_rate": trace.subsampling_rate,
        "encoder_frame_ms": round(trace.encoder_frame_s * 1000, 3), "receptive_frames": trace.receptive_frames,
        "receptive_field_ms": round(((trace.receptive_frames - 1) * trace.frame_shift_s + trace.frame_length_s) * 1000,
                                    3),
        "vocab_size": len(trace.token_list), "shown_tokens": len(trace.salient_tokens(max_tokens)),
        "num_hypotheses": len(trace.hypotheses), "mode": trace.mode, "ctc_weight": trace.ctc_weight,
    }


def trace_to_json(trace: UtteranceTrace, audio_path=None, figures=(), max_tokens: int = 24) -> dict:
    """Every shape and number the figures show, plus the per-token times of the transcript."""
    n = trace_numbers(trace, max_tokens)
    demo = trace.demo_json(max_tokens, decimals=4)
    greedy = trace.greedy_path
    best = trace.best
    return {
        "audio": {"path": None if audio_path is None else str(audio_path),
                  "original_sample_rate": n["original_sample_rate"], "sample_rate": n["sample_rate"],
                  "num_samples": n["num_samples"], "duration_s": round(n["duration_s"], 4),
                  "wave": _stats(trace.wave)},
        "fbank": {**_stats(trace.fbank), "frame_shift_ms": n["frame_shift_ms"],
                  "frame_length_ms": n["frame_length_ms"], "num_mel_bins": n["num_mel_bins"]},
        "fbank_cmvn": _stats(trace.fbank_cmvn),
        "frontend": {"kind": trace.frontend, "ssl_model": trace.ssl_model, "layer": trace.ssl_layer,
                     "layer_weights": None if trace.layer_weights is None else rounded(trace.layer_weights, 6)},
        "encoder": {**_stats(trace.encoder_out), "input_frames": n["num_frames"],
                    "output_frames": n["encoder_frames"], "subsampling_rate": n["subsampling_rate"],
                    "frame_ms": n["encoder_frame_ms"], "receptive_frames": n["receptive_frames"],
                    "receptive_field_ms": n["receptive_field_ms"]},
        "ctc": {"shape": list(trace.ctc_logp.shape), "vocab_size": n["vocab_size"], "blank_id": 0,
                "greedy_path": greedy, "greedy_text_tokens": [trace.token_list[t] for t in trace.greedy_token_ids],
                "best_path_score": round(best_path_score(trace.ctc_logp), 4),
                "posteriorgram": demo["posteriorgram"]},
        "decode": {"mode": trace.mode, "ctc_weight": trace.ctc_weight,
                   "hypotheses": [{**dataclasses.asdict(h), **{k: round(getattr(h, k), 4) for k in
                                   ("ctc_score", "att_score", "total_score", "search_score")},
                                   **({"lm_score": round(h.lm_score, 4)} if h.lm_score is not None else {}),
                                   **({"spell_score": round(h.spell_score, 4)} if h.spell_score is not None else {})}
                                  for h in trace.hypotheses]},
        "text": best.text if best else "",
        "alignment": {
            "path_score": None if trace.alignment is None else round(trace.alignment.score, 4),
            "best_path_score": round(best_path_score(trace.ctc_logp), 4),
            "frame_labels": None if trace.alignment is None else trace.alignment.frame_labels,
            "encoder_frame_s": trace.encoder_frame_s,
            "tokens": demo["tokens"],
        },
        "attention": {"shape": list(trace.attention.shape), "layers": int(trace.attention.shape[0]),
                      "rows": demo["attention"]["rows"],
                      "weights": rounded(trace.attention, 4)},
        "figures": list(figures),
    }


# ------------------------------------------------------------------------------------ figures

CJK_FONTS = ("IPAexGothic", "IPAGothic", "Noto Sans CJK JP", "Noto Sans JP", "TakaoGothic", "VL Gothic",
             "Source Han Sans JP", "Hiragino Sans", "Yu Gothic", "MS Gothic")


def use_cjk_font():
    """Latin from DejaVu Sans, anything else from the first Japanese font installed."""
    import matplotlib
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    cjk = [name for name in CJK_FONTS if name in installed]
    if not cjk:
        log.warning("no Japanese font found (e.g. apt install fonts-ipafont-gothic): characters will show as boxes")
    matplotlib.rcParams["font.family"] = ["DejaVu Sans", *cjk[:1]]


def new_figure(width, height):
    """A matplotlib Figure of width x height inches on the Agg canvas (no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: Path):
    """Write fig as a PNG at path atomically (a killed run leaves no half-written image)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _time_extent(num_frames, frame_s, num_rows):
    return [0.0, num_frames * frame_s, -0.5, num_rows - 0.5]


def plot_waveform(trace: UtteranceTrace, path: Path):
    fig = new_figure(9, 2.4)
    ax = fig.add_subplot()
    t = np.arange(len(trace.wave)) / trace.sample_rate
    ax.plot(t, trace.wave, linewidth=0.5, color="tab:blue")
    ax.set_xlim(0, max(trace.duration_s, 1e-3))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("amplitude")
    ax.set_title(f"waveform: {trace.duration_s:.2f} s at {trace.sample_rate} Hz "
                 f"(input {trace.original_sample_rate} Hz)")
    save_figure(fig, path)


def _feature_label(trace: UtteranceTrace) -> str:
    return "mel bin" if trace.frontend == "fbank" else "feature dim"


def plot_fbank(trace: UtteranceTrace, path: Path):
    panels = [(trace.fbank, f"fbank {trace.fbank.shape[0]} x {trace.fbank.shape[1]}", "log mel energy"),
              (trace.fbank_cmvn, "after global CMVN (what the encoder reads)", "normalised (std units)")]
    if trace.frontend != "fbank":  # no CMVN: one panel, the features as the encoder reads them
        panels = [(trace.fbank, f"SSL features {trace.fbank.shape[0]} x {trace.fbank.shape[1]} "
                                f"({trace.ssl_model}; what the encoder reads)", "value")]
    fig = new_figure(9, 2.5 * len(panels))
    for k, (matrix, title, label) in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, k + 1)
        im = ax.imshow(matrix.T, origin="lower", aspect="auto", interpolation="nearest", cmap="magma",
                       extent=[0.0, len(matrix) * trace.frame_shift_s, -0.5, matrix.shape[1] - 0.5])
        ax.set_ylabel(_feature_label(trace))
        ax.set_xlabel("time (s)")
        ax.set_title(title)
        fig.colorbar(im, ax=ax, label=label)
    save_figure(fig, path)


def plot_subsampling(trace: UtteranceTrace, path: Path):
    from matplotlib.patches import Rectangle

    n = trace_numbers(trace)
    fig = new_figure(9, 5)
    top, bottom = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    shift, frame_s = trace.frame_shift_s, trace.encoder_frame_s
    top.imshow(trace.fbank_cmvn.T, origin="lower", aspect="auto", interpolation="nearest", cmap="magma",
               extent=[0.0, len(trace.fbank) * shift, -0.5, trace.fbank.shape[1] - 0.5])
    unit = "fbank" if trace.frontend == "fbank" else "SSL"
    top.set_title(f"{n['num_frames']} {unit} frames, one every {n['frame_shift_ms']:g} ms")
    top.set_ylabel(_feature_label(trace))
    enc = trace.encoder_out
    if len(enc):
        bottom.imshow(enc.T, origin="lower", aspect="auto", interpolation="nearest", cmap="viridis",
                      extent=[0.0, len(enc) * frame_s, -0.5, enc.shape[1] - 0.5])
        t = len(enc) // 2  # the middle encoder frame and the fbank frames it is computed from
        first = t * trace.subsampling_rate
        top.add_patch(Rectangle((first * shift, -0.5), (trace.receptive_frames - 1) * shift + trace.frame_length_s,
                                trace.fbank.shape[1], fill=True, alpha=0.35, color="cyan"))
        bottom.add_patch(Rectangle((t * frame_s, -0.5), frame_s, enc.shape[1], fill=False, edgecolor="cyan",
                                   linewidth=2))
    bottom.set_title(f"-> {n['encoder_frames']} encoder frames (x{n['subsampling_rate']}): one every "
                     f"{n['encoder_frame_ms']:g} ms, each computed from {n['receptive_frames']} {unit} frames "
                     f"= {n['receptive_field_ms']:g} ms")
    bottom.set_ylabel("encoder dim")
    for ax in (top, bottom):
        ax.set_xlabel("time (s)")
        ax.set_xlim(0, max(len(trace.fbank) * shift, 1e-3))
    save_figure(fig, path)


def token_label(token: str) -> str:
    """How a token is printed on a plot's axis (the word separator as ␣)."""
    return "␣" if token == "<space>" else token


def plot_posteriorgram(trace: UtteranceTrace, path: Path, max_tokens: int = 24):
    rows = trace.salient_tokens(max_tokens)
    fig = new_figure(10, 1.5 + 0.28 * len(rows))
    ax = fig.add_subplot()
    frame_s = trace.encoder_frame_s
    probs = np.exp(trace.ctc_logp[:, rows]).T if len(trace.ctc_logp) else np.zeros((len(rows), 0))
    im = ax.imshow(probs, origin="lower", aspect="auto", interpolation="nearest", cmap="Greys", vmin=0, vmax=1,
                   extent=_time_extent(probs.shape[1], frame_s, len(rows)))
    row_of = {tok: r for r, tok in enumerate(rows)}
    centres = (np.arange(len(trace.ctc_logp)) + 0.5) * frame_s
    greedy = trace.greedy_path
    ax.plot(centres, [row_of.get(t, np.nan) for t in greedy], ".-", color="tab:red", markersize=4, linewidth=0.6,
            label="greedy path (best token per frame)")
    if trace.alignment is not None:
        from matplotlib.patches import Rectangle

        for k, (tok, (start, end)) in enumerate(zip(trace.alignment.token_ids, trace.alignment.spans)):
            if tok in row_of:
                ax.add_patch(Rectangle((start * frame_s, row_of[tok] - 0.5), (end - start) * frame_s, 1.0, fill=False,
                                       edgecolor="tab:blue", linewidth=1.2,
                                       label="forced alignment of the transcript" if k == 0 else None))
    ax.set_yticks(range(len(rows)), [token_label(trace.token_list[i]) for i in rows])
    ax.set_xlabel(f"time (s); one encoder frame = {frame_s * 1000:g} ms")
    ax.set_ylabel("token")
    ax.set_title(f"CTC posteriorgram: {len(trace.ctc_logp)} frames x {len(trace.token_list)} tokens "
                 f"({len(rows)} shown)")
    ax.legend(loc="upper right", fontsize="small")
    fig.colorbar(im, ax=ax, label="P(token | frame)")
    save_figure(fig, path)


def plot_alignment(trace: UtteranceTrace, path: Path):
    fig = new_figure(10, 3.6)
    ax = fig.add_subplot()
    ax.imshow(trace.fbank.T, origin="lower", aspect="auto", interpolation="nearest", cmap="magma",
              extent=[0.0, len(trace.fbank) * trace.frame_shift_s, -0.5, trace.fbank.shape[1] - 0.5])
    for k, t in enumerate(trace.token_times):
        ax.axvspan(t.start_s, t.end_s, color="cyan", alpha=0.35)
        y = trace.fbank.shape[1] * (0.82 if k % 2 == 0 else 0.66)  # alternate rows so neighbours never overlap
        ax.text((t.start_s + t.end_s) / 2, y, token_label(t.token), ha="center", va="center", fontsize=13,
                color="white", bbox=dict(boxstyle="round,pad=0.15", facecolor="black", alpha=0.6))
    ax.set_xlim(0, max(trace.duration_s, 1e-3))
    ax.set_xlabel("time (s)")
    ax.set_ylabel(_feature_label(trace))
    best = trace.best
    ax.set_title(f"CTC alignment of the transcript: {best.text if best else ''}")
    save_figure(fig, path)


def plot_attention(trace: UtteranceTrace, path: Path):
    layers = trace.attention
    num = max(len(layers), 1)
    cols = min(num, 3)
    rows_n = math.ceil(num / cols)
    labels = [token_label(t) for t in (trace.best.tokens if trace.best else [])] + ["<eos>"]
    fig = new_figure(4.2 * cols + 1, 1.2 + rows_n * (0.6 + 0.22 * len(labels)))
    frame_s = trace.encoder_frame_s
    for i in range(num):
        ax = fig.add_subplot(rows_n, cols, i + 1)
        if len(layers):
            im = ax.imshow(layers[i], aspect="auto", interpolation="nearest", cmap="viridis", vmin=0,
                           extent=[0.0, layers.shape[2] * frame_s, len(labels) - 0.5, -0.5])
            ax.set_title(f"decoder layer {i + 1}")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("encoder frame time (s)")
        ax.set_ylabel("output token")
    if len(layers):
        fig.colorbar(im, ax=fig.axes, label="attention weight (heads averaged)")
    save_figure(fig, path)


def plot_hypotheses(trace: UtteranceTrace, path: Path):
    hyps = trace.hypotheses
    fig = new_figure(10, 1.8 + 0.7 * max(len(hyps), 1))
    ax = fig.add_subplot()
    y = np.arange(len(hyps))
    bars = [("ctc_score", "CTC log p_ctc(y|x)", "tab:orange"), ("att_score", "attention log p_att(y|x)", "tab:green"),
            ("total_score", "total (ranks the beam)", "tab:blue")]
    if any(h.lm_score is not None for h in hyps):  # the LM's share of the total: lm_weight * log p_lm(y)
        bars.insert(2, ("lm_share", f"LM {hyps[0].lm_weight:g} x log p_lm(y)", "tab:purple"))
    if any(h.spell_lm_weight for h in hyps):  # a kana model's spelling share: spell_lm_weight * log p_mozc(text)
        bars.insert(-1, ("spell_share", f"spelling {hyps[0].spell_lm_weight:g} x log p_mozc(text)", "tab:brown"))
    shares = {"lm_share": lambda h: h.lm_weight * (h.lm_score or 0.0),
              "spell_share": lambda h: h.spell_lm_weight * (h.spell_score or 0.0)}
    width = 0.81 / len(bars)  # 0.27 each for the three bars without an LM
    for k, (key, label, color) in enumerate(bars):
        values = [shares[key](h) if key in shares else getattr(h, key) for h in hyps]
        offset = (k - (len(bars) - 1) / 2) * width
        ax.barh(y + offset, values, height=width, color=color, label=label)
        for yy, v in zip(y, values):
            ax.text(v, yy + offset, f" {v:.2f}", va="center", ha="right" if v < 0 else "left", fontsize=7)
    ax.set_yticks(y, [f"{h.rank}. {h.text or '(empty)'}" for h in hyps])
    ax.invert_yaxis()
    ax.set_xlabel("score (natural log probability; higher is better)")
    ax.set_title(f"top {len(hyps)} hypotheses of the {trace.mode} search (ctc_weight {trace.ctc_weight:g})")
    fig.legend(loc="outside lower center", ncols=len(bars), fontsize="small")
    save_figure(fig, path)


def plot_layer_weights(trace: UtteranceTrace, path: Path):
    weights = np.asarray(trace.layer_weights, dtype=np.float64)
    fig = new_figure(7, 3)
    ax = fig.add_subplot()
    layers = np.arange(len(weights))
    top = int(np.argmax(weights))
    ax.bar(layers, weights, color=["tab:orange" if i == top else "tab:blue" for i in layers])
    ax.axhline(1.0 / len(weights), color="grey", linestyle="--", linewidth=1, label="start: uniform")
    ax.set_xticks(layers)
    ax.set_xlabel("hidden state (0: transformer input, l: output of layer l)")
    ax.set_ylabel("weight (softmax, sums to 1)")
    ax.set_title(f"SSL layer weights of {trace.ssl_model}")
    ax.legend(loc="upper right", fontsize="small")
    save_figure(fig, path)


PLOTS = {
    "01_waveform.png": plot_waveform,
    "02_fbank.png": plot_fbank,
    "03_subsampling.png": plot_subsampling,
    "04_ctc_posteriorgram.png": plot_posteriorgram,
    "05_alignment.png": plot_alignment,
    "06_attention.png": plot_attention,
    "07_hypotheses.png": plot_hypotheses,
}
SSL_PLOTS = {"08_layer_weights.png": plot_layer_weights}  # only for an SSL frontend's weighted sum


def figures_for(trace: UtteranceTrace) -> list:
    """[(file name, title, text)] of the figures this trace gets: FIGURES, with an SSL frontend's
    words for figures 2 and 3, and its layer weights (figure 8) when it learned a weighted sum."""
    if trace.frontend == "fbank":
        return list(FIGURES)
    figures = [(name, *SSL_FIGURES.get(name, (title, text))) for name, title, text in FIGURES]
    if trace.layer_weights is not None:
        figures.append(("08_layer_weights.png", *SSL_FIGURES["08_layer_weights.png"]))
    return figures


# ------------------------------------------------------------------------------------ the command


def index_markdown(trace: UtteranceTrace, audio_path, exp_dir) -> str:
    n = trace_numbers(trace)
    best = trace.best
    lines = [f"# One utterance through the model: `{Path(audio_path).name}`", "",
             f"Model: `{exp_dir}`. Transcript: **{best.text if best else ''}**", "",
             "Every number here is in `trace.json`. The figures follow the data from the waveform to the text.", ""]
    for k, (name, title, text) in enumerate(figures_for(trace), 1):
        lines += [f"## {k}. {title.format(**n)}", "", text.format(**n), "", f"![{name}]({name})", ""]
    return "\n".join(lines + _times_table(trace.token_times))


def _times_table(times) -> list:
    if not times:
        return []
    return (["## Character times", "", "| token | start (s) | end (s) |", "|---|---|---|"]
            + [f"| {token_label(t.token)} | {t.start_s:.3f} | {t.end_s:.3f} |" for t in times] + [""])


def explain(exp_dir, audio_path, out_dir, mode=None, nbest=5, model_file=None, decode_conf=None,
            max_tokens: int = 24):
    """Recognize `audio_path` with the exp dir's recognizer and write figures, trace.json and index.md
    (for audio decoded in pieces: trace.json and index.md with the transcript and its times).
    -> the `Recognition`. Raises AsrdemoError for audio that is silent or too short for the model."""
    from asrdemo.decode.recognizer import Recognizer

    rec = Recognizer.from_exp_dir(exp_dir, model_file=model_file, decode_conf=decode_conf)
    wave, sample_rate = load_audio(audio_path)
    model_wave = rec.model_wave(wave, sample_rate)
    if len(model_wave) < rec.min_samples:
        raise AsrdemoError(f"{audio_path}: {len(model_wave) / rec.sample_rate * 1000:.0f} ms of audio is too short "
                           f"for the model (it needs at least {rec.min_samples / rec.sample_rate * 1000:.0f} ms)")
    if rec.is_silent(model_wave):
        raise AsrdemoError(f"{audio_path}: silent (peak {rec.level_dbfs(model_wave):.0f} dBFS once the DC offset is "
                           "removed, as the model hears it): nothing to explain")
    result = rec.recognize(wave, sample_rate, mode=mode, nbest=max(int(nbest), 1), trace=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trace = result.trace
    if trace is None:  # decoded in pieces: the transcript and its global times only
        data = {"audio": {"path": str(audio_path), "duration_s": round(result.duration_s, 4)},
                "segments": [[round(a, 3), round(b, 3)] for a, b in result.segments], "text": result.text,
                "alignment": {"tokens": [t.as_dict() for t in result.token_times]}, "figures": []}
        markdown = [f"# `{Path(audio_path).name}`, decoded in {len(result.segments)} pieces", "",
                    f"Model: `{exp_dir}`. Transcript: **{result.text}**", "",
                    f"The audio ({result.duration_s:.1f} s) is longer than the {rec.max_piece_s:.1f} s this model "
                    "was trained on, so it was cut at pauses and decoded piece by piece; no figures.", ""]
        atomic_write_text(out_dir / "trace.json", json.dumps(data, ensure_ascii=False, indent=1) + "\n")
        atomic_write_text(out_dir / "index.md", "\n".join(markdown + _times_table(result.token_times)))
        return result
    use_cjk_font()
    names = [name for name, _, _ in figures_for(trace)]
    for name in names:
        plot = PLOTS.get(name) or SSL_PLOTS[name]
        if plot is plot_posteriorgram:
            plot(trace, out_dir / name, max_tokens)
        else:
            plot(trace, out_dir / name)
    data = trace_to_json(trace, audio_path, figures=names, max_tokens=max_tokens)
    atomic_write_text(out_dir / "trace.json", json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    atomic_write_text(out_dir / "index.md", index_markdown(trace, audio_path, exp_dir))
    log.info("%s -> %s: %r, %d figures, trace.json, index.md", audio_path, out_dir, result.text, len(names))
    return result


def add_arguments(p):
    p.add_argument("exp_dir", help="an exp dir (exp/<tag>) or a packaged model dir")
    p.add_argument("audio", help="an audio file (wav, flac, ogg; any sample rate, mono or not)")
    p.add_argument("--out", required=True, help="folder for the figures, trace.json and index.md")
    p.add_argument("--mode", default=None, help="search mode (default: the exp dir's decode.yaml, else joint)")
    p.add_argument("--decode_config", default=None, help="a decode YAML (default: exp_dir/decode.yaml, else defaults)")
    p.add_argument("--nbest", type=int, default=5, help="hypotheses to show (default 5)")
    p.add_argument("--model_file", default=None, help="model file (default: valid.acc.ave.pth or the newest epoch)")
    p.add_argument("--max_tokens", type=int, default=24, help="rows of the posteriorgram (default 24)")
    p.add_argument("--streaming", action="store_true",
                   help="also stream the audio chunk by chunk: streaming.png shows when each character was first "
                        "shown (asrdemo/explain_streaming.py)")
    p.add_argument("--chunk_size", type=int, default=16, help="with --streaming: encoder frames per chunk (default 16)")


def main(args):
    explain(args.exp_dir, args.audio, args.out, mode=args.mode, nbest=args.nbest, model_file=args.model_file,
            decode_conf=args.decode_config, max_tokens=args.max_tokens)
    if args.streaming:
        from asrdemo.explain_streaming import explain_streaming

        explain_streaming(args.exp_dir, args.audio, args.out, args.chunk_size, model_file=args.model_file,
                          decode_conf=args.decode_config)
