"""Stage 0: put a verified copy of JSUT ver1.1 at `<out_dir>/jsut_ver1.1/`.

Three ways in, one result:

* download the official archive (default, or `--jsut_url`): the bytes go to
  `<out_dir>/jsut_ver1.1.zip.part`; an interrupted transfer continues with an HTTP `Range`
  request (automatically up to `--retries` times, or on the next run); the file becomes
  `jsut_ver1.1.zip` only once its size matches what the server announced and its sha256 matches
  the expected one;
* `--jsut_zip PATH`: a zip the user already has (checked the same way, never modified);
* `--jsut_root DIR`: an already unpacked corpus; its layout is checked and
  `<out_dir>/jsut_ver1.1` becomes a symlink to it, so later stages find it at the usual place.

Unpacking goes into a temporary folder beside the target and is renamed into place only when
every member's CRC-32 has been checked on the way out and JSUT's layout is complete, so a
partial or corrupt archive never yields a corpus folder. `<out_dir>/jsut_ver1.1/.done` records
where the corpus came from and its checksum; a run that finds it skips the work.

Only the standard library (urllib) and tqdm are used.
"""

import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Optional

from tqdm import tqdm

from asrdemo.data.jsut import SUBSET_COUNTS, check_layout
from asrdemo.errors import AsrdemoError
from asrdemo.utils.io import DONE, atomic_write_text, is_done, mark_done

logger = logging.getLogger(__name__)

# The address ESPnet's egs2/jsut/asr1/local/download.sh (and every other public JSUT recipe we
# found) fetches; the corpus page is https://sites.google.com/site/shinnosuketakamichi/publication/jsut
OFFICIAL_URL = "http://ss-takashi.sakura.ne.jp/corpus/jsut_ver1.1.zip"
ARCHIVE_NAME = "jsut_ver1.1.zip"
CORPUS_DIR = "jsut_ver1.1"

# What is publicly known about the official archive's bytes. We looked for a published size or
# checksum (the corpus page, ESPnet's download.sh — a plain `wget`, lhotse — no JSUT recipe,
# the TensorFlow-Datasets community builder — manual download, unverified, Hugging Face copies —
# re-encoded, not the zip) and found none: no public source states the archive's sha256, md5 or
# exact byte count ("about 2.7 GB" is all). So we do not invent one. By default the download is
# verified by what *is* known at run time:
#   * size: the transfer must end at exactly the length the server announced
#     (Content-Length / the total in Content-Range); a short file is resumed, never used;
#   * integrity: every member's CRC-32 (stored in the zip itself) is checked while unpacking;
#   * content: JSUT's layout and per-subset utterance counts (asrdemo.data.jsut.check_layout).
# The archive's sha256 is computed, logged and stored in `.done`; pass it as `--jsut_sha256` on
# other machines to pin exactly the same bytes. Fill these in once a trustworthy source states them.
OFFICIAL_SIZE: Optional[int] = None
OFFICIAL_SHA256: Optional[str] = None

CONNECT_TIMEOUT = 10.0  # seconds; also the longest a stalled transfer waits for the next bytes
CHUNK = 1 << 20
USER_AGENT = "asrdemo-download/1.0 (+urllib)"


def manual_hint(out_dir="downloads") -> str:
    return (
        "To supply JSUT by hand, download the official archive\n"
        f"    {OFFICIAL_URL}\n"
        "on a machine with network access, copy it here, then run either\n"
        f"    asrdemo download --out_dir {out_dir} --jsut_zip /path/to/{ARCHIVE_NAME}\n"
        "or, if it is already unpacked,\n"
        f"    asrdemo download --out_dir {out_dir} --jsut_root /path/to/{CORPUS_DIR}\n"
        "(./run.sh passes the same options through.)"
    )


# --------------------------------------------------------------------------------------------
# checksums


def sha256_of(path, desc=None) -> str:
    path = Path(path)
    h = hashlib.sha256()
    with open(path, "rb") as f, tqdm(
        total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
        desc=desc or f"sha256 {path.name}", leave=False,
    ) as bar:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
            bar.update(len(block))
    return h.hexdigest()


