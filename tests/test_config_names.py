"""One naming scheme for configs (ESPnet's `<name>` + `<name>_conf`): files written with the old
names still load, their keys mapped to the new ones in one place (asrdemo/utils/config.py) —
an old exp dir's config.yaml in the recognizer, an old training YAML, `--resume` against an old
config.yaml, and the packaged model when this checkout has one."""

import copy
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from asrdemo.cli import build_parser
from asrdemo.decode.recognizer import Recognizer
from asrdemo.errors import AsrdemoError
from asrdemo.train.trainer import check_resume_config, load_config
from asrdemo.utils.config import upgrade_config, upgrade_model_conf

from test_recognizer import make_tiny_exp_dir

REPO = Path(__file__).resolve().parents[1]
SPECAUG = {"num_freq_mask": 1, "freq_mask_width": 8, "num_time_mask": 1, "time_mask_width_ratio": 0.05}


def test_old_specaug_mapping_becomes_specaug_and_specaug_conf():
    old = {"encoder": "conformer", "specaug": dict(SPECAUG)}
    new = upgrade_model_conf(old)
    assert new == {"encoder": "conformer", "specaug": "specaug", "specaug_conf": SPECAUG}
    assert old["specaug"] == SPECAUG  # the caller's dict is not changed
    assert upgrade_model_conf(new) == new and upgrade_model_conf({"specaug": None}) == {"specaug": None}
    assert upgrade_config({"optim": "adam", "model": old})["model"] == new


def test_an_old_training_yaml_loads_as_the_new_one(tmp_path):
    new_text = (REPO / "conf" / "train_mini.yaml").read_text(encoding="utf-8")
    assert "  specaug: specaug\n  specaug_conf:" in new_text
    old_path = tmp_path / "old.yaml"
    old_path.write_text(new_text.replace("  specaug: specaug\n  specaug_conf:", "  specaug:"), encoding="utf-8")
    assert load_config(old_path) == load_config(REPO / "conf" / "train_mini.yaml")
    # an old-style override on a new-style file lands in specaug_conf
    config = load_config(REPO / "conf" / "train_mini.yaml", ["model.specaug.freq_mask_width=5"])
    assert config["model"]["specaug"] == "specaug" and config["model"]["specaug_conf"]["freq_mask_width"] == 5
    assert config["model"]["specaug_conf"]["num_freq_mask"] == 2
    with pytest.raises(AsrdemoError, match="specaug must be 'specaug' or null"):
        from asrdemo.model.asr_model import resolve_model_conf
        resolve_model_conf({"specaug": "spec_augment"})


def test_resume_compares_an_old_config_yaml_by_the_new_names():
    config = load_config(REPO / "conf" / "train_mini.yaml")
    old = copy.deepcopy(config)
    old["model"]["specaug"] = old["model"].pop("specaug_conf")  # as asrdemo train wrote it before
    old["vocab_size"] = 900
    check_resume_config(old, config, 900, "exp/old/config.yaml")  # no difference: not refused
    old["model"]["specaug"]["freq_mask_width"] = 30
    with pytest.raises(AsrdemoError, match=r"model\.specaug_conf\.freq_mask_width: 30 -> 15"):
        check_resume_config(old, config, 900, "exp/old/config.yaml")


def test_an_old_exp_dir_decodes_as_before(tmp_path):
    new, old = tmp_path / "new", tmp_path / "old"
    make_tiny_exp_dir(new)
    config = yaml.safe_load((new / "config.yaml").read_text(encoding="utf-8"))
    config["model"] = {**config["model"], "specaug": "specaug", "specaug_conf": SPECAUG}
    (new / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    make_tiny_exp_dir(old)
    config["model"] = {**config["model"], "specaug": SPECAUG}
    del config["model"]["specaug_conf"]
    (old / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    wave = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    results = [Recognizer.from_exp_dir(d, decode_conf={"mode": "attention_rescoring", "beam_size": 3})
               .recognize(wave, 16000) for d in (new, old)]
    assert [h.as_dict() for h in results[0].hypotheses] == [h.as_dict() for h in results[1].hypotheses]


@pytest.mark.skipif(not (REPO / "exp_train_large" / "config.yaml").is_file(), reason="no packaged model here")
def test_the_packaged_model_still_loads():
    rec = Recognizer.from_exp_dir(REPO / "exp_train_large", decode_conf={"mode": "ctc_greedy"})
    wave, sr = sf.read(str(REPO / "sample" / "test.wav"), dtype="float32")
    assert rec.recognize(wave, sr).text


def test_fbank_conf_is_still_accepted_for_fbank_config():
    for flag in ("--fbank_config", "--fbank_conf"):
        args = build_parser("fbank").parse_args(["fbank", "--data_dir", "d", "--out_dir", "o", flag, "c.yaml"])
        assert args.fbank_config == "c.yaml"


def test_a_setting_is_checked_as_its_field_declares():
    """utils.config.setting: the decode config and the demo's settings declare each setting's bounds
    once, next to its default, and share the check."""
    from asrdemo.decode.decode_config import DecodeConfig
    from asrdemo.server.settings import DemoSettings

    for bad, message in (({"beam_size": 0}, "beam_size must be a number >= 1, got 0"),
                         ({"ctc_weight": 1.5}, r"ctc_weight must be a number >= 0 and <= 1, got 1\.5"),
                         ({"pre_beam_ratio": 0}, "pre_beam_ratio must be a number > 0"),
                         ({"lm_weight": float("nan")}, "lm_weight must be a number >= 0"),
                         ({"mode": "viterbi"}, "mode must be one of ctc_greedy")):
        with pytest.raises(AsrdemoError, match=f"decode config: {message}"):
            DecodeConfig(**bad)
    with pytest.raises(AsrdemoError, match=r"ASRDEMO_STREAM_CHUNK='0' must be a number >= 1"):
        DemoSettings.from_env({"ASRDEMO_STREAM_CHUNK": "0"})
    assert list(DemoSettings().limits())[:3] == ["max_upload_mb", "max_upload_bytes", "max_seconds"]
