"""Tests of asrdemo.model: shapes, masks, padding invariance, incremental decoding, losses,
CMVN, SpecAugment, and the parameter count of the ESPnet JSUT conformer shape."""

import math

import numpy as np
import pytest
import torch

from asrdemo.errors import AsrdemoError
from asrdemo.model.asr_model import ASRModel
from asrdemo.model.attention import rel_shift, store_attention_weights
from asrdemo.model.cmvn import GlobalCMVN
from asrdemo.model.dropout import Dropout
from asrdemo.model.label_smoothing_loss import LabelSmoothingLoss, th_accuracy
from asrdemo.model.mask import make_non_pad_mask
from asrdemo.model.specaug import SpecAugment

torch.set_num_threads(1)

VOCAB = 12
IDIM = 20


def tiny_conf(encoder="conformer", input_layer="conv2d", dropout=0.1, specaug=None, **extra):
    enc = dict(output_size=16, attention_heads=2, linear_units=32, num_blocks=2, input_layer=input_layer,
               dropout_rate=dropout, positional_dropout_rate=dropout)
    if encoder == "conformer":
        enc["cnn_module_kernel"] = 5
    conf = dict(encoder=encoder, encoder_conf=enc,
                decoder_conf=dict(attention_heads=2, linear_units=32, num_blocks=2, dropout_rate=dropout,
                                  positional_dropout_rate=dropout),
                ctc_weight=0.3, lsm_weight=0.1, specaug=specaug)
    conf.update(extra)
    return conf


