"""SCD and d_Eig: hand-computed spectra, the paper's Frobenius form, invariances, top_k."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rdbench.errors import RdbenchError
from rdbench.metrics.scd import (
    covariance_spectrum,
    feature_spectrum,
    scd_from_covariances,
    sorted_eigenvalue_distance,
    sorted_eigenvalue_distance_from_covariances,
    spectral_covariance_distance,
)

# diag(3, 1, 2) vs diag(1, 0.5, 1): sorted spectra (3, 2, 1) and (1, 1, 0.5).
_D1, _D2 = np.diag([3.0, 1.0, 2.0]), np.diag([1.0, 0.5, 1.0])


def _features(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d))


def _rotation(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def test_diagonal_covariances_by_hand():
    assert scd_from_covariances(_D1, _D2) == pytest.approx(2.0**2 + 1.0**2 + 0.5**2, rel=1e-12)
    expected = (np.sqrt(3) - 1) ** 2 + (np.sqrt(2) - 1) ** 2 + (1 - np.sqrt(0.5)) ** 2
    assert sorted_eigenvalue_distance_from_covariances(_D1, _D2) == pytest.approx(
        expected, rel=1e-12
    )


def test_top_k_keeps_the_largest_eigenvalues():
    assert scd_from_covariances(_D1, _D2, top_k=1) == pytest.approx(4.0, rel=1e-12)
    assert scd_from_covariances(_D1, _D2, top_k=2) == pytest.approx(5.0, rel=1e-12)
    assert scd_from_covariances(_D1, _D2, top_k=3) == scd_from_covariances(_D1, _D2)
    a, b = _features(100, 8, 0), _features(100, 8, 1)
    l1, l2 = feature_spectrum(a), feature_spectrum(b)
    assert spectral_covariance_distance(a, b, top_k=3) == pytest.approx(
        float(np.sum((l1[:3] - l2[:3]) ** 2)), rel=1e-12
    )
    assert sorted_eigenvalue_distance(a, b, top_k=3) == pytest.approx(
        float(np.sum((np.sqrt(l1[:3]) - np.sqrt(l2[:3])) ** 2)), rel=1e-12
    )


def test_equals_the_papers_frobenius_form():
    """SCD = ||V2 diag(lambda_1) V2^T - Sigma_2||_F^2 with both spectra sorted descending."""
    a, b = _features(200, 10, 2), _features(150, 10, 3)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    lam1 = np.sort(np.linalg.eigvalsh(s1))[::-1]
    lam2, v2 = np.linalg.eigh(s2)
    v2 = v2[:, ::-1]  # descending, like lam1
    aligned = (v2 * lam1) @ v2.T
    expected = float(np.sum((aligned - s2) ** 2))
    assert _rel(scd_from_covariances(s1, s2), expected) < 1e-9
    assert _rel(spectral_covariance_distance(a, b), expected) < 1e-9


def test_invariant_to_rotation_and_translation_of_either_set():
    d = 16
    a, b = _features(300, d, 4), _features(200, d, 5)
    base = spectral_covariance_distance(a, b)
    moved = a @ _rotation(d, 6) + 5.0 * np.random.default_rng(7).standard_normal(d)
    assert _rel(spectral_covariance_distance(moved, b), base) < 1e-9
    assert _rel(spectral_covariance_distance(b, moved), base) < 1e-9
    assert _rel(sorted_eigenvalue_distance(moved, b), sorted_eigenvalue_distance(a, b)) < 1e-9


def test_sensitive_to_a_change_of_spread():
    a = _features(300, 6, 8)
    assert spectral_covariance_distance(a, a) == 0.0
    assert spectral_covariance_distance(a, 2.0 * a) == pytest.approx(
        float(np.sum((3.0 * feature_spectrum(a)) ** 2)), rel=1e-12
    )  # eigenvalues scale by 4: (4 l - l)^2


@pytest.mark.parametrize("n", [5, 12, 40])  # N < d (Gram path), N ~ d, N > d
def test_feature_spectrum_matches_covariance_eigenvalues(n):
    d = 12
    x = _features(n, d, 9)
    expected = np.sort(np.clip(np.linalg.eigvalsh(np.cov(x, rowvar=False)), 0, None))[::-1]
    got = feature_spectrum(x)
    assert got.shape == (d,)
    assert np.all(np.diff(got) <= 0) and np.all(got >= 0)
    assert np.max(np.abs(got - expected)) < 1e-10 * expected[0]
    assert np.max(np.abs(covariance_spectrum(np.cov(x, rowvar=False)) - expected)) < 1e-12


def test_torch_input_matches_numpy():
    a, b = _features(50, 4, 10), _features(50, 4, 11)
    assert spectral_covariance_distance(torch.from_numpy(a), torch.from_numpy(b)) == (
        spectral_covariance_distance(a, b)
    )


_X = _features(10, 3, 12)
_NAN = _X.copy()
_NAN[1, 1] = np.nan
_INF = _X.copy()
_INF[3, 0] = np.inf


@pytest.mark.parametrize(
    "fn", [spectral_covariance_distance, sorted_eigenvalue_distance], ids=["scd", "deig"]
)
@pytest.mark.parametrize(
    "a, b, kwargs, match",
    [
        (_NAN, _X, {}, "NaN"),
        (_X, _INF, {}, "NaN or infinite"),
        (_X[0], _X, {}, "2-D"),
        (_X, _X[:, :2], {}, "dimensions differ"),
        (_X[:1], _X, {}, "at least 2"),
        (_X, _X, {"top_k": 0}, "top_k"),
        (_X, _X, {"top_k": 4}, "exceeds the feature dimension 3"),
        (_X, _X, {"top_k": 1.5}, "top_k"),
    ],
)
def test_bad_features_raise_rdbench_error(fn, a, b, kwargs, match):
    with pytest.raises(RdbenchError, match=match):
        fn(a, b, **kwargs)


@pytest.mark.parametrize(
    "fn",
    [scd_from_covariances, sorted_eigenvalue_distance_from_covariances],
    ids=["scd", "deig"],
)
@pytest.mark.parametrize(
    "s1, s2, match",
    [
        (np.eye(3), np.eye(4), "dimensions differ"),
        (np.ones((3, 2)), np.eye(3), "square"),
        (np.triu(np.ones((3, 3))), np.eye(3), "symmetric"),
        (np.diag([1.0, np.nan, 1.0]), np.eye(3), "NaN"),
        (np.eye(3), np.diag([1.0, np.inf, 1.0]), "NaN"),
        (np.ones(3), np.eye(3), "square"),
        (np.eye(3), -np.eye(3), "sigma2: .* not positive semi-definite"),
    ],
)
def test_bad_covariances_raise_rdbench_error(fn, s1, s2, match):
    with pytest.raises(RdbenchError, match=match):
        fn(s1, s2)
