"""Feature cache: hit, miss, changed file, interrupted run resumed, corrupt chunk, info/clear."""

from __future__ import annotations

import numpy as np
import pytest
from imagegen import draw_image, encode, make_plain_folder
from tiny_models import make_inception

from rdbench.errors import RdbenchError
from rdbench.features import load_extractor
from rdbench.features.base import FeatureExtractor
from rdbench.features.cache import FeatureCache
from rdbench.features.extract import extract_features
from rdbench.imageset import ImageSet


@pytest.fixture(scope="module")
def weights_path(tmp_path_factory):
    return make_inception(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def extractor(weights_path):
    return load_extractor("inception", weights=str(weights_path), device="cpu")


@pytest.fixture
def folder(tmp_path):
    return make_plain_folder(tmp_path / "imgs", 10, size=(40, 40))


class Flaky(FeatureExtractor):
    """The real extractor, except that forward call number ``fail_at`` raises."""

    def __init__(self, inner: FeatureExtractor, fail_at: int) -> None:
        self.inner, self.fail_at, self.calls = inner, fail_at, 0
        for attr in ("name", "id", "input_size", "resize_mode", "dim", "default_metrics"):
            setattr(self, attr, getattr(inner, attr))
        self.preprocessor, self.device = inner.preprocessor, inner.device

    def forward(self, batch):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.inner.forward(batch)


def run(folder, ext, **kw):
    kw.setdefault("progress", False)
    return extract_features(ImageSet.open(folder), ext, **kw)


def test_hit_miss_and_equal_rows(extractor, folder):
    cold = run(folder, extractor, batch_size=4)
    assert (cold.n_cached, cold.n_computed) == (0, 10)
    warm = run(folder, extractor, batch_size=3)
    assert (warm.n_cached, warm.n_computed) == (10, 0)
    assert warm.keys == cold.keys
    np.testing.assert_array_equal(warm.array, cold.array)
    uncached = run(folder, extractor, cache=False)
    assert (uncached.n_cached, uncached.n_computed) == (0, 10)
    np.testing.assert_allclose(uncached.array, cold.array, rtol=1e-6, atol=1e-6)


def test_changed_file_is_recomputed(extractor, folder):
    first = run(folder, extractor)
    (folder / "img_003.png").write_bytes(encode(draw_image(5, 99, size=(40, 40))))
    second = run(folder, extractor)
    assert (second.n_cached, second.n_computed) == (9, 1)
    changed = second.keys.index("img_003.png")
    assert not np.allclose(second.array[changed], first.array[changed])
    fresh = run(folder, extractor, cache=False)
    np.testing.assert_allclose(second.array, fresh.array, rtol=1e-6, atol=1e-6)


def test_interrupted_run_resumes(extractor, folder):
    flaky = Flaky(extractor, fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        run(folder, flaky, batch_size=2, chunk_size=2)
    resumed = run(folder, extractor, batch_size=2)
    assert (resumed.n_cached, resumed.n_computed) == (4, 6)  # two finished batches were kept
    np.testing.assert_allclose(
        resumed.array, run(folder, extractor, cache=False).array, rtol=1e-6, atol=1e-6
    )


def test_corrupt_chunk_is_detected_and_rebuilt(extractor, folder, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    good = run(folder, extractor, cache=cache, chunk_size=4)
    chunks = sorted((cache.root).rglob("chunk-*.npz"))
    assert len(chunks) == 3
    n_bad = 0
    for chunk in chunks[:2]:
        with np.load(chunk) as data:
            parts = {k: data[k] for k in data.files}
        n_bad += len(parts["keys"])
    chunks[0].write_bytes(chunks[0].read_bytes()[:-50])  # truncated
    parts["features"] = parts["features"] + 1.0  # valid npz, tampered values, stale checksum
    np.savez(chunks[1], **parts)
    with pytest.warns(UserWarning, match="corrupt chunk"):
        again = run(folder, extractor, cache=cache)
    assert (again.n_cached, again.n_computed) == (10 - n_bad, n_bad)
    np.testing.assert_allclose(again.array, good.array, rtol=1e-6, atol=1e-6)
    assert not chunks[0].exists() and not chunks[1].exists()
    assert run(folder, extractor, cache=cache).n_cached == 10


def test_namespace_separates_resize_modes(extractor, weights_path, folder, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    run(folder, extractor, cache=cache)
    legacy = load_extractor(
        "inception", weights=str(weights_path), device="cpu",
        resize_mode="legacy_pytorch",
    )  # fmt: skip
    assert run(folder, legacy, cache=cache).n_cached == 0
    info = cache.info()
    assert len(info) == 2 and all(i.entries == 10 and i.extractor == "inception" for i in info)
    assert {i.namespace.split("|")[1] for i in info} == {"clean@299", "legacy_pytorch@299"}
    assert cache.clear(extractor="clip") == 0
    assert cache.clear(extractor="inception") == 2 and cache.info() == []


def test_bad_image_skip_and_raise(extractor, folder):
    (folder / "img_005.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(RdbenchError, match="img_005.png"):
        run(folder, extractor, cache=False)
    res = run(folder, extractor, on_error="skip", batch_size=4)
    assert len(res.keys) == 9 and "img_005.png" not in res.keys
    assert [k for k, _ in res.skipped] == ["img_005.png"]
    assert res.array.shape == (9, 2048)


def test_identical_files_computed_once(extractor, tmp_path):
    folder = make_plain_folder(tmp_path / "dup", 3, size=(32, 32))
    (folder / "img_009.png").write_bytes((folder / "img_000.png").read_bytes())
    res = run(folder, extractor)
    assert (res.n_computed, len(res.keys)) == (3, 4)
    np.testing.assert_array_equal(res.array[0], res.array[3])


def test_bad_arguments(extractor, folder):
    with pytest.raises(RdbenchError, match="on_error"):
        run(folder, extractor, on_error="ignore")
    with pytest.raises(RdbenchError, match="batch_size"):
        run(folder, extractor, batch_size=0)


def test_get_reads_only_the_chunks_holding_the_asked_keys(tmp_path, monkeypatch):
    """The first use reads every chunk's keys only; rows come from the chunks that hold them,
    so a small evaluation does not load (and verify) a large cache."""
    import rdbench.features.cache as cache_mod

    store = FeatureCache(tmp_path / "cache")
    ns = store.namespace("ns", dim=3, extractor="x")
    keys = [[f"{c}{i}".rjust(64, "0") for i in range(4)] for c in "abc"]
    for c, chunk_keys in enumerate(keys):
        ns.put(chunk_keys, np.full((4, 3), float(c), dtype=np.float32))
    reads = []
    real = cache_mod.read_chunk
    monkeypatch.setattr(cache_mod, "read_chunk", lambda p, d: reads.append(p) or real(p, d))
    fresh = store.namespace("ns", dim=3, extractor="x")
    assert len(fresh) == 12 and reads == []  # keys only
    rows = fresh.get([keys[1][2], keys[1][0], "f" * 64])
    assert list(rows) == [keys[1][2], keys[1][0]] and len(reads) == 1
    assert all(np.array_equal(r, np.ones(3, dtype=np.float32)) for r in rows.values())
