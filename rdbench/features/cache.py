"""Content-addressed feature cache: sha256(image bytes) -> feature row, per namespace.

A namespace is everything a row depends on besides the bytes: the extractor id (model,
pretrained tag, weights sha256 prefix), the preprocessing tag (resize mode and sizes) and
:data:`FEATURE_FORMAT_VERSION`. Layout::

    <root>/<slug>-<hash12>/namespace.json       what the namespace is (written once)
    <root>/<slug>-<hash12>/chunk-<uuid>.npz     keys (N,), features (N x dim), checksum

Chunks are written whole through a temporary file and ``os.replace``, so a reader never sees
a torn chunk and an interrupted run keeps every chunk it finished. A chunk whose checksum,
shape or dtype does not verify is deleted with a warning and its rows are recomputed: cached
data is never trusted unchecked. A changed image has a new sha256, hence a cache miss.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import uuid
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rdbench import hub
from rdbench.errors import RdbenchError

_KEY = re.compile(r"^[0-9a-f]{64}$")


def _checksum(keys: np.ndarray, features: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update(str(features.shape).encode())
    digest.update(keys.astype("<U64").tobytes())
    digest.update(np.ascontiguousarray(features, dtype="<f4").tobytes())
    return digest.hexdigest()


def namespace_dirname(namespace: str) -> str:
    """Readable, filesystem-safe folder name for ``namespace`` (slug + hash of the full text)."""
    slug = re.sub(r"[^A-Za-z0-9_.\-]+", "_", namespace)[:60].strip("_")
    return f"{slug}-{hashlib.sha256(namespace.encode()).hexdigest()[:12]}"


@dataclass
class NamespaceInfo:
    """Summary of one namespace for ``rdbench cache info``."""

    dirname: str
    namespace: str
    extractor: str
    dim: int
    entries: int
    chunks: int
    bytes: int


@dataclass
class CacheNamespace:
    """The rows of one namespace. The first use reads only the keys of each chunk (an
    index); :meth:`get` then loads and verifies just the chunks holding the asked-for keys,
    so memory and time follow the image set, not the whole cache."""

    path: Path
    namespace: str
    dim: int
    _index: dict[str, Path] | None = field(default=None, repr=False)

    def _keys(self) -> dict[str, Path]:
        if self._index is None:
            self._index = {}
            for chunk in sorted(self.path.glob("chunk-*.npz")):
                keys = _read_keys(chunk)
                if keys is not None:
                    self._index.update(dict.fromkeys(keys.tolist(), chunk))
        return self._index

    def __len__(self) -> int:
        """Number of cached rows (reads the chunks' keys on first use)."""
        return len(self._keys())

    def get(self, keys: list[str]) -> dict[str, np.ndarray]:
        """Cached rows for those of ``keys`` that are present (corrupt chunks are dropped)."""
        index = self._keys()
        wanted = {k for k in keys if k in index}
        out: dict[str, np.ndarray] = {}
        for chunk in sorted({index[k] for k in wanted}):
            loaded = read_chunk(chunk, self.dim)
            if loaded is None:  # deleted: its rows are recomputed
                for k in [k for k, c in index.items() if c == chunk]:
                    del index[k]
                continue
            for key, row in zip(loaded[0].tolist(), loaded[1], strict=True):
                if key in wanted and index.get(key) == chunk:
                    out[key] = row
        return {k: out[k] for k in keys if k in out}

    def put(self, keys: list[str], features: np.ndarray) -> None:
        """Write one chunk atomically (temporary file + rename) and remember its rows."""
        if not keys:
            return
        arr = np.ascontiguousarray(features, dtype=np.float32)
        if arr.shape != (len(keys), self.dim) or not all(_KEY.match(k) for k in keys):
            raise RdbenchError(
                f"feature cache: a chunk needs {len(keys)} sha256 keys and a "
                f"{len(keys)} x {self.dim} array, got shape {arr.shape}"
            )
        karr = np.asarray(keys, dtype="<U64")
        buf = io.BytesIO()
        np.savez(buf, keys=karr, features=arr, checksum=np.asarray(_checksum(karr, arr)))
        chunk = self.path / f"chunk-{uuid.uuid4().hex}.npz"
        hub.atomic_write_bytes(chunk, buf.getvalue())
        if self._index is not None:
            self._index.update(dict.fromkeys(keys, chunk))


def _read_keys(path: Path) -> np.ndarray | None:
    """The keys of a chunk (one small member of the archive), or ``None`` after deleting an
    unreadable chunk."""
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = data["keys"]
        if keys.ndim == 1:
            return keys
        reason = f"keys of shape {keys.shape}"
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    warnings.warn(
        f"feature cache: corrupt chunk {path} ({reason}); deleted, its rows will be recomputed",
        stacklevel=3,
    )
    path.unlink(missing_ok=True)
    return None


def read_chunk(path: Path, dim: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Verified ``(keys, features)`` of a chunk, or ``None`` after deleting a corrupt one."""
    try:
        with np.load(path, allow_pickle=False) as data:
            keys, feats, checksum = data["keys"], data["features"], str(data["checksum"])
        ok = (
            keys.ndim == 1
            and feats.dtype == np.float32
            and feats.shape == (keys.shape[0], dim)
            and checksum == _checksum(keys, feats)
        )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        ok, reason = False, f"{type(exc).__name__}: {exc}"
    else:
        reason = "checksum, shape or dtype mismatch"
    if ok:
        return keys, feats
    warnings.warn(
        f"feature cache: corrupt chunk {path} ({reason}); deleted, its rows will be recomputed",
        stacklevel=2,
    )
    path.unlink(missing_ok=True)
    return None


class FeatureCache:
    """Feature cache under ``root`` (default ``$RDBENCH_HOME/features``)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else hub.home() / "features"

    def namespace(self, namespace: str, *, dim: int, extractor: str = "") -> CacheNamespace:
        """Open (creating if needed) the namespace for rows of width ``dim``."""
        path = self.root / namespace_dirname(namespace)
        meta_path = path / "namespace.json"
        meta = {"namespace": namespace, "extractor": extractor, "dim": dim}
        if meta_path.is_file():
            try:
                stored = json.loads(meta_path.read_text())
            except ValueError:
                stored = None
            if stored != meta:  # unreadable or inconsistent: never trust its chunks
                warnings.warn(f"feature cache: {path} had bad metadata; cleared", stacklevel=2)
                shutil.rmtree(path, ignore_errors=True)
        if not meta_path.is_file():
            hub.atomic_write_bytes(meta_path, json.dumps(meta, indent=1).encode())
        return CacheNamespace(path, namespace, dim)

    def _dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if (p / "namespace.json").is_file())

    def info(self) -> list[NamespaceInfo]:
        """One summary per namespace (entries counted from chunk headers, not verified)."""
        out = []
        for path in self._dirs():
            try:
                meta = json.loads((path / "namespace.json").read_text())
            except ValueError:
                meta = {}
            chunks = sorted(path.glob("chunk-*.npz"))
            entries = 0
            for chunk in chunks:
                try:
                    with np.load(chunk, allow_pickle=False) as data:
                        entries += int(data["keys"].shape[0])
                except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                    pass
            out.append(
                NamespaceInfo(
                    dirname=path.name,
                    namespace=str(meta.get("namespace", "?")),
                    extractor=str(meta.get("extractor", "?")),
                    dim=int(meta.get("dim", 0)),
                    entries=entries,
                    chunks=len(chunks),
                    bytes=sum(f.stat().st_size for f in path.iterdir() if f.is_file()),
                )
            )
        return out

    def clear(self, extractor: str | None = None) -> int:
        """Delete every namespace (or those of extractor name ``extractor``); returns a count."""
        removed = 0
        for item in self.info():
            if extractor is None or item.extractor == extractor:
                shutil.rmtree(self.root / item.dirname, ignore_errors=True)
                removed += 1
        return removed
