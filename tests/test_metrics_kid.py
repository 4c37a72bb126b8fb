"""KID: brute-force unbiased MMD^2, parity with torch-fidelity on the same subsets, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch_fidelity.metric_kid import (
    KEY_METRIC_KID_MEAN,
    KEY_METRIC_KID_STD,
    kid_features_to_metric,
)

from rdbench.errors import RdbenchError
from rdbench.metrics.kid import kernel_inception_distance, mmd2_unbiased


def _brute_force_mmd2(x, y, degree=3, gamma=None, coef0=1.0) -> float:
    """Textbook unbiased MMD^2 with explicit double loops over pairs."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma

    def k(u, v):
        return (gamma * float(np.dot(u, v)) + coef0) ** degree

    m, n = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


def _pair(n1: int = 60, n2: int = 50, d: int = 8, shift: float = 0.5, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n1, d)), rng.standard_normal((n2, d)) + shift


@pytest.mark.parametrize(
    "kwargs", [{}, {"degree": 2, "gamma": 0.3, "coef0": 0.5}, {"degree": 1, "coef0": 0.0}]
)
def test_mmd2_matches_brute_force_with_unequal_sizes(kwargs):
    x, y = _pair(n1=13, n2=9, d=5)
    assert mmd2_unbiased(x, y, **kwargs) == pytest.approx(
        _brute_force_mmd2(x, y, **kwargs), rel=1e-10
    )


def test_linear_kernel_mmd2_is_unbiased_squared_mean_distance():
    """degree 1, coef0 0: MMD^2_u = ||mean x||^2 + ||mean y||^2 - 2 <mean x, mean y> minus
    the diagonal terms, i.e. (|sum x|^2 - sum |x_i|^2) / (m(m-1)) + ... (closed form)."""
    x, y = _pair(n1=20, n2=30, d=4)
    m, n = len(x), len(y)
    sx, sy = x.sum(0), y.sum(0)
    expected = (
        (sx @ sx - np.sum(x * x)) / (m * (m - 1))
        + (sy @ sy - np.sum(y * y)) / (n * (n - 1))
        - 2 * (sx @ sy) / (m * n)
    )
    assert mmd2_unbiased(x, y, degree=1, gamma=1.0, coef0=0.0) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 2020])
def test_parity_with_torch_fidelity_on_the_same_subsets(seed):
    x, y = _pair(n1=80, n2=70, d=16)
    mean, std = kernel_inception_distance(x, y, subsets=7, subset_size=40, seed=seed)
    ref = kid_features_to_metric(
        torch.from_numpy(x),
        torch.from_numpy(y),
        kid_subsets=7,
        kid_subset_size=40,
        rng_seed=seed,
        verbose=False,
    )
    assert mean == pytest.approx(ref[KEY_METRIC_KID_MEAN], rel=1e-12)
    assert std == pytest.approx(ref[KEY_METRIC_KID_STD], rel=1e-12)


def test_same_distribution_is_near_zero_and_a_shift_is_not():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 8))
    fresh, fresh_std = kernel_inception_distance(
        x, rng.standard_normal((400, 8)), subsets=10, subset_size=100
    )
    same, _ = kernel_inception_distance(x, x, subsets=10, subset_size=100)
    shifted, shifted_std = kernel_inception_distance(x, x + 0.5, subsets=10, subset_size=100)
    assert abs(fresh) < 2 * fresh_std  # unbiased: 0 within the subset-to-subset spread
    assert shifted > 5 * shifted_std
    # x vs x: subsets share rows, whose self-similarity k(x_i, x_i) enters the cross term,
    # so the estimate is slightly negative; still small against a real difference.
    assert abs(same) < 0.1 * shifted


def test_full_subsets_equal_mmd2_of_the_sets():
    """subset_size = N draws every row (in some order): each subset's MMD^2 is the full one."""
    x, y = _pair(n1=30, n2=30)
    mean, std = kernel_inception_distance(x, y, subsets=3, subset_size=30)
    assert mean == pytest.approx(mmd2_unbiased(x, y), rel=1e-12)
    assert std < 1e-12 * abs(mean)


def test_seeded_and_deterministic():
    x, y = _pair()
    a = kernel_inception_distance(x, y, subsets=4, subset_size=20, seed=3)
    assert a == kernel_inception_distance(x, y, subsets=4, subset_size=20, seed=3)
    assert a != kernel_inception_distance(x, y, subsets=4, subset_size=20, seed=4)
    assert a == kernel_inception_distance(
        torch.from_numpy(x), torch.from_numpy(y), subsets=4, subset_size=20, seed=3
    )


def test_subset_size_larger_than_a_set_names_both_numbers():
    x, y = _pair(n1=60, n2=50)
    with pytest.raises(RdbenchError, match=r"subset_size=55 .*reference: 60, generated: 50"):
        kernel_inception_distance(x, y, subset_size=55)


_X, _Y = _pair(n1=10, n2=10, d=3)
_NAN = _X.copy()
_NAN[0, 2] = np.nan
_INF = _X.copy()
_INF[4, 1] = np.inf


@pytest.mark.parametrize(
    "a, b, kwargs, match",
    [
        (_NAN, _Y, {}, "NaN"),
        (_X, _INF, {}, "NaN or infinite"),
        (_X[0], _Y, {}, "2-D"),
        (_X, _Y[:, :2], {}, "dimensions differ"),
        (_X[:1], _Y, {}, "at least 2"),
        (_X, _Y, {"gamma": -1.0}, "gamma"),
        (_X, _Y, {"gamma": float("nan")}, "gamma"),
        (_X, _Y, {"coef0": float("inf")}, "coef0"),
        (_X, _Y, {"degree": 0}, "degree"),
    ],
)
@pytest.mark.parametrize("fn", ["mmd2", "kid"])
def test_bad_input_raises_rdbench_error(fn, a, b, kwargs, match):
    with pytest.raises(RdbenchError, match=match):
        if fn == "mmd2":
            mmd2_unbiased(a, b, **kwargs)
        else:
            kernel_inception_distance(a, b, subsets=2, subset_size=2, **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"subsets": 0}, "subsets"),
        ({"subset_size": 1}, "subset_size must be an integer >= 2"),
        ({"seed": -1}, "seed"),
        ({"subset_size": 2.5}, "subset_size"),
    ],
)
def test_bad_kid_options_raise_rdbench_error(kwargs, match):
    with pytest.raises(RdbenchError, match=match):
        kernel_inception_distance(_X, _Y, **{"subsets": 2, "subset_size": 5, **kwargs})


def test_seed_beyond_numpy_range_is_a_clear_error():
    x = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(RdbenchError, match="below 2\\*\\*32"):
        kernel_inception_distance(x, x, subsets=2, subset_size=5, seed=2**32)
