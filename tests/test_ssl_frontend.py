"""The self-supervised frontend (``frontend: ssl``, asrdemo/model/ssl_frontend.py) end to end, with no
download: tiny randomly initialised wav2vec 2.0 and HuBERT checkpoints are built with transformers'
config classes and `save_pretrained` into a temporary folder, then used the way a user uses
rinna/japanese-hubert-base: `asrdemo train` on the tiny corpus's data dirs, decode.sh, explain, the
demo under gunicorn. Real files and subprocesses; nothing of ours is mocked.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

if os.environ.get("CI") == "true":
    import transformers  # noqa: F401  (CI installs the ssl extra through path.sh: fail there, never skip)
transformers = pytest.importorskip("transformers")

from asrdemo.data.wave_dataset import WaveLoader, read_wave_dir  # noqa: E402
from asrdemo.data.dataset import collate  # noqa: E402
from asrdemo.data.tokens import TokenList  # noqa: E402
from asrdemo.errors import AsrdemoError  # noqa: E402
from asrdemo.model.layer_weighted_sum import LayerWeightedSum  # noqa: E402
from asrdemo.model.ssl_frontend import HuggingFaceFrontend, resolve_frontend_conf  # noqa: E402
from conftest import REPO, asrdemo  # noqa: E402
from demo_fixture import GunicornServer, StreamClient, assert_token_times, http_json, post_file  # noqa: E402

SSL_CONFIG = REPO / "tests" / "conf" / "train_tiny_ssl.yaml"
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def save_tiny(kind: str, folder: Path) -> Path:
    """A tiny random wav2vec2 (GroupNorm CNN, as base models) or HuBERT (LayerNorm CNN and stable
    layer norm, as large models: it gets an attention mask and normalised input) in `folder`."""
    torch.manual_seed(0)
    if kind == "wav2vec2":
        model = transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**TINY))
    else:
        model = transformers.HubertModel(transformers.HubertConfig(**TINY, feat_extract_norm="layer",
                                                                   do_stable_layer_norm=True))
    model.save_pretrained(folder)
    return folder


def snapshot_state(folder: Path) -> dict:
    return transformers.AutoModel.from_pretrained(str(folder), local_files_only=True).state_dict()


def ssl_keys(state: dict) -> dict:
    return {k[len("frontend.ssl."):]: v for k, v in state.items() if k.startswith("frontend.ssl.")}


def train(work: Path, exp: Path, model_dir: Path, *sets: str, resume: bool = False):
    """`asrdemo train` of tests/conf/train_tiny_ssl.yaml on `work`'s data dirs with `--set`s."""
    return asrdemo("train", "--config", SSL_CONFIG, "--train_dir", work / "data" / "train",
                   "--valid_dir", work / "data" / "train", "--token_list", work / "data" / "lang" / "tokens.txt",
                   "--exp_dir", exp, "--set", f"frontend_conf.model={model_dir}", *[a for s in sets for a in ("--set", s)],
                   *(["--resume"] if resume else []))


@pytest.fixture(scope="module")
def tiny_w2v(tmp_path_factory):
    return save_tiny("wav2vec2", tmp_path_factory.mktemp("ssl") / "tiny-wav2vec2")


@pytest.fixture(scope="module")
def tiny_hubert(tmp_path_factory):
    return save_tiny("hubert", tmp_path_factory.mktemp("ssl") / "tiny-hubert")


@pytest.fixture(scope="module")
def ssl_exp(tiny_work, tiny_w2v):
    """tests/conf/train_tiny_ssl.yaml on the tiny corpus's data dirs: a frozen tiny wav2vec2,
    the SUPERB weighted sum of its 3 hidden states, 8 epochs."""
    exp = tiny_work / "exp" / "tiny_ssl"
    train(tiny_work, exp, tiny_w2v)
    return exp


# -- the pieces ----------------------------------------------------------------------------------


