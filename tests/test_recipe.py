"""`run.sh` end to end on a tiny corpus: every stage's outputs, skipping, re-running one stage,
and a clear error for a stage whose inputs are missing. Real subprocesses, real files."""

import os
import re
import shutil
import subprocess

import kaldiio
import pytest
import yaml

from conftest import REPO, TINY_CONFIG


def run_sh(*args, timeout=900):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(REPO / "run.sh"), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recipe")
    common = ["--corpus", "mini_jsut", "--num_utts", 12, "--num_test", 2, "--num_dev", 2, "--work_dir", tmp / "work",
              "--package_dir", tmp / "pkg", "--train_config", TINY_CONFIG, "--tag", "tiny",
              "--train_args", "--max_epochs 3", "--decode_mode", "attention_rescoring", "--train_nproc", 2]
    first = run_sh(*common)
    assert first.returncode == 0, first.stdout + first.stderr
    return tmp, common, first


def test_every_stage_writes_its_outputs(recipe, monkeypatch):
    tmp, _, first = recipe
    work = tmp / "work"
    monkeypatch.chdir(work)  # scp files name their arks relative to the work dir, as ESPnet's do
    for n in range(7):
        assert f"stage {n}: done" in first.stdout, first.stdout
    assert len(list((work / "downloads" / "jsut_ver1.1").glob("*/wav/*.wav"))) == 12
    counts = {s: len((work / "data" / s / "text").read_text().splitlines()) for s in ("train", "dev", "test")}
    assert counts == {"train": 8, "dev": 2, "test": 2}
    assert (work / "data" / "test" / "text").read_text().startswith("BASIC5000_0001 水をマレーシアから")
    for s in ("train", "dev", "test"):
        feats = dict(kaldiio.load_scp(str(work / "dump" / "fbank" / s / "feats.scp")))
        assert len(feats) == counts[s] and all(m.shape[1] == 80 for m in feats.values())
    assert kaldiio.load_mat(str(work / "dump" / "fbank" / "train" / "cmvn.ark")).shape == (2, 81)
    tokens = (work / "data" / "lang" / "tokens.txt").read_text(encoding="utf-8").splitlines()
    assert tokens[:2] == ["<blank>", "<unk>"] and tokens[-1] == "<sos/eos>"
    exp = work / "exp" / "tiny"
    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert config["model"]["encoder"] == "conformer" and config["frontend"]["num_mel_bins"] == 80
    for name in ("valid.acc.ave.pth", "train.log", "tokens.txt", "cmvn.ark", "images/loss.png", "images/acc.png",
                 "images/error.png", "decode_test/hyp.txt", "decode_test/result.txt", "decode_test/cer.txt"):
        assert (exp / name).is_file() and (exp / name).stat().st_size > 0, name
    assert list((exp / "tensorboard").rglob("events.out.tfevents.*"))
    assert "2 process(es) on cpu" in (exp / "train.log").read_text()  # --train_nproc 2: DDP over gloo
    assert len((exp / "decode_test" / "hyp.txt").read_text().splitlines()) == 2
    for name in ("config.yaml", "tokens.txt", "cmvn.ark", "valid.acc.ave.pth", "cer.txt", "decode.yaml", "README.md",
                 "images/loss.png"):
        assert (tmp / "pkg" / name).is_file(), name
    # the demo searches the way the packaged CER was measured
    assert yaml.safe_load((tmp / "pkg" / "decode.yaml").read_text())["mode"] == "attention_rescoring"
    # the final report: a CER table
    assert re.search(r"\| mini_jsut \| .* \| CER \d+\.\d\d % \(N=\d+", first.stdout)


def test_rerun_skips_every_stage(recipe):
    _, common, _ = recipe
    again = run_sh(*common)
    assert again.returncode == 0, again.stderr
    for n in range(7):
        assert f"stage {n}: skipped" in again.stdout, again.stdout
    assert "start" not in again.stdout


def test_explicit_stage_redoes_it_and_what_depends_on_it(recipe):
    tmp, common, _ = recipe
    before = (tmp / "work" / "exp" / "tiny" / "valid.acc.ave.pth").stat().st_mtime
    r = run_sh(*common, "--stage", 5)
    assert r.returncode == 0, r.stderr
    assert "stage 5: start" in r.stdout and "stage 6: " in r.stdout and "stage 6: skipped" not in r.stdout
    assert not re.search(r"stage [0-4]:", r.stdout)
    assert (tmp / "work" / "exp" / "tiny" / "valid.acc.ave.pth").stat().st_mtime == before  # not retrained


