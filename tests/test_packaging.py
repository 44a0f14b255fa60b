"""Packaging: the Python versions setup.py promises, and what a non-editable install carries.

The oldest promised Python may not be on the machine, so its syntax and its runtime annotations
are checked from the source (`ast` with that feature version), and the install is a real wheel
built from a copy of the sources and installed into a folder of its own.
"""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("asrdemo", "tools", "bench") for p in (REPO / d).rglob("*.py")) + \
    [REPO / "setup.py", REPO / "gunicorn.conf.py"]


def python_floor():
    m = re.search(r'python_requires=">=(\d+)\.(\d+)"', (REPO / "setup.py").read_text(encoding="utf-8"))
    return int(m.group(1)), int(m.group(2))


def evaluated_annotations(tree):
    """Annotations Python evaluates when the module is imported (not those of local variables)."""
    def walk(body):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                for arg in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg]:
                    if arg is not None and arg.annotation is not None:
                        yield arg.annotation
                if node.returns is not None:
                    yield node.returns
            elif isinstance(node, ast.ClassDef):
                yield from walk(node.body)
            elif isinstance(node, ast.AnnAssign):
                yield node.annotation
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                yield from walk(node.body)
    yield from walk(tree.body)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_sources_run_on_the_oldest_promised_python(path):
    floor = python_floor()
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path), feature_version=floor)  # syntax of that version
    if floor >= (3, 10) or any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and
                               any(a.name == "annotations" for a in n.names) for n in tree.body):
        return
    for annotation in evaluated_annotations(tree):
        for node in ast.walk(annotation):
            assert not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)), (
                f"{path}:{node.lineno}: `X | Y` in an annotation fails on Python {floor[0]}.{floor[1]} "
                "(use Optional/Union, or `from __future__ import annotations`)")


def test_non_editable_install_has_the_mini_corpus_sentences(tmp_path):
    """`pip install .` (a wheel, not the source tree) must find egs/mini_jsut/sentences.txt's text."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "asrdemo", src / "asrdemo", ignore=ignore)
    for name in ("setup.py", "README.md"):
        shutil.copy(REPO / name, src / name)
    run = dict(capture_output=True, text=True, timeout=600, check=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(src)], **run)
    wheel = next((tmp_path / "dist").glob("asrdemo-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path / "site"),
                    str(wheel)], **run)
    code = ("import asrdemo, sys; from asrdemo.data.mini_jsut import read_sentences; "
            "print(asrdemo.__file__); print(len(read_sentences()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site")},
                         **run).stdout.split()
    assert out[0].startswith(str(tmp_path / "site"))  # the installed copy, not the checkout
    from asrdemo.data.mini_jsut import read_sentences

    assert int(out[1]) == len(read_sentences()) > 300
    # the recipe's path is the same file
    assert (REPO / "egs" / "mini_jsut" / "sentences.txt").read_bytes() == \
        (REPO / "asrdemo" / "data" / "mini_jsut_sentences.txt").read_bytes()
