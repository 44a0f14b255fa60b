"""decode.sh and `asrdemo decode` as a user runs them: real files, real subprocesses.

A tiny random-weight exp dir (its transcripts are garbage); what is checked is the plumbing:
mixed rates / channels / formats, data dirs with references and scoring, the job split (--nj 1
and --nj 2 give the same hyp.txt), --cmd, skipping finished work, and clear failures.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from asrdemo import cli
from asrdemo.data.datadir import Utterance, read_kv, write_data_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_recognizer import make_tiny_exp_dir, noise  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# name, rate, channels, format: 8k/16k/44.1k/48k, mono and stereo, wav/flac/ogg
AUDIO = [("a_8k", 8000, 1, "wav"), ("b_16k_stereo", 16000, 2, "flac"), ("c_44k", 44100, 1, "ogg"),
         ("d_48k_stereo", 48000, 2, "wav"), ("e_16k", 16000, 1, "flac")]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def asrdemo(argv):
    """`asrdemo ...` in this process (the CLI's own entry point; saves a torch import per call)."""
    assert cli.main(argv) == 0


def run(cmd, cwd=REPO, ok=True):
    p = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    if ok and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    w = tmp_path_factory.mktemp("decode")
    make_tiny_exp_dir(w / "exp")
    (w / "exp" / "decode.yaml").write_text("mode: joint\nbeam_size: 3\n")
    folder = w / "audio"
    folder.mkdir()
    for i, (name, sr, ch, fmt) in enumerate(AUDIO):
        sf.write(folder / f"{name}.{fmt}", noise(0.6 + 0.2 * i, sr, seed=i, channels=ch), sr)
    (folder / "notes.txt").write_text("not audio, ignored\n")
    utts = [Utterance(f"spk1_{name}", str(folder / f"{name}.{fmt}"), "あいう かき", "spk1")
            for name, _, _, fmt in AUDIO]
    write_data_dir(w / "data", utts)
    return w


def test_folder_of_mixed_audio_nj2_equals_nj1(work):
    p = run(["./decode.sh", "--nj", "2", str(work / "exp"), str(work / "audio"), str(work / "out2")])
    assert "wrote" in p.stdout
    hyp2 = (work / "out2" / "hyp.txt").read_text(encoding="utf-8")
    keys = [line.split(" ", 1)[0] for line in hyp2.splitlines()]
    assert keys == sorted(name for name, *_ in AUDIO)  # every file, id = name, C-sorted
    assert any(len(line.split(" ", 1)) == 2 for line in hyp2.splitlines())  # some text came out
    lists = [read_kv(work / "out2" / "split2" / f"wav.{i}.scp") for i in (1, 2)]
    assert [len(x) for x in lists] == [3, 2] and not set(lists[0]) & set(lists[1])
    assert (work / "out2" / "log" / "decode.2.log").read_text().count("job 2/2: 2 utterances") == 1
    assert not (work / "out2" / "result.txt").exists()  # no references in a folder

    asrdemo(["decode", "--exp_dir", str(work / "exp"), "--input", str(work / "audio"), "--out_dir", str(work / "out1"),
             "--nj", "1"])
    assert (work / "out1" / "hyp.txt").read_text(encoding="utf-8") == hyp2


def test_data_dir_with_cmd_scores_and_skips_when_done(work):
    wrapper = work / "job_wrapper.sh"  # stands in for e.g. `srun -n1`: records that it ran each job
    wrapper.write_text(f'#!/bin/sh\necho "$$" >> {work}/wrapper_calls\nexec "$@"\n')
    wrapper.chmod(0o755)
    out = work / "out_data"
    args = ["./decode.sh", "--nj", "2", "--mode", "attention_rescoring", "--cmd", str(wrapper),
            str(work / "exp"), str(work / "data"), str(out)]
    p = run(args)
    assert len((work / "wrapper_calls").read_text().split()) == 2
    for name in ("hyp.txt", "ref.txt", "ref.trn", "hyp.trn", "result.txt", "cer.txt"):
        assert (out / name).is_file(), name
    assert (out / "cer.txt").read_text().startswith("CER") and "CER" in p.stdout
    assert list(read_kv(out / "ref.txt").values()) == ["あいう かき"] * len(AUDIO)
    assert (out / "ref.trn").read_text(encoding="utf-8").splitlines()[0] == "あ い う か き (spk1_a_8k)"

    mtime = (out / "hyp.txt").stat().st_mtime_ns
    run(args)  # finished with the same settings: nothing is decoded again
    assert (out / "hyp.txt").stat().st_mtime_ns == mtime
    assert len((work / "wrapper_calls").read_text().split()) == 4
    assert "utterances" not in (out / "log" / "decode.1.log").read_text()  # the job did not decode

    asrdemo(["decode", "--exp_dir", str(work / "exp"), "--input", str(work / "data"), "--out_dir",
             str(work / "out_data1"), "--mode", "attention_rescoring"])
    assert (work / "out_data1" / "hyp.txt").read_text() == (out / "hyp.txt").read_text()
    assert (work / "out_data1" / "cer.txt").read_text() == (out / "cer.txt").read_text()


def test_dtype_reaches_the_jobs_and_a_new_dtype_decodes_again(work):
    """`asrdemo decode --dtype int8` is passed to every job (decode.yaml records it), gives text
    for every file, and a finished OUT_DIR decoded in float32 is decoded again."""
    out = work / "out_dtype"
    base = ["decode", "--exp_dir", str(work / "exp"), "--input", str(work / "audio"), "--out_dir", str(out),
            "--nj", "2", "--mode", "joint"]
    asrdemo(base)
    assert yaml.safe_load((out / "decode.yaml").read_text())["dtype"] == "float32"
    mtime = (out / "hyp.txt").stat().st_mtime_ns
    asrdemo(base + ["--dtype", "int8"])
    assert yaml.safe_load((out / "decode.yaml").read_text())["dtype"] == "int8"
    assert (out / "hyp.txt").stat().st_mtime_ns != mtime
    keys = [line.split(" ", 1)[0] for line in (out / "hyp.txt").read_text(encoding="utf-8").splitlines()]
    assert keys == sorted(name for name, *_ in AUDIO)


def test_failures_are_clear_and_leave_no_result(work):
    p = run(["./decode.sh", "--nj", "2", str(work / "no_such_exp"), str(work / "audio"), str(work / "bad1")], ok=False)
    assert p.returncode != 0 and "not an exp dir" in p.stdout + p.stderr
    assert "Traceback" not in p.stderr

    broken = work / "broken"
    broken.mkdir()
    sf.write(broken / "good.wav", noise(0.5, 16000, seed=1), 16000)
    (broken / "zz_broken.wav").write_bytes(b"RIFF not really a wav file")
    # one unreadable file costs only itself: the rest is decoded, the file is named, the exit is 1
    p = run(["./decode.sh", "--nj", "1", str(work / "exp"), str(broken), str(work / "bad2")], ok=False)
    assert p.returncode == 1
    assert "1 of 2 utterance(s) could not be read" in p.stderr and "zz_broken" in p.stderr
    assert list(read_kv(work / "bad2" / "hyp.txt", allow_empty_value=True)) == ["good"]
    assert list(read_kv(work / "bad2" / "skipped.txt")) == ["zz_broken"]
    assert not (work / "bad2" / ".done").exists()

    p = run(["./decode.sh", "--nj", "2", "--mode", "viterbi", str(work / "exp"), str(broken), str(work / "bad3")],
            ok=False)
    assert p.returncode != 0 and "mode must be one of" in p.stderr
    p = run(["./decode.sh", "--beam", "3", str(work / "exp"), str(broken), str(work / "bad4")], ok=False)
    assert p.returncode == 2 and "unknown option --beam" in p.stderr


def test_kaldi_files_with_bom_tabs_and_a_missing_wav(work, tmp_path):
    """A `text` saved with a UTF-8 BOM, `key<TAB>value` lines (Kaldi accepts both), and one wav
    that is not there: the others are decoded and scored, the missing one is listed, exit 1."""
    data = tmp_path / "data"
    data.mkdir()
    wavs = {name: work / "audio" / f"{name}.{fmt}" for name, _, _, fmt in AUDIO}
    wavs["f_missing"] = tmp_path / "gone.wav"
    ids = sorted(wavs)
    (data / "wav.scp").write_text("".join(f"{u}\t{wavs[u]}\n" for u in ids), encoding="utf-8")
    (data / "text").write_text("".join(f"{u}\tあいう かき\n" for u in ids), encoding="utf-8-sig")
    (data / "utt2spk").write_text("".join(f"{u}\tspk1\n" for u in ids), encoding="utf-8")
    (data / "spk2utt").write_text("spk1\t" + " ".join(ids) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    p = run(["./decode.sh", "--nj", "2", str(work / "exp"), str(data), str(out)], ok=False)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "f_missing" in p.stderr and "gone.wav" in p.stderr and "Traceback" not in p.stderr
    assert list(read_kv(out / "hyp.txt", allow_empty_value=True)) == ids[:-1]
    assert list(read_kv(out / "ref.txt").values()) == ["あいう かき"] * (len(ids) - 1)
    assert (out / "cer.txt").read_text().startswith("CER")
    assert "no such file" in read_kv(out / "skipped.txt")["f_missing"]

    wavs["f_missing"].write_bytes((work / "audio" / "a_8k.wav").read_bytes())  # fixed: the run completes
    run(["./decode.sh", "--nj", "2", str(work / "exp"), str(data), str(out)])
    assert list(read_kv(out / "hyp.txt", allow_empty_value=True)) == ids
    assert (out / "skipped.txt").read_text() == "" and (out / ".done").is_file()


def test_silence_gets_the_empty_hypothesis_and_a_warning(work, tmp_path):
    """Issue 12, item 1: zeros and a constant DC offset through decode.sh: empty hypotheses and a
    warning naming each, in every mode; the speech-like file is decoded as before."""
    folder = tmp_path / "audio"
    folder.mkdir()
    sf.write(folder / "dc.wav", np.full(32000, 0.3, np.float32), 16000, subtype="PCM_16")
    sf.write(folder / "zeros.wav", np.zeros(32000, np.float32), 16000, subtype="PCM_16")
    sf.write(folder / "sound.wav", noise(1.0, 16000, seed=2), 16000)
    for mode in ("ctc_greedy", "joint", "attention_rescoring"):
        out = tmp_path / f"out_{mode}"
        run(["./decode.sh", "--nj", "1", "--mode", mode, str(work / "exp"), str(folder), str(out)])
        hyps = read_kv(out / "hyp.txt", allow_empty_value=True)
        assert hyps["dc"] == "" and hyps["zeros"] == "", (mode, hyps)
        log_text = (out / "log" / "decode.1.log").read_text()
        assert "utterance dc: silent" in log_text and "utterance zeros: silent" in log_text
        assert "utterance sound: silent" not in log_text


def test_a_retrained_model_decodes_again(work, tmp_path):
    """A finished OUT_DIR is skipped only for the same model file: retraining into the same exp dir
    (run.sh's stage 7 after more epochs) must not leave the old model's results in place."""
    import shutil

    import torch

    exp = tmp_path / "exp"
    shutil.copytree(work / "exp", exp)
    out = tmp_path / "out"
    args = ["decode", "--exp_dir", str(exp), "--input", str(work / "audio"), "--out_dir", str(out), "--mode", "ctc_greedy"]
    asrdemo(args)
    mtime = (out / "hyp.txt").stat().st_mtime_ns
    asrdemo(args)
    assert (out / "hyp.txt").stat().st_mtime_ns == mtime  # same model: skipped
    weights = torch.load(exp / "valid.acc.ave.pth", weights_only=True)
    torch.save({k: v + 0.01 if v.is_floating_point() else v for k, v in weights.items()}, exp / "valid.acc.ave.pth")
    asrdemo(args)
    assert (out / "hyp.txt").stat().st_mtime_ns != mtime  # the new weights were decoded
