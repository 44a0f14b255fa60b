"""Stage 0 (`asrdemo download`) against a real HTTP server on loopback that supports Range.

The archive is a small JSUT-layout zip built by tests/jsut_fixture.py (all nine subsets).
"""

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from asrdemo.data import download as dl
from asrdemo.errors import AsrdemoError
from jsut_fixture import JSUT_SUBSETS, make_jsut_tree, make_jsut_zip

REPO = Path(__file__).resolve().parents[1]
PER_SUBSET = 2


class RangeServer:
    """Serves one file at /jsut_ver1.1.zip with Range/If-Range support, and can misbehave.

    cut_at: absolute byte offset where the next response is cut off (connection closed), once.
    support_range: False -> answers every request with 200 and the whole file.
    """

    def __init__(self, data: bytes, etag='"jsut-v1"'):
        self.data, self.etag = data, etag
        self.requests = []
        self.cut_at = None
        self.support_range = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append({k: v for k, v in self.headers.items()})
                if self.path != "/jsut_ver1.1.zip":
                    self.send_error(404)
                    return
                size, start, status = len(server.data), 0, 200
                rng = self.headers.get("Range")
                if rng and server.support_range:
                    if_range = self.headers.get("If-Range")
                    if if_range is None or if_range == server.etag:
                        start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                        if start >= size:
                            self.send_response(416)
                            self.send_header("Content-Range", f"bytes */{size}")
                            self.send_header("Content-Length", "0")
                            self.end_headers()
                            return
                        status = 206
                body = server.data[start:]
                self.send_response(status)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes" if server.support_range else "none")
                self.send_header("ETag", server.etag)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                self.end_headers()
                cut = server.cut_at
                if cut is not None and start < cut:
                    server.cut_at = None
                    self.wfile.write(body[: cut - start])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=lambda: self.httpd.serve_forever(poll_interval=0.05), daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/jsut_ver1.1.zip"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    base = tmp_path_factory.mktemp("jsut_src")
    made = make_jsut_tree(base / "jsut_ver1.1", per_subset=PER_SUBSET)
    zip_path = make_jsut_zip(base / "jsut_ver1.1", base / "jsut_ver1.1.zip")
    data = zip_path.read_bytes()
    return {"root": base / "jsut_ver1.1", "zip": zip_path, "data": data,
            "sha256": hashlib.sha256(data).hexdigest(), "made": made}


@pytest.fixture
def server(archive):
    srv = RangeServer(archive["data"])
    yield srv
    srv.close()


def run_cli(*args, timeout=60):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "asrdemo", "download", *map(str, args)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def assert_corpus(out_dir):
    corpus = out_dir / "jsut_ver1.1"
    assert (corpus / ".done").is_file()
    for subset in JSUT_SUBSETS:
        assert len(list((corpus / subset / "wav").glob("*.wav"))) == PER_SUBSET
        assert (corpus / subset / "transcript_utf8.txt").is_file()
    assert not list(out_dir.glob(".jsut_ver1.1.unpack-*")), "temporary unpack folder left behind"


def test_interrupted_download_resumes_on_the_next_run(tmp_path, server, archive):
    size = len(archive["data"])
    half = size // 2
    server.cut_at = half
    out = tmp_path / "downloads"
    first = run_cli("--out_dir", out, "--jsut_url", server.url, "--retries", 0)
    assert first.returncode == 1, first.stderr
    assert "interrupted" in first.stderr and "again to resume" in first.stderr
    part = out / "jsut_ver1.1.zip.part"
    assert part.stat().st_size == half
    assert not (out / "jsut_ver1.1.zip").exists()
    assert not (out / "jsut_ver1.1").exists()

    second = run_cli("--out_dir", out, "--jsut_url", server.url, "--jsut_sha256", archive["sha256"])
    assert second.returncode == 0, second.stderr
    assert server.requests[-1]["Range"] == f"bytes={half}-"
    assert server.requests[-1]["If-Range"] == server.etag
    assert_corpus(out)
    assert not part.exists() and not (out / "jsut_ver1.1.zip.part.json").exists()
    assert not (out / "jsut_ver1.1.zip").exists()  # removed after unpacking (no --keep_zip)
    assert archive["sha256"] in (out / "jsut_ver1.1" / ".done").read_text()

    n = len(server.requests)
    third = run_cli("--out_dir", out, "--jsut_url", server.url)
    assert third.returncode == 0 and "skipped" in third.stderr
    assert len(server.requests) == n, "a finished stage must not touch the network"


def test_cut_connection_is_resumed_within_one_run(tmp_path, server, archive):
    server.cut_at = len(archive["data"]) // 3
    out = tmp_path / "dl"
    corpus = dl.fetch_jsut(out, url=server.url, sha256=archive["sha256"], keep_zip=True, retries=2)
    assert corpus == out / "jsut_ver1.1"
    assert [r.get("Range") for r in server.requests] == [None, f"bytes={len(archive['data']) // 3}-"]
    assert (out / "jsut_ver1.1.zip").read_bytes() == archive["data"]
    assert_corpus(out)


