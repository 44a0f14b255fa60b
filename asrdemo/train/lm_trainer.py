"""Train a character language model with the ASR trainer's machinery (`asrdemo lm train`).

    asrdemo lm train --config conf/lm.yaml --token_list data/lang/tokens.txt \\
        --train_text data/train/text [--lm_train_text more.txt] --valid_text data/dev/text \\
        --exp_dir exp/lm [--resume]

`LMTrainer` is `asrdemo.train.trainer.Trainer` with the LM's statistics and validation: the same
epoch loop, updates, gradient clipping and accumulation, exact resume (checkpoints with RNG and
sampler states), DDP, TensorBoard, train.log, history.jsonl, plots and n-best averaging. What
differs: the data are sentences (`asrdemo.data.text_dataset`, batch_bins counts padded tokens),
the statistics are token-exact sums (loss = NLL per token, perplexity = exp(loss), next-token
accuracy), and the best epochs are those with the lowest validation loss, averaged into
`valid.loss.ave.pth` — ESPnet's LM stage picks its LM the same way (`valid.loss.ave.pth`).

The exp dir: config.yaml (the config + `token_list: tokens.txt`, `vocab_size`, `data:`), tokens.txt
(a copy of the ASR token list: the LM scores the ASR model's tokens), checkpoints/, train.log,
history.jsonl, tensorboard/, images/{loss,acc,ppl}.png, valid.loss.ave.pth, .done.
"""

import copy
import logging
import math
import shutil
from pathlib import Path

import torch
import yaml

from asrdemo.data.text_dataset import make_examples, make_text_loader, read_sentences
from asrdemo.data.tokens import TokenList
from asrdemo.errors import AsrdemoError
from asrdemo.model.lm import LM_MODEL_FILE
from asrdemo.train import distributed
from asrdemo.train.trainer import (DEFAULTS, Trainer, add_common_arguments, batch_stats, build_trainer,
                                   check_resume_config, checkpoint_to_resume, load_config, relaunch_argv,
                                   start_devices, train_log)
from asrdemo.utils.config import read_yaml
from asrdemo.utils.io import atomic_path, atomic_write_text, is_done

log = logging.getLogger(__name__)

LM_DEFAULTS = {
    "model": None,  # required: lm: transformer | lstm, lm_conf: {...} (asrdemo/model/lm.py)
    "optim": "adam",
    "optim_conf": {"lr": 0.001},
    "scheduler": "warmuplr",
    "scheduler_conf": {"warmup_steps": 1000},
    "batching": {
        "batch_bins": 20000,  # padded tokens per batch: batch_size x longest sentence (+1 for <eos>)
        "max_batch_size": None,
        "valid_batch_bins": None,
        "max_tokens": 400,  # longer training sentences are left out
    },
    "train": {k: v for k, v in copy.deepcopy(DEFAULTS["train"]).items()
              if k not in ("attention_image_interval", "sync_batchnorm", "num_workers")},
}
LM_FIGURES = {
    "loss.png": ("LM loss (negative log-likelihood per token)", "nats per token", [
        ("train_loss", "train", "-"), ("valid_loss", "valid", "-")]),
    "acc.png": ("LM next-token accuracy", "accuracy", [("train_acc", "train", "-"), ("valid_acc", "valid", "-")]),
    "ppl.png": ("LM perplexity", "perplexity", [("train_ppl", "train", "-"), ("valid_ppl", "valid", "-")]),
}


class LMTrainer(Trainer):
    """The ASR Trainer's loop on sentences. Statistics are per-sentence sums (see LanguageModel.forward),
    so that loss, perplexity and accuracy are exact per-token values over a whole epoch."""

    stat_names = ("nll", "ntokens", "correct")
    best_metric = "valid_loss"
    best_label = "valid loss"
    done_values = ("valid_loss", "valid_ppl")
    summary_values = (("train", ("loss", "ppl", "acc")), ("valid", ("loss", "ppl", "acc")))
    frame_unit = "tokens"
    figures = LM_FIGURES

    def _model_step(self, batch):
        ys_pad, ys_lens = batch["ys_pad"].to(self.device), batch["ys_lens"].to(self.device)
        return self.model(ys_pad, ys_lens), len(batch["utt_ids"]), int(ys_lens.sum())

    def derive(self, avg, prefix=""):
        nll, ntokens, correct = (avg[prefix + k] for k in self.stat_names)
        if not ntokens:
            return {prefix + "loss": None, prefix + "ppl": None, prefix + "acc": None}
        loss = nll / ntokens
        return {prefix + "loss": loss, prefix + "ppl": math.exp(min(loss, 700.0)), prefix + "acc": correct / ntokens}

    @torch.no_grad()
    def validate(self):
        self.model.eval()
        sums = torch.zeros(len(self.stat_names) + 2, dtype=torch.float64)
        for batch in self.valid_loader:
            with self._autocast():
                out, num_utts, num_tokens = self._model_step(batch)
            sums += batch_stats(out, num_utts, num_tokens, self.stat_names)
        distributed.all_reduce_sum(sums, self.dist)
        return self._averages(sums, prefix="valid_")


