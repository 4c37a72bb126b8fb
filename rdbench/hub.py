"""The one loader for every remote file rdbench uses: model weights and prompt files.

Resolution order for a :class:`RemoteFile` (first hit wins):

1. an explicit ``local_path`` argument (for example a CLI ``--weights`` option);
2. the environment variable ``RDBENCH_FILE_<NAME>`` (name upper-cased, ``-``/``.`` -> ``_``);
3. the cache, ``$RDBENCH_HOME/files/<name>/<filename>`` (default home:
   ``platformdirs.user_cache_dir("rdbench")``);
4. a download from ``url`` into the cache (atomic: temporary file, sha256 check, rename),
   unless ``RDBENCH_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``.

Files in the cache and downloads must match the recorded sha256; a mismatch deletes the bad
download and raises. A download shorter (or longer) than its ``Content-Length`` is discarded.
A local override with a different sha256 is accepted with a warning (it may be the user's own
fine-tuned weights); its digest is returned so results can record it. ``Resolved.verified`` is
True only when a published sha256 exists and matched. When nothing is found and the network is
unavailable, the error names the file, its source and the exact path to put it at; an
unwritable cache folder is an error naming ``RDBENCH_HOME``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rdbench.errors import RdbenchError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """A file rdbench can fetch: ``name`` is its stable id, ``url`` where it comes from."""

    name: str
    filename: str
    url: str
    sha256: str | None
    description: str = ""

    @property
    def env_var(self) -> str:
        return "RDBENCH_FILE_" + re.sub(r"[^A-Za-z0-9]", "_", self.name).upper()


@dataclass(frozen=True)
class Resolved:
    """Where a file was found, its sha256 and whether that matched the recorded one."""

    path: Path
    sha256: str
    source: str  # "argument", "environment", "cache" or "download"
    verified: bool


def home() -> Path:
    """rdbench's cache root: ``$RDBENCH_HOME`` or the platform user cache directory."""
    env = os.environ.get("RDBENCH_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("rdbench"))


def offline() -> bool:
    return any(
        os.environ.get(v, "") not in ("", "0") for v in ("RDBENCH_OFFLINE", "HF_HUB_OFFLINE")
    )


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _digest_stamp(path: Path) -> tuple[Path, list]:
    """Where :func:`sha256_file_cached` remembers ``path``'s digest, and the stat it must match."""
    path = path.resolve()
    st = path.stat()
    stamp = [str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    memo = home() / "digests" / (hashlib.sha256(str(path).encode()).hexdigest() + ".json")
    return memo, stamp


def sha256_file_cached(path: str | os.PathLike[str]) -> str:
    """:func:`sha256_file`, remembered in ``$RDBENCH_HOME/digests`` by (absolute path, size,
    mtime_ns, ctime_ns, inode). Any write changes ctime, which cannot be set back; a file changed
    in the last 2 s is not remembered (its next change could fall in the same clock tick, as in
    git's "racily clean" entries). An unwritable home only disables the memo."""
    memo, stamp = _digest_stamp(Path(path))
    try:
        stored = json.loads(memo.read_text())
        if stored.get("stamp") == stamp and re.fullmatch(r"[0-9a-f]{64}", stored["sha256"]):
            return stored["sha256"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    digest = sha256_file(stamp[0])
    if time.time_ns() - max(stamp[2], stamp[3]) > 2_000_000_000:
        try:
            atomic_write_bytes(memo, json.dumps({"stamp": stamp, "sha256": digest}).encode())
        except OSError:
            pass
    return digest


def _unwritable(path: Path, exc: OSError) -> RdbenchError:
    return RdbenchError(
        f"cannot write to the rdbench cache folder {str(path)!r} ({exc.strerror or exc}); "
        f"set RDBENCH_HOME to a writable folder (now: {str(home())!r})"
    )


def _kind(path: Path) -> str:
    if path.is_dir():
        return "a folder"
    if path.is_file():
        return "a file"
    return "something that is neither a file nor a folder" if path.exists() else "missing"


def cache_path(file: RemoteFile) -> Path:
    return home() / "files" / file.name / file.filename


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace`` (no torn files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _missing_message(file: RemoteFile, reason: str) -> str:
    return (
        f"{file.description or file.name}: file {file.filename!r} is not available ({reason}).\n"
        f"  source: {file.url}\n"
        f"  put it at: {cache_path(file)}\n"
        f"  or point to a local copy: {file.env_var}=/path/to/{file.filename}"
    )


def _check_local(path: Path, file: RemoteFile, source: str) -> Resolved:
    if not path.is_file():
        what = "does not exist" if _kind(path) == "missing" else f"is {_kind(path)}"
        raise RdbenchError(
            f"{file.name}: local path {str(path)!r} (from {source}) {what}; expected the file "
            f"{file.filename!r}"
        )
    digest = sha256_file_cached(path)
    verified = file.sha256 is not None and digest == file.sha256
    if file.sha256 is not None and not verified:
        warnings.warn(
            f"{file.name}: {path} has sha256 {digest[:12]}..., not the published "
            f"{file.sha256[:12]}...; using it as a local override",
            stacklevel=3,
        )
    return Resolved(path, digest, source, verified)


def _download(file: RemoteFile, dest: Path) -> None:
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as exc:
        raise _unwritable(dest.parent, exc) from None
    digest = hashlib.sha256()
    received = 0
    try:
        request = urllib.request.Request(file.url, headers={"User-Agent": "rdbench"})
        with urllib.request.urlopen(request, timeout=30) as resp, os.fdopen(fd, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            from tqdm import tqdm

            with tqdm(
                total=total, unit="B", unit_scale=True, desc=file.filename, leave=False
            ) as bar:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if total is not None and received != total:
            raise RdbenchError(
                _missing_message(
                    file,
                    f"download failed: got {received} bytes, the server announced {total}; "
                    "the partial download was discarded",
                )
            )
        if file.sha256 is not None and digest.hexdigest() != file.sha256:
            raise RdbenchError(
                f"{file.name}: downloaded {file.filename!r} has sha256 {digest.hexdigest()}, "
                f"expected {file.sha256}; the download was discarded"
            )
        try:
            os.replace(tmp, dest)
        except OSError as exc:
            raise _unwritable(dest.parent, exc) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as exc:
        raise RdbenchError(_missing_message(file, f"download failed: {exc}")) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def resolve(file: RemoteFile, local_path: str | os.PathLike[str] | None = None) -> Resolved:
    """Find ``file`` locally or download it; see the module docstring for the order."""
    if local_path is not None:
        return _check_local(Path(local_path).expanduser(), file, "argument")
    env = os.environ.get(file.env_var)
    if env:
        return _check_local(Path(env).expanduser(), file, f"${file.env_var}")
    cached = cache_path(file)
    if cached.is_file():
        digest = sha256_file(cached)
        if file.sha256 is not None and digest != file.sha256:
            try:
                cached.unlink()
            except OSError as exc:
                raise RdbenchError(
                    f"{file.name}: cached copy {str(cached)!r} has sha256 {digest}, expected "
                    f"{file.sha256}, and cannot be deleted ({exc.strerror or exc}); delete it "
                    "or set RDBENCH_HOME to a writable folder"
                ) from None
            raise RdbenchError(
                _missing_message(
                    file, f"cached copy had sha256 {digest}, expected {file.sha256}; it was deleted"
                )
            )
        return Resolved(cached, digest, "cache", file.sha256 is not None)
    if offline():
        raise RdbenchError(_missing_message(file, "offline mode and nothing cached"))
    _download(file, cached)
    return Resolved(cached, file.sha256 or sha256_file(cached), "download", file.sha256 is not None)


def fetch(file: RemoteFile, local_path: str | os.PathLike[str] | None = None) -> Path:
    """Path to a verified local copy of ``file`` (see :func:`resolve`)."""
    return resolve(file, local_path).path


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load tensors safely: safetensors, or ``torch.load(weights_only=True)`` for .pt/.pth/.bin.

    A checkpoint that wraps its tensors in ``{"state_dict": ...}`` (HPSv2, many others) is
    unwrapped. Any failure becomes an :class:`RdbenchError` naming the file.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            import torch

            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any loader failure is a bad file for the user
        raise RdbenchError(f"cannot load weights from {str(path)!r}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise RdbenchError(f"{str(path)!r} does not hold a state dict (got {type(state).__name__})")
    return state


@dataclass(frozen=True)
class RemoteFolder:
    """A Hugging Face Hub repository (model or dataset) used as a folder of files.

    ``revision`` should be a commit hash so the content is immutable; Hub downloads are
    checked by ``huggingface_hub`` against the repository's recorded file hashes.
    """

    name: str
    repo_id: str
    revision: str = "main"
    repo_type: str = "model"
    allow_patterns: tuple[str, ...] | None = None
    description: str = ""

    @property
    def env_var(self) -> str:
        return "RDBENCH_FILE_" + re.sub(r"[^A-Za-z0-9]", "_", self.name).upper()

    @property
    def url(self) -> str:
        prefix = "datasets/" if self.repo_type == "dataset" else ""
        return f"https://huggingface.co/{prefix}{self.repo_id}/tree/{self.revision}"


def resolve_folder(folder: RemoteFolder, local_path: str | os.PathLike[str] | None = None) -> Path:
    """A local folder with ``folder``'s files: argument, ``RDBENCH_FILE_<NAME>``, cache, or Hub."""
    for candidate, source in ((local_path, "argument"), (os.environ.get(folder.env_var), "env")):
        if candidate:
            path = Path(candidate).expanduser()
            if not path.is_dir():
                what = "does not exist" if _kind(path) == "missing" else f"is {_kind(path)}"
                raise RdbenchError(
                    f"{folder.name}: local path {str(path)!r} (from {source}) {what}; expected "
                    f"a folder with the files of Hugging Face repository {folder.repo_id!r}"
                )
            return path
    cache_dir = home() / "hf"
    if not offline():
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _unwritable(cache_dir, exc) from None
    hint = (
        f"{folder.description or folder.name}: Hugging Face repository {folder.repo_id!r} "
        f"(revision {folder.revision}) is not available"
    )
    how = (
        f"  source: {folder.url}\n"
        f"  download it (e.g. `huggingface-cli download {folder.repo_id} --local-dir DIR`) and "
        f"set {folder.env_var}=DIR, or pass the folder explicitly"
    )
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        raise RdbenchError(f"{hint}: huggingface_hub is not installed\n{how}") from None
    try:
        path = snapshot_download(
            repo_id=folder.repo_id,
            revision=folder.revision,
            repo_type=folder.repo_type,
            allow_patterns=list(folder.allow_patterns) if folder.allow_patterns else None,
            cache_dir=str(cache_dir),
            local_files_only=offline(),
        )
    except Exception as exc:  # noqa: BLE001 - hub errors are many; all mean "not available"
        reason = "offline mode and nothing cached" if offline() else type(exc).__name__
        raise RdbenchError(f"{hint} ({reason})\n{how}") from None
    return Path(path)
