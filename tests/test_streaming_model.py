"""The streaming options of the encoder (docs/streaming.md): chunk masks, dynamic chunk training,
causal convolution, and chunk-by-chunk encoding with caches, which must give the same frames as
the whole utterance under the equivalent chunk mask."""

import pytest
import torch

from asrdemo.model.asr_model import ASRModel
from asrdemo.model.chunk import FULL_CONTEXT, MAX_DYNAMIC_CHUNK, choose_chunk
from asrdemo.model.convolution import ConvolutionModule
from asrdemo.model.mask import chunk_attention_mask
from conftest import TINY_CONFIG

IDIM, VOCAB = 80, 20
DECODER = {"attention_heads": 2, "linear_units": 32, "num_blocks": 1}


def tiny(encoder="conformer", seed=0, **encoder_conf):
    torch.manual_seed(seed)
    conf = {"encoder": encoder, "decoder_conf": DECODER,
            "encoder_conf": {"output_size": 32, "attention_heads": 2, "linear_units": 64, "num_blocks": 2,
                             **encoder_conf}}
    return ASRModel.from_config(conf, IDIM, VOCAB)


def test_chunk_attention_mask_matches_its_definition():
    size, chunk = 11, 3
    for left in (-1, 0, 1, 2):
        mask = chunk_attention_mask(size, chunk, left)
        for i in range(size):
            for j in range(size):
                visible = j // chunk <= i // chunk and (left < 0 or j // chunk >= i // chunk - left)
                assert bool(mask[i, j]) == visible, (left, i, j)
    assert torch.equal(chunk_attention_mask(5, 1), torch.ones(5, 5, dtype=torch.bool).tril())
    with pytest.raises(ValueError):
        chunk_attention_mask(5, 0)


def test_choose_chunk_draws_both_full_context_and_small_chunks_in_training_only():
    torch.manual_seed(0)
    draws = [choose_chunk(100, True, True, False, 0) for _ in range(400)]
    full = sum(c == FULL_CONTEXT for c, _ in draws)
    assert 120 < full < 280, full  # about half the batches see everything (WeNet's rule)
    chunks = {c for c, _ in draws if c != FULL_CONTEXT}
    assert min(chunks) >= 1 and max(chunks) <= MAX_DYNAMIC_CHUNK and len(chunks) > 10
    assert all(left == -1 for _, left in draws)
    lefts = {left for c, left in (choose_chunk(100, True, True, True, 0) for _ in range(200)) if c}
    assert len(lefts) > 3 and min(lefts) >= 0
    # not training: full context, unless asked or configured
    assert choose_chunk(100, False, True, True, 0) == (FULL_CONTEXT, -1)
    assert choose_chunk(100, False, True, False, 0, decoding_chunk_size=8, num_decoding_left_chunks=2) == (8, 2)
    assert choose_chunk(100, True, True, False, 0, decoding_chunk_size=-1) == (FULL_CONTEXT, -1)
    assert choose_chunk(100, False, False, False, 4, num_decoding_left_chunks=1) == (4, 1)


@pytest.mark.parametrize("causal", [True, False])
def test_causal_convolution_never_looks_ahead(causal):
    torch.manual_seed(0)
    conv = ConvolutionModule(8, 5, causal=causal).eval()
    x = torch.randn(1, 20, 8)
    later = x.clone()
    later[:, 12:] += 1.0
    with torch.no_grad():
        a, _ = conv(x)
        b, _ = conv(later)
    assert torch.allclose(a[:, :12], b[:, :12]) == causal
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def test_streaming_options_keep_parameter_names_and_shapes():
    """A full-context checkpoint loads into the streaming model: fine-tuning starts from it."""
    old = tiny().state_dict()
    new = tiny(causal=True, use_dynamic_chunk=True, use_dynamic_left_chunk=True)
    assert {k: v.shape for k, v in old.items()} == {k: v.shape for k, v in new.state_dict().items()}
    new.load_state_dict(old)
    assert new.encoder.streaming and not tiny().encoder.streaming
    assert tiny(use_dynamic_chunk=True).encoder.streaming  # chunk masks cut its look-ahead at the chunk's end