def _relaunch_argv(args):
    return relaunch_argv(["lm", "train"], args, ("config", "token_list", "token_type", "exp_dir", "ngpu", "seed",
                                                 "max_epochs"),
                         repeated=("train_text", "lm_train_text", "valid_text"))


def train_lm(args):
    """`asrdemo lm train`: see the module docstring. A finished exp dir (`.done`) is skipped."""
    start_devices(args.ngpu, _relaunch_argv(args), args.nproc)
    if not args.train_text and not args.lm_train_text:
        raise AsrdemoError("no training text: give --train_text (Kaldi text) and/or --lm_train_text (plain text)")
    exp_dir = Path(args.exp_dir)
    if is_done(exp_dir, ("config.yaml", LM_MODEL_FILE)):
        log.info("skipped: %s is complete (remove %s/.done to train it further with --resume)", exp_dir, exp_dir)
        return
    config = load_config(args.config, args.set or [], defaults=LM_DEFAULTS)
    for name in ("max_epochs", "seed"):
        if getattr(args, name) is not None:
            config["train"][name] = getattr(args, name)
    dist = distributed.setup(args.ngpu)
    with train_log(exp_dir, dist):
        _train_lm(args, config, exp_dir, dist)


def _train_lm(args, config, exp_dir, dist):
    from asrdemo.model.lm import build_lm

    tc, bc = config["train"], config["batching"]
    resume_from = checkpoint_to_resume(exp_dir, args.resume)
    log.info("command: asrdemo %s", " ".join(_relaunch_argv(args)))

    token_list = TokenList.load(args.token_list, token_type=args.token_type)
    vocab_size = len(token_list)
    train_examples = make_examples(read_sentences(args.train_text or [], args.lm_train_text or []), token_list,
                                   bc["max_tokens"], "LM training text")
    valid_examples = make_examples(read_sentences(args.valid_text, []), token_list, None, "LM validation text")
    data = {"train_text": [str(p) for p in args.train_text or []],
            "lm_train_text": [str(p) for p in args.lm_train_text or []],
            "valid_text": [str(p) for p in args.valid_text], "token_list": str(args.token_list)}
    if resume_from is not None and (exp_dir / "config.yaml").is_file():  # the ASR trainer's rules
        check_resume_config(read_yaml(exp_dir / "config.yaml"), config, vocab_size, exp_dir / "config.yaml")

    seed = tc["seed"]
    torch.manual_seed(seed)
    model = build_lm(config["model"], vocab_size)
    log.info("LM: %s, %.2fM parameters, vocab %d", type(model).__name__,
             sum(p.numel() for p in model.parameters()) / 1e6, vocab_size)
    model.to(dist.device)
    if dist.distributed:
        ids = [dist.local_rank] if dist.device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    torch.manual_seed(seed * 1000 + dist.rank)  # dropout: a different stream per rank

    train_loader, train_sampler = make_text_loader(train_examples, bc["batch_bins"], bc["max_batch_size"], shuffle=True,
                                                   seed=seed, rank=dist.rank, world_size=dist.world_size)
    valid_loader, _ = make_text_loader(valid_examples, bc["valid_batch_bins"] or bc["batch_bins"],
                                       bc["max_batch_size"], shuffle=False, rank=dist.rank, world_size=dist.world_size)
    num_batches = len(train_sampler.batches)
    log.info("train: %d sentences (%d tokens) in %d batches (batch_bins %d), valid: %d sentences",
             len(train_examples), sum(e.num_frames for e in train_examples), num_batches, bc["batch_bins"],
             len(valid_examples))

    trainer = build_trainer(LMTrainer, config, model, train_loader, train_sampler, valid_loader, token_list, exp_dir,
                            dist, resume_from, args.resume)
    if dist.is_main:  # only now, after every check: a refused resume leaves config.yaml as it was
        with atomic_path(exp_dir / "tokens.txt") as tmp:
            shutil.copyfile(args.token_list, tmp)
        full = {"token_list": "tokens.txt", "token_type": args.token_type, "vocab_size": vocab_size, **config,
                "data": data}
        atomic_write_text(exp_dir / "config.yaml", "# written by `asrdemo lm train`: everything needed to rebuild "
                          "the LM\n" + yaml.safe_dump(full, sort_keys=False, allow_unicode=True))
    trainer.run()

    if dist.is_main:
        _, epochs = trainer.finish()
        log.info("finished: %s (averaged epochs %s); shallow fusion loads %s/%s", exp_dir, epochs, exp_dir,
                 LM_MODEL_FILE)
    distributed.barrier(dist)


def add_arguments(p):
    add_common_arguments(p, "conf/lm.yaml", "the ASR token list, data/lang/tokens.txt", "exp/lm")
    p.add_argument("--train_text", action="append", default=[], help="Kaldi `text` (utt_id text); repeatable")
    p.add_argument("--lm_train_text", action="append", default=[],
                   help="more training text, one sentence per line; repeatable")
    p.add_argument("--valid_text", action="append", required=True, help="Kaldi `text` for validation; repeatable")
    p.add_argument("--token_type", default="char", choices=("char", "kana"),
                   help="the ASR model's token type: kana models' LMs read the readings of the text")
