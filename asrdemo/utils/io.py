"""Atomic writes and stage `.done` markers.

Every file another stage reads is written to a temporary file in the same directory and then
renamed over the target (`os.replace` is atomic on POSIX), so a killed process never leaves a
half-written file behind under the real name.
"""

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it is renamed to `path`, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_lines(path, lines) -> None:
    atomic_write_text(path, "".join(f"{line}\n" for line in lines))


def read_lines(path) -> list:
    """The lines of a UTF-8 text file, split at "\n" only, as every writer here writes them.

    `str.splitlines()` also splits at U+2028, U+0085, \x1c.. and lone \r, so a transcript holding one
    would come back as two lines; here it stays one line. A leading byte-order mark (Windows editors)
    and a "\r" before each "\n" (CRLF files) are removed; a final newline gives no empty last line.
    Raises UnicodeDecodeError for a file that is not UTF-8.
    """
    text = Path(path).read_text(encoding="utf-8-sig")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def atomic_torch_save(obj, path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


DONE = ".done"


def mark_done(out_dir, **info) -> None:
    """Write `<out_dir>/.done` (last, after all outputs) with what made it."""
    info.setdefault("finished", time.strftime("%Y-%m-%d %H:%M:%S"))
    atomic_write_text(Path(out_dir) / DONE, json.dumps(info, ensure_ascii=False, indent=1) + "\n")


def is_done(out_dir, required=()) -> bool:
    """True when `<out_dir>/.done` exists and every file named in `required` exists and is non-empty."""
    out_dir = Path(out_dir)
    if not (out_dir / DONE).is_file():
        return False
    return all((out_dir / name).is_file() and (out_dir / name).stat().st_size > 0 for name in required)


def done_with(out_dir, settings: dict, required=()) -> bool:
    """True when `is_done(out_dir, required)` and `.done` records every key of `settings` with the
    same value: the outputs were made by the same arguments. A `.done` that is not JSON counts as not done."""
    if not is_done(out_dir, required):
        return False
    try:
        info = json.loads((Path(out_dir) / DONE).read_text(encoding="utf-8"))
    except ValueError:
        return False
    return isinstance(info, dict) and all(info.get(k) == v for k, v in settings.items())


def clear_done(out_dir) -> None:
    with contextlib.suppress(FileNotFoundError):
        (Path(out_dir) / DONE).unlink()


def input_digest(paths) -> str:
    """sha256 of the inputs `paths`, in order: a file's bytes, a directory's `.done` (what made it,
    and when), nothing for a path that is not there. A stage records it in its `.done` and compares
    it with `done_with`, so that a changed input -- its content, not its time -- makes the outputs
    stale: the subcommands for their data dirs (`datadir.input_digest`), run.sh for each stage."""
    h = hashlib.sha256()
    for path in map(Path, paths):
        if path.is_dir():
            path = path / DONE
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


STAGE_INPUTS = "stage_inputs_sha256"  # run.sh's record of a stage's inputs, in its output dir's .done


def main(argv=None) -> int:
    """run.sh's stage markers, with the subcommands' rule (`done_with` an `input_digest`):

        python -m asrdemo.utils.io done_with_inputs OUT INPUT...       exit 0 when OUT/.done records
                                                                       the digest of the INPUTs as they are now
        python -m asrdemo.utils.io mark_done_with_inputs OUT INPUT...  record it in OUT/.done (made if
                                                                       missing; what else it records is kept)
    """
    command, out, *inputs = sys.argv[1:] if argv is None else argv
    digest = input_digest(inputs)
    if command == "done_with_inputs":
        return 0 if done_with(out, {STAGE_INPUTS: digest}) else 1
    if command != "mark_done_with_inputs":
        raise SystemExit("usage: python -m asrdemo.utils.io done_with_inputs|mark_done_with_inputs OUT INPUT...")
    try:
        info = json.loads((Path(out) / DONE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        info = None
    mark_done(out, **{**(info if isinstance(info, dict) else {}), STAGE_INPUTS: digest})
    return 0


if __name__ == "__main__":
    sys.exit(main())
