"""Stage 4: train a joint CTC/attention model from a YAML config into a self-describing exp dir.

    asrdemo train --config conf/train_mini.yaml --train_dir dump/fbank/train \\
        --valid_dir dump/fbank/dev --token_list data/lang/tokens.txt --exp_dir exp/mini [--resume]

One epoch = every training batch once (order shuffled by (seed, epoch)), then validation (loss,
attention accuracy, CTC-greedy CER), an `epoch_N.pt` checkpoint, a line in history.jsonl and the
plots. At the end the best `keep_nbest_models` epochs are averaged into valid.acc.ave.pth and
`.done` is written. `--resume` continues from the newest checkpoint exactly (model, optimizer,
scheduler, grad scaler, RNG states, position inside the epoch). Under torchrun every process
trains on its share of each batch (DDP); `--ngpu N` (N > 1), or `--nproc N` on a CPU, without
torchrun re-launches the command under torchrun.
"""

import contextlib
import copy
import json
import logging
import math
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import editdistance
import torch
import yaml
from tqdm import tqdm

from asrdemo.data.dataset import make_loader
from asrdemo.data.tokens import TOKEN_TYPES, TokenList
from asrdemo.decode.ctc_greedy import ctc_greedy_search
from asrdemo.errors import AsrdemoError
from asrdemo.model.attention import store_attention_weights
from asrdemo.train import distributed
from asrdemo.train.average import average_best, best_epochs, read_history, training_summary
from asrdemo.train.checkpoint import (epoch_checkpoints, latest_checkpoint, load_checkpoint,
                                      prune_checkpoints, rng_state, save_checkpoint, set_rng_state)
from asrdemo.train.plot import FIGURES, plot_history
from asrdemo.train.scheduler import build_scheduler
from asrdemo.train.training_input import (check_frontend_kind, longest_utterance, read_training_input,
                                          write_layer_weights)
from asrdemo.utils.config import read_yaml, upgrade_config
from asrdemo.utils.cpu import cpu_has_bf16
from asrdemo.utils.io import atomic_path, atomic_write_lines, atomic_write_text, is_done, mark_done, read_lines

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# Configuration: the YAML's sections and their defaults. Unknown keys are errors (typos!).

DEFAULTS = {
    "frontend": "fbank",  # fbank: features from the dump dir | ssl: a self-supervised model on the audio
    "frontend_conf": None,  # ssl: asrdemo/model/ssl_frontend.py FRONTEND_CONF_DEFAULTS
    "model": None,  # required: the model_conf of ASRModel.from_config (docs/design.md)
    "optim": "adam",
    "optim_conf": {"lr": 0.002},
    "scheduler": "warmuplr",
    "scheduler_conf": {"warmup_steps": 25000},
    "batching": {  # lengths in frames; with frontend: ssl in samples (16 kHz)
        "batch_bins": 20000,  # padded input frames per batch: batch_size x longest utterance
        "max_batch_size": None,  # and at most this many utterances (null: no limit)
        "valid_batch_bins": None,  # for validation (null: batch_bins)
        "min_frames": 8,  # utterances outside [min_frames, max_frames] are left out of training
        "max_frames": None,
    },
    "train": {
        "max_epochs": 50,
        "accum_grad": 1,  # gradient accumulation: one update per accum_grad batches
        "grad_clip": 5.0,  # max global grad norm (0: no clipping)
        "patience": None,  # stop after this many epochs without a better valid acc (null: never)
        "keep_nbest_models": 5,  # epoch checkpoints kept (best valid acc) and averaged at the end
        "log_interval": 50,  # updates between train.log lines
        "attention_image_interval": 5,  # epochs between source-attention images in TensorBoard (0: off)
        "save_interval_steps": 0,  # also checkpoint (checkpoints/last.pt) every N updates (0: off)
        "use_amp": None,  # bf16 | fp16 on GPU (fp16 with a GradScaler); bf16 also on CPUs with AVX-512 BF16/AMX
        "sync_batchnorm": False,  # DDP on GPUs: share BatchNorm statistics across processes
        "seed": 0,
        "num_workers": 1,  # DataLoader worker processes
    },
}
EXP_KEYS = ("frontend", "token_type", "token_list", "bpe_model", "cmvn", "input_dim", "vocab_size", "data",
            "lm")  # lm: the LM attached by `asrdemo lm attach` (asrdemo/decode/lm_scorer.py)