def normalize_sha256(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    value = value.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise AsrdemoError(f"--jsut_sha256 {value!r} is not a sha256 (64 hex digits)")
    return value


def verify_archive(path, expected_sha256: Optional[str], skip_checksum=False) -> Optional[str]:
    """Return the archive's sha256 (None when skipped); raise if it differs from the expected one."""
    if skip_checksum:
        logger.warning("--skip_checksum: not checking %s's sha256", path)
        return None
    digest = sha256_of(path)
    if expected_sha256 is None:
        logger.info("sha256 %s  %s (no published checksum to compare with; pin it with --jsut_sha256)",
                    digest, Path(path).name)
    elif digest != expected_sha256:
        raise AsrdemoError(
            f"checksum mismatch for {path}:\n    expected sha256 {expected_sha256}\n    got      sha256 {digest}\n"
            "The archive is not the one expected; it was NOT unpacked. If you passed --jsut_sha256, check "
            "the value; otherwise the file is damaged or a different archive."
        )
    else:
        logger.info("sha256 OK (%s)", digest)
    return digest


# --------------------------------------------------------------------------------------------
# resumable HTTP download


class _Interrupted(Exception):
    """The transfer stopped early; `.part` holds what arrived and can be resumed."""


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _request(url, offset, validator, timeout):
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator  # the server sends the whole file if it changed
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _total_from_416(err) -> Optional[int]:
    m = re.fullmatch(r"bytes\s+\*/(\d+)", (err.headers.get("Content-Range") or "").strip())
    return int(m.group(1)) if m else None


def _fetch_once(url, part: Path, meta_path: Path, meta: dict, timeout) -> bool:
    """One HTTP request; append to `part`. True when `part` is complete.

    Raises `_Interrupted` when bytes stopped arriving after some came (resumable),
    `urllib.error.URLError`/`OSError` when the server could not be reached at all.
    """
    offset = part.stat().st_size if part.exists() else 0
    validator = meta.get("validator")
    try:
        resp = _request(url, offset, validator, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset > 0:  # nothing left to send: either complete or too long
            total = _total_from_416(e)
            if total is not None and total == offset:
                meta["total"] = total
                return True
            logger.warning("server rejected resuming at byte %d; starting over", offset)
            part.unlink()
            return False
        raise
    with resp:
        status = resp.status
        if status == 206:
            m = _CONTENT_RANGE.fullmatch((resp.headers.get("Content-Range") or "").strip())
            if not m or int(m.group(1)) != offset:
                raise AsrdemoError(f"{url}: server answered Range bytes={offset}- with "
                                   f"Content-Range {resp.headers.get('Content-Range')!r}")
            total = None if m.group(3) == "*" else int(m.group(3))
            if meta.get("total") is not None and total is not None and total != meta["total"]:
                logger.warning("remote file size changed (%d -> %d bytes); starting over", meta["total"], total)
                part.unlink()
                meta.pop("validator", None)
                meta.pop("total", None)
                return False
            mode = "ab"
        elif status == 200:
            if offset > 0:
                logger.warning("server does not resume (answered 200 to a Range request); starting over")
            offset = 0
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode = "wb"
        else:
            raise AsrdemoError(f"{url}: unexpected HTTP status {status}")

        if OFFICIAL_SIZE is not None and meta.get("check_official_size") and total not in (None, OFFICIAL_SIZE):
            raise AsrdemoError(f"{url} offers {total} bytes, but the official {ARCHIVE_NAME} is "
                               f"{OFFICIAL_SIZE} bytes; refusing to download it (pass --jsut_sha256 for a mirror)")
        etag = resp.headers.get("ETag")
        meta.update(url=url, total=total,
                    validator=etag if etag and not etag.startswith("W/") else resp.headers.get("Last-Modified"))
        atomic_write_text(meta_path, json.dumps(meta) + "\n")
        if total is not None:
            free = shutil.disk_usage(part.parent).free
            if free < total - offset:
                raise AsrdemoError(f"not enough disk space in {part.parent}: {total - offset} bytes "
                                   f"to download, {free} free")

        received = 0
        with open(part, mode) as f, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=ARCHIVE_NAME, mininterval=0.5,
        ) as bar:
            try:
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    f.write(block)
                    received += len(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as e:  # reset, timeout, IncompleteRead
                raise _Interrupted(f"{type(e).__name__}: {e}") from e
    size = part.stat().st_size
    if total is None:
        return received > 0 or size > 0
    if size < total:
        raise _Interrupted(f"connection closed after {size} of {total} bytes")
    if size > total:
        logger.warning("%s is longer (%d) than the server's file (%d); starting over", part, size, total)
        part.unlink()
        return False
    return True


def download(url, dest, *, timeout=CONNECT_TIMEOUT, retries=10, check_official_size=False) -> Path:
    """Download `url` to `dest` through `dest.part`, resuming what an earlier run left.

    Returns the path of the complete `.part` file (the caller verifies it and renames it).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    meta_path = dest.with_name(dest.name + ".part.json")
    meta = {}
    if part.exists() and meta_path.exists():
        with contextlib.suppress(ValueError, OSError):
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("url") != url:
            logger.warning("%s came from %s, not %s; starting over", part, meta.get("url"), url)
            part.unlink()
            meta = {}
    elif part.exists():
        logger.info("found %s (%d bytes) without its record; resuming without If-Range", part, part.stat().st_size)
    meta["check_official_size"] = check_official_size
    if part.exists():
        logger.info("resuming %s at byte %d", url, part.stat().st_size)
    else:
        logger.info("downloading %s", url)

    reached_server = False
    failures = restarts = 0
    while True:
        try:
            if _fetch_once(url, part, meta_path, meta, timeout):
                break
            reached_server = True
            restarts += 1  # the server made us start from zero
            if restarts > 3:
                raise AsrdemoError(f"{url}: the server keeps refusing to resume or changing the file; giving up")
            continue
        except _Interrupted as e:
            reached_server = True
            have = part.stat().st_size if part.exists() else 0
            failures += 1
            if failures > retries:
                raise AsrdemoError(
                    f"download of {url} was interrupted ({e}); {have} bytes are kept in {part}. "
                    "Run the same command again to resume."
                ) from None
            wait = min(2.0 ** (failures - 1), 30.0)
            logger.warning("transfer interrupted (%s); resuming in %.0f s (retry %d/%d)", e, wait, failures, retries)
            time.sleep(wait)
        except urllib.error.HTTPError as e:
            raise AsrdemoError(f"{url}: HTTP {e.code} {e.reason}\n{manual_hint(dest.parent)}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", e)
            if not reached_server:
                raise AsrdemoError(
                    f"cannot reach {url}: {reason}\n{manual_hint(dest.parent)}"
                ) from None
            failures += 1
            if failures > retries:
                raise AsrdemoError(f"lost the connection to {url} ({reason}); {part} is kept. "
                                   "Run the same command again to resume.") from None
            time.sleep(min(2.0 ** (failures - 1), 30.0))
    with contextlib.suppress(FileNotFoundError):
        meta_path.unlink()
    logger.info("downloaded %s (%d bytes)", part.name, part.stat().st_size)
    return part


# --------------------------------------------------------------------------------------------
# safe unpacking


def _member_path(root: Path, name: str) -> Optional[Path]:
    """Where a zip member goes under `root`; raise for anything that would escape it (zip slip)."""
    if "\x00" in name:
        raise AsrdemoError(f"unsafe path in archive: {name!r}")
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or re.match(r"^[A-Za-z]:", name) or ".." in posix.parts:
        raise AsrdemoError(f"unsafe path in archive: {name!r} (absolute or contains '..'); refusing to unpack")
    parts = [p for p in posix.parts if p not in ("", ".")]
    if not parts:
        return None
    target = root.joinpath(*parts)
    if not target.resolve().is_relative_to(root.resolve()):
        raise AsrdemoError(f"unsafe path in archive: {name!r}")
    return target


def _find_root(tmp: Path) -> Path:
    """The unpacked corpus root: `jsut_ver1.1/`, or the one top folder, or the archive root."""
    def has_subsets(d):
        return any((d / s).is_dir() for s in SUBSET_COUNTS)

    if (tmp / CORPUS_DIR).is_dir():
        return tmp / CORPUS_DIR
    if has_subsets(tmp):
        return tmp
    tops = [d for d in tmp.iterdir() if d.is_dir() and d.name != "__MACOSX"]
    if len(tops) == 1 and has_subsets(tops[0]):
        return tops[0]
    raise AsrdemoError(
        f"the archive does not hold JSUT's layout ({CORPUS_DIR}/<subset>/transcript_utf8.txt and "
        f"<subset>/wav/*.wav for subsets like {', '.join(list(SUBSET_COUNTS)[:3])}, ...)"
    )


def unpack(zip_path, out_dir, name=CORPUS_DIR):
    """Unpack into a temporary folder, check the CRCs and the layout, then rename to `out_dir/name`.

    Returns (corpus root, {subset: utterance count}).
    """
    zip_path, out_dir = Path(zip_path), Path(out_dir)
    final = out_dir / name
    if final.exists() or final.is_symlink():
        raise AsrdemoError(f"{final} already exists; remove it to unpack {zip_path} again")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.unpack-", dir=out_dir))
    try:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                members = zf.infolist()
                total = sum(m.file_size for m in members if not m.is_dir())
                free = shutil.disk_usage(out_dir).free
                if free < total:
                    raise AsrdemoError(f"not enough disk space in {out_dir} to unpack: {total} bytes needed, {free} free")
                with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                          desc=f"unpack {zip_path.name}", mininterval=0.5) as bar:
                    for m in members:
                        target = _member_path(tmp, m.filename)
                        if target is None:
                            continue
                        if m.is_dir():
                            target.mkdir(parents=True, exist_ok=True)
                            continue
                        if stat.S_ISLNK(m.external_attr >> 16):
                            raise AsrdemoError(f"archive member {m.filename!r} is a symlink; refusing to unpack")
                        target.parent.mkdir(parents=True, exist_ok=True)
                        # ZipExtFile checks the member's CRC-32 when it reaches the end
                        with zf.open(m) as src, open(target, "wb") as dst:
                            for block in iter(lambda: src.read(CHUNK), b""):
                                dst.write(block)
                                bar.update(len(block))
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
            raise AsrdemoError(f"{zip_path} is not a complete, intact zip archive ({e}); nothing was unpacked") from None
        root = _find_root(tmp)
        counts = check_layout(root)
        os.rename(root, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("unpacked %s -> %s (%d utterances)", zip_path, final, sum(counts.values()))
    return final, counts


# --------------------------------------------------------------------------------------------
# the stage


def _is_link_farm(d: Path) -> bool:
    """True for a folder made by `_link_root`: only symlinks and our marker inside."""
    if not d.is_dir() or d.is_symlink():
        return False
    entries = list(d.iterdir())
    return any(e.is_symlink() for e in entries) and all(e.is_symlink() or e.name == DONE for e in entries)


def _link_root(root: Path, out_dir: Path, counts: dict) -> Path:
    """Make `<out_dir>/jsut_ver1.1/` a folder of symlinks to the subsets of a user's corpus.

    Later stages find the corpus at the usual place and our `.done` lives in a folder we own:
    nothing is ever written into the user's corpus.
    """
    corpus = out_dir / CORPUS_DIR
    if corpus.is_symlink() or (corpus.exists() and not _is_link_farm(corpus)):
        raise AsrdemoError(f"{corpus} already holds a corpus; remove it (or use another --out_dir) "
                           f"to use --jsut_root {root}")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{CORPUS_DIR}.link-", dir=out_dir))
    try:
        for subset in counts:
            os.symlink((root / subset).resolve(), tmp / subset, target_is_directory=True)
        mark_done(tmp, source=f"root:{root.resolve()}", sha256=None,
                  utterances=sum(counts.values()), subsets=counts)
        if corpus.exists():  # an older link farm: only links and .done, never followed
            for entry in corpus.iterdir():
                entry.unlink()
            corpus.rmdir()
        os.rename(tmp, corpus)
    except BaseException:
        for entry in tmp.iterdir():
            entry.unlink()
        tmp.rmdir()
        raise
    return corpus


def _done_info(corpus: Path) -> dict:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((corpus / DONE).read_text(encoding="utf-8"))
    return {}


def fetch_jsut(out_dir="downloads", url=OFFICIAL_URL, zip_path=None, root=None, sha256=None,
               skip_checksum=False, keep_zip=False, timeout=CONNECT_TIMEOUT, retries=10) -> Path:
    """Stage 0 as a function: returns the corpus root (`<out_dir>/jsut_ver1.1`)."""
    out_dir = Path(out_dir)
    sha256 = normalize_sha256(sha256)
    if sha256 and skip_checksum:
        raise AsrdemoError("--jsut_sha256 and --skip_checksum contradict each other")
    if sum(x is not None for x in (zip_path, root)) > 1:
        raise AsrdemoError("give at most one of --jsut_zip and --jsut_root")
    expected = sha256 or OFFICIAL_SHA256
    corpus = out_dir / CORPUS_DIR

    if root is not None:
        root = Path(root)
        if not root.is_dir():
            raise AsrdemoError(f"--jsut_root {root} is not a directory")
        if corpus.exists() and corpus.resolve() == root.resolve():
            raise AsrdemoError(f"--jsut_root {root} is {corpus} itself; run without --jsut_root to check it")
        if is_done(corpus) and _done_info(corpus).get("source") == f"root:{root.resolve()}":
            logger.info("skipped: %s already links to %s", corpus, root)
            return corpus
        counts = check_layout(root)
        _link_root(root, out_dir, counts)
        logger.info("using the unpacked corpus %s (%d utterances) through %s", root, sum(counts.values()), corpus)
        return corpus

    if is_done(corpus):
        info = _done_info(corpus)
        if sha256 and info.get("sha256") and info["sha256"] != sha256:
            raise AsrdemoError(f"{corpus} was unpacked from an archive with sha256 {info['sha256']}, "
                               f"not {sha256}; remove {corpus} to replace it")
        logger.info("skipped: %s is ready (from %s)", corpus, info.get("source", "?"))
        return corpus
    if corpus.is_symlink() or _is_link_farm(corpus):
        raise AsrdemoError(f"{corpus} links to a corpus given with --jsut_root; remove it to download or unpack a zip")
    if corpus.exists():
        # Only a finished unpack is ever renamed to this name; .done was not written yet.
        counts = check_layout(corpus)
        mark_done(corpus, source="found unpacked", sha256=None, utterances=sum(counts.values()), subsets=counts)
        logger.info("found %s without a .done marker; layout is complete, marked done", corpus)
        return corpus

    out_dir.mkdir(parents=True, exist_ok=True)
    if zip_path is not None:
        zip_path = Path(zip_path)
        if not zip_path.is_file():
            raise AsrdemoError(f"--jsut_zip {zip_path} is not a file")
        digest = verify_archive(zip_path, expected, skip_checksum)
        _, counts = unpack(zip_path, out_dir)
        mark_done(corpus, source=str(zip_path.resolve()), sha256=digest, utterances=sum(counts.values()), subsets=counts)
        return corpus

    archive = out_dir / ARCHIVE_NAME
    if not archive.is_file():
        part = download(url, archive, timeout=timeout, retries=retries,
                        check_official_size=(url == OFFICIAL_URL and sha256 is None))
        digest = verify_archive(part, expected, skip_checksum)
        os.replace(part, archive)  # only a verified archive carries the final name
    else:
        logger.info("found %s; verifying it", archive)
        digest = verify_archive(archive, expected, skip_checksum)
    _, counts = unpack(archive, out_dir)
    mark_done(corpus, source=url, sha256=digest, utterances=sum(counts.values()), subsets=counts)
    if not keep_zip:
        archive.unlink()
        logger.info("removed %s (use --keep_zip to keep it)", archive)
    return corpus


def add_arguments(parser):
    parser.add_argument("--out_dir", default="downloads", help="where jsut_ver1.1/ goes (default: downloads)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--jsut_url", default=OFFICIAL_URL, help=f"archive address (default: {OFFICIAL_URL})")
    src.add_argument("--jsut_zip", default=None, help="use this local copy of jsut_ver1.1.zip instead of downloading")
    src.add_argument("--jsut_root", default=None, help="use this already unpacked corpus (checked, then linked)")
    parser.add_argument("--jsut_sha256", default=None,
                        help="expected sha256 of the archive (for a mirror, a trimmed archive, or to pin a copy)")
    parser.add_argument("--skip_checksum", action="store_true", help="do not compute/check the archive's sha256")
    parser.add_argument("--keep_zip", action="store_true", help="keep the downloaded zip after unpacking")
    parser.add_argument("--timeout", type=float, default=CONNECT_TIMEOUT,
                        help="seconds to wait for a connection or for the next bytes (default: %(default)s)")
    parser.add_argument("--retries", type=int, default=10,
                        help="automatic resumes after an interrupted transfer (default: %(default)s)")


def main(args):
    corpus = fetch_jsut(
        out_dir=args.out_dir, url=args.jsut_url, zip_path=args.jsut_zip, root=args.jsut_root,
        sha256=args.jsut_sha256, skip_checksum=args.skip_checksum, keep_zip=args.keep_zip,
        timeout=args.timeout, retries=args.retries,
    )
    logger.info("corpus ready: %s", corpus)
