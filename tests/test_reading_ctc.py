"""The reading CTC (`reading_ctc_weight`): an auxiliary CTC on the katakana reading at a middle
encoder layer. Its targets, its config checks, its loss, training with it end to end (history,
validation kana CER, the exp dir decodes), and `--init_param` from a model without the head."""

import json

import pytest
import torch
import yaml

from test_train import TINY_MODEL, build_model_from_exp, make_task, run_inprocess, train_args, write_config

pytest.importorskip("pyopenjtalk")

KANA = "アイウエ"  # read as themselves: the toy task's reading targets are its characters
MODEL = {**TINY_MODEL, "encoder_conf": {**TINY_MODEL["encoder_conf"], "num_blocks": 2},
         "reading_ctc_weight": 0.5, "reading_ctc_layer": 1}


def test_reading_ids_are_the_katakana_reading():
    from asrdemo.kana import READING_TOKENS, reading_ids

    ids = reading_ids("水を買わなくてはならない。")
    assert "".join(READING_TOKENS[i] for i in ids) == "ミズヲカワナクテワナラナイ。"
    assert 0 not in ids  # never the blank
    assert reading_ids("") == []
    assert len(READING_TOKENS) == 89 and len(set(READING_TOKENS)) == 89


def test_config_checks_the_layer_and_defaults_to_the_middle():
    from asrdemo.errors import AsrdemoError
    from asrdemo.model.asr_model import ASRModel, resolve_model_conf

    assert resolve_model_conf({**MODEL, "reading_ctc_layer": None})["reading_ctc_layer"] == 1  # 2 blocks // 2
    with pytest.raises(AsrdemoError, match=r"reading_ctc_layer must be in \[1, 2\]"):
        resolve_model_conf({**MODEL, "reading_ctc_layer": 3})
    with pytest.raises(AsrdemoError, match="reading_ctc_weight must be >= 0"):
        resolve_model_conf({**MODEL, "reading_ctc_weight": -1})
    plain = ASRModel.from_config({k: v for k, v in MODEL.items() if not k.startswith("reading")}, 20, 7)
    assert plain.reading_ctc is None and not any(k.startswith("reading_ctc") for k in plain.state_dict())


def test_loss_adds_the_weighted_reading_ctc_and_needs_its_targets():
    from asrdemo.model.asr_model import ASRModel

    torch.manual_seed(0)
    model = ASRModel.from_config(MODEL, 20, 7).eval()
    feats, lens = torch.randn(2, 60, 20), torch.tensor([60, 48])
    ys, ys_lens = torch.tensor([[2, 3, 4], [5, 2, -1]]), torch.tensor([3, 2])
    rs, rs_lens = torch.tensor([[3, 5, 7], [9, 3, -1]]), torch.tensor([3, 2])
    out = model(feats, lens, ys, ys_lens, rs, rs_lens)
    main = model.ctc_weight * out["loss_ctc"] + (1 - model.ctc_weight) * out["loss_att"]
    assert torch.allclose(out["loss"], main + 0.5 * out["loss_reading_ctc"])
    # the head reads layer 1, not the last layer: a different loss than CTC on the encoder output
    enc, enc_lens, inter = model.encode(feats, lens, intermediate_layer=1)
    assert not torch.allclose(inter, enc)
    assert torch.allclose(out["loss_reading_ctc"], model.reading_ctc(inter, enc_lens, rs, rs_lens))
    with pytest.raises(ValueError, match="reading targets"):
        model(feats, lens, ys, ys_lens)


