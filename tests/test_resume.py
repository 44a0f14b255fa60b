"""Exact resume: kill a training run with SIGKILL in the middle of an epoch (after a step
checkpoint), `--resume` it, and get the same per-step losses, history and weights as a run that
was never interrupted. Dropout and SpecAugment are on, so the RNG states must be restored too."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from test_train import REPO, asrdemo_env, make_task, run_inprocess, train_args, write_config

STEP_LINE = re.compile(r"epoch (\d+) step (\d+) \[batch (\d+)/(\d+)\]: loss ([\d.]+) loss_ctc ([\d.]+) "
                       r"loss_att ([\d.]+) acc ([\d.]+) lr ([\d.e+-]+) grad_norm ([\d.]+)")


def step_values(log_text):
    """{step: (loss, loss_ctc, loss_att, acc, lr, grad_norm)} from train.log lines."""
    out = {}
    for m in STEP_LINE.finditer(log_text):
        out[int(m.group(2))] = tuple(float(x) for x in m.groups()[4:])
    return out


def read_history(exp):
    rows = [json.loads(line) for line in (exp / "history.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("time")
    return rows


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)
    task = make_task(tmp_path, n_train=48, n_valid=6)
    # 12 batches per epoch; a step checkpoint every 5 updates -> the one at step 15 is inside epoch 2
    config = write_config(tmp_path / "train.yaml", batching={"batch_bins": 100000, "max_batch_size": 4},
                          train={"max_epochs": 3, "log_interval": 1, "save_interval_steps": 5,
                                 "num_workers": 0, "keep_nbest_models": 2})

    full = tmp_path / "full"
    assert run_inprocess(train_args(task, config, full)) == 0  # the reference: never interrupted
    reference = step_values((full / "train.log").read_text())
    assert sorted(reference) == list(range(1, 37))

    killed = tmp_path / "killed"  # a real process, killed for real
    proc = subprocess.Popen([sys.executable, "-m", "asrdemo", *train_args(task, config, killed)], cwd=REPO,
                            env=asrdemo_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log_file = killed / "train.log"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            if log_file.is_file() and "last.pt (epoch 2, 3 batches done, step 15)" in log_file.read_text():
                os.kill(proc.pid, signal.SIGKILL)
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.005)
        else:
            raise AssertionError("no step checkpoint in epoch 2 within the time limit")
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # the kill came mid-epoch: the newest checkpoint is the step checkpoint, epoch 2 is not finished
    assert (killed / "checkpoints/latest").read_text().strip() == "last.pt"
    assert not (killed / "checkpoints/epoch_2.pt").exists() and not (killed / ".done").exists()

    assert run_inprocess(train_args(task, config, killed, "--resume")) == 0
    log_text = (killed / "train.log").read_text()
    assert "resumed from" in log_text and "epoch 2, 3 batches done, step 15" in log_text
    resumed = step_values(log_text.rsplit("resumed from", 1)[1])
    assert sorted(resumed) == list(range(16, 37))  # it continued after the checkpoint, nothing skipped
    for step, values in resumed.items():
        assert values == pytest.approx(reference[step], rel=1e-5, abs=1e-4), f"step {step}"

    # the epoch statistics straddling the kill, and the final weights, are the same too
    for a, b in zip(read_history(killed), read_history(full)):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-5), (a["epoch"], k)
    final_a = torch.load(killed / "checkpoints/epoch_3.pt", map_location="cpu", weights_only=False)
    final_b = torch.load(full / "checkpoints/epoch_3.pt", map_location="cpu", weights_only=False)
    for key, value in final_b["model"].items():
        torch.testing.assert_close(final_a["model"][key], value, rtol=1e-5, atol=1e-6)
    assert final_a["step"] == final_b["step"] == 36
    assert (killed / ".done").is_file()