def test_a_looking_ahead_convolution_under_a_chunk_mask_looks_ahead_only_inside_its_chunk():
    """Without ``causal``, ``chunk_size`` gives each chunk its left context and zeros after its end:
    what chunk-by-chunk decoding computes. A frame still sees the later frames of its own chunk."""
    torch.manual_seed(0)
    conv = ConvolutionModule(8, 5).eval()
    x = torch.randn(1, 20, 8)
    with torch.no_grad():
        y, _ = conv(x, chunk_size=6)
        for start in (0, 6, 12, 18):  # chunk by chunk, the left context from the cache
            cache = None if start == 0 else conv(x[:, :start])[1]
            part, _ = conv(x[:, start:start + 6], cache=cache)
            assert torch.allclose(y[:, start:start + 6], part, atol=1e-6), start
        later = x.clone()
        later[:, 12:] += 1.0  # the third chunk on
        z, _ = conv(later, chunk_size=6)
        full, _ = conv(x)
    assert torch.allclose(y[:, :12], z[:, :12]) and not torch.allclose(y[:, 6:12], full[:, 6:12])
    later = x.clone()
    later[:, 11] += 1.0  # the second chunk's last frame: its chunk's earlier frames see it
    with torch.no_grad():
        z, _ = conv(later, chunk_size=6)
    assert not torch.allclose(y[:, 9:11], z[:, 9:11]) and torch.allclose(y[:, :6], z[:, :6])


CASES = [
    ("conformer", dict(causal=True)),
    ("conformer", dict(input_layer="conv2d6")),  # the look-ahead convolution, cut at each chunk's end
    ("conformer", dict(causal=True, input_layer="conv2d6", pos_enc_layer_type="abs_pos")),
    ("conformer", dict(causal=True, input_layer="conv2d8", cnn_module_norm="layer_norm")),
    ("transformer", dict()),
]


@pytest.mark.parametrize("encoder,conf", CASES)
@pytest.mark.parametrize("chunk,left", [(1, -1), (4, -1), (4, 1), (16, 0)])
def test_chunk_by_chunk_equals_the_whole_utterance_under_the_chunk_mask(encoder, conf, chunk, left):
    """The real test of the caches: keys/values, convolution state and positions carried from
    chunk to chunk reproduce, frame for frame, the utterance encoded at once with the chunk mask."""
    model = tiny(encoder, use_dynamic_chunk=True, **conf).eval()
    for frames in (151, 29):
        x = model.cmvn(torch.randn(1, frames, IDIM))
        with torch.no_grad():
            whole, masks = model.encoder(x, torch.tensor([frames]), chunk, left)
            streamed = model.encoder.forward_chunk_by_chunk(x, chunk, left)
        assert streamed.shape == whole.shape
        assert (streamed - whole).abs().max() < 1e-4
        if frames > 100 and chunk < 16:  # the mask matters, so the equality above says something
            with torch.no_grad():
                full_context, _ = model.encoder(x, torch.tensor([frames]), -1)
            assert (full_context - whole).abs().max() > 1e-2


def test_dynamic_chunk_training_step_learns():
    model = tiny(causal=True, use_dynamic_chunk=True, use_dynamic_left_chunk=True).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    feats, lens = torch.randn(3, 120, IDIM), torch.tensor([120, 100, 80])
    ys, ys_lens = torch.randint(2, VOCAB - 1, (3, 6)), torch.tensor([6, 5, 4])
    losses = []
    for _ in range(15):
        loss = model(feats, lens, ys, ys_lens)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < 0.7 * losses[0], losses


def test_init_param_loads_a_full_context_model_and_refuses_another_architecture(tmp_path):
    """`asrdemo train --init_param`: a full-context model's weights start the streaming model's
    training; a model of another shape is refused, naming the parameters, before anything runs."""
    from asrdemo.errors import AsrdemoError
    from asrdemo.train.trainer import init_from_model_file

    path = tmp_path / "valid.acc.ave.pth"
    torch.save(tiny(seed=1).state_dict(), path)
    streaming = tiny(seed=2, causal=True, use_dynamic_chunk=True)
    init_from_model_file(streaming, path)
    assert all(torch.equal(a, b) for a, b in zip(streaming.state_dict().values(), torch.load(path).values()))
    with pytest.raises(AsrdemoError, match="does not fit"):
        init_from_model_file(tiny(num_blocks=3), path)
    with pytest.raises(AsrdemoError, match="does not exist"):
        init_from_model_file(streaming, tmp_path / "missing.pth")


