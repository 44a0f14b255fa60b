"""The model that ships in exp_train_large/ works from a fresh clone, before anyone trains anything
(issue 11): the demo's production server (gunicorn) answers the sample as the model card says and
answers noise with nothing and silence as silence, `asrdemo explain` draws it, and decode.sh decodes a folder
with it. Real HTTP on loopback, the real CLI in subprocesses. Skipped while no model is packaged."""

import re
import subprocess

import numpy as np
import pytest

from asrdemo.server.settings import SAMPLE_REFERENCE
from conftest import REPO, asrdemo
from demo_fixture import GunicornServer, audio_bytes, post_file

SHIPPED = REPO / "exp_train_large"
SAMPLE = REPO / "sample" / "test.wav"

pytestmark = pytest.mark.skipif(not (SHIPPED / "valid.acc.ave.pth").is_file(),
                                reason="exp_train_large/ holds no packaged model")


def card(label: str) -> str:
    """What the model card (eval_table.md, written by stage 7 from the package) says `label` decodes to."""
    table = (SHIPPED / "eval_table.md").read_text(encoding="utf-8")
    match = re.search(rf"^- {re.escape(label)}: 「(.*)」", table, re.MULTILINE)
    assert match, f"eval_table.md has no line for {label}"
    return match.group(1)


def test_the_demo_answers_the_sample_as_the_card_says_and_noise_with_nothing(tmp_path):
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal(3 * 16000)).astype(np.float32)
    with GunicornServer(SHIPPED, tmp_path / "gunicorn.log") as server:
        status, body = post_file(server.url, SAMPLE.read_bytes(), "test.wav")
        assert status == 200, body
        assert body["text"] == card("sample/test.wav") == SAMPLE_REFERENCE  # issue 11: the sample at 0 % CER
        assert body["tokens"] and all(t["end_s"] > t["start_s"] for t in body["tokens"])
        status, body = post_file(server.url, audio_bytes(noise, 16000, subtype="FLOAT"))
        assert (status, body["text"]) == (200, "") and card("3 s white noise") == "", body
        status, body = post_file(server.url, audio_bytes(np.zeros(3 * 16000, dtype=np.float32), 16000))
        assert (status, body["code"]) == (422, "silent_audio") and card("3 s silence") == "", body


def test_explain_and_decode_sh_work_with_the_shipped_model(tmp_path):
    out = tmp_path / "explain"
    asrdemo("explain", SHIPPED, SAMPLE, "--out", out)
    assert (out / "index.md").is_file() and (out / "trace.json").is_file()
    folder = tmp_path / "audio"
    folder.mkdir()
    (folder / "sample.wav").write_bytes(SAMPLE.read_bytes())
    r = subprocess.run(["bash", str(REPO / "decode.sh"), SHIPPED, folder, tmp_path / "dec"], cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    hyp = (tmp_path / "dec" / "hyp.txt").read_text(encoding="utf-8")
    assert hyp.startswith("sample ") and hyp.split(" ", 1)[1].strip() == card("sample/test.wav")
