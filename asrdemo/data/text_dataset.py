"""Language-model training data: sentences as token ids, batched like the ASR data.

Sentences come from Kaldi `text` files (`utt_id text`, e.g. the training transcripts) and from
plain text files (one sentence per line, e.g. `asrdemo generate_text`'s output, which can be far
larger than what is synthesized). Each is encoded with the ASR token list (characters missing
from it become `<unk>`, as in ESPnet's LM data). Batches reuse `asrdemo.data.dataset`'s
length-sorted `make_batches` and per-epoch shuffled `BatchSampler`, with a sentence's length in
tokens where the ASR data counts frames, so exact resume works the same way.
"""

import logging
from pathlib import Path
from typing import List, Sequence

import torch

from asrdemo.data.datadir import read_kv
from asrdemo.data.dataset import IGNORE_ID, BatchSampler, Example, ExampleDataset, make_batches
from asrdemo.errors import AsrdemoError

log = logging.getLogger(__name__)


def read_plain_text(path) -> List[str]:
    """A plain text file -> its non-empty lines (stripped)."""
    path = Path(path)
    if not path.is_file():
        raise AsrdemoError(f"missing text file {path}")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def read_sentences(kaldi_texts: Sequence = (), plain_texts: Sequence = ()) -> List[tuple]:
    """-> [(id, sentence)] from Kaldi `text` files (ids kept) and plain files (ids `name-N`)."""
    out = []
    for path in kaldi_texts:
        out += [(utt, text) for utt, text in read_kv(path).items() if text.strip()]
    for path in plain_texts:
        out += [(f"{Path(path).name}-{i:08d}", s) for i, s in enumerate(read_plain_text(path))]
    return out


def make_examples(sentences, token_list, max_tokens=None, where="LM text") -> List[Example]:
    """(id, sentence) pairs -> `Example`s whose `num_frames` is the number of tokens.

    Sentences longer than `max_tokens` (if given) are left out with a log line; no sentence at
    all is an error."""
    examples, too_long, num_unk, num_tokens = [], 0, 0, 0
    for utt, text in sentences:
        ids = token_list.encode(text)
        if not ids:
            continue
        if max_tokens and len(ids) > max_tokens:
            too_long += 1
            continue
        num_unk += sum(1 for i in ids if i == token_list.unk_id)
        num_tokens += len(ids)
        examples.append(Example(utt, "", len(ids), ids))
    if too_long:
        log.warning("%s: left out %d sentence(s) longer than %d tokens", where, too_long, max_tokens)
    if num_unk:
        log.info("%s: %d of %d tokens are <unk> (characters not in the token list)", where, num_unk, num_tokens)
    if not examples:
        raise AsrdemoError(f"{where}: no usable sentences")
    return examples


class TextDataset(ExampleDataset):
    """Item i -> (id, token ids (L,) long tensor)."""

    def __getitem__(self, i):
        ex = self.examples[i]
        return ex.utt_id, torch.tensor(ex.token_ids)


def collate_text(items):
    """[(id, ids (L,)), ...] -> {"utt_ids", "ys_pad" (B, L_max) padded with -1, "ys_lens" (B,)}."""
    ys = [it[1] for it in items]
    return {
        "utt_ids": [it[0] for it in items],
        "ys_pad": torch.nn.utils.rnn.pad_sequence(ys, batch_first=True, padding_value=IGNORE_ID),
        "ys_lens": torch.tensor([len(y) for y in ys], dtype=torch.long),
    }


def make_text_loader(examples, batch_bins, max_batch_size=None, shuffle=True, seed=0, rank=0, world_size=1):
    """DataLoader over sentences, `batch_bins` = padded tokens per batch; returns (loader, sampler).

    Everything is in memory, so no worker processes; the loader has its own generator (creating an
    iterator must not draw from the global RNG, or a resumed run's dropout would differ)."""
    dataset = TextDataset(examples)
    batches = make_batches(dataset.lengths, batch_bins, max_batch_size, min_batch_size=world_size)
    sampler = BatchSampler(batches, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_text, num_workers=0,
                                         generator=torch.Generator().manual_seed(seed))
    return loader, sampler