def test_server_without_range_support_restarts_cleanly(tmp_path, server, archive):
    server.support_range = False
    out = tmp_path / "dl"
    out.mkdir()
    (out / "jsut_ver1.1.zip.part").write_bytes(b"\0" * 1000)  # stale bytes that must not survive
    dl.fetch_jsut(out, url=server.url, sha256=archive["sha256"], keep_zip=True)
    assert (out / "jsut_ver1.1.zip").read_bytes() == archive["data"]
    assert_corpus(out)


def test_complete_part_file_is_verified_without_downloading_again(tmp_path, server, archive):
    out = tmp_path / "dl"
    out.mkdir()
    (out / "jsut_ver1.1.zip.part").write_bytes(archive["data"])
    dl.fetch_jsut(out, url=server.url, sha256=archive["sha256"])
    assert len(server.requests) == 1 and server.requests[0]["Range"] == f"bytes={len(archive['data'])}-"
    assert_corpus(out)


def test_wrong_checksum_fails_and_unpacks_nothing(tmp_path, server, archive):
    out = tmp_path / "dl"
    wrong = "0" * 64
    res = run_cli("--out_dir", out, "--jsut_url", server.url, "--jsut_sha256", wrong)
    assert res.returncode == 1
    assert "checksum mismatch" in res.stderr and wrong in res.stderr and archive["sha256"] in res.stderr
    assert "NOT unpacked" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (out / "jsut_ver1.1").exists()
    assert not (out / "jsut_ver1.1.zip").exists(), "an unverified archive must not get the final name"
    assert not list(out.glob(".jsut_ver1.1.unpack-*"))


def test_jsut_zip_option(tmp_path, archive):
    out = tmp_path / "dl"
    res = run_cli("--out_dir", out, "--jsut_zip", archive["zip"], "--jsut_sha256", archive["sha256"].upper())
    assert res.returncode == 0, res.stderr
    assert_corpus(out)
    assert archive["zip"].is_file(), "the user's own zip is never removed"


def test_jsut_zip_with_wrong_checksum_unpacks_nothing(tmp_path, archive):
    out = tmp_path / "dl"
    res = run_cli("--out_dir", out, "--jsut_zip", archive["zip"], "--jsut_sha256", "f" * 64)
    assert res.returncode == 1 and "checksum mismatch" in res.stderr
    assert not (out / "jsut_ver1.1").exists()
    assert archive["zip"].is_file()


def test_truncated_zip_is_never_unpacked(tmp_path, archive):
    bad = tmp_path / "truncated.zip"
    bad.write_bytes(archive["data"][: len(archive["data"]) // 2])
    with pytest.raises(AsrdemoError, match="not a complete, intact zip"):
        dl.fetch_jsut(tmp_path / "dl", zip_path=bad, skip_checksum=True)
    assert not (tmp_path / "dl" / "jsut_ver1.1").exists()
    assert not list((tmp_path / "dl").glob(".jsut_ver1.1.unpack-*"))


def test_corrupt_member_fails_crc_check(tmp_path, archive):
    # a stored (uncompressed) archive, one byte flipped inside the last wav's data
    stored = make_jsut_zip(archive["root"], tmp_path / "stored.zip", compression=zipfile.ZIP_STORED)
    data = bytearray(stored.read_bytes())
    with zipfile.ZipFile(stored) as zf:
        info = [m for m in zf.infolist() if m.filename.endswith(".wav")][-1]
    offset = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 500
    data[offset] ^= 0xFF
    bad = tmp_path / "bad_crc.zip"
    bad.write_bytes(bytes(data))
    with pytest.raises(AsrdemoError, match="CRC"):
        dl.fetch_jsut(tmp_path / "dl", zip_path=bad, skip_checksum=True)
    assert not (tmp_path / "dl" / "jsut_ver1.1").exists()
    assert not list((tmp_path / "dl").glob(".jsut_ver1.1.unpack-*"))


def test_zip_slip_is_refused(tmp_path, archive):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("jsut_ver1.1/basic5000/transcript_utf8.txt", "BASIC5000_0001:a\n")
        zf.writestr("../escaped.txt", "gotcha")
    out = tmp_path / "deep" / "dl"
    with pytest.raises(AsrdemoError, match="unsafe path"):
        dl.fetch_jsut(out, zip_path=evil, skip_checksum=True)
    assert not list(tmp_path.rglob("escaped.txt")), "a member escaped the unpack folder"
    assert not (out / "jsut_ver1.1").exists()


def test_archive_without_jsut_layout_is_refused(tmp_path):
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("something/else.txt", "hello")
    with pytest.raises(AsrdemoError, match="layout"):
        dl.fetch_jsut(tmp_path / "dl", zip_path=other, skip_checksum=True)
    assert not (tmp_path / "dl" / "jsut_ver1.1").exists()


def test_jsut_root_option(tmp_path, archive):
    out = tmp_path / "dl"
    res = run_cli("--out_dir", out, "--jsut_root", archive["root"])
    assert res.returncode == 0, res.stderr
    assert "differ from the official" in res.stderr  # a trimmed corpus is a warning, not an error
    corpus = out / "jsut_ver1.1"
    assert (corpus / ".done").is_file() and not corpus.is_symlink()
    for subset in JSUT_SUBSETS:
        assert (corpus / subset).is_symlink() and (corpus / subset).resolve() == (archive["root"] / subset).resolve()
    assert len(list((corpus / "basic5000" / "wav").glob("*.wav"))) == PER_SUBSET
    assert not (archive["root"] / ".done").exists(), "nothing is written into the user's corpus"

    again = run_cli("--out_dir", out, "--jsut_root", archive["root"])
    assert again.returncode == 0 and "skipped" in again.stderr

    other = tmp_path / "other_root"
    make_jsut_tree(other, per_subset=1, subsets=["basic5000"])
    switched = dl.fetch_jsut(out, root=other)
    assert sorted(p.name for p in switched.iterdir()) == [".done", "basic5000"]
    assert (switched / "basic5000").resolve() == (other / "basic5000").resolve()
    assert len(list((archive["root"] / "basic5000" / "wav").glob("*.wav"))) == PER_SUBSET, "old root untouched"


def test_jsut_root_never_replaces_an_unpacked_corpus(tmp_path, archive):
    out = tmp_path / "dl"
    dl.fetch_jsut(out, zip_path=archive["zip"], skip_checksum=True)
    with pytest.raises(AsrdemoError, match="already holds a corpus"):
        dl.fetch_jsut(out, root=archive["root"])
    assert_corpus(out)


def test_jsut_root_without_layout_fails(tmp_path):
    (tmp_path / "notjsut").mkdir()
    res = run_cli("--out_dir", tmp_path / "dl", "--jsut_root", tmp_path / "notjsut")
    assert res.returncode == 1 and "does not look like JSUT" in res.stderr
    assert not (tmp_path / "dl" / "jsut_ver1.1").exists()


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/jsut_ver1.1.zip",  # connection refused
    "http://jsut-mirror.invalid/jsut_ver1.1.zip",  # name does not resolve (RFC 2606 .invalid)
])
def test_no_network_fails_within_seconds_with_instructions(tmp_path, url):
    t0 = time.monotonic()
    res = run_cli("--out_dir", tmp_path / "dl", "--jsut_url", url.format(port=_closed_port()))
    elapsed = time.monotonic() - t0
    assert res.returncode == 1
    assert elapsed < 15
    for needle in ("cannot reach", "--jsut_zip", "--jsut_root", dl.OFFICIAL_URL):
        assert needle in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "dl" / "jsut_ver1.1").exists()


