"""Run a feature extractor over an image set, with the feature cache.

Pipeline: (1) with the cache on, hash every file's bytes (sha256, thread pool) and take the
cached rows; (2) a torch ``DataLoader`` over the remaining items whose workers read the bytes,
hash them, decode them (:func:`rdbench.images.decode_rgb`) and preprocess them; (3) batched
``extractor.forward`` under ``torch.inference_mode()`` on CUDA when present; (4) new rows are
written to the cache in chunks of ``chunk_size`` rows. Rows come back in ``imageset.items``
order whatever the batch size or worker count.
"""

from __future__ import annotations

import hashlib
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rdbench.errors import RdbenchError
from rdbench.features.base import FeatureExtractor, Preprocessor
from rdbench.features.cache import CacheNamespace, FeatureCache
from rdbench.images import decode_rgb

ON_ERROR = ("raise", "skip")
CHUNK_ROWS = 256


@dataclass
class Features:
    """Extracted features: ``array`` rows follow ``keys`` (the set's order minus skipped)."""

    array: np.ndarray
    keys: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    n_cached: int = 0
    n_computed: int = 0
    extractor_id: str = ""


class _ImageDataset(torch.utils.data.Dataset):
    """Item ``i`` -> ``(position, sha256, tensor | None, error | None)``; errors are carried."""

    def __init__(self, imageset: Any, positions: list[int], preprocessor: Preprocessor) -> None:
        self.imageset = imageset
        self.positions = positions
        self.preprocessor = preprocessor

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> tuple[int, str, torch.Tensor | None, str | None]:
        pos = self.positions[i]
        item = self.imageset.items[pos]
        digest = ""
        try:
            data = self.imageset.read_bytes(item)
            digest = hashlib.sha256(data).hexdigest()
            return pos, digest, self.preprocessor(decode_rgb(data, item.key)), None
        except (RdbenchError, OSError, ValueError, MemoryError) as exc:
            return pos, digest, None, str(exc) or type(exc).__name__


@dataclass
class _Batch:
    positions: list[int]
    hashes: list[str]
    tensor: torch.Tensor | None
    errors: list[tuple[int, str]]
    fatal: str | None = None  # raised by the main process (a worker's raise would be wrapped)


def _collate(samples: list[tuple[int, str, torch.Tensor | None, str | None]]) -> _Batch:
    good = [s for s in samples if s[2] is not None]
    errors = [(s[0], s[3] or "unknown error") for s in samples if s[2] is None]
    shapes = {tuple(s[2].shape) for s in good}
    if len(shapes) > 1:
        fatal = (
            f"images of one batch have different sizes {sorted(shapes)} after preprocessing; "
            "resize mode 'legacy_tensorflow' resizes inside the network, so use batch_size=1 "
            "or resize mode 'clean'"
        )
        return _Batch([], [], None, errors, fatal)
    tensor = torch.stack([s[2] for s in good]) if good else None
    return _Batch([s[0] for s in good], [s[1] for s in good], tensor, errors)


def _hash_items(imageset: Any, positions: list[int]) -> dict[int, str | Exception]:
    def one(pos: int) -> str | Exception:
        try:
            return hashlib.sha256(imageset.read_bytes(imageset.items[pos])).hexdigest()
        except (RdbenchError, OSError) as exc:
            return exc

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(positions, pool.map(one, positions), strict=True))


def _open_cache(cache: bool | FeatureCache, extractor: FeatureExtractor) -> CacheNamespace | None:
    if cache is False or cache is None:
        return None
    store = FeatureCache() if cache is True else cache
    return store.namespace(extractor.cache_namespace, dim=extractor.dim, extractor=extractor.name)