def _parse_override(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise AsrdemoError(f"--set wants key.sub=value, got {text!r}")
    return key.split("."), yaml.safe_load(value)


def _check_section(key, value, where, defaults=None):
    """Raise AsrdemoError (naming `where`) for an unknown section, or an unknown key of the
    `batching` / `train` sections, whose keys are all listed in `defaults` (DEFAULTS). Other
    sections are checked by what consumes them (the model, the optimizer, the scheduler)."""
    defaults = DEFAULTS if defaults is None else defaults
    if key not in defaults:
        raise AsrdemoError(f"{where}: unknown section {key!r}; known: {', '.join(defaults)}")
    if key in ("batching", "train"):
        if value is not None and not isinstance(value, dict):
            raise AsrdemoError(f"{where}: {key} must be a mapping of options, got {value!r}")
        unknown = set(value or {}) - set(defaults[key])
        if unknown:
            raise AsrdemoError(f"{where}: unknown {key} option(s) {sorted(unknown)}; known: {sorted(defaults[key])}")


def load_config(path, overrides=(), defaults=None):
    """The YAML at `path` merged over `defaults` (DEFAULTS: the ASR model's), then `key.sub=value`
    overrides applied (checked like the YAML's own keys), old key names made current
    (asrdemo/utils/config.py)."""
    defaults = DEFAULTS if defaults is None else defaults
    user = read_yaml(path, "training config")
    config = copy.deepcopy(defaults)
    for key, value in user.items():
        if key == "frontend" and "frontend" in defaults and isinstance(value, str):
            config[key] = check_frontend_kind(value, str(path))  # a choice; an fbank exp's record is a mapping
            continue
        if key in EXP_KEYS:
            continue  # an exp dir's config.yaml used as --config: its data keys are rewritten anyway
        _check_section(key, value, str(path), defaults)
        if key in ("batching", "train"):
            config[key].update(value or {})
        else:
            config[key] = value
    for text in overrides:
        # an override obeys the rules of the YAML it overrides: a typo is an error, not a new key
        keys, value = _parse_override(text)
        where = f"--set {text}"
        if len(keys) == 1:
            _check_section(keys[0], value, where, defaults)
        else:
            _check_section(keys[0], {keys[1]: None}, where, defaults)
        node = config
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        if len(keys) == 1 and keys[0] in ("batching", "train"):
            node[keys[0]].update(value or {})
        else:
            node[keys[-1]] = value
    if "frontend" in defaults:
        check_frontend_kind(config["frontend"], str(path))
    if not isinstance(config["model"], dict):
        raise AsrdemoError(f"{path}: the model: section is missing (see docs/design.md, model_conf)")
    return upgrade_config(config)


def build_optimizer(name, params, conf):
    classes = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    if name not in classes:
        raise AsrdemoError(f"unknown optim {name!r}; choose one of {', '.join(classes)}")
    try:
        return classes[name](params, **(conf or {}))
    except TypeError as e:
        raise AsrdemoError(f"bad optim_conf for {name}: {e}")


# ----------------------------------------------------------------------------------------------
# Statistics: per-utterance-weighted sums, so that averages over ranks and over a resumed epoch
# are exact. Order of the vector: loss, loss_ctc, loss_att, acc (each x utterances), utterances, frames.

STAT_NAMES = ("loss", "loss_ctc", "loss_att", "acc")


def batch_stats(out, num_utts, num_frames, names=STAT_NAMES):
    values = []
    for name in names:
        v = out.get(name)
        values.append(float("nan") if v is None else float(v.detach()) * num_utts)
    return torch.tensor(values + [num_utts, num_frames], dtype=torch.float64)


def averages(sums, prefix="", names=STAT_NAMES):
    n = float(sums[len(names)])
    out = {}
    for i, name in enumerate(names):
        v = float(sums[i]) / n if n else float("nan")
        out[prefix + name] = None if math.isnan(v) else v
    return out


def greedy_errors(logp, lens, refs, ref_lens, units):
    """CTC greedy output of logp (B, T, V) with lens (B,) against refs (B, L) / ref_lens (B,)
    -> (edit errors, reference units), both counted on `units(ids)` (e.g. characters)."""
    errors = total = 0
    hyps = [nbest[0].token_ids for nbest in ctc_greedy_search(logp.float(), lens)]
    for hyp, ref, n in zip(hyps, refs.tolist(), ref_lens.tolist()):
        ref_units = units(ref[:n])
        errors += editdistance.eval(units(hyp), ref_units)
        total += len(ref_units)
    return errors, total


# ----------------------------------------------------------------------------------------------


class Trainer:
    """The epoch loop. All ranks run it; only rank 0 writes files.

    The ASR model's specifics are in a few overridable places, so that the language model
    (`asrdemo.train.lm_trainer.LMTrainer`) trains with the same loop, checkpoints and bookkeeping:
    `stat_names` (the per-utterance statistics summed over batches and ranks), `derive` (values
    computed from their averages), `_model_step` (one batch through the model), `validate`,
    `best_metric` (which history value picks the best epochs), `figures` and `frame_unit`."""

    stat_names = STAT_NAMES
    best_metric = "valid_acc"  # higher is better for *acc, lower for anything else (as average.best_epochs)
    best_label = "acc"  # how the epoch's log line names it
    done_values = ("valid_acc",)  # of the best epoch, recorded in .done as best_<name>
    summary_values = (("train", ("loss", "acc")), ("valid", ("loss", "acc", "cer")))  # the epoch's log line
    frame_unit = "frames"
    figures = None  # plot.FIGURES

    def __init__(self, config, model, optimizer, scheduler, scaler, train_loader, train_sampler, valid_loader,
                 token_list, exp_dir, dist, amp_dtype=None):
        self.config, self.train_conf = config, config["train"]
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.core = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
        if getattr(self.core, "reading_ctc", None) is not None:  # its loss, and the kana CER of its greedy output
            self.stat_names = self.stat_names + ("loss_reading_ctc",)
            self.summary_values = self.summary_values[:1] + (("valid", ("loss", "acc", "cer", "reading_cer")),)
        self.train_loader, self.sampler, self.valid_loader = train_loader, train_sampler, valid_loader
        self.token_list, self.exp_dir, self.dist = token_list, Path(exp_dir), dist
        self.device, self.amp_dtype = dist.device, amp_dtype
        self.ckpt_dir = self.exp_dir / "checkpoints"
        self.writer = None
        self._plotter = None  # the thread drawing images/*.png
        self.last_lr = None
        # where we are; a checkpoint overwrites these
        self.epoch, self.batches_done, self.step = 1, 0, 0
        self.epoch_sums = torch.zeros(len(self.stat_names) + 2, dtype=torch.float64)
        self.epoch_time = 0.0
        self.history = []
        self.stop = False  # early stopping decided

    # -- checkpoints --------------------------------------------------------------------------

    def state(self):
        return {
            "model": self.core.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": self.epoch,
            "batches_done": self.batches_done,
            "step": self.step,
            "sampler": {"seed": self.sampler.seed, "epoch": self.epoch, "batches_done": self.batches_done,
                        "num_batches": len(self.sampler.batches)},
            "rng": distributed.all_gather_object(rng_state(), self.dist),  # one per rank
            "epoch_sums": self.epoch_sums.clone(),
            "epoch_time": self.epoch_time,
            "history": self.history,
            "stop": self.stop,
            "world_size": self.dist.world_size,
        }

    def save(self, name):
        state = self.state()  # every rank takes part (the RNG states are gathered)
        if self.dist.is_main:
            path = save_checkpoint(self.ckpt_dir, name, state)
            log.info("saved %s (epoch %d, %d batches done, step %d)", path, self.epoch, self.batches_done, self.step)

    def load(self, path):
        ckpt = load_checkpoint(path, map_location=self.device)
        self.core.load_state_dict(ckpt["model"])
        # The checkpoint gives the optimizer's state (Adam's moments), this run's config its
        # settings: a resume with another lr, betas, weight decay, schedule or max_epochs uses them.
        settings = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(ckpt["optimizer"])
        for group, own in zip(self.optimizer.param_groups, settings):
            group.update(own)
        # Every schedule is a function of the update count; continue it at the checkpoint's count,
        # with this run's settings (warmup_linear's total_steps follows the new max_epochs).
        self.scheduler.last_epoch = int(ckpt["scheduler"]["last_epoch"])
        for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_lr()):
            group["lr"] = lr
        self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.batches_done, self.step = ckpt["epoch"], ckpt["batches_done"], ckpt["step"]
        if ckpt["sampler"]["num_batches"] != len(self.sampler.batches):
            raise AsrdemoError(f"{path} was made with {ckpt['sampler']['num_batches']} batches per epoch, "
                               f"now there are {len(self.sampler.batches)} (data or batching changed): "
                               "cannot resume at the same position")
        self.epoch_sums = ckpt["epoch_sums"].clone()
        self.epoch_time, self.history, self.stop = ckpt["epoch_time"], ckpt["history"], ckpt["stop"]
        if ckpt["world_size"] == self.dist.world_size:
            set_rng_state(ckpt["rng"][self.dist.rank])
        else:
            log.warning("resuming with %d processes from a %d-process checkpoint: RNG states re-seeded",
                        self.dist.world_size, ckpt["world_size"])
            torch.manual_seed(self.train_conf["seed"] * 1000 + self.dist.rank + self.step)
        log.info("resumed from %s: epoch %d, %d batches done, step %d", path, self.epoch, self.batches_done, self.step)

    # -- one update ---------------------------------------------------------------------------

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _model_step(self, batch):
        """One batch through the (possibly DDP-wrapped) model -> (output dict, utterances, frames)."""
        if self.core.frontend is not None:  # an SSL frontend unfreezes after freeze_steps updates
            self.core.frontend.num_updates = self.step
        feats = batch["feats"].to(self.device, non_blocking=True)
        feat_lens = batch["feat_lens"].to(self.device)
        ys_pad, ys_lens = batch["ys_pad"].to(self.device), batch["ys_lens"].to(self.device)
        readings = (batch["rs_pad"].to(self.device), batch["rs_lens"].to(self.device)) if "rs_pad" in batch else ()
        return self.model(feats, feat_lens, ys_pad, ys_lens, *readings), len(batch["utt_ids"]), int(feat_lens.sum())

    def derive(self, avg: dict, prefix: str = "") -> dict:
        """Values computed from the averaged statistics (the LM adds perplexity); ASR: none."""
        return avg

    def _averages(self, sums, prefix=""):
        return self.derive(averages(sums, prefix, self.stat_names), prefix)

    def _forward_backward(self, batch, scale, sync):
        no_sync = getattr(self.model, "no_sync", None)
        with (contextlib.nullcontext() if sync or no_sync is None else no_sync()):
            with self._autocast():
                out, num_utts, num_frames = self._model_step(batch)
            loss = out["loss"] * scale
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        return batch_stats(out, num_utts, num_frames, self.stat_names)

    def _update(self):
        """Clip, step (unless the gradient is not finite), return the grad norm."""
        self.last_lr = self.optimizer.param_groups[0]["lr"]  # the lr this update uses
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        clip = self.train_conf["grad_clip"] or float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.core.parameters(), clip)
        if not torch.isfinite(grad_norm):
            log.warning("step %d: grad norm is %s; skipping this update", self.step + 1, float(grad_norm))
            if self.scaler is not None:
                self.scaler.update()  # lowers the loss scale
        else:
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return float(grad_norm)

    # -- epochs -------------------------------------------------------------------------------

    def train_epoch(self):
        tc = self.train_conf
        accum, num_batches = tc["accum_grad"], len(self.sampler.batches)
        self.model.train()
        self.sampler.set_epoch(self.epoch, start=self.batches_done)
        window = torch.zeros_like(self.epoch_sums)  # since the last log line
        pending = torch.zeros_like(self.epoch_sums)  # since the last update
        window_start, window_steps, grad_norms = time.perf_counter(), 0, []
        epoch_start = time.perf_counter() - self.epoch_time
        bar = tqdm(total=num_batches, initial=self.batches_done, desc=f"epoch {self.epoch}", unit="batch",
                   disable=not (self.dist.is_main and sys.stderr.isatty()), leave=False)
        for batch in self.train_loader:
            index = self.batches_done  # position of this batch in the epoch
            update_now = (index + 1) % accum == 0 or index + 1 == num_batches
            pending += self._forward_backward(batch, 1.0 / accum, sync=update_now)
            self.batches_done += 1
            bar.update(1)
            if not update_now:
                continue
            grad_norm = self._update()
            distributed.all_reduce_sum(pending, self.dist)  # every rank now holds the global sums
            if math.isfinite(grad_norm):  # a skipped update does not count (the same on all ranks)
                self.epoch_sums += pending
                window += pending
                grad_norms.append(grad_norm)
                window_steps += 1
            pending.zero_()
            self.epoch_time = time.perf_counter() - epoch_start
            if window_steps and (self.step % tc["log_interval"] == 0 or self.batches_done == num_batches):
                self._log_window(window, window_steps, grad_norms, time.perf_counter() - window_start, num_batches)
                bar.set_postfix(loss=f"{self._averages(window)['loss'] or float('nan'):.2f}")
                window.zero_()
                window_start, window_steps, grad_norms = time.perf_counter(), 0, []
            if tc["save_interval_steps"] and self.step % tc["save_interval_steps"] == 0 \
                    and self.batches_done < num_batches:
                self.save("last.pt")
        bar.close()
        self.epoch_time = time.perf_counter() - epoch_start

    def _log_window(self, sums, steps, grad_norms, seconds, num_batches):
        avg = self._averages(sums)
        lr = self.last_lr
        grad_norm = sum(grad_norms) / len(grad_norms)
        utts, frames = float(sums[-2]), float(sums[-1])
        if self.dist.is_main:
            parts = [f"{k} {v:.4f}" for k, v in avg.items() if v is not None]
            log.info("epoch %d step %d [batch %d/%d]: %s lr %.3e grad_norm %.3f | %.1f utt/s %.0f %s/s %.3f s/step",
                     self.epoch, self.step, self.batches_done, num_batches, " ".join(parts), lr, grad_norm,
                     utts / seconds, frames / seconds, self.frame_unit, seconds / steps)
            for k, v in avg.items():
                if v is not None:
                    self.writer.add_scalar(f"train/{k}", v, self.step)
            self.writer.add_scalar("train/lr", lr, self.step)
            self.writer.add_scalar("train/grad_norm", grad_norm, self.step)
            self.writer.add_scalar("train/utts_per_s", utts / seconds, self.step)

    @torch.no_grad()
    def validate(self):
        """Loss and attention accuracy as in training (no SpecAugment/dropout), and the CER of
        CTC greedy decoding, counted on characters (spaces removed); with a reading CTC, also the
        kana CER of its greedy output against the reading (valid_reading_cer)."""
        self.model.eval()
        names, reading = self.stat_names, self.core.reading_ctc
        sums = torch.zeros(len(names) + 6, dtype=torch.float64)  # + char errors, ref chars, kana errors, ref kana
        interval = self.train_conf["attention_image_interval"]
        want_image = self.dist.is_main and interval and self.epoch % interval == 0
        for batch in self.valid_loader:
            feats, feat_lens = batch["feats"].to(self.device), batch["feat_lens"].to(self.device)
            ys_pad, ys_lens = batch["ys_pad"].to(self.device), batch["ys_lens"].to(self.device)
            src_attn = self.core.decoder.decoders[-1].src_attn
            store_attention_weights(src_attn, want_image)
            readings = () if reading is None else (batch["rs_pad"].to(self.device), batch["rs_lens"].to(self.device))
            with self._autocast():
                # once: for the losses and for CTC greedy (and layer k's output for the reading CTC)
                enc, enc_lens, *inter = self.core.encode(feats, feat_lens,
                                                         intermediate_layer=self.core.reading_ctc_layer)
                out = self.core.losses(enc, enc_lens, ys_pad, ys_lens, *inter, *readings)
                ctc_logp = self.core.ctc.log_softmax(enc)
                reading_logp = None if reading is None else reading.log_softmax(inter[0])
            if want_image:  # the first validation utterance: output tokens (+ <eos>) x encoder frames
                attn = src_attn.attn[0].float().mean(0)[: int(ys_lens[0]) + 1, : int(enc_lens[0])]
                self.writer.add_image("valid/attention", (attn / attn.max().clamp(min=1e-9)).unsqueeze(0).cpu(),
                                      self.epoch, dataformats="CHW")
                store_attention_weights(src_attn, False)
                want_image = False
            def chars(ids):
                return list(self.token_list.decode(ids).replace(" ", ""))

            errors = greedy_errors(ctc_logp, enc_lens, batch["ys_pad"], batch["ys_lens"], chars)
            kana_errors = (0, 0) if reading is None else \
                greedy_errors(reading_logp, enc_lens, *readings, list)
            sums += torch.cat([batch_stats(out, len(batch["utt_ids"]), int(feat_lens.sum()), names),
                               torch.tensor([*errors, *kana_errors], dtype=torch.float64)])
        distributed.all_reduce_sum(sums, self.dist)
        result = averages(sums[: len(names) + 2], prefix="valid_", names=names)
        result["valid_cer"] = float(sums[-4] / sums[-3]) if sums[-3] > 0 else None
        if reading is not None:
            result["valid_reading_cer"] = float(sums[-2] / sums[-1]) if sums[-1] > 0 else None
        return result

    def end_epoch(self, valid):
        """History, best-model bookkeeping, early stopping, the epoch checkpoint, plots."""
        tc = self.train_conf
        row = {"epoch": self.epoch, "step": self.step, **self._averages(self.epoch_sums, prefix="train_"), **valid,
               "lr": self.optimizer.param_groups[0]["lr"], "time": round(self.epoch_time, 3)}
        self.history.append(row)
        metric = self.best_metric
        sign = 1 if metric.endswith("acc") else -1  # accuracies: higher is better; losses: lower
        accs = [(sign * r[metric], r["epoch"]) for r in self.history if r.get(metric) is not None]
        best_acc = sign * max(accs)[0] if accs else None
        best_epoch = min((e for a, e in accs if sign * a == best_acc), default=self.epoch)  # a tie is no improvement
        if tc["patience"] is not None and self.epoch - best_epoch >= tc["patience"]:
            log.info("early stopping: no better %s for %d epochs (best %.4f at epoch %d)",
                     metric.replace("_", " "), self.epoch - best_epoch, best_acc, best_epoch)
            self.stop = True
        log.info("epoch %d done in %.1f s: %s", self.epoch, self.epoch_time,
                 self.epoch_summary(row, best_acc, best_epoch))
        weights = getattr(getattr(self.core, "frontend", None), "layer_weights", lambda: None)()
        if weights is not None:
            log.info("epoch %d: SSL layer weights %s", self.epoch, " ".join(f"{w:.3f}" for w in weights.tolist()))
        finished = self.epoch
        self.epoch, self.batches_done = self.epoch + 1, 0  # the checkpoint continues with the next epoch
        self.epoch_sums.zero_()
        self.epoch_time = 0.0
        self.save(f"epoch_{finished}.pt")
        if self.dist.is_main:
            keep = {e for _, e in sorted(accs, reverse=True)[: tc["keep_nbest_models"]]} | {finished}
            prune_checkpoints(self.ckpt_dir, keep)
            with contextlib.suppress(FileNotFoundError):
                (self.ckpt_dir / "last.pt").unlink()  # older than epoch_N.pt now
            self.write_history()
            for k, v in row.items():
                if k not in ("epoch", "step") and v is not None:
                    self.writer.add_scalar(f"epoch/{k}", v, finished)
            self.writer.flush()

    def epoch_summary(self, row, best, best_epoch):
        """The end of an epoch's train.log line: `summary_values` of `row`, then the best so far."""
        fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        parts = [f"{split} " + " ".join(f"{k} {fmt(row[f'{split}_{k}'])}" for k in keys)
                 for split, keys in self.summary_values]
        return " | ".join(parts + [f"best {self.best_label} {fmt(best)} (epoch {best_epoch})"])

    def write_history(self):
        """history.jsonl now; the plots in a background thread (they take ~1 s), one at a time."""
        atomic_write_lines(self.exp_dir / "history.jsonl", [json.dumps(r) for r in self.history])
        self.wait_for_plots()
        self._plotter = threading.Thread(target=self._plot, args=(list(self.history),), daemon=True)
        self._plotter.start()

    def _plot(self, history):
        try:
            plot_history(history, self.exp_dir / "images", self.figures)
        except Exception as e:  # a plot must never stop training
            log.warning("could not draw the training curves: %s", e)

    def wait_for_plots(self):
        if self._plotter is not None:
            self._plotter.join()
            self._plotter = None

    def finish(self):
        """After the last epoch, on rank 0: average the best epochs' checkpoints (by `best_metric`)
        into the model file and write `.done` -> (model path, averaged epochs). Raises
        AsrdemoError when no epoch was trained."""
        if not self.history:
            raise AsrdemoError("no epoch was trained (max_epochs is 0?)")
        path, epochs = average_best(self.exp_dir, self.train_conf["keep_nbest_models"], metric=self.best_metric)
        best_epoch = (best_epochs(self.history, 1, self.best_metric) or [self.history[-1]["epoch"]])[0]
        best = next(r for r in self.history if r["epoch"] == best_epoch)
        mark_done(self.exp_dir, epochs=self.history[-1]["epoch"], steps=self.step, best_epoch=best_epoch,
                  **{f"best_{k}": best[k] for k in self.done_values}, averaged_epochs=epochs, model=path.name,
                  epoch_checkpoints=sorted(epoch_checkpoints(self.ckpt_dir)))
        return path, epochs

    def run(self):
        from torch.utils.tensorboard import SummaryWriter

        if self.dist.is_main:
            self.writer = SummaryWriter(str(self.exp_dir / "tensorboard"))
        max_epochs = self.train_conf["max_epochs"]
        while self.epoch <= max_epochs and not self.stop:
            if self.batches_done < len(self.sampler.batches):
                self.train_epoch()
            valid = self.validate()
            self.end_epoch(valid)
        if self.dist.is_main:
            self.writer.close()
            last_figure = list(self.figures or FIGURES)[-1]  # drawn last
            if self.history and not (self.exp_dir / "images" / last_figure).is_file():
                self.write_history()  # e.g. resumed after the last epoch, before its plots
            self.wait_for_plots()
        distributed.barrier(self.dist)


