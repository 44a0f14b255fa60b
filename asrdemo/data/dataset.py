"""Training data: a dump dir as a dataset, length-sorted batches, and the collate function.

A dump dir (`dump/fbank/<set>/`, stage 2) holds `feats.scp` (kaldiio, (T, 80) float32),
`utt2num_frames` and `text`. Batching follows ESPnet's "numel"-style idea, kept simple:

* utterances are sorted by length (longest first), then cut into consecutive batches whose
  **padded frame count** `batch_size x max_frames_in_batch` stays <= `batch_bins`
  (and whose size stays <= `max_batch_size` when given). Sorting keeps padding small, and the
  longest batch comes first in a sorted pass, so an out-of-memory shows at once.
  (ESPnet's `batch_bins` counts padded *elements* of raw waveforms: its JSUT 15,000,000 samples
  at 16 kHz are ~93,750 of our 10 ms frames.)
* the batch list is fixed; each epoch visits it in an order shuffled by `(seed, epoch)`, so an
  epoch's order can be rebuilt from two integers — what mid-epoch resume needs.
* under DDP every global batch is split across ranks (`batch[rank::world_size]`), so N processes
  see exactly the batches one process would, and the averaged gradient is the same.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import kaldiio
import numpy as np
import torch

from asrdemo.data.datadir import read_kv, read_text
from asrdemo.errors import AsrdemoError

log = logging.getLogger(__name__)

IGNORE_ID = -1  # padding value of the targets (the model's ignore_id)


@dataclass
class Example:
    utt_id: str
    feats_path: str  # kaldiio rxspecifier, e.g. "dump/fbank/train/feats.ark:1234" (SSL: the audio file)
    num_frames: int  # feature frames (SSL: samples, asrdemo/data/wave_dataset.py)
    token_ids: list
    reading_ids: Optional[list] = None  # the reading CTC's targets (asrdemo/kana.py), when the model has one


def read_dump_dir(dump_dir, token_list, min_frames=1, max_frames=None, readings=False):
    """Read `feats.scp`, `utt2num_frames` and `text` of a dump dir into a list of `Example`s.

    Utterances outside [min_frames, max_frames] or with an empty transcript are left out with a
    log line; an utterance missing from `text` or `utt2num_frames` is an error."""
    dump_dir = Path(dump_dir)
    for name in ("feats.scp", "utt2num_frames", "text"):
        if not (dump_dir / name).is_file():
            raise AsrdemoError(f"missing {dump_dir / name} (made by stage 2, `asrdemo fbank`)")
    arks = {}
    feats = {utt: _resolve_ark(path, dump_dir, arks) for utt, path in read_kv(dump_dir / "feats.scp").items()}
    frames = read_kv(dump_dir / "utt2num_frames")
    texts = read_text(dump_dir / "text")
    return select_examples(dump_dir, feats, frames, texts, token_list, min_frames, max_frames, readings=readings)


def select_examples(source_dir, inputs: dict, lengths: dict, texts: dict, token_list, min_len=1, max_len=None,
                    listed_in="feats.scp", lengths_file="utt2num_frames", unit="frames", readings=False):
    """`Example`s of the utterances in `inputs` ({utt_id: feats spec or audio path}, the order kept)
    with their `lengths` ({utt_id: an integer, or its text as in `lengths_file`}) and `texts`.

    Utterances outside [min_len, max_len], or whose non-empty transcript gives no token, are left
    out with a log line; one missing from `texts` or `lengths`, or a length that is not an integer,
    is an AsrdemoError naming `source_dir`'s file. An empty transcript is a non-speech example
    (noise, silence): kept, with no target tokens, so the model learns to answer nothing.
    `readings`: also give each example the reading CTC's targets, from its transcript's katakana
    reading (asrdemo/kana.py `reading_ids`; needs pyopenjtalk)."""
    if readings:
        from asrdemo.kana import reading_ids
    examples, dropped, num_unk, num_empty = [], [], 0, 0
    for utt_id, path in inputs.items():
        if utt_id not in texts:
            raise AsrdemoError(f"{source_dir}/text has no transcript for {utt_id} (listed in {listed_in})")
        if utt_id not in lengths:
            raise AsrdemoError(f"{source_dir}/{lengths_file} has no entry for {utt_id}")
        try:
            n = int(lengths[utt_id])
        except ValueError:
            raise AsrdemoError(f"{source_dir}/{lengths_file}: {utt_id}: not an integer: {lengths[utt_id]!r}")
        text = texts[utt_id]
        ids = token_list.encode(text)
        if (not ids and text.strip()) or n < min_len or (max_len and n > max_len):
            dropped.append(utt_id)
            continue
        num_empty += not ids
        num_unk += sum(1 for i in ids if i == token_list.unk_id)
        examples.append(Example(utt_id, path, n, ids, reading_ids(text) if readings else None))
    if dropped:
        log.warning("%s: left out %d utterance(s) (text without a known token or %s outside [%s, %s]), e.g. %s",
                    source_dir, len(dropped), unit, min_len, max_len, dropped[0])
    if num_unk:
        log.warning("%s: %d token(s) map to <unk> (not in the token list)", source_dir, num_unk)
    if num_empty:
        log.info("%s: %d non-speech utterance(s) (empty transcript): their target is nothing", source_dir, num_empty)
    if not examples:
        raise AsrdemoError(f"{source_dir}: no usable utterances")
    return examples


def _resolve_ark(rxspec, dump_dir, found_arks):
    """`file.ark:offset` of feats.scp -> a spec that opens from here. Kaldi paths are relative to
    the directory the features were made in (the recipe's work dir); when we run elsewhere, the ark
    beside feats.scp is the same file."""
    ark, sep, offset = rxspec.rpartition(":")
    if not sep or not offset.isdigit():
        raise AsrdemoError(f"{dump_dir}/feats.scp: {rxspec!r} is not file.ark:offset")
    if ark not in found_arks:  # {ark as written: the path that opens}, one check per ark file
        candidates = [Path(ark), Path(dump_dir) / Path(ark).name]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise AsrdemoError(f"{dump_dir}/feats.scp names {ark}, which is neither at that path (from "
                               f"{Path.cwd()}) nor in {dump_dir}")
        found_arks[ark] = str(found)
    return f"{found_arks[ark]}:{offset}"


def load_features(ex: Example) -> np.ndarray:
    """An example's fbank matrix (T, D) from its ark, checked against utt2num_frames."""
    feats = kaldiio.load_mat(ex.feats_path)
    if feats.shape[0] != ex.num_frames:
        raise AsrdemoError(f"{ex.utt_id}: feats have {feats.shape[0]} frames, utt2num_frames says {ex.num_frames}")
    return feats


class ExampleDataset(torch.utils.data.Dataset):
    """A list of `Example`s; `lengths` is what `make_batches` sorts and packs by (frames, or the
    tokens of a sentence for the LM's `text_dataset.TextDataset`)."""

    def __init__(self, examples):
        self.examples = list(examples)

    def __len__(self):
        return len(self.examples)

    @property
    def lengths(self):
        return [ex.num_frames for ex in self.examples]


class ASRDataset(ExampleDataset):
    """Item i -> (utt_id, feats (T, D) float32 tensor, token ids (L,) long tensor), and the
    reading ids (R,) long tensor as a fourth element when the examples have them.

    `load(example)` reads the input: `load_features` (default), or a `wave_dataset.WaveLoader`,
    whose items are waves (N,) instead of feats."""

    def __init__(self, examples, load=None):
        super().__init__(examples)
        self.load = load or load_features

    def __getitem__(self, i):
        ex = self.examples[i]
        feats = torch.from_numpy(np.array(self.load(ex), dtype=np.float32))  # a writable copy
        if ex.reading_ids is None:
            return ex.utt_id, feats, torch.tensor(ex.token_ids, dtype=torch.long)
        return (ex.utt_id, feats, torch.tensor(ex.token_ids, dtype=torch.long),
                torch.tensor(ex.reading_ids, dtype=torch.long))


def make_batches(lengths, batch_bins, max_batch_size=None, min_batch_size=1):
    """Cut indices sorted by length (longest first) into batches of <= `batch_bins` padded frames.

    A batch never has fewer than `min_batch_size` items (DDP needs one per rank), even if that
    exceeds `batch_bins`; otherwise a batch is full when adding the next utterance would make
    `batch_size x longest_frames` exceed `batch_bins` or the size exceed `max_batch_size`.
    Returns a list of lists of indices (each batch longest first)."""
    if batch_bins <= 0:
        raise AsrdemoError(f"batch_bins must be positive, got {batch_bins}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches, current = [], []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        full = (len(current) + 1) * longest > batch_bins or (max_batch_size and len(current) >= max_batch_size)
        if current and full and len(current) >= min_batch_size:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        if len(current) < min_batch_size and batches:
            batches[-1].extend(current)  # too few left for every rank: join the previous batch
        else:
            batches.append(current)
    if min_batch_size > 1 and any(len(b) < min_batch_size for b in batches):
        raise AsrdemoError(f"only {len(lengths)} utterances: fewer than {min_batch_size} processes need")
    too_big = sum(1 for b in batches if len(b) * lengths[b[0]] > batch_bins)
    if too_big:
        log.warning("%d batch(es) exceed batch_bins=%d (an utterance longer than batch_bins, or DDP's "
                    "one-utterance-per-rank minimum)", too_big, batch_bins)
    return batches


class BatchSampler(torch.utils.data.Sampler):
    """Yields this rank's part of each batch, in an order that depends only on (seed, epoch).

    `set_epoch(epoch, start=k)` makes the next pass begin at the k-th batch of that epoch's
    order, which is how a resumed run continues in the middle of an epoch."""

    def __init__(self, batches, shuffle=True, seed=0, rank=0, world_size=1):
        self.batches = [list(b) for b in batches]
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 1
        self.start = 0
        if any(len(b) < world_size for b in self.batches):
            raise AsrdemoError(f"a batch has fewer utterances than the {world_size} DDP processes")

    def set_epoch(self, epoch, start=0):
        self.epoch, self.start = epoch, start

    def epoch_order(self, epoch):
        """The batch indices of `epoch`, in visiting order."""
        if not self.shuffle:
            return list(range(len(self.batches)))
        g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        return torch.randperm(len(self.batches), generator=g).tolist()

    def __iter__(self):
        for b in self.epoch_order(self.epoch)[self.start:]:
            yield self.batches[b][self.rank::self.world_size]

    def __len__(self):
        return len(self.batches) - self.start


def collate(items):
    """List of (utt_id, feats, token_ids[, reading_ids]) -> dict of padded tensors.

    feats are padded with 0.0 to (B, T_max, D) (waves (N,): to (B, N_max)); targets with
    IGNORE_ID (-1) to (B, L_max); reading ids, when the items have them, to "rs_pad" (B, R_max)
    with "rs_lens" (B,)."""
    utt_ids = [it[0] for it in items]
    feats = [it[1] for it in items]
    ys = [it[2] for it in items]
    feat_lens = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
    ys_lens = torch.tensor([y.shape[0] for y in ys], dtype=torch.long)
    batch = {
        "utt_ids": utt_ids,
        "feats": torch.nn.utils.rnn.pad_sequence(feats, batch_first=True, padding_value=0.0),
        "feat_lens": feat_lens,
        "ys_pad": torch.nn.utils.rnn.pad_sequence(ys, batch_first=True, padding_value=IGNORE_ID),
        "ys_lens": ys_lens,
    }
    if len(items[0]) > 3:
        rs = [it[3] for it in items]
        batch["rs_pad"] = torch.nn.utils.rnn.pad_sequence(rs, batch_first=True, padding_value=IGNORE_ID)
        batch["rs_lens"] = torch.tensor([r.shape[0] for r in rs], dtype=torch.long)
    return batch


def make_loader(examples, batch_bins, max_batch_size=None, shuffle=True, seed=0, rank=0, world_size=1,
                num_workers=0, load=None):
    """DataLoader over `examples` with length-sorted batches; returns (loader, sampler).
    `load`: how an item's input is read (`ASRDataset`; default: its fbank from the ark).

    The loader gets its own torch.Generator, so creating an iterator never draws from the global
    RNG (it would otherwise shift dropout/SpecAugment randomness after a resume). Workers are
    persistent: started once, not forked again every epoch (while a plot thread may be running).
    The batch sampler runs in the main process, so `sampler.set_epoch` works with them."""
    dataset = ASRDataset(examples, load)
    batches = make_batches(dataset.lengths, batch_bins, max_batch_size, min_batch_size=world_size)
    sampler = BatchSampler(batches, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed), persistent_workers=num_workers > 0,
        prefetch_factor=2 if num_workers > 0 else None,
    )
    return loader, sampler