def extract_features(
    imageset: Any,
    extractor: FeatureExtractor,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    cache: bool | FeatureCache = True,
    on_error: str = "raise",
    progress: bool = True,
    chunk_size: int = CHUNK_ROWS,
) -> Features:
    """Features of every image of ``imageset`` (an :class:`rdbench.imageset.ImageSet`).

    ``cache=False`` (CLI ``--no-cache``) neither reads nor writes the cache. With
    ``on_error="skip"`` an unreadable or undecodable image is left out and listed in
    ``skipped``; with ``"raise"`` it raises :class:`RdbenchError` naming the file (rows finished
    before it stay cached).
    """
    if on_error not in ON_ERROR:
        raise RdbenchError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    for name, value in (("batch_size", batch_size), ("chunk_size", chunk_size)):
        if not isinstance(value, int) or value < 1:
            raise RdbenchError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(num_workers, int) or num_workers < 0:
        raise RdbenchError(f"num_workers must be an integer >= 0, got {num_workers!r}")
    if device is not None:
        extractor.to(device)
    items = imageset.items
    n = len(items)
    rows: list[np.ndarray | None] = [None] * n
    failed: dict[int, str] = {}

    def fail(pos: int, reason: str) -> None:
        if on_error == "raise":
            raise RdbenchError(f"cannot extract features of {items[pos].key!r}: {reason}")
        failed[pos] = reason

    namespace = _open_cache(cache, extractor)
    todo = list(range(n))
    duplicates: dict[int, int] = {}  # position -> position computing the same bytes
    if namespace is not None:
        hashes = _hash_items(imageset, todo)
        for pos, h in hashes.items():
            if isinstance(h, Exception):
                fail(pos, str(h))
        found = namespace.get([h for h in hashes.values() if isinstance(h, str)])
        first: dict[str, int] = {}
        todo = []
        for pos, h in hashes.items():
            if not isinstance(h, str):
                continue
            if h in found:
                rows[pos] = found[h]
            elif h in first:
                duplicates[pos] = first[h]
            else:
                first[h] = pos
                todo.append(pos)
    n_cached = sum(r is not None for r in rows)

    n_computed = 0
    if todo:
        n_computed = _compute(
            imageset, extractor, todo, rows, fail, namespace, batch_size, num_workers,
            progress, chunk_size,
        )  # fmt: skip
    for pos, src in duplicates.items():
        if rows[src] is None:
            fail(pos, failed.get(src, "its identical copy failed"))
        rows[pos] = rows[src]
    keep = [pos for pos in range(n) if rows[pos] is not None and pos not in failed]
    array = (
        np.stack([rows[pos] for pos in keep]).astype(np.float32, copy=False)
        if keep
        else np.zeros((0, extractor.dim), dtype=np.float32)
    )
    return Features(
        array=array,
        keys=[items[pos].key for pos in keep],
        skipped=[(items[pos].key, failed[pos]) for pos in sorted(failed)],
        n_cached=n_cached,
        n_computed=n_computed,
        extractor_id=extractor.id,
    )


def _compute(
    imageset: Any,
    extractor: FeatureExtractor,
    todo: list[int],
    rows: list[np.ndarray | None],
    fail: Any,
    namespace: CacheNamespace | None,
    batch_size: int,
    num_workers: int,
    progress: bool,
    chunk_size: int,
) -> int:
    from tqdm import tqdm

    loader = torch.utils.data.DataLoader(
        _ImageDataset(imageset, todo, extractor.preprocessor),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=extractor.device.type == "cuda",
    )
    pending_keys: list[str] = []
    pending_rows: list[np.ndarray] = []
    computed = 0

    def flush(limit: int = 1) -> None:
        """Write chunks of at most ``chunk_size`` rows while ``limit`` rows are pending."""
        while namespace is not None and pending_keys and len(pending_keys) >= limit:
            namespace.put(pending_keys[:chunk_size], np.stack(pending_rows[:chunk_size]))
            del pending_keys[:chunk_size], pending_rows[:chunk_size]

    bar = tqdm(
        total=len(todo), desc=f"features {extractor.name}", unit="img",
        file=sys.stderr, disable=not progress, leave=False,
    )  # fmt: skip
    try:
        with torch.inference_mode():
            for batch in loader:
                if batch.fatal:
                    raise RdbenchError(batch.fatal)
                for pos, reason in batch.errors:
                    fail(pos, reason)
                if batch.tensor is not None:
                    out = extractor.forward(batch.tensor).float().cpu().numpy()
                    if out.shape != (len(batch.positions), extractor.dim):
                        raise RdbenchError(
                            f"{extractor.id}: forward returned shape {out.shape}, expected "
                            f"({len(batch.positions)}, {extractor.dim})"
                        )
                    if not np.isfinite(out).all():
                        bad = [imageset.items[p].key for p, r in zip(batch.positions, out, strict=True)
                               if not np.isfinite(r).all()]  # fmt: skip
                        raise RdbenchError(f"{extractor.id}: non-finite features for {bad[:5]}")
                    for pos, digest, row in zip(batch.positions, batch.hashes, out, strict=True):
                        rows[pos] = row
                        pending_keys.append(digest)
                        pending_rows.append(row)
                    computed += len(batch.positions)
                    flush(limit=chunk_size)
                bar.update(len(batch.positions) + len(batch.errors))
    finally:
        bar.close()
        try:
            flush()  # keep finished rows even when the run is interrupted
        except Exception as exc:  # noqa: BLE001 - never mask the original error
            warnings.warn(f"feature cache: could not save the last rows: {exc}", stacklevel=2)
    return computed
