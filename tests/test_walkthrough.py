"""docs/walkthrough.md cannot drift from the code: its `asrdemo` commands run, in order, on an
8-utterance corpus with a tiny model, and every excerpt of the page is compared with what the code
writes now (exactly, or by form where a value depends on the corpus size; tools/make_walkthrough.py
defines both). Its commands must also be the ones run.sh runs."""

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "conf" / "train_tiny.yaml"
MINI_STAGES = ("make_mini_jsut", "prepare", "fbank", "tokens", "train", "decode", "plot", "package")


def load_tool():
    spec = importlib.util.spec_from_file_location("make_walkthrough", REPO / "tools" / "make_walkthrough.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wt = load_tool()


def _set_option(argv, name, value):
    i = argv.index(name)
    return argv[:i + 1] + [str(value)] + argv[i + 2:]


def shrink(argv):
    """The page's command on the tiny run: 8 sentences, 2 test + 2 dev, the tests' tiny model for 1 epoch."""
    sub = argv[1]
    if sub == "make_mini_jsut":
        return argv + ["--num_utts", "8"]
    if sub == "prepare":
        return _set_option(_set_option(argv, "--num_test", 2), "--num_dev", 2)
    if sub == "train":
        return _set_option(argv, "--config", TINY_CONFIG) + ["--max_epochs", "1"]
    if sub in ("decode", "explain"):  # an untrained model's beam search runs to the maximum length: slow
        return argv + ["--mode", "ctc_greedy"]
    return argv


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    doc = wt.DOC.read_text(encoding="utf-8")
    work = tmp_path_factory.mktemp("walkthrough") / "work"
    wt.run_commands([shrink(wt.localize(c, work)) for c in wt.doc_commands(doc)], work, log=lambda line: None)
    return doc, work


def run_sh_commands():
    """subcommand -> option names, from the `asrdemo ...` lines of run.sh's stages."""
    text = (REPO / "run.sh").read_text(encoding="utf-8").replace("\\\n", " ")
    found = {}
    for line in text.splitlines():
        m = re.match(r"\s*asrdemo (\w+)(.*)", line)
        if m:
            found.setdefault(m.group(1), set()).update(re.findall(r"(--\w+)", m.group(2)))
    return found


def test_the_commands_are_the_recipes():
    doc_cmds = wt.doc_commands(wt.DOC.read_text(encoding="utf-8"))
    recipe = run_sh_commands()
    subs = [c[1] for c in doc_cmds]
    assert [s for s in subs if s != "explain"] == [s for s in subs if s in MINI_STAGES]  # nothing else
    for stage in MINI_STAGES:
        assert stage in recipe, f"run.sh no longer runs asrdemo {stage}: update docs/walkthrough.md"
        assert stage in subs, f"docs/walkthrough.md does not show asrdemo {stage}, which run.sh runs"
    for argv in doc_cmds:
        if argv[1] in recipe:
            used = {a for a in argv if a.startswith("--")}
            assert used <= recipe[argv[1]], f"{' '.join(argv)}: run.sh does not pass {used - recipe[argv[1]]}"
    assert subs[-1] == "explain"
    for cmd in doc_cmds:  # every command parses, e.g. no option the CLI does not know
        assert all(not a.endswith("\\") for a in cmd), shlex.join(cmd)


def test_every_excerpt_matches_what_the_code_writes(walked):
    doc, work = walked
    in_doc = wt.doc_excerpts(doc)
    assert set(in_doc) == set(wt.EXCERPTS)
    stale = []
    for name, excerpt in wt.EXCERPTS.items():
        assert in_doc[name].strip(), f"excerpt {name} is empty: run tools/make_walkthrough.py"
        now = excerpt.make(work)
        if excerpt.form(in_doc[name]) != excerpt.form(now):
            stale.append(f"--- {name}: the page has\n{in_doc[name]}--- the code writes now\n{now}")
    assert not stale, "\n".join(stale) + "\nregenerate: .venv/bin/python tools/make_walkthrough.py --work_dir /tmp/wt"


def test_the_pages_figures_are_the_ones_explain_writes(walked):
    from asrdemo.explain import PLOTS

    doc, work = walked
    shown = wt.doc_figures(doc)
    assert [n for n in shown if n in PLOTS] == list(PLOTS)  # every explain figure, in order
    total = 0
    for name in shown:
        written = work / wt.EXPLAIN_DIR / name if name in PLOTS else work / wt.EXP / "images" / name
        assert written.is_file(), f"{name}: the commands no longer write it"
        committed = wt.FIGURE_DIR / name
        assert committed.is_file(), f"docs/walkthrough/{name} is missing: run tools/make_walkthrough.py"
        total += committed.stat().st_size
    assert total < 1.5e6
    assert sorted(p.name for p in wt.FIGURE_DIR.glob("*.png")) == sorted(shown)  # no stale figures


def test_the_inference_path_is_eight_files_for_every_search_mode():
    """The page's reading path from `Recognizer.recognize` to text: files that exist, seven shared
    ones and one search file for each mode (docs/walkthrough.md, "The inference path")."""
    from asrdemo.decode.decode_config import MODES

    section = wt.DOC.read_text(encoding="utf-8").split("## The inference path", 1)[1].split("\n## ", 1)[0]
    shared = re.findall(r"^\| (\d) \| `([^`]+)` \| \d+ \|", section, re.M)
    searches = re.findall(r"^\| (`\w+`(?:, `\w+`)*)[^|]* \| `([^`]+)` \| \d+ \|", section, re.M)
    assert [int(n) for n, _ in shared] == [1, 2, 3, 4, 6, 7, 8]
    modes = {m for names, _ in searches for m in re.findall(r"`(\w+)`", names)}
    assert modes == set(MODES)
    for _, path in shared + searches:
        assert (REPO / path).is_file(), path