# ----------------------------------------------------------------------------------------------
# Setting up the exp dir


def _copy_atomic(src, dst):
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def prepare_exp_dir(exp_dir, config, args, frontend, input_dim, vocab_size, has_cmvn):
    """Write config.yaml and copy tokens.txt, cmvn.ark (and bpe.model) into the exp dir.

    `frontend`: the fbank options (frontend.yaml), written as `frontend:` as always; with
    ``frontend: ssl`` in `config`, the SSL frontend's record, written as `frontend_conf:`."""
    exp_dir = Path(exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    kind = config.get("frontend", "fbank")
    frontend_keys = {"frontend": frontend} if kind == "fbank" else {"frontend": "ssl", "frontend_conf": frontend}
    config = {k: v for k, v in config.items() if k not in ("frontend", "frontend_conf")}
    sample_rate = frontend.get("sample_rate") if isinstance(frontend, dict) else None
    full = {
        **frontend_keys,
        "token_type": token_type(args),
        "token_list": "tokens.txt",
        "bpe_model": "bpe.model" if args.bpe_model else None,
        "cmvn": "cmvn.ark" if has_cmvn else None,
        "input_dim": input_dim,
        "vocab_size": vocab_size,
        **config,
        "data": {"train_dir": str(args.train_dir), "valid_dir": str(args.valid_dir),
                 "token_list": str(args.token_list),
                 # the longest training utterance: the recognizer decodes longer input in pieces
                 **longest_utterance(args.train_dir, kind, sample_rate)},
    }
    _copy_atomic(args.token_list, exp_dir / "tokens.txt")
    if has_cmvn:
        _copy_atomic(Path(args.train_dir) / "cmvn.ark", exp_dir / "cmvn.ark")
    if args.bpe_model:
        _copy_atomic(args.bpe_model, exp_dir / "bpe.model")
    header = "# written by `asrdemo train`: everything needed to rebuild the model and its frontend\n"
    atomic_write_text(exp_dir / "config.yaml", header + yaml.safe_dump(full, sort_keys=False, allow_unicode=True))
    return full


def _differences(old, new, prefix=""):
    """["key.sub: old -> new", ...] for every leaf that differs between two config mappings."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def token_type(args) -> str:
    """The run's token type: --token_type, else bpe with --bpe_model, else char."""
    return args.token_type or ("bpe" if args.bpe_model else "char")


def check_resume_config(old: dict, config: dict, vocab_size: int, old_path) -> None:
    """Before `--resume` touches anything: refuse what a checkpoint cannot continue with, naming the
    keys (the model, the token list, the optimizer's type, the training batches); log the rest,
    which takes effect from the next update (optim_conf, the scheduler, train.*).

    `old` is the exp dir's config.yaml (`old_path`; old key names are compared by their current
    ones), `config` this run's. Raises AsrdemoError."""
    old = upgrade_config(old)
    refused = []
    old_kind = old.get("frontend") if old.get("frontend") == "ssl" else "fbank"  # fbank exps record a mapping
    if old_kind != config.get("frontend", "fbank"):
        refused.append(f"frontend: {old_kind!r} -> {config.get('frontend', 'fbank')!r}")
    elif old_kind == "ssl":
        from asrdemo.model.ssl_frontend import resolve_frontend_conf

        old_fc, new_fc = resolve_frontend_conf(old.get("frontend_conf")), resolve_frontend_conf(config["frontend_conf"])
        if old_fc["normalize"] is not None and new_fc["normalize"] is None:
            new_fc["normalize"] = old_fc["normalize"]  # null: the model's default, which the old run recorded
        if Path(new_fc["model"]).expanduser().is_dir():  # the old run recorded a folder as its absolute path
            new_fc["model"] = str(Path(new_fc["model"]).expanduser().resolve())
        refused += _differences({"frontend_conf": old_fc}, {"frontend_conf": new_fc})
    if old.get("model") != config["model"]:
        refused += _differences({"model": old.get("model") or {}}, {"model": config["model"]})
    if old.get("vocab_size") != vocab_size:
        refused.append(f"vocab_size (the token list): {old.get('vocab_size')!r} -> {vocab_size!r}")
    refused += _differences({"optim": old.get("optim")}, {"optim": config["optim"]})
    old_batching = {k: v for k, v in (old.get("batching") or {}).items() if k != "valid_batch_bins"}
    new_batching = {k: v for k, v in config["batching"].items() if k != "valid_batch_bins"}
    if old.get("batching") is not None and old_batching != new_batching:
        refused += _differences({"batching": old_batching}, {"batching": new_batching})
    if refused:
        raise AsrdemoError(f"--resume: these settings differ from {old_path}, and the checkpoints cannot "
                           "continue with them: " + "; ".join(refused) +
                           ". Resume with the old values, or train into a new --exp_dir")
    changed = []
    for key in ("optim_conf", "scheduler", "scheduler_conf", "train"):
        changed += _differences({key: old.get(key)}, {key: config[key]})
    if changed:
        log.info("--resume: settings changed since %s, in effect from the next update: %s", old_path,
                 "; ".join(changed))


def relaunch_argv(command, args, options, repeated=()):
    """The command line of this run, for re-launching under torchrun (`asrdemo train` and `asrdemo
    lm train`): the `command` words, `--name value` for each of `options` that is set and for each
    value of the list options `repeated`, then every `--set` and `--resume`."""
    argv = list(command)
    for name in options:
        if getattr(args, name) is not None:
            argv += [f"--{name}", str(getattr(args, name))]
    for name in repeated:
        for value in getattr(args, name) or []:
            argv += [f"--{name}", str(value)]
    for text in args.set or []:
        argv += ["--set", text]
    if args.resume:
        argv.append("--resume")
    return argv


def _relaunch_argv(args):
    return relaunch_argv(["train"], args, ("config", "train_dir", "valid_dir", "token_list", "token_type", "bpe_model", "exp_dir",
                                           "ngpu", "seed", "max_epochs", "num_workers", "init_param"))


def start_devices(ngpu: int, relaunch_argv, nproc: int = 1) -> None:
    """The `--ngpu`/`--nproc` check and the torchrun re-launch of `asrdemo train` and `asrdemo lm
    train`: raises AsrdemoError for GPUs torch cannot see or an nproc < 1; outside torchrun, with
    ngpu > 1 (one process per GPU) or ngpu 0 and nproc > 1 (CPU processes of one thread each:
    on 2 cores ~1.3x faster per update than one 2-thread process, bench/RESULTS.md), re-launches
    `asrdemo <relaunch_argv>` under torchrun and does not return."""
    if ngpu > 0 and not torch.cuda.is_available():
        raise AsrdemoError(f"--ngpu {ngpu} but torch sees no CUDA device (torch {torch.__version__}); "
                           "use --ngpu 0 for CPU (--nproc N for N CPU processes, see docs/training.md)")
    if nproc < 1:
        raise AsrdemoError(f"--nproc must be >= 1, got {nproc}")
    if distributed.launched_by_torchrun():
        return
    if ngpu > 1:
        distributed.relaunch_with_torchrun(ngpu, relaunch_argv)  # does not return
    if ngpu == 0 and nproc > 1:
        os.environ["OMP_NUM_THREADS"] = "1"  # one thread per process: the processes share the cores
        distributed.relaunch_with_torchrun(nproc, relaunch_argv)


def checkpoint_to_resume(exp_dir: Path, resume: bool):
    """The newest checkpoint in exp_dir/checkpoints (None if there is none). Raises AsrdemoError when
    there is one and `resume` is off: a new run never silently overwrites an old one."""
    ckpt_dir = exp_dir / "checkpoints"
    resume_from = latest_checkpoint(ckpt_dir) if ckpt_dir.is_dir() else None
    if resume_from is not None and not resume:
        raise AsrdemoError(f"{exp_dir} already has checkpoints ({resume_from.name}): pass --resume to continue "
                           "that run, or choose another --exp_dir")
    return resume_from


def train(args):
    start_devices(args.ngpu, _relaunch_argv(args), args.nproc)
    exp_dir = Path(args.exp_dir)
    if is_done(exp_dir, ("config.yaml", "valid.acc.ave.pth")):
        log.info("skipped: %s is complete (remove %s/.done to train it further with --resume)", exp_dir, exp_dir)
        return
    config = load_config(args.config, args.set or [])
    tc = config["train"]
    for name in ("max_epochs", "seed", "num_workers"):
        if getattr(args, name) is not None:
            tc[name] = getattr(args, name)
    dist = distributed.setup(args.ngpu)
    with train_log(exp_dir, dist):
        _train(args, config, exp_dir, dist)


@contextlib.contextmanager
def train_log(exp_dir, dist):
    """The whole stage's log also goes to exp_dir/train.log (rank 0); the process group is closed
    at the end, however the run ends."""
    log_file = None
    if dist.is_main:
        exp_dir.mkdir(parents=True, exist_ok=True)
        log_file = logging.FileHandler(exp_dir / "train.log", encoding="utf-8")
        log_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        logging.getLogger().addHandler(log_file)
    else:
        logging.getLogger().setLevel(logging.WARNING)  # one copy of the log is enough
    try:
        yield
    finally:
        distributed.cleanup(dist)
        if log_file is not None:
            logging.getLogger().removeHandler(log_file)
            log_file.close()


def amp_settings(use_amp, device):
    """train.use_amp -> (autocast dtype or None, GradScaler or None) for this device."""
    if use_amp not in (None, "bf16", "fp16"):
        raise AsrdemoError(f"train.use_amp must be bf16, fp16 or null, got {use_amp!r}")
    if use_amp and device.type == "cuda":
        amp_dtype = torch.bfloat16 if use_amp == "bf16" else torch.float16
        return amp_dtype, (torch.amp.GradScaler("cuda") if use_amp == "fp16" else None)
    if use_amp == "bf16" and cpu_has_bf16():
        log.info("use_amp: bf16 autocast on CPU (native bf16 matmuls)")
        return torch.bfloat16, None  # AMX / AVX-512 BF16 matmuls: ~1.4x faster steps here (bench/RESULTS.md)
    if use_amp:
        log.info("use_amp: %s ignored on this %s (no native support)", use_amp, device.type)
    return None, None


def build_trainer(trainer_class, config, model, train_loader, train_sampler, valid_loader, token_list, exp_dir,
                  dist, resume_from, resume: bool):
    """`trainer_class` (`Trainer`, or the LM's) with the config's optimizer, its scheduler over
    max_epochs of updates and mixed precision; continued from the checkpoint `resume_from` when
    there is one (a `--resume` without one starts from scratch, saying so)."""
    tc = config["train"]
    core = model.module if dist.distributed else model
    # a frozen SSL model's parameters (requires_grad False) are not the optimizer's
    optimizer = build_optimizer(config["optim"], [p for p in core.parameters() if p.requires_grad],
                                config["optim_conf"])
    updates_per_epoch = math.ceil(len(train_sampler.batches) / tc["accum_grad"])
    scheduler = build_scheduler(config["scheduler"], optimizer, config["scheduler_conf"],
                                total_steps=updates_per_epoch * tc["max_epochs"])
    amp_dtype, scaler = amp_settings(tc["use_amp"], dist.device)
    trainer = trainer_class(config, model, optimizer, scheduler, scaler, train_loader, train_sampler, valid_loader,
                            token_list, exp_dir, dist, amp_dtype)
    if resume_from is not None:
        trainer.load(resume_from)
    elif resume:
        log.info("--resume: no checkpoint in %s, starting from scratch", trainer.ckpt_dir)
    return trainer


def init_from_model_file(model, path) -> None:
    """Start from another run's weights (ESPnet's --init_param), e.g. a full-context model
    fine-tuned into a streaming one (docs/streaming.md): the model must have the same parameters
    (names and shapes); a different architecture is refused, naming the keys. The one exception:
    a reading CTC head (`reading_ctc_weight`) the source model lacks starts from scratch."""
    from asrdemo.model.asr_model import load_model_weights

    weights = load_model_weights(path)
    new_head = {k: v for k, v in model.state_dict().items() if k.startswith("reading_ctc.") and k not in weights}
    try:
        model.load_state_dict({**weights, **new_head})
    except RuntimeError as e:
        raise AsrdemoError(f"--init_param {path} does not fit this config's model: {e}") from None
    log.info("initialised the model from %s%s", path, " (the reading CTC head from scratch)" if new_head else "")


def check_init_token_list(path, token_list: TokenList) -> None:
    """Refuse `--init_param` from a model whose exp dir (the folder of the model file, as packed by
    `asrdemo train` and `asrdemo package`) has another token list than this run's: output id k would
    silently change meaning (same vocabulary size, different units), or the output layers would not
    fit. Raises AsrdemoError naming the first differing token. No tokens.txt beside the file: no check."""
    source = Path(path).parent / "tokens.txt"
    if not source.is_file():
        return
    theirs = read_lines(source)  # as TokenList.load reads it: split at "\n" only
    if theirs == token_list.tokens:
        return
    diff = next((i for i, (a, b) in enumerate(zip(theirs, token_list.tokens)) if a != b),
                min(len(theirs), len(token_list.tokens)))

    def shown(toks):
        return repr(toks[diff]) if diff < len(toks) else "(end of list)"

    raise AsrdemoError(
        f"--init_param {path} was trained with {source} ({len(theirs)} tokens), which differs from this run's "
        f"token list ({len(token_list.tokens)} tokens) at id {diff}: {shown(theirs)} there, {shown(token_list.tokens)} "
        f"here; train with the same token list (e.g. --token_list {source})")


def record_init_param(exp_dir, path) -> dict:
    """Write `exp_dir/init_param.json`: the model file this run started from and, when that file
    sits in an exp dir with a history.jsonl, that run's epochs, updates and hours of training steps
    (the model card counts them: a fine-tuned model's training began there). Returns the record."""
    path = Path(path).resolve()
    record = {"init_param": str(path)}
    if (path.parent / "history.jsonl").is_file():
        rows = read_history(path.parent)
        if rows:
            record.update(training_summary(rows))
    atomic_write_text(Path(exp_dir) / "init_param.json", json.dumps(record) + "\n")
    return record


def _train(args, config, exp_dir, dist):
    from asrdemo.model.asr_model import ASRModel

    tc, bc = config["train"], config["batching"]
    resume_from = checkpoint_to_resume(exp_dir, args.resume)
    log.info("command: asrdemo %s", " ".join(_relaunch_argv(args)))

    token_list = TokenList.load(args.token_list, args.bpe_model, token_type(args))
    vocab_size = len(token_list)
    if resume_from is not None and (exp_dir / "config.yaml").is_file():
        check_resume_config(read_yaml(exp_dir / "config.yaml"), config, vocab_size, exp_dir / "config.yaml")

    seed = tc["seed"]
    torch.manual_seed(seed)  # an SSL frontend's projection is initialised here
    data = read_training_input(config, args.train_dir, args.valid_dir, token_list)
    train_examples, valid_examples, input_dim = data.train_examples, data.valid_examples, data.input_dim
    torch.manual_seed(seed)
    model = ASRModel.from_config(config["model"], input_dim, vocab_size, data.cmvn_stats, frontend=data.frontend)
    num_params = sum(p.numel() for p in model.parameters())
    log.info("model: %.2fM parameters, input_dim %d, vocab %d", num_params / 1e6, input_dim, vocab_size)
    if args.init_param and resume_from is None:
        check_init_token_list(args.init_param, token_list)
        init_from_model_file(model, args.init_param)
    model.to(dist.device)
    for name, examples in (("train", train_examples), ("valid", valid_examples)):
        short = [e for e in examples if e.num_frames < model.min_input_length]
        if short:
            log.warning("%s: left out %d utterance(s) shorter than the %d %s the model needs, e.g. %s",
                        name, len(short), model.min_input_length, data.length_unit, short[0].utt_id)
            examples[:] = [e for e in examples if e.num_frames >= model.min_input_length]
    if dist.distributed:
        if tc["sync_batchnorm"] and dist.device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ids = [dist.local_rank] if dist.device.type == "cuda" else None
        # an SSL model that unfreezes after freeze_steps has parameters without gradients until then
        unused = data.frontend is not None and not data.frontend.freeze
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=unused)
    torch.manual_seed(seed * 1000 + dist.rank)  # dropout/SpecAugment: a different stream per rank

    train_loader, train_sampler = make_loader(
        train_examples, bc["batch_bins"], bc["max_batch_size"], shuffle=True, seed=seed, rank=dist.rank,
        world_size=dist.world_size, num_workers=tc["num_workers"], load=data.load)
    valid_loader, _ = make_loader(
        valid_examples, bc["valid_batch_bins"] or bc["batch_bins"], bc["max_batch_size"], shuffle=False,
        rank=dist.rank, world_size=dist.world_size, num_workers=tc["num_workers"], load=data.load)
    num_batches = len(train_sampler.batches)
    log.info("train: %d utterances in %d batches (batch_bins %d %s), valid: %d utterances; %d process(es) on %s",
             len(train_examples), num_batches, bc["batch_bins"], data.length_unit, len(valid_examples),
             dist.world_size, dist.device)

    trainer = build_trainer(Trainer, config, model, train_loader, train_sampler, valid_loader, token_list, exp_dir,
                            dist, resume_from, args.resume)
    trainer.frame_unit = data.length_unit
    if dist.is_main:  # only now, after every check: a refused resume leaves config.yaml as it was
        prepare_exp_dir(exp_dir, config, args, data.frontend_record, input_dim, vocab_size, data.cmvn_stats is not None)
        if args.init_param and resume_from is None:
            record_init_param(exp_dir, args.init_param)
    trainer.run()

    if dist.is_main:
        path, epochs = trainer.finish()
        if data.kind == "ssl":
            write_layer_weights(exp_dir, path, data.frontend_record)
        log.info("finished: %s (averaged epochs %s); decoding loads %s/valid.acc.ave.pth", exp_dir, epochs, exp_dir)
    distributed.barrier(dist)