def test_silent_server_times_out(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # the kernel accepts the connection; nobody ever answers
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/jsut_ver1.1.zip"
        t0 = time.monotonic()
        with pytest.raises(AsrdemoError, match="cannot reach"):
            dl.fetch_jsut(tmp_path / "dl", url=url, timeout=1)
        assert time.monotonic() - t0 < 5
    finally:
        listener.close()


def test_rerun_after_done_marker_was_removed(tmp_path, archive):
    """`./run.sh --stage 0` deletes .done first: the unpacked corpus is re-checked, not re-downloaded."""
    out = tmp_path / "dl"
    dl.fetch_jsut(out, zip_path=archive["zip"], skip_checksum=True)
    (out / "jsut_ver1.1" / ".done").unlink()
    assert dl.fetch_jsut(out, url="http://127.0.0.1:9/unused.zip") == out / "jsut_ver1.1"
    assert_corpus(out)
    with pytest.raises(AsrdemoError, match="remove"):  # a corpus from other bytes than the pinned ones
        info = json.loads((out / "jsut_ver1.1" / ".done").read_text())
        info["sha256"] = archive["sha256"]
        (out / "jsut_ver1.1" / ".done").write_text(json.dumps(info))
        dl.fetch_jsut(out, sha256="1" * 64)


def test_bad_sha256_argument(tmp_path, archive):
    with pytest.raises(AsrdemoError, match="64 hex"):
        dl.fetch_jsut(tmp_path / "dl", zip_path=archive["zip"], sha256="abc")


def test_run_sh_stages_0_and_1_against_the_loopback_server(tmp_path, server, archive):
    """The issue's acceptance command: `./run.sh --stop_stage 1 --jsut_url URL`, cut off once, then again."""
    server.cut_at = len(archive["data"]) // 2
    args = ["bash", str(REPO / "run.sh"), "--stop_stage", 1, "--jsut_url", server.url, "--work_dir", tmp_path,
            "--num_test", 4, "--num_dev", 4]
    r = subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "stage 0: done" in r.stdout and "stage 1: done" in r.stdout
    assert any("Range" in h for h in server.requests[1:]), "the cut download was not resumed"
    assert_corpus(tmp_path / "downloads")
    counts = {s: len((tmp_path / "data" / s / "text").read_text().splitlines()) for s in ("train", "dev", "test")}
    assert counts == {"train": 9 * PER_SUBSET - 8, "dev": 4, "test": 4}
    again = subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "stage 0: skipped" in again.stdout and "stage 1: skipped" in again.stdout
