"""Dataset, length-sorted batching, per-epoch shuffling and collate, on a real kaldiio dump dir."""

from collections import Counter

import kaldiio
import numpy as np
import pytest
import torch

from asrdemo.data.dataset import BatchSampler, collate, make_batches, make_loader, read_dump_dir
from asrdemo.data.tokens import TokenList
from asrdemo.errors import AsrdemoError

TOKENS = ["<blank>", "<unk>", "a", "b", "c", "<space>", "<sos/eos>"]


@pytest.fixture
def dump(tmp_path):
    """A dump dir of 23 utterances with lengths 10..120 frames and 80-dim features whose values
    encode (utterance index, frame index), so the test can check what came out."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    d = tmp_path / "dump"
    d.mkdir()
    lengths, texts = {}, {}
    with kaldiio.WriteHelper(f"ark,scp:{d}/feats.ark,{d}/feats.scp") as w:
        for i in range(23):
            utt = f"utt{i:02d}"
            n = int(rng.integers(10, 121))
            feats = np.zeros((n, 80), dtype=np.float32)
            feats[:, 0] = i + 1
            feats[:, 1] = np.arange(n)
            w(utt, feats)
            lengths[utt] = n
            texts[utt] = "abc a"[: 1 + i % 5]
    (d / "utt2num_frames").write_text("".join(f"{u} {n}\n" for u, n in lengths.items()))
    (d / "text").write_text("".join(f"{u} {t}\n" for u, t in texts.items()))
    (tmp_path / "tokens.txt").write_text("".join(t + "\n" for t in TOKENS))
    return d, lengths, texts, TokenList.load(tmp_path / "tokens.txt")


def test_read_dump_dir_encodes_text_and_checks_frames(dump):
    d, lengths, texts, tokens = dump
    examples = read_dump_dir(d, tokens)
    assert [e.utt_id for e in examples] == sorted(lengths)
    ex = examples[4]
    assert ex.num_frames == lengths["utt04"]
    assert texts["utt04"] == "abc a" and ex.token_ids == [2, 3, 4, 5, 2]
    # frame limits leave utterances out
    kept = read_dump_dir(d, tokens, min_frames=50, max_frames=100)
    assert {e.utt_id for e in kept} == {u for u, n in lengths.items() if 50 <= n <= 100}


def test_missing_transcript_is_a_clear_error(dump):
    d, lengths, texts, tokens = dump
    (d / "text").write_text("".join(f"{u} {t}\n" for u, t in list(texts.items())[1:]))
    with pytest.raises(AsrdemoError, match="utt00"):
        read_dump_dir(d, tokens)


def test_batches_cover_every_utterance_once_and_respect_batch_bins():
    rng = np.random.default_rng(1)
    lengths = rng.integers(5, 300, size=200).tolist()
    for bins, max_bs in [(600, None), (1000, 4), (299, None)]:
        batches = make_batches(lengths, bins, max_bs)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(200))  # every utterance exactly once
        for b in batches:
            longest = max(lengths[i] for i in b)
            assert len(b) * longest <= bins or len(b) == 1  # one over-long utterance may stand alone
            assert max_bs is None or len(b) <= max_bs
            assert lengths[b[0]] == longest
    # sorting keeps padding small: lengths within a batch are consecutive in sorted order
    batches = make_batches(lengths, 600)
    ranks = {i: r for r, i in enumerate(sorted(range(200), key=lambda i: (-lengths[i], i)))}
    for b in batches:
        assert [ranks[i] for i in b] == list(range(ranks[b[0]], ranks[b[0]] + len(b)))


def test_min_batch_size_for_ddp():
    lengths = [100] * 7
    batches = make_batches(lengths, batch_bins=100, min_batch_size=2)
    assert all(len(b) >= 2 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(7))


def test_epoch_order_is_shuffled_deterministically_by_seed_and_epoch():
    batches = [[i] for i in range(50)]
    a, b = BatchSampler(batches, seed=3), BatchSampler(batches, seed=3)
    orders = {}
    for epoch in (1, 2):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        orders[epoch] = [x[0] for x in a]
        assert orders[epoch] == [x[0] for x in b]  # same (seed, epoch) -> same order
        assert sorted(orders[epoch]) == list(range(50))
    assert orders[1] != orders[2]  # a new order each epoch
    assert orders[1] != list(range(50))
    c = BatchSampler(batches, seed=4)
    c.set_epoch(1)
    assert [x[0] for x in c] != orders[1]
    # resuming mid-epoch continues the same order
    a.set_epoch(2, start=17)
    assert [x[0] for x in a] == orders[2][17:]
    assert len(a) == 33


def test_ranks_split_each_batch():
    batches = [[0, 1, 2, 3], [4, 5], [6, 7, 8]]
    parts = []
    for rank in (0, 1):
        s = BatchSampler(batches, seed=0, rank=rank, world_size=2)
        s.set_epoch(5)
        parts.append(list(s))
    assert len(parts[0]) == len(parts[1]) == 3
    for p0, p1 in zip(*parts):
        assert sorted(p0 + p1) in [sorted(b) for b in batches]
        assert len(p0) >= len(p1) >= 1


def test_collate_pads_feats_with_zero_and_targets_with_minus_one():
    items = [("u1", torch.ones(3, 4), torch.tensor([5, 6])), ("u2", torch.full((5, 4), 2.0), torch.tensor([7, 8, 9]))]
    b = collate(items)
    assert b["utt_ids"] == ["u1", "u2"]
    assert b["feats"].shape == (2, 5, 4) and b["feats"].dtype == torch.float32
    assert torch.equal(b["feats"][0, 3:], torch.zeros(2, 4))
    assert torch.equal(b["feats"][1], torch.full((5, 4), 2.0))
    assert b["feat_lens"].tolist() == [3, 5]
    assert b["ys_pad"].tolist() == [[5, 6, -1], [7, 8, 9]]
    assert b["ys_lens"].tolist() == [2, 3]


@pytest.mark.parametrize("num_workers", [0, 1])
def test_loader_yields_each_utterance_once_with_its_own_features(dump, num_workers):
    d, lengths, texts, tokens = dump
    examples = read_dump_dir(d, tokens)
    loader, sampler = make_loader(examples, batch_bins=300, shuffle=True, seed=7, num_workers=num_workers)
    sampler.set_epoch(1)
    seen = Counter()
    for batch in loader:
        assert batch["feats"].shape[0] * batch["feats"].shape[1] <= 300
        for j, utt in enumerate(batch["utt_ids"]):
            i, n = int(utt[3:]), lengths[utt]
            seen[utt] += 1
            assert batch["feat_lens"][j] == n
            assert torch.all(batch["feats"][j, :n, 0] == i + 1)
            assert torch.equal(batch["feats"][j, :n, 1], torch.arange(n, dtype=torch.float32))
            assert torch.all(batch["feats"][j, n:] == 0)
            ids = tokens.encode(texts[utt])
            assert batch["ys_pad"][j, : len(ids)].tolist() == ids
            assert torch.all(batch["ys_pad"][j, len(ids):] == -1)
    assert seen == Counter({u: 1 for u in lengths})


def test_relative_ark_paths_resolve_beside_feats_scp(dump, tmp_path, monkeypatch):
    """feats.scp written in the recipe's work dir names `dump/.../feats.ark` relative to it; read
    from elsewhere, the ark beside feats.scp is used. A missing ark is a clear error."""
    d, lengths, texts, tokens = dump
    scp = d / "feats.scp"
    scp.write_text(scp.read_text().replace(str(d / "feats.ark"), "dump/fbank/train/feats.ark"))
    monkeypatch.chdir(tmp_path.parent)  # somewhere without dump/fbank/train/
    examples = read_dump_dir(d, tokens)
    assert examples[0].feats_path.startswith(str(d / "feats.ark") + ":")
    loader, sampler = make_loader(examples, batch_bins=10**6)
    assert sum(len(b["utt_ids"]) for b in loader) == len(lengths)
    (d / "feats.ark").rename(d / "moved.ark")
    with pytest.raises(AsrdemoError, match="feats.ark"):
        read_dump_dir(d, tokens)


def test_an_empty_transcript_is_kept_as_a_non_speech_example(dump):
    """Non-speech utterances (noise, silence) train with no target tokens: the CTC target is all
    blanks and the decoder's is <eos> alone, so the model learns to answer nothing."""
    from asrdemo.model.asr_model import ASRModel

    d, lengths, texts, tokens = dump
    lines = (d / "text").read_text().splitlines()
    (d / "text").write_text("\n".join(["utt00 "] + lines[1:]) + "\n")  # Kaldi's form: the id alone
    examples = read_dump_dir(d, tokens)
    assert len(examples) == 23 and examples[0].token_ids == []
    batch = collate([(e.utt_id, torch.zeros(40, 80), torch.tensor(e.token_ids, dtype=torch.long))
                     for e in examples[:3]])
    assert batch["ys_lens"].tolist()[0] == 0 and batch["ys_pad"].dtype == torch.long
    model = ASRModel.from_config({"encoder_conf": {"output_size": 16, "attention_heads": 2, "linear_units": 16,
                                                   "num_blocks": 1},
                                  "decoder_conf": {"attention_heads": 2, "linear_units": 16, "num_blocks": 1}},
                                 80, len(TOKENS))
    out = model(batch["feats"], batch["feat_lens"], batch["ys_pad"], batch["ys_lens"])
    assert torch.isfinite(out["loss"]) and out["loss_ctc"] > 0