def test_training_input_reads_the_readings_of_the_transcripts(tmp_path):
    """The targets come from each transcript itself, so a character outside the token list
    (<unk> for the character CTC) still has its reading; a model without the head gets none."""
    from asrdemo.data.tokens import TokenList
    from asrdemo.kana import reading_ids
    from asrdemo.train.trainer import DEFAULTS
    from asrdemo.train.training_input import read_training_input

    task = make_task(tmp_path, n_train=8, n_valid=2, chars=KANA)
    text = task["valid_dir"] / "text"
    lines = text.read_text(encoding="utf-8").splitlines()
    utt = lines[0].split()[0]
    text.write_text("\n".join([f"{utt} カアイ"] + lines[1:]) + "\n", encoding="utf-8")  # カ: not a token
    tokens = TokenList.load(task["token_list"])
    config = {**DEFAULTS, "model": MODEL}
    data = read_training_input(config, task["train_dir"], task["valid_dir"], tokens)
    first = next(e for e in data.valid_examples if e.utt_id == utt)
    assert first.reading_ids == reading_ids("カアイ") and len(first.reading_ids) == 3
    assert all(e.reading_ids == reading_ids(tokens.decode(e.token_ids)) for e in data.train_examples)
    plain = {**DEFAULTS, "model": {k: v for k, v in MODEL.items() if not k.startswith("reading")}}
    assert all(e.reading_ids is None for e in read_training_input(plain, task["train_dir"], task["valid_dir"],
                                                                   tokens).train_examples)


@pytest.fixture(scope="module")
def reading_exp(tmp_path_factory):
    root = tmp_path_factory.mktemp("reading")
    task = make_task(root, n_train=48, chars=KANA)
    config = write_config(root / "train.yaml", model=MODEL, train={"max_epochs": 6})
    assert run_inprocess(train_args(task, config, root / "exp")) == 0
    return task, root / "exp"


def test_training_learns_the_readings_and_the_exp_dir_decodes(reading_exp):
    task, exp = reading_exp
    history = [json.loads(line) for line in (exp / "history.jsonl").read_text().splitlines()]
    first, last = history[0], history[-1]
    assert last["train_loss_reading_ctc"] < 0.5 * first["train_loss_reading_ctc"], (first, last)
    assert last["valid_reading_cer"] is not None and last["valid_reading_cer"] < 0.5, last
    conf, model = build_model_from_exp(exp)  # what the Recognizer does: the head is part of the model
    assert conf["model"]["reading_ctc_weight"] == 0.5
    model.load_state_dict(torch.load(exp / "valid.acc.ave.pth"))

    from asrdemo.decode.recognizer import Recognizer

    rec = Recognizer.from_exp_dir(exp)
    assert rec.model.reading_ctc is not None


def test_init_param_from_a_model_without_the_head(reading_exp, tmp_path):
    """A model trained without the reading CTC continues with it: every shared weight is taken
    over, the head starts from scratch; the reverse (dropping a trained head) is refused."""
    from asrdemo.errors import AsrdemoError
    from asrdemo.model.asr_model import ASRModel
    from asrdemo.train.trainer import init_from_model_file

    plain_conf = {k: v for k, v in MODEL.items() if not k.startswith("reading")}
    torch.manual_seed(1)
    plain = ASRModel.from_config(plain_conf, 20, 7)
    path = tmp_path / "plain.pth"
    torch.save(plain.state_dict(), path)
    with_head = ASRModel.from_config(MODEL, 20, 7)
    init_from_model_file(with_head, path)
    for key, value in plain.state_dict().items():
        assert torch.equal(with_head.state_dict()[key], value), key
    torch.save(with_head.state_dict(), tmp_path / "with_head.pth")
    with pytest.raises(AsrdemoError, match="does not fit"):
        init_from_model_file(ASRModel.from_config(plain_conf, 20, 7), tmp_path / "with_head.pth")

    # and through the CLI, with the toy task's exp dir as the source of a plain model's shape
    task, _ = reading_exp
    config = write_config(tmp_path / "train.yaml", model=MODEL, train={"max_epochs": 1})
    assert run_inprocess(train_args(task, config, tmp_path / "exp", "--init_param", path)) == 0
    assert yaml.safe_load((tmp_path / "exp" / "config.yaml").read_text())["model"]["reading_ctc_weight"] == 0.5
