"""Streaming statistics: any split, merged in any order, equals the one-pass result."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rdbench.errors import RdbenchError
from rdbench.metrics.stats import FeatureStats, mean_and_covariance


def _features(n: int = 600, d: int = 12, offset: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d))
    return rng.standard_normal((n, d)) @ mix + offset + rng.standard_normal(d)


def _random_split(x: np.ndarray, rng: np.random.Generator, parts: int) -> list[np.ndarray]:
    cuts = np.sort(rng.choice(np.arange(1, len(x)), size=parts - 1, replace=False))
    return np.split(x, cuts)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_mean_and_covariance_matches_numpy():
    x = _features()
    mu, sigma = mean_and_covariance(x)
    assert _rel(mu, x.mean(axis=0)) < 1e-13
    assert _rel(sigma, np.cov(x, rowvar=False)) < 1e-12
    assert np.array_equal(sigma, sigma.T)
    _, biased = mean_and_covariance(x, ddof=0)
    assert _rel(biased, np.cov(x, rowvar=False, ddof=0)) < 1e-12


@pytest.mark.parametrize("seed", range(5))
def test_random_splits_merged_in_random_order_equal_one_pass(seed):
    rng = np.random.default_rng(seed)
    x = _features(seed=seed)
    mu, sigma = mean_and_covariance(x)
    shards = [FeatureStats(x.shape[1]).update(part) for part in _random_split(x, rng, 7)]
    while len(shards) > 1:  # merge random pairs, like a reduction tree of random shape
        i, j = sorted(rng.choice(len(shards), size=2, replace=False))
        merged = shards[i].merge(shards[j])
        shards = [s for k, s in enumerate(shards) if k not in (i, j)] + [merged]
    total = shards[0]
    assert total.count == len(x)
    assert _rel(total.mean, mu) < 1e-12
    assert _rel(total.covariance(), sigma) < 1e-12


def test_sequential_updates_with_single_rows_equal_one_pass():
    x = _features(n=50, d=5)
    stats = FeatureStats(5)
    for row in x:
        stats.update(row[None, :])
    assert _rel(stats.covariance(), np.cov(x, rowvar=False)) < 1e-12


def test_large_offset_keeps_precision():
    """Chan's centred update stays accurate where raw sums of x x^T would cancel."""
    x = _features(n=2000, d=4, offset=1e6)
    stats = FeatureStats(4)
    for part in np.array_split(x, 13):
        stats.update(part)
    reference = np.cov(x - x.mean(axis=0), rowvar=False)
    assert _rel(stats.covariance(), reference) < 1e-9
    n, s, ss = stats.to_sums()
    naive = (ss - np.outer(s, s) / n) / (n - 1)
    assert _rel(naive, reference) > 1e-6  # the raw-sum formula loses digits here


def test_merge_returns_new_object_and_leaves_operands_unchanged():
    x = _features(n=40, d=3)
    a = FeatureStats(3).update(x[:10])
    b = FeatureStats(3).update(x[10:])
    a_mean, b_cov = a.mean, b.covariance()
    ab = a.merge(b)
    assert ab is not a and ab is not b
    assert a.count == 10 and b.count == 30 and ab.count == 40
    assert np.array_equal(a.mean, a_mean) and np.array_equal(b.covariance(), b_cov)
    empty = FeatureStats(3)
    assert np.array_equal(empty.merge(ab).covariance(), ab.covariance())
    assert np.array_equal(ab.merge(empty).mean, ab.mean)


def test_all_reduce_of_sums_equals_one_pass():
    x = _features(n=300, d=6)
    shards = [FeatureStats(6).update(part) for part in np.array_split(x, 4)]
    parts = [s.to_sums() for s in shards]
    n = sum(p[0] for p in parts)
    total = FeatureStats.from_sums(n, sum(p[1] for p in parts), sum(p[2] for p in parts))
    mu, sigma = mean_and_covariance(x)
    assert total.count == 300
    assert _rel(total.mean, mu) < 1e-12
    assert _rel(total.covariance(), sigma) < 1e-10


def test_arrays_round_trip_through_npz(tmp_path):
    stats = FeatureStats(4).update(_features(n=30, d=4))
    path = tmp_path / "stats.npz"
    np.savez(path, **stats.to_arrays())
    with np.load(path) as archive:
        back = FeatureStats.from_arrays(archive)
    assert back.count == stats.count
    assert np.array_equal(back.mean, stats.mean)
    assert np.array_equal(back.covariance(), stats.covariance())


def test_torch_input_matches_numpy():
    x = _features(n=20, d=3)
    a = FeatureStats(3).update(torch.from_numpy(x).float())
    b = FeatureStats(3).update(x.astype(np.float32))
    assert np.array_equal(a.covariance(), b.covariance())


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: FeatureStats(0), "dim"),
        (lambda: FeatureStats(3).update(np.ones(3)), "2-D"),
        (lambda: FeatureStats(3).update(np.ones((2, 4))), "dim=3"),
        (lambda: FeatureStats(2).update(np.array([[1.0, np.nan]])), "NaN"),
        (lambda: FeatureStats(2).update(np.array([[1.0, np.inf]])), "NaN or infinite"),
        (lambda: FeatureStats(2).update(np.ones((0, 2))), "0 sample"),
        (lambda: FeatureStats(2).update(np.ones((1, 2))).covariance(), "more than 1"),
        (lambda: FeatureStats(2).mean, "empty"),
        (lambda: FeatureStats(2).merge(FeatureStats(3)), "differ"),
        (lambda: FeatureStats(2).merge(np.ones((2, 2))), "FeatureStats"),
        (lambda: FeatureStats.from_arrays({"mean": np.ones(2)}), "missing"),
        (lambda: mean_and_covariance(np.ones((1, 3))), "at least 2"),
        (lambda: mean_and_covariance(np.ones(5)), "2-D"),
    ],
)
def test_bad_input_raises_rdbench_error(call, match):
    with pytest.raises(RdbenchError, match=match):
        call()


@pytest.mark.parametrize("count", [np.nan, "abc", np.array([1, 2]), 2.7, -1])
def test_bad_saved_counts_are_refused(count):
    arrays = {"count": count, "mean": np.zeros(2), "m2": np.eye(2)}
    with pytest.raises(RdbenchError, match="count must be"):
        FeatureStats.from_arrays(arrays)
