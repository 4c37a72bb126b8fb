import hashlib
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from rdbench import hub
from rdbench.errors import RdbenchError


def _remote(tmp_path, content=b"weights!", sha=True):
    return hub.RemoteFile(
        name="tiny-model.v1",
        filename="tiny.pt",
        url="http://127.0.0.1:9/tiny.pt",
        sha256=hashlib.sha256(content).hexdigest() if sha else None,
        description="a tiny test model",
    )


def test_env_var_name():
    assert _remote(None).env_var == "RDBENCH_FILE_TINY_MODEL_V1"


def test_offline_missing_file_names_file_source_and_destination(tmp_path):
    f = _remote(tmp_path)
    with pytest.raises(RdbenchError) as err:
        hub.resolve(f)
    msg = str(err.value)
    assert "tiny.pt" in msg and f.url in msg and str(hub.cache_path(f)) in msg
    assert f.env_var in msg and "offline" in msg


def test_local_override_argument_and_env(tmp_path, monkeypatch):
    f = _remote(tmp_path)
    p = tmp_path / "mine.pt"
    p.write_bytes(b"weights!")
    r = hub.resolve(f, p)
    assert r.path == p and r.verified and r.source == "argument"
    monkeypatch.setenv(f.env_var, str(p))
    assert hub.resolve(f).source.startswith("$")


def test_local_override_with_other_digest_warns_and_records(tmp_path):
    f = _remote(tmp_path)
    p = tmp_path / "finetuned.pt"
    p.write_bytes(b"other weights")
    with pytest.warns(UserWarning, match="local override"):
        r = hub.resolve(f, p)
    assert not r.verified and r.sha256 == hashlib.sha256(b"other weights").hexdigest()


def test_missing_local_override_is_clear(tmp_path):
    with pytest.raises(RdbenchError, match="does not exist"):
        hub.resolve(_remote(tmp_path), tmp_path / "nope.pt")


def test_cache_hit_and_corrupt_cache_is_deleted(tmp_path):
    f = _remote(tmp_path)
    dest = hub.cache_path(f)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"weights!")
    assert hub.resolve(f).source == "cache"
    dest.write_bytes(b"tampered")
    with pytest.raises(RdbenchError, match="it was deleted"):
        hub.resolve(f)
    assert not dest.exists()


@pytest.fixture
def http_server(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_verifies_and_caches_atomically(http_server, monkeypatch):
    root, base = http_server
    monkeypatch.setenv("RDBENCH_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    (root / "tiny.pt").write_bytes(b"weights!")
    good = hub.RemoteFile(
        "m", "tiny.pt", f"{base}/tiny.pt", hashlib.sha256(b"weights!").hexdigest()
    )
    r = hub.resolve(good)
    assert r.source == "download" and r.path.read_bytes() == b"weights!"
    assert [p.name for p in r.path.parent.iterdir()] == ["tiny.pt"]  # no temp files left

    bad = hub.RemoteFile("m2", "tiny.pt", f"{base}/tiny.pt", "0" * 64)
    with pytest.raises(RdbenchError, match="download was discarded"):
        hub.resolve(bad)
    assert not hub.cache_path(bad).exists()
    assert not any(hub.cache_path(bad).parent.iterdir())

    gone = hub.RemoteFile("m3", "x.pt", f"{base}/missing.pt", None)
    with pytest.raises(RdbenchError, match="download failed"):
        hub.resolve(gone)


def test_load_state_dict_formats_and_safety(tmp_path):
    from safetensors.torch import save_file

    sd = {"w": torch.arange(6.0).reshape(2, 3)}
    torch.save({"state_dict": sd}, tmp_path / "wrapped.pt")
    save_file(sd, tmp_path / "m.safetensors")
    for name in ("wrapped.pt", "m.safetensors"):
        loaded = hub.load_state_dict(tmp_path / name)
        assert torch.equal(loaded["w"], sd["w"])

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(RdbenchError, match="cannot load weights"):
        hub.load_state_dict(tmp_path / "evil.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RdbenchError, match="junk.pt"):
        hub.load_state_dict(tmp_path / "junk.pt")


def test_atomic_write_bytes_replaces(tmp_path):
    p = tmp_path / "a" / "b.bin"
    hub.atomic_write_bytes(p, b"1")
    hub.atomic_write_bytes(p, b"22")
    assert p.read_bytes() == b"22" and len(list(p.parent.iterdir())) == 1


def test_resolve_folder_offline_and_override(tmp_path):
    folder = hub.RemoteFolder("tiny-folder", "someone/tiny", description="tiny folder")
    with pytest.raises(RdbenchError) as err:
        hub.resolve_folder(folder)
    assert "someone/tiny" in str(err.value) and folder.env_var in str(err.value)
    assert hub.resolve_folder(folder, tmp_path) == tmp_path
    with pytest.raises(RdbenchError, match="does not exist"):
        hub.resolve_folder(folder, tmp_path / "nope")
