"""Stage 2: fbank features of a data dir into `feats.ark` / `feats.scp` (+ global CMVN stats).

Worker processes read and resample the audio and compute fbank (`asrdemo.data.fbank`); the parent
writes the ark in utterance order, so the output does not depend on `--nj`.

    asrdemo fbank --data_dir data/train --out_dir dump/fbank/train --fbank_config conf/fbank.yaml --nj 2 --cmvn
"""

import logging
import multiprocessing
import shutil
import time
from pathlib import Path

import kaldiio
import numpy as np
import yaml
from tqdm import tqdm

from asrdemo.data import cmvn
from asrdemo.data.audio import load_audio
from asrdemo.data.datadir import input_digest, read_data_dir
from asrdemo.data.fbank import Fbank
from asrdemo.errors import AsrdemoError
from asrdemo.utils.io import (atomic_path, atomic_write_lines, atomic_write_text, clear_done, done_with, is_done,
                              mark_done)

log = logging.getLogger(__name__)

OUTPUTS = ("feats.scp", "feats.ark", "utt2num_frames", "text", "frontend.yaml")

_fbank = None  # one extractor per worker process


def _init_worker(conf):
    global _fbank
    _fbank = Fbank(conf)


def _compute(item):
    utt_id, wav = item
    try:
        wave, _ = load_audio(wav, _fbank.sample_rate)
    except AsrdemoError as e:
        return utt_id, None, f"{utt_id}: {e}"
    feats = _fbank(wave)
    if len(feats) == 0:
        return utt_id, None, f"{utt_id}: audio {wav} is too short for one frame ({len(wave)} samples)"
    return utt_id, feats, None


def compute_features(data_dir, out_dir, fbank_conf=None, nj=1, with_cmvn=False):
    """Write `out_dir/{feats.ark,feats.scp,utt2num_frames,frontend.yaml}` (+ `cmvn.ark`) and copy the
    data dir's files beside them. Returns the number of utterances."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    utts = read_data_dir(data_dir)
    for u in utts:
        if u.wav.rstrip().endswith("|"):
            raise AsrdemoError(f"{data_dir}/wav.scp: {u.utt_id}: pipe commands are not supported, give a file path")
    fbank = Fbank(fbank_conf)
    out_dir.mkdir(parents=True, exist_ok=True)
    clear_done(out_dir)
    stats, num_frames, errors = None, [], []
    items = [(u.utt_id, u.wav) for u in utts]
    ark = out_dir / "feats.ark"
    ctx = multiprocessing.get_context("spawn")
    with atomic_path(out_dir / "feats.scp") as scp_tmp, kaldiio.WriteHelper(f"ark,scp:{ark},{scp_tmp}") as writer:
        with ctx.Pool(max(1, nj), initializer=_init_worker, initargs=(fbank.conf,)) as pool:
            results = pool.imap(_compute, items, chunksize=4)
            for utt_id, feats, error in tqdm(results, total=len(items), desc=f"fbank {data_dir.name}", unit="utt"):
                if error:
                    errors.append(error)
                    continue
                writer(utt_id, feats)
                num_frames.append(f"{utt_id} {len(feats)}")
                if with_cmvn:
                    stats = cmvn.accumulate(stats, feats)
        if errors:
            shown = "\n  ".join(errors[:10])
            more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
            raise AsrdemoError(f"{len(errors)} utterance(s) in {data_dir} could not be featurized:\n  {shown}{more}")
    atomic_write_lines(out_dir / "utt2num_frames", num_frames)
    for name in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur"):
        if (data_dir / name).exists():
            shutil.copyfile(data_dir / name, out_dir / name)
    atomic_write_text(out_dir / "frontend.yaml", yaml.safe_dump(fbank.conf, sort_keys=False))
    if with_cmvn:
        with atomic_path(out_dir / "cmvn.ark") as tmp:
            kaldiio.save_mat(str(tmp), stats)
    return len(num_frames)


def add_arguments(p):
    p.add_argument("--data_dir", required=True, help="Kaldi data dir (wav.scp, text, ...)")
    p.add_argument("--out_dir", required=True, help="where feats.scp/ark go, e.g. dump/fbank/train")
    # --fbank_conf: the option's name until config names followed ESPnet (a YAML file is *_config)
    p.add_argument("--fbank_config", "--fbank_conf", dest="fbank_config", default=None,
                   help="YAML with fbank options, e.g. conf/fbank.yaml (default: built-in 80-dim, 16 kHz); "
                        "--fbank_conf is its deprecated name")
    p.add_argument("--nj", type=int, default=2, help="parallel worker processes")
    p.add_argument("--cmvn", action="store_true", help="also write global CMVN statistics (training set)")


def main(args):
    out_dir = Path(args.out_dir)
    conf = Fbank.from_yaml(args.fbank_config).conf if args.fbank_config else Fbank().conf
    required = OUTPUTS + (("cmvn.ark",) if args.cmvn else ())
    digest = input_digest(args.data_dir) if (Path(args.data_dir) / "wav.scp").is_file() else None
    if is_done(out_dir, required):
        done_conf = yaml.safe_load((out_dir / "frontend.yaml").read_text(encoding="utf-8"))
        if done_conf == conf and done_with(out_dir, {"input_sha256": digest}):
            log.info("skipped: %s is complete (remove %s/.done to redo)", out_dir, out_dir)
            return
        log.info("the data dir or the fbank options changed since %s was written; recomputing", out_dir)
    start = time.time()
    n = compute_features(args.data_dir, out_dir, conf, nj=args.nj, with_cmvn=args.cmvn)
    mark_done(out_dir, data_dir=str(args.data_dir), input_sha256=digest, utterances=n)
    log.info("wrote %d utterances to %s/feats.scp in %.1f s%s", n, out_dir, time.time() - start,
             f" (+ {out_dir}/cmvn.ark)" if args.cmvn else "")
