"""DDP: two CPU processes (gloo) under torchrun, each with half of every batch, must train the
same model as one process with the whole batch: same per-step losses, same final weights.

Dropout and SpecAugment are off (each rank has its own random stream), and the Conformer's
convolution module uses LayerNorm: BatchNorm statistics are per process under DDP (as in ESPnet
unless sync_batchnorm), so they would differ from one process's whole-batch statistics."""

import subprocess
import sys

import torch

from test_resume import step_values
from test_train import REPO, TINY_MODEL, asrdemo_env, make_task, run_inprocess, train_args, write_config

DDP_MODEL = {
    **TINY_MODEL,
    "encoder_conf": {**TINY_MODEL["encoder_conf"], "dropout_rate": 0.0, "positional_dropout_rate": 0.0,
                     "cnn_module_norm": "layer_norm"},
    "decoder_conf": {**TINY_MODEL["decoder_conf"], "dropout_rate": 0.0, "positional_dropout_rate": 0.0},
    "specaug": None,
}


def test_two_process_ddp_matches_one_process(tmp_path):
    torch.set_num_threads(1)
    # 16 utterances of equal length and 4 characters: 4 batches of 4 (2 per rank)
    task = make_task(tmp_path, n_train=16, n_valid=4, fixed_length=4)
    # plain SGD: the update is linear in the gradient, so equal gradients show as equal weights
    # (Adam's m / sqrt(v) blows float noise of near-zero gradients up to lr-sized differences)
    config = write_config(tmp_path / "train.yaml", model=DDP_MODEL, optim="sgd", optim_conf={"lr": 0.2},
                          scheduler="constant", scheduler_conf={},
                          batching={"batch_bins": 100000, "max_batch_size": 4},
                          train={"max_epochs": 2, "log_interval": 1, "num_workers": 0, "keep_nbest_models": 1})

    single = tmp_path / "single"
    assert run_inprocess(train_args(task, config, single)) == 0

    ddp = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "asrdemo", *train_args(task, config, ddp)],
        cwd=REPO, env=asrdemo_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log_text = (ddp / "train.log").read_text()
    assert "2 process(es)" in log_text

    ref, got = step_values((single / "train.log").read_text()), step_values(log_text)
    assert sorted(ref) == sorted(got) == list(range(1, 9))
    for step in ref:
        # loss, loss_ctc, loss_att, acc, lr, grad_norm
        for a, b in zip(got[step], ref[step]):
            assert abs(a - b) <= 2e-4 * max(1.0, abs(b)), (step, got[step], ref[step])

    final_ddp = torch.load(ddp / "checkpoints/epoch_2.pt", map_location="cpu", weights_only=False)
    final_one = torch.load(single / "checkpoints/epoch_2.pt", map_location="cpu", weights_only=False)
    assert len(final_ddp["rng"]) == 2 and final_ddp["world_size"] == 2  # every rank's RNG state is kept
    for key, value in final_one["model"].items():
        torch.testing.assert_close(final_ddp["model"][key], value, rtol=1e-4, atol=1e-5)
    # and the weights moved far more than that tolerance, so the comparison means something
    first = torch.load(single / "checkpoints/epoch_1.pt", map_location="cpu", weights_only=False)
    moved = max(float((first["model"][k] - v).abs().max()) for k, v in final_one["model"].items()
                if v.is_floating_point())
    assert moved > 1e-2