# ----------------------------------------------------------------------------------------------
# CLI


def add_common_arguments(p, config_example: str, token_list_help: str, exp_dir_example: str):
    """The options `asrdemo train` and `asrdemo lm train` share."""
    p.add_argument("--config", required=True, help=f"training YAML, e.g. {config_example}")
    p.add_argument("--token_list", required=True, help=token_list_help)
    p.add_argument("--exp_dir", required=True, help=f"output dir, e.g. {exp_dir_example}")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in exp_dir")
    p.add_argument("--ngpu", type=int, default=0, help="GPUs (0: CPU). >1 re-launches under torchrun")
    p.add_argument("--nproc", type=int, default=1,
                   help="with --ngpu 0: CPU processes, 1 thread each (DDP over gloo); >1 re-launches under torchrun")
    p.add_argument("--seed", type=int, default=None, help="overrides train.seed")
    p.add_argument("--max_epochs", type=int, default=None, help="overrides train.max_epochs")
    p.add_argument("--set", action="append", metavar="KEY.SUB=VALUE",
                   help="override a config value (YAML syntax), e.g. --set optim_conf.lr=0.001; repeatable")


def add_arguments(p):
    add_common_arguments(p, "conf/train_mini.yaml", "data/lang/tokens.txt", "exp/train_mini")
    p.add_argument("--train_dir", required=True, help="training dump dir (feats.scp, text, cmvn.ark, ...)")
    p.add_argument("--valid_dir", required=True, help="validation dump dir")
    p.add_argument("--bpe_model", default=None, help="sentencepiece model (token_type bpe)")
    p.add_argument("--token_type", default=None, choices=TOKEN_TYPES,
                   help="what the token list's units are (stage 3's --token_type); default: bpe with "
                        "--bpe_model, else char")
    p.add_argument("--num_workers", type=int, default=None, help="overrides train.num_workers")
    p.add_argument("--init_param", default=None,
                   help="start from this model file's weights (e.g. exp/train/valid.acc.ave.pth): fine-tuning, "
                        "such as a full-context model into a streaming one; ignored when resuming")


def main(args):
    train(args)