def test_layer_weighted_sum_is_a_convex_combination_that_learns():
    torch.manual_seed(0)
    ws = LayerWeightedSum(4)
    hidden = [torch.randn(2, 5, 3) for _ in range(4)]
    with torch.no_grad():
        ws.weights.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
    w = ws.normalized_weights()
    assert torch.all(w > 0) and abs(float(w.sum().detach()) - 1.0) < 1e-6
    torch.testing.assert_close(ws(hidden), sum(wi * h for wi, h in zip(w, hidden)))
    ws(hidden).sum().backward()
    assert ws.weights.grad is not None and torch.any(ws.weights.grad != 0)
    with pytest.raises(ValueError, match="expected 4 hidden states"):
        ws(hidden[:3])


@pytest.mark.parametrize("conf,message", [
    ({}, "needs frontend_conf.model"),
    ({"model": "x", "freeze": True, "freeze_steps": 100}, "set freeze: false"),
    ({"model": "x", "layer": "last"}, "weighted_sum or a layer number"),
    ({"model": "x", "freez": True}, r"unknown key\(s\) \['freez'\]"),
    ({"model": "x", "output_size": 0}, "positive integer"),
])
def test_frontend_conf_mistakes_are_named(conf, message):
    with pytest.raises(AsrdemoError, match=message):
        resolve_frontend_conf(conf)


def test_frames_and_attention_mask_follow_the_checkpoint(tiny_w2v, tiny_hubert):
    w2v = HuggingFaceFrontend.from_conf({"model": str(tiny_w2v)})
    hubert = HuggingFaceFrontend.from_conf({"model": str(tiny_hubert), "layer": 2})
    assert (w2v.hop_length, w2v.win_length, w2v.frame_shift_s) == (320, 400, 0.02)
    assert not w2v.use_attention_mask and not w2v.normalize  # GroupNorm CNN: zero padding, raw input
    assert hubert.use_attention_mask and hubert.normalize  # LayerNorm CNN: mask, normalised input
    assert hubert.layer_weights() is None and w2v.layer_weights().tolist() == pytest.approx([1 / 3] * 3)
    waves = torch.randn(2, 16000)
    lengths = torch.tensor([16000, 9000])
    for frontend in (w2v, hubert):
        feats, feat_lens = frontend(waves, lengths)
        assert feats.shape == (2, frontend.num_frames(16000), 80)
        assert feat_lens.tolist() == [frontend.num_frames(16000), frontend.num_frames(9000)] == [49, 27]
        assert frontend.num_frames(frontend.min_samples(7)) == 7 and frontend.num_frames(frontend.min_samples(7) - 1) == 6


# -- training ------------------------------------------------------------------------------------


def test_training_through_the_ssl_frontend_lowers_the_loss(ssl_exp, tiny_w2v):
    history = [json.loads(line) for line in (ssl_exp / "history.jsonl").read_text().splitlines()]
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"], [h["train_loss"] for h in history]
    assert history[-1]["valid_acc"] > history[0]["valid_acc"]
    config = yaml.safe_load((ssl_exp / "config.yaml").read_text(encoding="utf-8"))
    assert config["frontend"] == "ssl" and config["cmvn"] is None and config["input_dim"] == 40
    fc = config["frontend_conf"]
    assert fc["model"] == str(tiny_w2v.resolve()) and fc["model_type"] == "wav2vec2"
    assert len(fc["weights_sha256"]) == 64 and fc["num_hidden_states"] == 3 and fc["freeze"] is True
    assert config["data"]["train_max_samples"] > 16000  # samples: the recognizer's longest piece


def test_layer_weights_are_in_the_exp_dir_and_sum_to_one(ssl_exp):
    record = json.loads((ssl_exp / "ssl_layer_weights.json").read_text())
    weights = record["weights"]
    assert record["layers"] == [0, 1, 2] and record["model_file"].startswith("valid.acc.ave")
    assert all(w > 0 for w in weights) and sum(weights) == pytest.approx(1.0, abs=1e-5)
    logits = torch.load(ssl_exp / "valid.acc.ave.pth", weights_only=True)["frontend.weighted_sum.weights"]
    assert torch.softmax(logits.double(), 0).tolist() == pytest.approx(weights, abs=1e-6)
    assert logits.abs().max() > 0  # they were trained (they start at 0)