def test_a_changed_input_redoes_its_stage_and_a_touched_one_does_not(recipe, tmp_path):
    """Skipping compares what the inputs hold, not their times: a fresh copy of the decode config
    (a newer file, the same bytes) skips stage 5; an edit redoes stages 5 and 6 even when the
    edited file is older than their outputs (as after `cp -p` or a checkout of an older commit)."""
    tmp, common, _ = recipe
    conf = tmp_path / "decode.yaml"
    shutil.copyfile(REPO / "conf" / "decode.yaml", conf)
    r = run_sh(*common, "--decode_config", conf)
    assert r.returncode == 0, r.stderr
    assert "stage 5: skipped" in r.stdout and "start" not in r.stdout, r.stdout
    conf.write_text(conf.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    os.utime(conf, (0, 0))
    r = run_sh(*common, "--decode_config", conf)
    assert r.returncode == 0, r.stderr
    assert "stage 5: start" in r.stdout and "stage 6: start" in r.stdout, r.stdout
    assert not re.search(r"stage [0-4]: start", r.stdout)
    # an option is an input too: another search mode decodes again (the mtime rule skipped it)
    r = run_sh(*common, "--decode_config", conf, "--decode_mode", "ctc_greedy")
    assert r.returncode == 0 and "stage 5: start" in r.stdout, r.stdout
    assert run_sh(*common).returncode == 0  # back to the fixture's decoding


def test_missing_inputs_name_the_stage_that_makes_them(tmp_path):
    r = run_sh("--corpus", "mini_jsut", "--work_dir", tmp_path / "empty", "--stage", 2, "--stop_stage", 2)
    assert r.returncode == 1
    assert "missing" in r.stderr and "made by stage 1" in r.stderr
    r = run_sh("--corpus", "nope")
    assert r.returncode == 2 and "unknown corpus" in r.stderr


def test_mini_recipe_never_replaces_a_model_of_another_corpus(tmp_path):
    """The mini model is packaged into the demo's folder unless that holds a model trained on another
    corpus (its README says which); then into egs/mini_jsut/package/."""
    shipped = tmp_path / "shipped"
    args = ("--corpus", "mini_jsut", "--work_dir", tmp_path / "work", "--stage", 6, "--stop_stage", 6,
            "--shipped_dir", shipped)
    r = run_sh(*args)  # nothing there yet: the mini model may go there
    assert r.returncode != 0 and "made by stage 5" in r.stderr
    assert f"stage 6: start -> {shipped}" in r.stdout, r.stdout
    shipped.mkdir(exist_ok=True)
    (shipped / "config.yaml").write_text("model: {}\n")
    (shipped / "README.md").write_text("# Packaged asrdemo model\n\n- corpus: synth_ja\n")
    r = run_sh(*args)
    assert f"stage 6: start -> {REPO}/egs/mini_jsut/package" in r.stdout, r.stdout
    assert "holds a model trained on synth_ja" in r.stdout
    (shipped / "README.md").write_text("# Packaged asrdemo model\n\n- corpus: mini_jsut\n")
    r = run_sh(*args)  # another mini model is replaced
    assert f"stage 6: start -> {shipped}" in r.stdout, r.stdout


def test_half_precision_package_decodes_the_same(recipe, tmp_path):
    """`asrdemo package --half` stores float16 weights (about half the file) that decode as before."""
    import soundfile as sf
    import torch

    from asrdemo.decode.recognizer import Recognizer

    tmp, _, _ = recipe
    exp = tmp / "work" / "exp" / "tiny"
    r = subprocess.run([os.sys.executable, "-m", "asrdemo", "package", "--exp_dir", exp, "--decode_dir",
                        exp / "decode_test", "--out_dir", tmp_path / "half", "--half"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    full, half = tmp / "pkg" / "valid.acc.ave.pth", tmp_path / "half" / "valid.acc.ave.pth"
    assert half.stat().st_size < 0.6 * full.stat().st_size
    assert all(v.dtype != torch.float32 for v in torch.load(half, weights_only=True).values())
    wave, sr = sf.read(str(REPO / "sample" / "test.wav"), dtype="float32")
    texts = [Recognizer.from_exp_dir(d, decode_conf={"mode": "ctc_greedy"}).recognize(wave, sr).text
             for d in (tmp / "pkg", tmp_path / "half")]
    assert texts[0] == texts[1]
