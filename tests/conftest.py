"""Shared fixtures: a tiny synthesized corpus, prepared the recipe's way, and a tiny trained model.

Everything is made once per test session with the project's own commands (no mocks): the mini
corpus generator, `asrdemo prepare`, `fbank`, `tokens` and `train`.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "conf" / "train_tiny.yaml"
NUM_UTTS, NUM_TEST, NUM_DEV = 14, 2, 2  # -> 10 training utterances


def asrdemo(*args, cwd=None, timeout=900):
    """Run `python -m asrdemo ARGS` and fail the test with its output when it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    r = subprocess.run([sys.executable, "-m", "asrdemo", *map(str, args)], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"asrdemo {' '.join(map(str, args))} failed:\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="session")
def tiny_work(tmp_path_factory):
    """A recipe work dir after stages 0-3 on NUM_UTTS synthesized utterances:
    downloads/jsut_ver1.1, data/{train,dev,test,lang}, dump/fbank/{train,dev,test}."""
    work = tmp_path_factory.mktemp("tiny_work")
    asrdemo("make_mini_jsut", "--out_dir", work / "downloads", "--num_utts", NUM_UTTS, "--nj", 2)
    asrdemo("prepare", "--corpus_root", work / "downloads" / "jsut_ver1.1", "--out_dir", work / "data",
            "--num_test", NUM_TEST, "--num_dev", NUM_DEV)
    for s in ("train", "dev", "test"):
        asrdemo("fbank", "--data_dir", work / "data" / s, "--out_dir", work / "dump" / "fbank" / s, "--nj", 2,
                *(["--cmvn"] if s == "train" else []))
    asrdemo("tokens", "--text", work / "data" / "train" / "text", "--out_dir", work / "data" / "lang")
    return work


@pytest.fixture(scope="session")
def trained_exp(tiny_work):
    """`tiny_work/exp/tiny`: the tiny model of tests/conf/train_tiny.yaml trained on the 10 training
    utterances of `tiny_work/data/train`. It is validated on those same utterances, so the averaged
    "best" model is the one that memorised them best (this model is for tests, not for generalising)."""
    exp = tiny_work / "exp" / "tiny"
    dump = tiny_work / "dump" / "fbank"
    asrdemo("train", "--config", TINY_CONFIG, "--train_dir", dump / "train", "--valid_dir", dump / "train",
            "--token_list", tiny_work / "data" / "lang" / "tokens.txt", "--exp_dir", exp)
    return exp


@pytest.fixture(scope="session")
def trained_streaming_exp(tiny_work, trained_exp):
    """`tiny_work/exp/tiny_streaming`: `trained_exp` fine-tuned into a streaming model
    (tests/conf/train_tiny_streaming.yaml: dynamic chunks, causal convolution) with
    `--init_param`, as docs/streaming.md tells a user to do with a full-context model."""
    exp = tiny_work / "exp" / "tiny_streaming"
    dump = tiny_work / "dump" / "fbank"
    asrdemo("train", "--config", TINY_CONFIG.with_name("train_tiny_streaming.yaml"), "--train_dir", dump / "train",
            "--valid_dir", dump / "train", "--token_list", tiny_work / "data" / "lang" / "tokens.txt",
            "--exp_dir", exp, "--init_param", trained_exp / "valid.acc.ave.pth")
    return exp