def test_freezing_freezes(ssl_exp, tiny_work, tiny_w2v):
    """freeze: true: no gradient reaches the SSL weights, they are not the optimizer's, and after
    training they are still the checkpoint's (and kept out of every file, being the snapshot's)."""
    from asrdemo.decode.recognizer import Recognizer
    from asrdemo.model.asr_model import ASRModel

    config = yaml.safe_load((ssl_exp / "config.yaml").read_text(encoding="utf-8"))
    frontend = HuggingFaceFrontend.from_conf(config["frontend_conf"])
    model = ASRModel.from_config(config["model"], 40, config["vocab_size"], frontend=frontend).train()
    tokens = TokenList.load(ssl_exp / "tokens.txt")
    examples = read_wave_dir(tiny_work / "data" / "train", tokens, 16000)[:3]
    load = WaveLoader(16000)
    batch = collate([(e.utt_id, torch.from_numpy(load(e)), torch.tensor(e.token_ids)) for e in examples])
    model(batch["feats"], batch["feat_lens"], batch["ys_pad"], batch["ys_lens"])["loss"].backward()
    ssl_params = dict(frontend.ssl.named_parameters())
    assert ssl_params and all(p.grad is None and not p.requires_grad for p in ssl_params.values())
    assert frontend.proj.weight.grad is not None and frontend.weighted_sum.weights.grad is not None
    for path in [ssl_exp / "valid.acc.ave.pth", *sorted((ssl_exp / "checkpoints").glob("*.pt"))]:
        state = torch.load(path, map_location="cpu", weights_only=False)
        assert not ssl_keys(state.get("model", state)), path
    rec = Recognizer.from_exp_dir(ssl_exp)
    snapshot = snapshot_state(tiny_w2v)
    for key, value in rec.model.frontend.ssl.state_dict().items():
        torch.testing.assert_close(value, snapshot[key], rtol=0, atol=0, msg=key)


def test_resume_continues_an_ssl_run_and_refuses_another_frontend(ssl_exp, tiny_work, tiny_w2v, tmp_path):
    """--resume loads checkpoints without the frozen SSL weights (the snapshot fills them in) and
    trains on; a changed frontend_conf or frontend is refused by name."""
    from asrdemo.train.trainer import check_resume_config, load_config

    exp = tmp_path / "resumed"
    shutil.copytree(ssl_exp, exp)
    (exp / ".done").unlink()
    train(tiny_work, exp, tiny_w2v, "train.max_epochs=9", resume=True)
    history = (exp / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in history] == list(range(1, 10))
    assert "resumed from" in (exp / "train.log").read_text(encoding="utf-8")
    old = yaml.safe_load((ssl_exp / "config.yaml").read_text(encoding="utf-8"))
    same = load_config(SSL_CONFIG, [f"frontend_conf.model={tiny_w2v}"])
    check_resume_config(old, same, old["vocab_size"], "config.yaml")  # the same settings: fine
    other_layer = load_config(SSL_CONFIG, [f"frontend_conf.model={tiny_w2v}", "frontend_conf.layer=1"])
    with pytest.raises(AsrdemoError, match=r"frontend_conf\.layer: 'weighted_sum' -> 1"):
        check_resume_config(old, other_layer, old["vocab_size"], "config.yaml")
    fbank = load_config(REPO / "tests" / "conf" / "train_tiny.yaml")
    with pytest.raises(AsrdemoError, match="frontend: 'ssl' -> 'fbank'"):
        check_resume_config(old, fbank, old["vocab_size"], "config.yaml")


