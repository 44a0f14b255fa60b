"""Streaming recognition: speed, latency, and concurrent sessions on one gunicorn worker.

    python bench/streaming.py --exp_dir exp_train_large --data_dir data/test [--chunk_size 16]
                              [--num_utts 50] [--sessions 4] [--torch_threads 1]

1. In this process (`StreamingRecognizer`, torch threads = --torch_threads), each utterance of the
   data dir streamed in 40 ms pieces as fast as it goes:
   * RTF per chunk: a chunk's compute time / the audio it adds (p50/p95 over all chunks);
   * end of audio -> final text: the time `finish()` takes (last chunk + second pass);
   * end of a character -> its first appearance in the partial text (p50/p95): the character's end
     in the full-context CTC alignment (the reference: Japanese has no word boundaries) to the end
     of the audio heard by the chunk that first showed it, plus that chunk's compute time
     (asrdemo/decode/streaming_latency.py);
   * CER of the streaming final against `text`, when the data dir has one.
2. Against a real gunicorn (the Dockerfile's CMD, one worker) on loopback: --sessions WebSocket
   streams at once, each sending its utterances in real time (40 ms pieces); counts errors and
   measures end of audio -> final message over the socket.

Prints a markdown table for bench/RESULTS.md.
"""

import argparse
import datetime
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from demo_fixture import GunicornServer, StreamClient  # noqa: E402

from asrdemo.data.audio import load_audio  # noqa: E402
from asrdemo.data.datadir import read_kv  # noqa: E402

PIECE_S = 0.04


def pct(values, q):
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def load_utterances(data_dir: Path, num_utts: int):
    wavs = read_kv(data_dir / "wav.scp")
    texts = read_kv(data_dir / "text", allow_empty_value=True) if (data_dir / "text").is_file() else {}
    return [(utt, path, texts.get(utt)) for utt, path in sorted(wavs.items())[:num_utts]]


def in_process(args, utterances):
    from asrdemo.decode.recognizer import Recognizer
    from asrdemo.decode.streaming import StreamingRecognizer, recognize_streaming
    from asrdemo.decode.streaming_latency import token_latencies
    from asrdemo.score import align, units

    rec = Recognizer.from_exp_dir(args.exp_dir, num_threads=args.torch_threads)
    streamer = StreamingRecognizer(rec, args.chunk_size, args.num_left_chunks)
    rtf, finish, latency, unshown, errors, ref_chars = [], [], [], 0, 0, 0
    for utt, path, text in utterances:
        wave, _ = load_audio(path, rec.sample_rate)
        session = streamer.session()
        step = int(PIECE_S * rec.sample_rate)
        for start in range(0, len(wave), step):
            session.accept_waveform(wave[start:start + step], rec.sample_rate)
        started = time.perf_counter()
        session.finish()
        finish.append(time.perf_counter() - started)
        rtf += [c.compute_s / streamer.chunk_seconds for c in session.chunks]
        for t in token_latencies(session, wave):
            if t.latency_s is None:
                unshown += 1
            else:
                latency.append(t.latency_s)
        if text:
            ref = units(text)
            errors += align(ref, units(session.result.text)).errors
            ref_chars += len(ref)
    return {"streaming_model": streamer.model_is_streaming, "chunk_s": streamer.chunk_seconds,
            "rtf_p50": pct(rtf, 50), "rtf_p95": pct(rtf, 95), "finish_p50": pct(finish, 50),
            "finish_p95": pct(finish, 95), "latency_p50": pct(latency, 50), "latency_p95": pct(latency, 95),
            "characters": len(latency), "unshown": unshown,
            "cer": 100.0 * errors / ref_chars if ref_chars else None}