def fake_stats(dim=IDIM, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.normal(3.0, 2.0, size=(500, dim))
    return np.stack([np.append(frames.sum(0), len(frames)), np.append((frames ** 2).sum(0), 0.0)])


def build(conf, seed=0):
    torch.manual_seed(seed)
    return ASRModel.from_config(conf, IDIM, VOCAB, cmvn_stats=fake_stats())


def random_batch(lens, label_lens, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(len(lens), max(lens), IDIM, generator=g) * 2 + 3
    ys = torch.full((len(lens), max(label_lens)), -1, dtype=torch.long)
    for b, n in enumerate(label_lens):
        ys[b, :n] = torch.randint(1, VOCAB - 1, (n,), generator=g)
    return feats, torch.tensor(lens), ys, torch.tensor(label_lens)


EXPECTED_LEN = {  # output length formulas (WeNet/ESPnet Conv2dSubsampling2/4/6/8)
    "conv2d2": (2, lambda t: (t - 1) // 2 - 2),
    "conv2d": (4, lambda t: ((t - 1) // 2 - 1) // 2),
    "conv2d6": (6, lambda t: ((t - 1) // 2 - 2) // 3),
    "conv2d8": (8, lambda t: (((t - 1) // 2 - 1) // 2 - 1) // 2),
}


@pytest.mark.parametrize("encoder", ["conformer", "transformer"])
@pytest.mark.parametrize("input_layer", ["conv2d2", "conv2d", "conv2d6", "conv2d8"])
def test_forward_shapes_and_lengths(encoder, input_layer):
    model = build(tiny_conf(encoder, input_layer))
    rate, formula = EXPECTED_LEN[input_layer]
    assert model.subsampling_rate == rate
    lens = [61, 50, 37, model.min_input_frames]
    feats, feat_lens, ys, ys_lens = random_batch(lens, [4, 3, 2, 1])
    model.eval()
    enc, enc_lens = model.encode(feats, feat_lens)
    assert enc.shape == (4, formula(61), 16)
    assert enc_lens.tolist() == [formula(t) for t in lens]
    assert enc_lens[-1] == 1  # the shortest allowed input gives exactly one frame
    ctc_logp = model.ctc.log_softmax(enc)
    assert ctc_logp.shape == (4, formula(61), VOCAB)
    assert torch.allclose(ctc_logp.exp().sum(-1), torch.ones(4, formula(61)), atol=1e-5)
    model.train()
    out = model(feats, feat_lens, ys, ys_lens)
    assert set(out) == {"loss", "loss_ctc", "loss_att", "acc"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in out.values())
    assert torch.allclose(out["loss"], 0.3 * out["loss_ctc"] + 0.7 * out["loss_att"])
    out["loss"].backward()


@pytest.mark.parametrize("input_layer", ["conv2d", "conv2d8"])
def test_channels_last_subsampling_computes_what_plain_convolutions_do(input_layer):
    """The subsampling keeps its convolution weights channels-last (a several-fold faster backward
    on CPU, bench/RESULTS.md): forward and gradients equal those of the same weights in plain
    (contiguous) convolutions, and a state dict of contiguous tensors loads into it unchanged."""
    model = build(tiny_conf("conformer", input_layer))
    convs = [m for m in model.encoder.embed.conv if isinstance(m, torch.nn.Conv2d)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    plain = [torch.nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs]
    for p, c in zip(plain, convs):
        p.load_state_dict({k: v.contiguous() for k, v in c.state_dict().items()})
    x = torch.randn(3, 1, 61, IDIM)
    y = y_ref = x
    for c, p in zip(convs, plain):
        y, y_ref = torch.relu(c(y)), torch.relu(p(y_ref))
    assert torch.allclose(y, y_ref, atol=1e-5)
    w = torch.randn_like(y)
    (y * w).sum().backward()
    (y_ref * w).sum().backward()
    for c, p in zip(convs, plain):
        assert torch.allclose(c.weight.grad, p.weight.grad, rtol=1e-4, atol=1e-4)
        assert torch.allclose(c.bias.grad, p.bias.grad, rtol=1e-4, atol=1e-4)
    reloaded = build(tiny_conf("conformer", input_layer), seed=5)
    reloaded.load_state_dict({k: v.contiguous() for k, v in model.state_dict().items()})
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last)
               for m in reloaded.encoder.embed.conv if isinstance(m, torch.nn.Conv2d))
    assert torch.equal(reloaded.encoder.embed.conv[0].weight, convs[0].weight)


def test_too_short_input_is_a_clear_error():
    model = build(tiny_conf(input_layer="conv2d8")).eval()
    feats, lens, _, _ = random_batch([model.min_input_frames - 1], [1])
    with pytest.raises(AsrdemoError, match="at least 15"):
        model.encode(feats, lens)


@pytest.mark.parametrize("encoder,input_layer", [("conformer", "conv2d"), ("conformer", "conv2d6"),
                                                 ("transformer", "conv2d8"), ("conformer", "conv2d2")])
def test_encoder_padding_invariance(encoder, input_layer):
    model = build(tiny_conf(encoder, input_layer)).eval()
    lens = [70, 45, 33]
    feats, feat_lens, _, _ = random_batch(lens, [1, 1, 1], seed=1)
    for b, n in enumerate(lens):  # loud garbage in the padding must not leak into valid frames
        feats[b, n:] = torch.randn(feats.size(1) - n, IDIM) * 100
    with torch.no_grad():
        enc, enc_lens = model.encode(feats, feat_lens)
        for b, n in enumerate(lens):
            alone, alone_len = model.encode(feats[b:b + 1, :n], feat_lens[b:b + 1])
            assert alone_len.item() == enc_lens[b].item() == alone.size(1)
            torch.testing.assert_close(enc[b, :alone_len], alone[0], atol=2e-5, rtol=1e-4)


def test_decoder_padding_invariance_and_attention_weights():
    model = build(tiny_conf()).eval()
    torch.manual_seed(3)
    mem_lens, ys_lens = [9, 6, 4], [5, 2, 3]
    memory = torch.randn(3, 9, 16)
    memory_mask = make_non_pad_mask(torch.tensor(mem_lens)).unsqueeze(1)
    ys_in = torch.randint(0, VOCAB, (3, 5))
    store_attention_weights(model)
    with torch.no_grad():
        logits = model.decoder(memory, memory_mask, ys_in, torch.tensor(ys_lens))
        attn = model.decoder.decoders[0].src_attn.attn
        assert logits.shape == (3, 5, VOCAB)
        assert attn.shape == (3, 2, 5, 9)  # (B, heads, L, T)
        for b, (t, n) in enumerate(zip(mem_lens, ys_lens)):
            torch.testing.assert_close(attn[b, :, :n, :t].sum(-1), torch.ones(2, n))
            assert (attn[b, :, :, t:] == 0).all()  # padded memory frames get no weight
            alone = model.decoder(memory[b:b + 1, :t], memory_mask[b:b + 1, :, :t], ys_in[b:b + 1, :n],
                                  torch.tensor([n]))
            torch.testing.assert_close(logits[b, :n], alone[0], atol=2e-5, rtol=1e-4)
    store_attention_weights(model, False)
    assert model.decoder.decoders[0].src_attn.attn is None


@pytest.mark.parametrize("normalize_before", [True, False])
def test_forward_step_with_self_kv_cache_matches_teacher_forcing(normalize_before):
    """The cached keys/values path (beam search's): B = 2 utterances of different lengths x W = 3
    hypotheses each, sharing one projected memory per utterance, with beam-style reordering of the
    rows between steps, against a full teacher-forced pass over the reordered prefixes."""
    conf = tiny_conf()
    conf["decoder_conf"]["normalize_before"] = normalize_before
    model = build(conf).eval()
    g = torch.Generator().manual_seed(7)
    b, w, length = 2, 3, 6
    memory = torch.randn(b, 7, 16, generator=g)
    memory_mask = make_non_pad_mask(torch.tensor([7, 4])).unsqueeze(1)
    utt = torch.arange(b).repeat_interleave(w)  # rows 0-2: utterance 0, rows 3-5: utterance 1
    ys = torch.full((b * w, 1), model.sos)
    with torch.no_grad():
        memory_kv = model.decoder.precompute_memory_kv(memory)
        assert all(k.shape == (b, 2, 7, 8) for k, _ in memory_kv)
        state = None
        for step in range(1, length + 1):
            logp, state = model.decoder.forward_step(ys[:, -1], state, memory_kv, memory_mask)
            assert len(state) == 2 and all(k.shape == (b * w, 2, step, 8) for k, _ in state)
            full = torch.log_softmax(model.decoder(memory[utt], memory_mask[utt], ys, torch.full((b * w,), step)), -1)
            torch.testing.assert_close(logp, full[:, -1], atol=1e-5, rtol=1e-4)
            # reorder within each utterance (a beam keeps some hypotheses twice), extend by a token
            rows = torch.randint(0, w, (b, w), generator=g) + (torch.arange(b) * w).unsqueeze(1)
            rows = rows.view(-1)
            state = model.decoder.select_self_kv(state, rows)
            ys = torch.cat([ys[rows], torch.randint(1, VOCAB - 1, (b * w, 1), generator=g)], dim=1)
        # no padding to mask: memory_mask None gives the same as an all-True mask
        full_mask = torch.ones(b, 1, 7, dtype=torch.bool)
        a, _ = model.decoder.forward_step(ys[:, 0], None, memory_kv, full_mask)
        c, _ = model.decoder.forward_step(ys[:, 0], None, memory_kv, None)
        torch.testing.assert_close(a, c)
        with pytest.raises(ValueError, match="split evenly"):
            model.decoder.forward_step(ys[:5, 0], None, memory_kv, memory_mask)


def test_teacher_forcing_with_shared_memory_kv():
    """forward(..., memory_kv=) with one projected memory per utterance for its W rows (attention
    rescoring) equals forward with the memory repeated per row."""
    model = build(tiny_conf()).eval()
    g = torch.Generator().manual_seed(8)
    memory = torch.randn(2, 9, 16, generator=g)
    memory_mask = make_non_pad_mask(torch.tensor([9, 5])).unsqueeze(1)
    utt = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    ys = torch.randint(1, VOCAB - 1, (8, 5), generator=g)
    ys[:, 0] = model.sos
    lens = torch.tensor([5, 3, 4, 1, 2, 5, 5, 3])
    with torch.no_grad():
        expected = model.decoder(memory[utt], memory_mask[utt], ys, lens)
        shared = model.decoder(None, memory_mask, ys, lens, memory_kv=model.decoder.precompute_memory_kv(memory))
        per_row = model.decoder(None, memory_mask[utt], ys, lens,
                                memory_kv=model.decoder.precompute_memory_kv(memory[utt]))
    valid = make_non_pad_mask(lens, 5)
    torch.testing.assert_close(shared[valid], expected[valid], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(per_row[valid], expected[valid], atol=1e-5, rtol=1e-4)


def test_prefix_tree_teacher_forcing_equals_one_row_per_hypothesis():
    """Attention rescoring's scorer runs the decoder once per distinct prefix (forward_tree);
    its log-probs equal a plain teacher-forced pass per row: rows of two utterances interleaved,
    duplicates, a row that is a prefix of another, a bare <sos>, padding, shared and unshared
    prefixes, and padded memory."""
    from asrdemo.decode.ctc_prefix_beam import PrefixTree, teacher_forced_scorer

    model = build(tiny_conf()).eval()
    g = torch.Generator().manual_seed(9)
    memory = torch.randn(2, 9, 16, generator=g)
    memory_mask = make_non_pad_mask(torch.tensor([9, 6])).unsqueeze(1)
    s, e = model.sos, model.eos
    rows = [(0, [s, 3, 4, 5, 6]), (1, [s, 3, 4, 7]), (0, [s, 3, 4, 5, 2]), (0, [s, 3, 4]), (1, [s, 3, 4, 7]),
            (0, [s, 8]), (1, [s]), (0, [s, 3, 4, 5, 6])]
    utt = torch.tensor([u for u, _ in rows])
    lens = torch.tensor([len(y) for _, y in rows])
    ys = torch.full((len(rows), 5), e)
    for i, (_, y) in enumerate(rows):
        ys[i, : len(y)] = torch.tensor(y)
    tree = PrefixTree(utt, ys, lens)
    assert tree.utts.tolist() == [0, 1]
    # utterance 0: <sos> 3 4 5 {6, 2} and <sos> 8 -> 7 nodes; utterance 1: <sos> 3 4 7 -> 4 nodes
    assert tree.mask.shape == (2, 7, 7) and int(tree.mask[1].diagonal().sum()) == 7
    assert int(tree.mask[0].any(dim=0).sum()) == 7 and tree.positions[0].max() == 4
    with torch.no_grad():
        got = teacher_forced_scorer(model.decoder, memory, memory_mask)(utt, ys, lens)
        expected = torch.log_softmax(model.decoder(memory[utt], memory_mask[utt], ys, lens), dim=-1)
    assert got.shape == expected.shape
    valid = make_non_pad_mask(lens, 5)
    torch.testing.assert_close(got[valid], expected[valid], atol=1e-5, rtol=1e-4)


def test_tiny_batch_overfits():
    model = build(tiny_conf(encoder="conformer", dropout=0.0))
    feats, feat_lens, ys, ys_lens = random_batch([60, 48], [5, 3], seed=5)
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        out = model(feats, feat_lens, ys, ys_lens)
        assert torch.isfinite(out["loss"])
        optim.zero_grad()
        out["loss"].backward()
        optim.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.5 * losses[0], losses
    model.eval()
    assert model(feats, feat_lens, ys, ys_lens)["acc"] > 0.5


def test_label_smoothing_loss_by_hand():
    logits = torch.tensor([[[1.0, 2.0, 0.5, -1.0], [0.0, 0.0, 3.0, 1.0], [9.0, 0.0, 0.0, 0.0]]])
    target = torch.tensor([[1, 3, -1]])
    eps, v = 0.1, 4
    expected = 0.0
    for row, y in zip(logits[0, :2].tolist(), [1, 3]):
        logz = math.log(sum(math.exp(z) for z in row))
        for k, z in enumerate(row):
            p = 1 - eps if k == y else eps / (v - 1)
            expected += p * (math.log(p) - (z - logz))  # KL(target || model)
    per_utt = LabelSmoothingLoss(v, -1, eps)(logits, target)
    per_token = LabelSmoothingLoss(v, -1, eps, normalize_length=True)(logits, target)
    assert per_utt.item() == pytest.approx(expected, rel=1e-5)  # batch of 1: sum / 1
    assert per_token.item() == pytest.approx(expected / 2, rel=1e-5)
    # two copies of the utterance: per-utterance normalisation keeps the value
    assert LabelSmoothingLoss(v, -1, eps)(logits.repeat(2, 1, 1), target.repeat(2, 1)).item() == pytest.approx(expected, rel=1e-5)
    # accuracy: position 0 right (argmax 1), position 1 wrong (argmax 2), padding ignored
    assert th_accuracy(logits, target).item() == pytest.approx(0.5)


def test_global_cmvn_from_kaldi_stats():
    from asrdemo.data.cmvn import accumulate

    rng = np.random.default_rng(1)
    frames = [rng.normal(rng.uniform(-5, 5, IDIM), rng.uniform(0.5, 3, IDIM), size=(n, IDIM)) for n in (40, 70)]
    stats = None
    for utt in frames:  # the feature stage's accumulation, in Kaldi's (2, D+1) layout
        stats = accumulate(stats, utt)
    cmvn = GlobalCMVN.from_kaldi_stats(stats, IDIM)
    all_frames = np.concatenate(frames)
    x = torch.randn(2, 5, IDIM) * 3 + 1
    expected = (x.numpy() - all_frames.mean(0)) / all_frames.std(0)
    np.testing.assert_allclose(cmvn(x).numpy(), expected, rtol=1e-4, atol=1e-4)
    torch.manual_seed(0)
    model = ASRModel.from_config(tiny_conf(), IDIM, VOCAB, cmvn_stats=stats)
    state = model.state_dict()  # checkpoints carry the statistics
    assert torch.equal(state["cmvn.mean"], cmvn.mean) and torch.equal(state["cmvn.istd"], cmvn.istd)
    torch.testing.assert_close(model.cmvn(x), cmvn(x))
    identity = ASRModel.from_config(tiny_conf(), IDIM, VOCAB).cmvn
    assert torch.equal(identity(x), x)
    with pytest.raises(AsrdemoError, match="80-dim"):
        ASRModel.from_config(tiny_conf(), IDIM, VOCAB, cmvn_stats=fake_stats(dim=80))
    with pytest.raises(AsrdemoError, match="no frames"):
        GlobalCMVN.from_kaldi_stats(np.zeros((2, IDIM + 1)))


def test_specaug_train_only_respects_lengths_and_is_reproducible():
    aug = SpecAugment(num_freq_mask=0, num_time_mask=2, time_mask_width_ratio=0.2)
    lens = torch.tensor([100, 60, 30])
    feats = torch.rand(3, 100, IDIM) + 1.0  # never 0, so zeros are masks
    aug.eval()
    assert aug(feats, lens) is feats
    aug.train()
    torch.manual_seed(0)
    state = torch.get_rng_state()
    masked_total = 0
    for _ in range(20):
        out = aug(feats, lens)
        for b, n in enumerate(lens.tolist()):
            assert torch.equal(out[b, n:], feats[b, n:])  # padding untouched
            zero_frames = (out[b, :n] == 0).all(dim=1)
            assert (out[b, :n][~zero_frames] == feats[b, :n][~zero_frames]).all()
            assert zero_frames.sum() <= 2 * int(0.2 * n)
            masked_total += int(zero_frames.sum())
    assert masked_total > 0
    torch.set_rng_state(state)
    first = aug(feats, lens)
    torch.set_rng_state(state)
    assert torch.equal(aug(feats, lens), first)  # same RNG state -> same masks

    freq = SpecAugment(num_freq_mask=2, freq_mask_width=5, num_time_mask=0).train()
    out = freq(feats, lens)
    zero_bins = (out == 0).all(dim=1)  # (B, D): a bin masked over every frame
    assert ((out == 0) == zero_bins.unsqueeze(1)).all()  # frequency masks span whole utterances
    assert (zero_bins.sum(1) <= 10).all()

    warp = SpecAugment(num_freq_mask=0, num_time_mask=0, time_warp=5).train()
    ramp = torch.arange(100.0).view(1, 100, 1).repeat(3, 1, IDIM)
    out = warp(ramp, lens)
    assert out.shape == ramp.shape and not torch.equal(out, ramp)
    for b, n in enumerate(lens.tolist()):
        assert torch.equal(out[b, n:], ramp[b, n:])


def test_model_uses_specaug_only_in_training():
    specaug = dict(num_freq_mask=2, freq_mask_width=4, num_time_mask=2, time_mask_width_ratio=0.1)
    model = build(tiny_conf("transformer", dropout=0.0, specaug=specaug))
    feats, lens, _, _ = random_batch([50, 40], [1, 1])
    with torch.no_grad():
        model.eval()
        a, _ = model.encode(feats, lens)
        b, _ = model.encode(feats, lens)
        model.train()
        c, _ = model.encode(feats, lens)
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_rel_shift_matches_definition():
    t = 5
    x = torch.randn(2, 3, t, 2 * t - 1)
    out = rel_shift(x)
    for i in range(t):
        for j in range(t):
            # column k of x holds distance T-1-k; out[i, j] must hold distance i - j
            assert torch.equal(out[:, :, i, j], x[:, :, i, t - 1 - (i - j)])


def test_rel_pos_attention_depends_only_on_distances():
    """Masked frames *before* an utterance shift every absolute position; relative attention
    must not notice (absolute attention would)."""
    from asrdemo.model.attention import RelPositionMultiHeadedAttention
    from asrdemo.model.embedding import RelPositionalEncoding

    torch.manual_seed(6)
    attn = RelPositionMultiHeadedAttention(2, 16, 0.0).eval()
    pos_enc = RelPositionalEncoding(16, 0.0)
    x = torch.randn(1, 6, 16)
    shifted = torch.cat([torch.randn(1, 3, 16) * 50, x], dim=1)
    mask = torch.tensor([[[False] * 3 + [True] * 6]])
    with torch.no_grad():
        _, pos = pos_enc(x)
        _, pos_shifted = pos_enc(shifted)
        alone = attn(x, x, x, torch.ones(1, 1, 6, dtype=torch.bool), pos)
        after = attn(shifted, shifted, shifted, mask, pos_shifted)
    torch.testing.assert_close(after[:, 3:], alone, atol=1e-5, rtol=1e-4)


def test_config_errors_are_clear():
    with pytest.raises(AsrdemoError, match="num_blokcs"):
        ASRModel.from_config({"encoder_conf": {"num_blokcs": 2}}, IDIM, VOCAB)
    with pytest.raises(AsrdemoError, match="abs_pos"):
        ASRModel.from_config({"encoder": "transformer", "encoder_conf": {"pos_enc_layer_type": "rel_pos"}}, IDIM, VOCAB)
    with pytest.raises(AsrdemoError, match="input_layer"):
        ASRModel.from_config({"encoder_conf": {"input_layer": "conv2d5"}}, IDIM, VOCAB)
    with pytest.raises(AsrdemoError, match="ctc_weight"):
        ASRModel.from_config({"ctc_weight": 1.5}, IDIM, VOCAB)


def espnet_conformer_param_count(idim=80, d=256, ff=2048, blocks=12, kernel=15, dec_blocks=6, dec_ff=2048, vocab=3000):
    """ESPnet2 ConformerEncoder(rel_pos, macaron, cnn) + TransformerDecoder + CTC, counted by hand."""
    lin = lambda i, o: i * o + o  # noqa: E731
    freq = ((idim - 1) // 2 - 1) // 2
    subsampling = (9 * d + d) + (9 * d * d + d) + lin(d * freq, d)
    ffn = lin(d, ff) + lin(ff, d)
    mhsa = 4 * lin(d, d)
    rel_mhsa = mhsa + d * d + 2 * d  # linear_pos (no bias), pos_bias_u, pos_bias_v
    conv = lin(d, 2 * d) + (kernel * d + d) + 2 * d + lin(d, d)  # pw1, depthwise, BatchNorm, pw2
    enc_block = 2 * ffn + rel_mhsa + conv + 5 * 2 * d  # 5 LayerNorms
    encoder = subsampling + blocks * enc_block + 2 * d
    dec_block = 2 * mhsa + lin(d, dec_ff) + lin(dec_ff, d) + 3 * 2 * d
    decoder = vocab * d + dec_blocks * dec_block + 2 * d + lin(d, vocab)
    return encoder + decoder + lin(d, vocab)


def test_parameter_count_of_espnet_jsut_conformer():
    conf = {"encoder": "conformer",
            "encoder_conf": dict(output_size=256, attention_heads=4, linear_units=2048, num_blocks=12,
                                 input_layer="conv2d", cnn_module_kernel=15, pos_enc_layer_type="rel_pos"),
            "decoder_conf": dict(attention_heads=4, linear_units=2048, num_blocks=6)}
    with torch.device("meta"):  # shapes only, no memory or init time
        model = ASRModel.from_config(conf, 80, 3000)
    ours = sum(p.numel() for p in model.parameters())
    assert ours == espnet_conformer_param_count() == 45_247_856
    assert abs(ours / 1e6 - 45.25) < 0.01  # ESPnet reports 45.25 M


def test_documented_mini_model_size_is_the_models():
    """Issue 12, item 16: README, conf/train_mini.yaml and docs/training.md state the parameter count
    the demo page shows (the model's own count), with the mini corpus' ~900 characters."""
    import re
    from pathlib import Path

    from asrdemo.train.trainer import load_config

    repo = Path(__file__).resolve().parents[1]
    model = ASRModel.from_config(load_config(repo / "conf" / "train_mini.yaml")["model"], 80, 900)
    millions = round(sum(p.numel() for p in model.parameters()) / 1e6, 1)
    for name, pattern in [("README.md", r"a ([\d.]+)M-parameter Conformer, `conf/train_mini.yaml`"),
                          ("conf/train_mini.yaml", r"A tiny Conformer \(([\d.]+)M parameters\)"),
                          ("docs/training.md", r"x6 subsampling, ([\d.]+)M parameters"),
                          ("bench/RESULTS.md", r"`conf/train_mini.yaml`, ([\d.]+)M parameters")]:
        m = re.search(pattern, (repo / name).read_text(encoding="utf-8"))
        assert m and float(m.group(1)) == millions, (name, m and m.group(1), millions)


def test_dropout_draws_a_bernoulli_mask_and_scales_like_nn_dropout():
    """asrdemo's Dropout (16 random bits per element, faster on CPU than bernoulli_): about p of the
    elements zeroed, the rest scaled by 1 / (1 - p), the gradient masked the same way, the dtype
    kept (bf16 too), reproducible from the seed; identity in eval mode and at p = 0."""
    p = 0.1
    drop = Dropout(p).train()
    x = torch.ones(1000, 1000, requires_grad=True)
    torch.manual_seed(0)
    y = drop(x)
    dropped = (y == 0).float()
    assert abs(dropped.mean().item() - p) < 0.002
    flat = dropped.view(-1)  # two elements share one 32-bit draw: each half is Bernoulli(p), independently
    assert abs(flat[0::2].mean().item() - p) < 0.002 and abs(flat[1::2].mean().item() - p) < 0.002
    assert abs((flat[0::2] * flat[1::2]).mean().item() - p * p) < 0.001
    assert torch.allclose(y[y != 0], torch.tensor(1.0 / (1.0 - p)))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)  # the same seed, the same mask
    assert drop(x.detach().bfloat16()).dtype == torch.bfloat16
    z = torch.randn(4, 5)
    assert drop.eval()(z) is z and Dropout(0.0).train()(z) is z
    assert torch.equal(Dropout(1.0).train()(z), torch.zeros_like(z))


def test_training_with_asrdemo_dropout_follows_nn_dropout():
    """The first 50 updates of a tiny model with dropout 0.3, once with asrdemo's Dropout and once
    with every one swapped for torch's nn.Dropout (same weights, batches and optimizer): the
    losses, averaged over windows of 10 updates, stay within 10 % of each other (different random
    masks, the same distribution) and both runs learn."""
    runs = []
    for reference in (False, True):
        model = build(tiny_conf(encoder="conformer", dropout=0.3))
        if reference:
            for module in list(model.modules()):
                for name, child in list(module.named_children()):
                    if isinstance(child, Dropout):
                        setattr(module, name, torch.nn.Dropout(child.p))
        assert any(type(m) is (torch.nn.Dropout if reference else Dropout) for m in model.modules())
        optim = torch.optim.Adam(model.parameters(), lr=2e-3)
        torch.manual_seed(7)
        losses = []
        for step in range(50):
            feats, feat_lens, ys, ys_lens = random_batch([60, 48, 52], [5, 3, 4], seed=step % 5)
            out = model(feats, feat_lens, ys, ys_lens)
            optim.zero_grad()
            out["loss"].backward()
            optim.step()
            losses.append(out["loss"].item())
        runs.append([sum(losses[i : i + 10]) / 10 for i in range(0, 50, 10)])
    ours, torchs = runs
    for a, b in zip(ours, torchs):
        assert abs(a - b) <= 0.1 * b, (ours, torchs)
    assert ours[-1] < 0.9 * ours[0] and torchs[-1] < 0.9 * torchs[0], (ours, torchs)  # both learn (0.79 here)