def test_freeze_steps_unfreezes_after_n_updates(tiny_work, tiny_hubert):
    """freeze: false, freeze_steps: 2 with two batches per epoch: epoch 1 (updates 1-2) leaves the
    HuBERT weights as they were, epoch 2 fine-tunes them (not its CNN, which never trains)."""
    exp = tiny_work / "exp" / "tiny_ssl_finetune"
    train(tiny_work, exp, tiny_hubert, "frontend_conf.freeze=false", "frontend_conf.freeze_steps=2",
          "frontend_conf.layer=1", "batching.batch_bins=100000000", "batching.max_batch_size=5",
          "train.max_epochs=2", "train.keep_nbest_models=2")
    assert "fine-tuning the SSL model from update 2" in (exp / "train.log").read_text(encoding="utf-8")
    assert not (exp / "ssl_layer_weights.json").exists()  # one fixed layer: nothing weighted
    snapshot = snapshot_state(tiny_hubert)
    epoch1 = ssl_keys(torch.load(exp / "checkpoints" / "epoch_1.pt", weights_only=False)["model"])
    epoch2 = ssl_keys(torch.load(exp / "checkpoints" / "epoch_2.pt", weights_only=False)["model"])
    assert set(epoch1) == set(epoch2) == set(snapshot)  # fine-tuned weights are saved
    assert all(torch.equal(epoch1[k], snapshot[k]) for k in snapshot)
    changed = {k for k in snapshot if not torch.equal(epoch2[k], snapshot[k])}
    assert any(k.startswith("encoder.layers.0.") for k in changed), sorted(changed)
    assert not any(k.startswith("feature_extractor.") for k in changed), sorted(changed)


