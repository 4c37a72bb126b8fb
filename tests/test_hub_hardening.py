"""hub: truncated downloads, ``verified`` without a digest, unwritable homes, wrong-kind
overrides and the digest memo."""

from __future__ import annotations

import hashlib
import os
import socket
import threading

import pytest

from rdbench import hub
from rdbench.errors import RdbenchError


@pytest.fixture
def lying_server():
    """Announces ``Content-Length: 10000`` and sends 5000 bytes, then closes."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(5)
    sock.settimeout(10)

    def serve():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.recv(65536)
            head = b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\nConnection: close\r\n\r\n"
            conn.sendall(head + b"x" * 5000)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/f.bin"
    sock.close()


def _online(monkeypatch):
    monkeypatch.setenv("RDBENCH_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")


def test_truncated_download_is_refused_and_not_cached(lying_server, monkeypatch):
    _online(monkeypatch)
    f = hub.RemoteFile("short", "f.bin", lying_server, None)
    with pytest.raises(RdbenchError, match="got 5000 bytes, the server announced 10000"):
        hub.resolve(f)
    assert not hub.cache_path(f).exists()
    assert not any(hub.cache_path(f).parent.iterdir())  # the partial temp file is gone
    monkeypatch.setenv("RDBENCH_OFFLINE", "1")
    with pytest.raises(RdbenchError, match="nothing cached"):
        hub.resolve(f)


def test_verified_only_with_a_published_digest(tmp_path):
    p = tmp_path / "w.bin"
    p.write_bytes(b"abc")
    undigested = hub.RemoteFile("nodigest", "w.bin", "http://127.0.0.1:9/w.bin", None)
    r = hub.resolve(undigested, p)
    assert not r.verified and r.sha256 == hashlib.sha256(b"abc").hexdigest()
    dest = hub.cache_path(undigested)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"abc")
    cached = hub.resolve(undigested)
    assert cached.source == "cache" and not cached.verified
    digested = hub.RemoteFile("digest", "w.bin", "x", hashlib.sha256(b"abc").hexdigest())
    assert hub.resolve(digested, p).verified


@pytest.mark.parametrize("kind", ["under_a_file", "proc"])
def test_unwritable_home_is_an_error_naming_rdbench_home(tmp_path, monkeypatch, kind):
    _online(monkeypatch)
    if kind == "proc":
        if not os.path.isdir("/proc/self"):
            pytest.skip("no /proc")
        home = "/proc/rdbench-test-home"
    else:
        (tmp_path / "file").write_text("x")
        home = str(tmp_path / "file" / "home")
    monkeypatch.setenv("RDBENCH_HOME", home)
    f = hub.RemoteFile("ro", "g.bin", "http://127.0.0.1:9/g.bin", None)
    with pytest.raises(RdbenchError, match="RDBENCH_HOME") as err:
        hub.resolve(f)
    assert home in str(err.value)
    folder = hub.RemoteFolder("ro-folder", "someone/tiny")
    with pytest.raises(RdbenchError, match="RDBENCH_HOME"):
        hub.resolve_folder(folder)


def test_override_of_the_wrong_kind_says_what_it_is(tmp_path, monkeypatch):
    f = hub.RemoteFile("model", "tiny.pt", "x", None)
    with pytest.raises(RdbenchError, match="is a folder; expected the file 'tiny.pt'"):
        hub.resolve(f, tmp_path)
    monkeypatch.setenv(f.env_var, str(tmp_path))
    with pytest.raises(RdbenchError, match=r"\$RDBENCH_FILE_MODEL\) is a folder"):
        hub.resolve(f)
    monkeypatch.delenv(f.env_var)
    file = tmp_path / "a.bin"
    file.write_bytes(b"1")
    folder = hub.RemoteFolder("tiny-folder", "someone/tiny")
    with pytest.raises(RdbenchError, match="is a file; expected a folder"):
        hub.resolve_folder(folder, file)
    with pytest.raises(RdbenchError, match="does not exist"):
        hub.resolve_folder(folder, tmp_path / "nope")


def test_digest_memo_is_used_only_for_the_exact_stat(tmp_path):
    import json

    p = tmp_path / "w.bin"
    p.write_bytes(b"a" * 100)
    assert hub.sha256_file_cached(p) == hashlib.sha256(b"a" * 100).hexdigest()
    memo, stamp = hub._digest_stamp(p)
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(json.dumps({"stamp": stamp, "sha256": "0" * 64}))
    assert hub.sha256_file_cached(p) == "0" * 64  # the memo is read for an unchanged file
    st = p.stat()
    p.write_bytes(b"b" * 100)  # same size, old mtime put back: ctime still differs
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    if p.stat().st_ctime_ns == st.st_ctime_ns:
        pytest.skip("file system clock too coarse to see the rewrite")
    assert hub.sha256_file_cached(p) == hashlib.sha256(b"b" * 100).hexdigest()