def test_the_card_of_a_fine_tuned_model_counts_the_run_it_started_from(trained_exp, trained_streaming_exp, tmp_path):
    """A streaming model fine-tuned with --init_param: its package's README names the model it
    started from and that run's epochs and updates, so the card tells all the training it had."""
    import json

    from conftest import asrdemo

    record = json.loads((trained_streaming_exp / "init_param.json").read_text())
    rows = [json.loads(line) for line in (trained_exp / "history.jsonl").read_text().splitlines()]
    assert record["epochs"] == len(rows) and record["updates"] == rows[-1]["step"] > 0
    asrdemo("package", "--exp_dir", trained_streaming_exp, "--out_dir", tmp_path / "pkg")
    card = (tmp_path / "pkg" / "README.md").read_text(encoding="utf-8")
    source = (trained_exp / "valid.acc.ave.pth").resolve()
    assert f"- fine-tuned from: {source}: {len(rows)} epochs, {rows[-1]['step']:,} updates" in card, card


def test_init_param_refuses_a_model_trained_with_another_token_list(tiny_work, trained_exp, tmp_path):
    """Bug: `--init_param` from a model whose token list held other units of the same count loaded
    silently, every output id then meaning another character (a corpus remade with another seed
    can give such a list). Now the exp dir's tokens.txt beside the model file is compared with the
    run's list, and a difference stops the run before training, naming the first differing id."""
    import subprocess
    import sys

    tokens = (tiny_work / "data" / "lang" / "tokens.txt").read_text(encoding="utf-8").splitlines()
    other = tokens[:2] + [tokens[3], tokens[2]] + tokens[4:]  # the same units, two ids swapped
    (tmp_path / "tokens.txt").write_text("\n".join(other) + "\n", encoding="utf-8")
    dump = tiny_work / "dump" / "fbank"
    r = subprocess.run([sys.executable, "-m", "asrdemo", "train", "--config", str(TINY_CONFIG.with_name(
        "train_tiny_streaming.yaml")), "--train_dir", str(dump / "train"), "--valid_dir", str(dump / "train"),
        "--token_list", str(tmp_path / "tokens.txt"), "--exp_dir", str(tmp_path / "exp"),
        "--init_param", str(trained_exp / "valid.acc.ave.pth")], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert f"differs from this run's token list ({len(other)} tokens) at id 2" in r.stderr, r.stderr
    assert not list((tmp_path / "exp").glob("checkpoints/*.pt"))


def test_a_package_carries_its_history_and_a_model_tuned_from_an_older_one_quotes_its_card(trained_exp, tiny_work,
                                                                                           tmp_path):
    """A package now holds history.jsonl, so `--init_param PACKAGE/valid.acc.ave.pth` records the
    epochs it had; a package made before (the committed exp_train_large, no history.jsonl) still gets
    counted: the fine-tuned model's card quotes the source card's training line."""
    import json
    import shutil

    from conftest import asrdemo
    from asrdemo.train.trainer import record_init_param

    pkg = tmp_path / "pkg"
    asrdemo("package", "--exp_dir", trained_exp, "--out_dir", pkg)
    rows = (trained_exp / "history.jsonl").read_text().splitlines()
    assert (pkg / "history.jsonl").read_text().splitlines() == rows
    assert record_init_param(tmp_path, pkg / "valid.acc.ave.pth")["epochs"] == len(rows)

    (pkg / "history.jsonl").unlink()  # as packages were before
    tuned = tmp_path / "tuned"
    shutil.copytree(trained_exp, tuned)
    (tuned / "init_param.json").write_text(json.dumps({"init_param": str(pkg / "valid.acc.ave.pth")}) + "\n")
    asrdemo("package", "--exp_dir", tuned, "--out_dir", tmp_path / "pkg2")
    card = (tmp_path / "pkg2" / "README.md").read_text(encoding="utf-8")
    training = next(line for line in (pkg / "README.md").read_text().splitlines() if line.startswith("- training: "))
    quoted = training[len("- training: "):].split(";")[0]
    assert f"- fine-tuned from: {pkg / 'valid.acc.ave.pth'}: {quoted} (its model card)" in card, card