def test_the_recipe_trains_on_audio_with_frontend_ssl(tiny_w2v, tmp_path):
    """run.sh --frontend ssl --ssl_model DIR: no fbank dump, stage 4 reads data/*/wav.scp, stage 5
    decodes; a second run skips every stage; --ssl_model without --frontend ssl is refused."""
    work = tmp_path / "work"
    args = ["bash", str(REPO / "run.sh"), "--corpus", "mini_jsut", "--num_utts", "12", "--num_test", "2",
            "--num_dev", "2", "--work_dir", str(work), "--frontend", "ssl", "--ssl_model", str(tiny_w2v),
            "--train_config", str(SSL_CONFIG), "--train_args", "--max_epochs 2", "--stop_stage", "5"]
    first = subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "no fbank dump" in first.stdout and not (work / "dump").exists()
    exp = work / "exp" / "train_tiny_ssl"
    config = yaml.safe_load((exp / "config.yaml").read_text(encoding="utf-8"))
    assert config["frontend"] == "ssl" and config["data"]["train_dir"] == "data/train"
    assert config["frontend_conf"]["model"] == str(tiny_w2v.resolve())
    assert (exp / "decode_test" / "cer.txt").is_file() and (exp / "ssl_layer_weights.json").is_file()
    again = subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "stage 4: skipped" in again.stdout, again.stdout + again.stderr
    refused = subprocess.run(["bash", str(REPO / "run.sh"), "--ssl_model", "x"], cwd=REPO, env=ENV,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--ssl_model needs --frontend ssl" in refused.stderr


def test_the_ssl_recipe_config_builds(tiny_w2v):
    """conf/train_ssl.yaml (what a GPU user runs) loads, and its model builds on an SSL frontend."""
    from asrdemo.model.asr_model import ASRModel
    from asrdemo.train.trainer import load_config

    config = load_config(REPO / "conf" / "train_ssl.yaml", [f"frontend_conf.model={tiny_w2v}"])
    assert config["frontend"] == "ssl" and config["model"]["encoder_conf"]["input_layer"] == "conv2d2"
    frontend = HuggingFaceFrontend.from_conf(config["frontend_conf"])
    model = ASRModel.from_config(config["model"], frontend.output_size(), 50, frontend=frontend).eval()
    enc, enc_lens = model.encode(torch.randn(1, 32000), torch.tensor([32000]))
    assert enc.shape[1] == enc_lens[0] == 47  # 2 s: 99 SSL frames of 20 ms -> (99 - 1) // 2 - 2 of 40 ms


# -- using the exp dir ---------------------------------------------------------------------------


def test_decode_sh_and_explain_work_with_an_ssl_exp_dir(ssl_exp, tiny_work, tmp_path):
    out = tmp_path / "decode_test"
    p = subprocess.run(["bash", str(REPO / "decode.sh"), "--nj", "1", str(ssl_exp), str(tiny_work / "data" / "test"),
                        str(out)], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert len((out / "hyp.txt").read_text(encoding="utf-8").splitlines()) == 2
    assert (out / "cer.txt").read_text(encoding="utf-8").startswith("CER ")
    wav = next(iter(line.split(" ", 1)[1] for line in (tiny_work / "data" / "test" / "wav.scp").read_text().splitlines()))
    asrdemo("explain", ssl_exp, wav, "--out", tmp_path / "explain")
    trace = json.loads((tmp_path / "explain" / "trace.json").read_text(encoding="utf-8"))
    assert trace["figures"][-1] == "08_layer_weights.png" and (tmp_path / "explain" / "08_layer_weights.png").is_file()
    assert trace["frontend"]["kind"] == "ssl" and sum(trace["frontend"]["layer_weights"]) == pytest.approx(1, abs=1e-5)
    assert trace["fbank"]["frame_shift_ms"] == 20 and trace["fbank"]["shape"][1] == 40  # the SSL features
    assert "SSL features" in (tmp_path / "explain" / "index.md").read_text(encoding="utf-8")


def test_the_demo_serves_an_ssl_exp_dir(ssl_exp, tiny_work, tmp_path):
    wav = (tiny_work / "data" / "test" / "wav.scp").read_text().splitlines()[0].split(" ", 1)[1]
    with GunicornServer(ssl_exp, tmp_path / "gunicorn.log", env={"ASRDEMO_WORKERS": "1"}) as server:
        status, info = http_json("GET", f"{server.url}/api/model")
        assert status == 200 and info["frontend"]["model_type"] == "wav2vec2", info
        status, body = post_file(server.url, Path(wav).read_bytes(), "clip.wav", query="?details=1")
        assert status == 200, body
        assert body["encoder_frame_s"] == pytest.approx(0.04)  # 20 ms SSL frames, x2
        assert body["spectrogram"].startswith("data:image/png;base64,")
        assert body["alignment"]["num_frames"] > 0
        assert_token_times(body)
        ws = StreamClient(server.url, "?sample_rate=16000")
        try:
            refused = ws.receive(30)
        finally:
            ws.close()
        assert refused["type"] == "error" and refused["code"] == "not_streamable", refused


# -- errors and the default install -----------------------------------------------------------------


def test_a_missing_ssl_model_is_a_clear_error(tiny_work, tmp_path):
    env = {**ENV, "HF_HUB_CACHE": str(tmp_path / "empty_cache"), "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-m", "asrdemo", "train", "--config", str(SSL_CONFIG), "--train_dir",
                        str(tiny_work / "data" / "train"), "--valid_dir", str(tiny_work / "data" / "train"),
                        "--token_list", str(tiny_work / "data" / "lang" / "tokens.txt"), "--exp_dir",
                        str(tmp_path / "exp"), "--set", "frontend_conf.model=rinna/japanese-hubert-base"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    message = p.stderr
    for part in ("'rinna/japanese-hubert-base' is not available offline", str(tmp_path / "empty_cache"),
                 "hf download rinna/japanese-hubert-base --local-dir downloads/ssl/japanese-hubert-base",
                 "frontend_conf.model: downloads/ssl/japanese-hubert-base"):
        assert part in message, message


def test_the_revision_is_found_in_the_hub_cache_and_in_a_local_dir(tiny_w2v, tmp_path):
    """A hub name in a Hugging Face cache resolves to its snapshot and records its commit; a folder
    written by `hf download --local-dir` records the commit noted in its .cache metadata."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "hub" / "models--asrdemo-test--tiny-wav2vec2" / "snapshots" / commit
    shutil.copytree(tiny_w2v, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text(commit)
    code = ("from asrdemo.model.ssl_frontend import HuggingFaceFrontend; "
            "c = HuggingFaceFrontend.from_conf({'model': 'asrdemo-test/tiny-wav2vec2'}).conf; "
            "print(c['model'], c['revision'], c['weights_sha256'])")
    p = subprocess.run([sys.executable, "-c", code], env={**ENV, "HF_HUB_CACHE": str(tmp_path / "hub"),
                                                          "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    name, revision, digest = p.stdout.split()
    assert (name, revision) == ("asrdemo-test/tiny-wav2vec2", commit)
    assert digest == HuggingFaceFrontend.from_conf({"model": str(tiny_w2v)}).conf["weights_sha256"]
    local = tmp_path / "local"
    shutil.copytree(tiny_w2v, local)
    (local / ".cache" / "huggingface" / "download").mkdir(parents=True)
    (local / ".cache" / "huggingface" / "download" / "config.json.metadata").write_text(f"{commit}\netag\n1.0\n")
    assert HuggingFaceFrontend.from_conf({"model": str(local)}).conf["revision"] == commit


def test_an_exp_dir_refuses_other_frozen_weights(ssl_exp, tiny_hubert, tmp_path):
    from asrdemo.decode.recognizer import Recognizer

    moved = tmp_path / "exp"
    shutil.copytree(ssl_exp, moved, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    config = yaml.safe_load((moved / "config.yaml").read_text(encoding="utf-8"))
    config["frontend_conf"]["model"] = str(tiny_hubert)  # another model: its weights are not those trained with
    (moved / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    with pytest.raises(AsrdemoError, match="not the copy this model was trained with"):
        Recognizer.from_exp_dir(moved)
    config["frontend_conf"]["model"] = str(tmp_path / "gone")
    (moved / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    with pytest.raises(AsrdemoError, match="is not available offline"):
        Recognizer.from_exp_dir(moved)


def test_bench_ssl_frontend_runs_tiny(tmp_path):
    """bench/ssl_frontend.py --tiny: every row of its table, and the machine state in its JSON."""
    out = tmp_path / "bench.json"
    p = subprocess.run([sys.executable, "bench/ssl_frontend.py", "--tiny", "--finetune", "--threads", "1",
                        "--json", str(out)], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    result = json.loads(out.read_text())
    assert [r["frontend"] for r in result["rows"]] == ["fbank", "ssl decode", "ssl train (frozen)",
                                                       "ssl train (fine-tune)"]
    assert all(r["rtf"] > 0 for r in result["rows"]) and "load1" in result["machine_start"]
    assert "| ssl decode | 1 |" in p.stdout


DEFAULT_RUNTIME = r"""
import sys
from pathlib import Path
import asrdemo, asrdemo.cli
from asrdemo.data.audio import load_audio
from asrdemo.decode.recognizer import Recognizer
from asrdemo.server import create_app
from asrdemo.server.settings import DemoSettings
import asrdemo.train.trainer, asrdemo.explain, asrdemo.package, asrdemo.decode.decode_dir
exp, wav = Path(sys.argv[1]), sys.argv[2]
rec = Recognizer.from_exp_dir(exp)
rec.recognize(*load_audio(wav), trace=True)
app = create_app(settings=DemoSettings(exp_dir=exp, sample_wav=Path(wav), torch_threads=1))
assert app.test_client().post("/api/recognize?details=1", data=open(wav, "rb").read(),
                              content_type="audio/wav").status_code == 200
found = sorted(m for m in sys.modules if m.split(".")[0] in ("transformers", "huggingface_hub"))
assert not found, found
print("ok")
"""


def test_the_default_runtime_never_imports_transformers(trained_exp, tiny_work):
    """An fbank exp dir: importing asrdemo, recognizing, the demo app and the training/decoding modules
    leave transformers unimported (checked in a fresh interpreter)."""
    wav = (tiny_work / "data" / "test" / "wav.scp").read_text().splitlines()[0].split(" ", 1)[1]
    p = subprocess.run([sys.executable, "-c", DEFAULT_RUNTIME, str(trained_exp), wav], env=ENV,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stdout + p.stderr
