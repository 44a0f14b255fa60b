"""`asrdemo train` end to end on a tiny synthetic task: the exp dir it leaves must be complete and
self-describing, and the averaged model must be the mean of the best epochs' weights.

The helpers here (`make_task`, `write_config`, `run_asrdemo`) are shared with test_resume.py and
test_ddp.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
CHARS = "abcd"
TOKENS = ["<blank>", "<unk>", *CHARS, "<sos/eos>"]

TINY_MODEL = {
    "encoder": "conformer",
    "encoder_conf": {"output_size": 32, "attention_heads": 2, "linear_units": 64, "num_blocks": 1,
                     "cnn_module_kernel": 3, "dropout_rate": 0.1},
    "decoder_conf": {"attention_heads": 2, "linear_units": 64, "num_blocks": 1, "dropout_rate": 0.1},
    "ctc_weight": 0.3,
    "lsm_weight": 0.1,
    "specaug": {"num_freq_mask": 1, "freq_mask_width": 8, "num_time_mask": 1, "time_mask_width_ratio": 0.05},
}


def _write_dump(d, utts):
    d.mkdir(parents=True)
    with kaldiio.WriteHelper(f"ark,scp:{d}/feats.ark,{d}/feats.scp") as w:
        for utt, feats, _ in utts:
            w(utt, feats)
    (d / "utt2num_frames").write_text("".join(f"{u} {len(f)}\n" for u, f, _ in utts))
    (d / "text").write_text("".join(f"{u} {t}\n" for u, _, t in utts))
    (d / "frontend.yaml").write_text("sample_rate: 16000\nnum_mel_bins: 20\nframe_length_ms: 25.0\n"
                                     "frame_shift_ms: 10.0\ndither: 0.0\n")


def make_task(root, n_train=32, n_valid=8, seed=0, fixed_length=None, dim=20, chars=CHARS):
    """A learnable toy task: each of the (four) `chars` is a 5-dim block of high values for 8-12
    frames, separated by short silences, plus noise. Returns dict of paths. With `fixed_length`,
    every utterance has that many characters and 60 frames (equal batches for the DDP test)."""
    root = Path(root)
    rng = np.random.default_rng(seed)

    def utterance(i, prefix):
        n_chars = fixed_length or int(rng.integers(2, 6))
        text = "".join(rng.choice(list(chars), n_chars))
        frames = []
        for c in text:
            seg = np.zeros((10 if fixed_length else int(rng.integers(8, 13)), dim), dtype=np.float32)
            k = chars.index(c)
            seg[:, k * 5:(k + 1) * 5] = 3.0
            frames += [seg, np.zeros((2, dim), dtype=np.float32)]
        feats = np.concatenate([np.zeros((4, dim), dtype=np.float32), *frames])
        if fixed_length:
            feats = np.pad(feats, ((0, 60 + 12 * fixed_length - len(feats)), (0, 0)))
        feats += rng.normal(0, 0.3, feats.shape).astype(np.float32)
        return f"{prefix}{i:03d}", feats, text

    train = [utterance(i, "tr") for i in range(n_train)]
    valid = [utterance(i, "dv") for i in range(n_valid)]
    _write_dump(root / "dump/train", train)
    _write_dump(root / "dump/dev", valid)
    all_feats = np.concatenate([f for _, f, _ in train]).astype(np.float64)
    stats = np.zeros((2, dim + 1))
    stats[0, :-1], stats[0, -1], stats[1, :-1] = all_feats.sum(0), len(all_feats), (all_feats**2).sum(0)
    kaldiio.save_mat(str(root / "dump/train/cmvn.ark"), stats)
    tokens = ["<blank>", "<unk>", *chars, "<sos/eos>"]
    (root / "tokens.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return {"train_dir": root / "dump/train", "valid_dir": root / "dump/dev", "token_list": root / "tokens.txt"}


def write_config(path, model=None, **sections):
    """A training YAML with the tiny model; `sections` update the `train` and `batching` blocks
    and replace any other section."""
    config = {
        "model": model or TINY_MODEL,
        "optim": "adam",
        "optim_conf": {"lr": 0.005},
        "scheduler": "warmuplr",
        "scheduler_conf": {"warmup_steps": 10},
        "batching": {"batch_bins": 600, "max_batch_size": 8},
        "train": {"max_epochs": 3, "keep_nbest_models": 2, "log_interval": 2, "num_workers": 0, "grad_clip": 5.0,
                  "attention_image_interval": 2},
    }
    for key, value in sections.items():
        if key in ("train", "batching"):
            config[key].update(value)
        else:
            config[key] = value
    Path(path).write_text(yaml.safe_dump(config))
    return path


def asrdemo_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return env


def train_args(task, config, exp_dir, *extra):
    return ["train", "--config", str(config), "--train_dir", str(task["train_dir"]), "--valid_dir",
            str(task["valid_dir"]), "--token_list", str(task["token_list"]), "--exp_dir", str(exp_dir), *extra]


def run_asrdemo(args, check=True, timeout=300):
    proc = subprocess.run([sys.executable, "-m", "asrdemo", *map(str, args)], cwd=REPO, env=asrdemo_env(),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"asrdemo {args[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_inprocess(args):
    """The same CLI in this process (saves ~10 s of imports per run); returns the exit code."""
    import logging

    from asrdemo.cli import main

    logging.getLogger().setLevel(logging.INFO)  # pytest's handlers make cli's basicConfig a no-op
    return main([str(a) for a in args])


def build_model_from_exp(exp_dir):
    """Rebuild the model from nothing but the exp dir (what the Recognizer does)."""
    from asrdemo.model.asr_model import ASRModel

    conf = yaml.safe_load((Path(exp_dir) / "config.yaml").read_text())
    stats = kaldiio.load_mat(str(Path(exp_dir) / conf["cmvn"]))
    return conf, ASRModel.from_config(conf["model"], conf["input_dim"], conf["vocab_size"], stats)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("train")
    task = make_task(root)
    config = write_config(root / "train.yaml")
    exp = root / "exp"
    proc = run_asrdemo(train_args(task, config, exp, "--seed", "1"))
    return task, config, exp, proc


def test_exp_dir_is_complete(trained):
    task, config, exp, proc = trained
    for name in ("config.yaml", "tokens.txt", "cmvn.ark", "train.log", "history.jsonl", ".done",
                 "valid.acc.ave.pth", "images/loss.png", "images/acc.png", "images/error.png"):
        assert (exp / name).is_file() and (exp / name).stat().st_size > 0, name
    assert (exp / "tokens.txt").read_text() == Path(task["token_list"]).read_text()
    events = list((exp / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(events[0]), size_guidance={"images": 0}).Reload()
    for tag in ("train/loss", "train/loss_ctc", "train/loss_att", "train/acc", "train/lr", "train/grad_norm",
                "epoch/valid_cer", "epoch/valid_acc"):
        assert tag in tb.Tags()["scalars"], tag
    assert [e.step for e in tb.Images("valid/attention")] == [2]  # every attention_image_interval epochs
    for png in (exp / "images").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    conf = yaml.safe_load((exp / "config.yaml").read_text())
    assert conf["token_type"] == "char" and conf["token_list"] == "tokens.txt" and conf["cmvn"] == "cmvn.ark"
    assert conf["input_dim"] == 20 and conf["vocab_size"] == len(TOKENS)
    assert conf["frontend"]["num_mel_bins"] == 20
    assert conf["train"]["seed"] == 1 and conf["train"]["max_epochs"] == 3

    history = [json.loads(line) for line in (exp / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2, 3]
    for r in history:
        for key in ("train_loss", "train_loss_ctc", "train_loss_att", "train_acc", "valid_loss", "valid_acc",
                    "valid_cer", "lr", "time"):
            assert isinstance(r[key], float), key
    assert history[-1]["train_loss"] < history[0]["train_loss"]  # it learns
    log = (exp / "train.log").read_text()
    assert "grad_norm" in log and "utt/s" in log and "epoch 3 done" in log
    done = json.loads((exp / ".done").read_text())
    assert done["epochs"] == 3


def test_config_rebuilds_the_model_and_checkpoints_load(trained):
    task, config, exp, proc = trained
    conf, model = build_model_from_exp(exp)
    model.load_state_dict(torch.load(exp / "valid.acc.ave.pth", map_location="cpu"))
    ckpts = sorted((exp / "checkpoints").glob("epoch_*.pt"))
    assert 2 <= len(ckpts) <= 3  # the 2 best + the newest
    ckpt = torch.load(ckpts[-1], map_location="cpu", weights_only=False)
    model.load_state_dict(ckpt["model"])
    for key in ("optimizer", "scheduler", "rng", "step", "epoch", "batches_done", "history"):
        assert key in ckpt
    # the model decodes something with the shapes the recognizer expects
    model.eval()
    scp = kaldiio.load_scp(str(Path(task["valid_dir"]) / "feats.scp"))
    x = torch.from_numpy(np.array(scp[next(iter(scp))])).unsqueeze(0)
    with torch.no_grad():
        enc, enc_lens = model.encode(x, torch.tensor([x.shape[1]]))
        assert model.ctc.log_softmax(enc).shape[-1] == len(TOKENS)


def test_average_is_the_mean_of_the_best_epochs(trained):
    task, config, exp, proc = trained
    history = [json.loads(line) for line in (exp / "history.jsonl").read_text().splitlines()]
    best2 = [r["epoch"] for r in sorted(history, key=lambda r: (r["valid_acc"], r["epoch"]), reverse=True)[:2]]
    assert (exp / "valid.acc.ave.pth").resolve().name == "valid.acc.ave_2best.pth"
    avg = torch.load(exp / "valid.acc.ave.pth", map_location="cpu")
    sds = [torch.load(exp / f"checkpoints/epoch_{e}.pt", map_location="cpu", weights_only=False)["model"]
           for e in best2]
    assert set(avg) == set(sds[0])
    differs = 0
    for key, value in avg.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (sds[0][key] + sds[1][key]) / 2, rtol=1e-6, atol=1e-7)
            differs += int(not torch.equal(sds[0][key], sds[1][key]))
        else:
            assert torch.equal(value, sds[0][key])
    assert differs > 0  # the epochs really differ, so the test can tell a mean from a copy

    # `asrdemo average --num 1` = the best epoch itself, `asrdemo plot` redraws the images
    run_asrdemo(["average", "--exp_dir", exp, "--num", "1"])
    one = torch.load(exp / "valid.acc.ave.pth", map_location="cpu")
    for key, value in one.items():
        torch.testing.assert_close(value, sds[0][key])
    (exp / "images/acc.png").unlink()
    run_asrdemo(["plot", "--exp_dir", exp])
    assert (exp / "images/acc.png").stat().st_size > 0


def test_rerun_is_skipped_and_stale_checkpoints_refuse_without_resume(trained, tmp_path):
    task, config, exp, proc = trained
    again = run_asrdemo(train_args(task, config, exp))
    assert "skipped" in again.stderr
    # a dir with checkpoints but no .done (an interrupted run): refuse unless --resume
    exp2 = tmp_path / "exp2"
    (exp2 / "checkpoints").mkdir(parents=True)
    (exp2 / "checkpoints/epoch_1.pt").write_bytes((exp / "valid.acc.ave.pth").read_bytes())
    refused = run_asrdemo(train_args(task, config, exp2), check=False)
    assert refused.returncode == 1 and "--resume" in refused.stderr and "Traceback" not in refused.stderr


def test_bad_config_key_is_a_clear_error(tmp_path):
    task = make_task(tmp_path, n_train=4, n_valid=2)
    config = write_config(tmp_path / "bad.yaml", train={"max_epoch": 3})
    proc = run_asrdemo(train_args(task, config, tmp_path / "exp"), check=False)
    assert proc.returncode == 1 and "max_epoch" in proc.stderr and "Traceback" not in proc.stderr


def test_early_stopping_on_patience(tmp_path):
    """With lr 0 the valid accuracy never improves: patience 2 stops after epoch 3 of 10."""
    torch.set_num_threads(1)
    task = make_task(tmp_path, n_train=8, n_valid=2)
    config = write_config(tmp_path / "train.yaml", optim_conf={"lr": 0.0}, scheduler="constant",
                          scheduler_conf={}, train={"max_epochs": 10, "patience": 2})
    exp = tmp_path / "exp"
    assert run_inprocess(train_args(task, config, exp)) == 0
    history = [json.loads(line) for line in (exp / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert "early stopping" in (exp / "train.log").read_text()
    assert json.loads((exp / ".done").read_text())["epochs"] == 3


def test_non_finite_gradient_skips_the_update(caplog):
    """An inf/nan grad norm: no optimizer or scheduler step, a warning, and the step still counts."""
    import copy

    from asrdemo.train.distributed import DistInfo
    from asrdemo.train.scheduler import build_scheduler
    from asrdemo.train.trainer import DEFAULTS, Trainer, build_optimizer

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = build_optimizer("adam", model.parameters(), {"lr": 0.1})
    scheduler = build_scheduler("warmuplr", optimizer, {"warmup_steps": 10})
    trainer = Trainer(copy.deepcopy(DEFAULTS), model, optimizer, scheduler, None, None, None, None, None,
                      "/nonexistent", DistInfo())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for p in model.parameters():
        p.grad = torch.full_like(p, float("nan"))
    with caplog.at_level("WARNING"):
        norm = trainer._update()
    assert not np.isfinite(norm) and "skipping this update" in caplog.text
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert scheduler.last_epoch == 0 and trainer.step == 1
    assert all(p.grad is None for p in model.parameters())
    # a finite gradient is clipped and applied
    for p in model.parameters():
        p.grad = torch.full_like(p, 100.0)
    norm = trainer._update()
    assert np.isfinite(norm) and norm > DEFAULTS["train"]["grad_clip"]
    assert not torch.equal(before["weight"], model.weight) and scheduler.last_epoch == 1


def _logged_losses(exp_dir):
    """(step, loss) of every train.log window line."""
    import re

    text = (Path(exp_dir) / "train.log").read_text(encoding="utf-8")
    return [(int(m.group(1)), float(m.group(2))) for m in re.finditer(r"step (\d+) \[batch [^\]]*\]: loss ([0-9.]+)", text)]


@pytest.mark.skipif(not __import__("asrdemo.train.trainer", fromlist=["cpu_has_bf16"]).cpu_has_bf16(),
                    reason="this CPU has no native bf16 (AVX-512 BF16 / AMX)")
def test_bf16_autocast_on_cpu_learns_the_same(tmp_path):
    """use_amp: bf16 on a CPU with native bf16: the first ~50 updates' losses stay within 5 % (+0.05)
    of fp32's, and the log says bf16 was used."""
    task = make_task(tmp_path)
    runs = {}
    for amp in (None, "bf16"):
        config = write_config(tmp_path / f"{amp}.yaml", train={"max_epochs": 14, "use_amp": amp})
        exp = tmp_path / f"exp_{amp}"
        run_asrdemo(train_args(task, config, exp, "--seed", "3"))
        runs[amp] = _logged_losses(exp)
    assert "bf16 autocast" in (tmp_path / "exp_bf16" / "train.log").read_text(encoding="utf-8")
    fp32, bf16 = runs[None], runs["bf16"]
    assert [s for s, _ in fp32] == [s for s, _ in bf16] and fp32[-1][0] >= 50
    for (step, a), (_, b) in zip(fp32, bf16):
        assert abs(a - b) <= 0.05 * a + 0.05, (step, a, b)
    assert bf16[-1][1] < 0.5 * bf16[0][1]  # and it learns