def one_stream(url, path, results, errors):
    """Send one file in real time over the socket; append end-of-audio -> final (s) or the error."""
    import soundfile as sf

    wave, sr = sf.read(path, dtype="int16")
    if wave.ndim == 2:
        wave = wave.mean(axis=1).astype("int16")
    ws = StreamClient(url, f"?sample_rate={sr}")
    try:
        ready = ws.receive(60) or {"type": "nothing"}
        if ready["type"] != "ready":
            raise RuntimeError(f"not ready: {ready}")
        step, t0 = int(PIECE_S * sr), time.perf_counter()
        for k, start in enumerate(range(0, len(wave), step)):
            ws.send(wave[start:start + step].astype("<i2").tobytes())
            time.sleep(max(0.0, t0 + (k + 1) * PIECE_S - time.perf_counter()))  # real time
        ended = time.perf_counter()
        ws.send(json.dumps({"type": "end"}))
        while True:
            message = ws.receive(120) or {"type": "error", "code": "timeout", "error": "no answer in 120 s"}
            if message["type"] == "final":
                results.append(time.perf_counter() - ended)
                return
            if message["type"] == "error":
                raise RuntimeError(f"{message['code']}: {message['error']}")
    except Exception as e:  # counted, not raised: the point is how many fail
        errors.append(f"{Path(path).name}: {e!r}")
    finally:
        ws.close()


def concurrent_sessions(args, utterances):
    env = {"ASRDEMO_WORKERS": "1", "ASRDEMO_THREADS": str(args.sessions + 2),
           "ASRDEMO_MAX_STREAMS": str(args.sessions), "ASRDEMO_STREAM_CHUNK": str(args.chunk_size),
           "ASRDEMO_TORCH_THREADS": str(args.torch_threads)}
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "bench_streaming_gunicorn.log"
    results, errors = [], []
    with GunicornServer(Path(args.exp_dir).resolve(), log, env=env) as server:
        def client(i):
            for _, path, _ in utterances[i::args.sessions]:
                one_stream(server.url, path, results, errors)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.sessions)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
    return {"streams": len(results) + len(errors), "errors": errors, "final_p50": pct(results, 50),
            "final_p95": pct(results, 95), "wall_s": wall}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp_dir", default=str(REPO / "exp_train_large"))
    p.add_argument("--data_dir", required=True, help="a data dir (wav.scp; text for CER)")
    p.add_argument("--chunk_size", type=int, default=16)
    p.add_argument("--num_left_chunks", type=int, default=-1)
    p.add_argument("--num_utts", type=int, default=50)
    p.add_argument("--sessions", type=int, default=4, help="concurrent WebSocket streams (0: skip that part)")
    p.add_argument("--torch_threads", type=int, default=1)
    args = p.parse_args()
    utterances = load_utterances(Path(args.data_dir), args.num_utts)
    if not utterances:
        sys.exit(f"no utterances in {args.data_dir}/wav.scp")
    a = in_process(args, utterances)
    print(f"## Streaming, {datetime.date.today()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch threads {args.torch_threads}")
    print(f"\n{args.exp_dir} ({'a streaming model' if a['streaming_model'] else 'NOT trained for streaming'}), "
          f"{args.data_dir}: {len(utterances)} utterances, chunk {args.chunk_size} encoder frames "
          f"= {a['chunk_s']:.2f} s, left chunks {args.num_left_chunks}\n")
    print("| measure | p50 | p95 |\n|---|---|---|")
    print(f"| RTF per chunk (compute / chunk audio) | {a['rtf_p50']:.3f} | {a['rtf_p95']:.3f} |")
    print(f"| end of audio -> final text (s) | {a['finish_p50']:.3f} | {a['finish_p95']:.3f} |")
    print(f"| end of a character -> first in the partial text (s; {a['characters']} characters, "
          f"{a['unshown']} only in the final) | {a['latency_p50']:.3f} | {a['latency_p95']:.3f} |")
    if a["cer"] is not None:
        print(f"\nstreaming CER (two-pass final): {a['cer']:.2f} %")
    if args.sessions > 0:
        b = concurrent_sessions(args, utterances)
        print(f"\n{args.sessions} concurrent real-time streams on one gunicorn worker: {b['streams']} streams in "
              f"{b['wall_s']:.1f} s, {len(b['errors'])} errors; end of audio -> final message "
              f"p50 {b['final_p50']:.3f} s, p95 {b['final_p95']:.3f} s")
        for e in b["errors"][:10]:
            print(f"  error: {e}")
        if b["errors"]:
            sys.exit(1)


if __name__ == "__main__":
    main()
