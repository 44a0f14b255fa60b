"""`--resume` after a config change (issue 12, item 4): the new optimizer and scheduler settings
take effect, a change the checkpoint cannot continue with is refused by name before config.yaml
is touched, and `--set` is validated like the YAML it overrides."""

import pytest
import torch
import yaml

from test_resume import step_values
from test_train import make_task, run_inprocess, train_args, write_config


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("resume_config")
    task = make_task(root, n_train=8, n_valid=2)
    config = write_config(root / "train.yaml", optim_conf={"lr": 0.005}, scheduler="warmup_linear",
                          scheduler_conf={"warmup_steps": 2},
                          batching={"batch_bins": 100000, "max_batch_size": 2},
                          train={"max_epochs": 2, "log_interval": 1, "keep_nbest_models": 1})
    exp = root / "exp"
    assert run_inprocess(train_args(task, config, exp)) == 0
    return task, config, exp


def test_resume_with_more_epochs_and_another_lr_uses_them(two_epochs):
    task, config, exp = two_epochs
    updates = len(step_values((exp / "train.log").read_text())) // 2  # per epoch (2 epochs, a line per update)
    (exp / ".done").unlink()  # what the log tells a user to do to train a finished dir further
    assert run_inprocess(train_args(task, config, exp, "--resume", "--max_epochs", "3",
                                    "--set", "optim_conf.lr=0.03")) == 0
    log_text = (exp / "train.log").read_text()
    assert "optim_conf.lr: 0.005 -> 0.03" in log_text and "train.max_epochs: 2 -> 3" in log_text
    resumed = step_values(log_text.rsplit("resumed from", 1)[1])
    assert sorted(resumed) == list(range(2 * updates + 1, 3 * updates + 1))
    # warmup_linear over this run's 3 epochs with this run's lr: step s uses lr(s), not the old
    # schedule's (which had ended at step 2 x updates, i.e. lr 0)
    warmup, total = 2, 3 * updates
    for s, values in resumed.items():
        expected = 0.03 * (1 - (s - warmup) / (total - warmup))
        assert values[4] == pytest.approx(expected, rel=1e-3), s
    assert resumed[2 * updates + 1][4] > 0
    assert yaml.safe_load((exp / "config.yaml").read_text())["optim_conf"]["lr"] == 0.03


def test_resume_refused_by_name_and_config_yaml_untouched(two_epochs, capsys):
    task, config, exp = two_epochs
    before = (exp / "config.yaml").read_bytes()
    (exp / ".done").unlink(missing_ok=True)
    assert run_inprocess(train_args(task, config, exp, "--resume", "--set", "batching.max_batch_size=3")) == 1
    err = capsys.readouterr().err
    assert "batching.max_batch_size: 2 -> 3" in err and "cannot continue" in err
    assert run_inprocess(train_args(task, config, exp, "--resume", "--set", "optim=sgd")) == 1
    assert "optim: 'adam' -> 'sgd'" in capsys.readouterr().err
    assert (exp / "config.yaml").read_bytes() == before


@pytest.mark.parametrize("override, message", [
    ("trian.max_epochs=5", "--set trian.max_epochs=5: unknown section 'trian'"),
    ("train.max_epoch=3", "--set train.max_epoch=3: unknown train option(s) ['max_epoch']"),
    ("batching.batch_bin=3", "unknown batching option(s) ['batch_bin']"),
    ("train=5", "train must be a mapping"),
])
def test_set_typos_are_refused_like_yaml_typos(tmp_path, capsys, override, message):
    task = make_task(tmp_path, n_train=4, n_valid=2)
    config = write_config(tmp_path / "train.yaml")
    assert run_inprocess(train_args(task, config, tmp_path / "exp", "--set", override)) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "exp" / "config.yaml").exists()
