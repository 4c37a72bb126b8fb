"""FID: closed form for Gaussians, exact parity with clean-fid and torch-fidelity, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
import torch
from cleanfid.fid import frechet_distance as cleanfid_frechet
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

from rdbench.errors import RdbenchError
from rdbench.metrics.fid import (
    fid_from_features,
    fid_from_stats,
    frechet_distance,
    trace_sqrt_product,
)
from rdbench.metrics.stats import FeatureStats, mean_and_covariance


def _sqrtm_reference(mu1, s1, mu2, s2) -> float:
    """Textbook FID with a general float64 matrix square root (real part)."""
    covmean = sla.sqrtm(s1 @ s2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def _spd(d: int, rng: np.random.Generator, eps: float = 0.1) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T / d + eps * np.eye(d)


def _stats(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return mean_and_covariance(rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + seed)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def test_agrees_with_sqrtm_reference_on_well_conditioned_input():
    rng = np.random.default_rng(0)
    d = 32
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _spd(d, rng), _spd(d, rng)
    assert _rel(frechet_distance(mu1, s1, mu2, s2), _sqrtm_reference(mu1, s1, mu2, s2)) < 1e-9


@pytest.mark.parametrize("n", [2_000, 200_000])
def test_samples_converge_to_closed_form_of_the_gaussians(n):
    """Sample FID -> closed form at rate O(1/sqrt(N)); the tolerance scales the same way."""
    rng = np.random.default_rng(1)
    d = 3
    m1, m2 = np.array([0.0, 1.0, -1.0]), np.array([0.5, 0.0, 0.0])
    s1, s2 = _spd(d, rng, eps=0.5), _spd(d, rng, eps=0.2)
    truth = _sqrtm_reference(m1, s1, m2, s2)
    a = rng.multivariate_normal(m1, s1, size=n)
    b = rng.multivariate_normal(m2, s2, size=n)
    scale = np.trace(s1) + np.trace(s2) + np.sum((m1 - m2) ** 2)
    assert abs(fid_from_features(a, b) - truth) < 10 * scale / np.sqrt(n)


def test_fid_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(2).standard_normal((500, 64))
    mu, sigma = mean_and_covariance(x)
    assert frechet_distance(mu, sigma, mu, sigma) < 1e-8 * np.trace(sigma)
    assert fid_from_features(x, x) < 1e-8 * np.trace(sigma)


def test_equal_covariances_give_squared_mean_distance():
    rng = np.random.default_rng(3)
    d = 16
    s = _spd(d, rng)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    expected = float(np.sum((mu1 - mu2) ** 2))
    assert _rel(frechet_distance(mu1, s, mu2, s), expected) < 1e-9


def test_diagonal_covariances_closed_form():
    """tr((S1 S2)^(1/2)) = sum sqrt(a_i b_i) for diagonal S1 = diag(a), S2 = diag(b)."""
    a, b = np.array([1.0, 4.0, 9.0, 0.25]), np.array([4.0, 1.0, 1.0, 1.0])
    assert _rel(trace_sqrt_product(np.diag(a), np.diag(b)), float(np.sum(np.sqrt(a * b)))) < 1e-12
    expected = float(np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))
    assert (
        _rel(frechet_distance(np.zeros(4), np.diag(a), np.zeros(4), np.diag(b)), expected) < 1e-12
    )


def test_tiny_but_real_eigenvalues_of_a_regular_pair_are_kept():
    """A product eigenvalue a_i b_i = 1e-16 (below size * eps * max) still adds 1e-8 to the
    trace; dropping it as round-off would be a 2e-8 relative error here."""
    a, b = np.array([1.0, 4.0, 1e-8]), np.array([1.0, 1.0, 1e-8])
    value = frechet_distance(np.zeros(3), np.diag(a), np.zeros(3), np.diag(b))
    assert _rel(value, float(np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))) < 1e-12


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # clean-fid's sqrtm(disp=...)
@pytest.mark.parametrize("d", [8, 64])
def test_parity_with_cleanfid_and_torch_fidelity(d):
    mu1, s1 = _stats(4 * d, d, seed=4)
    mu2, s2 = _stats(4 * d, d, seed=5)
    ours = frechet_distance(mu1, s1, mu2, s2)
    clean = float(cleanfid_frechet(mu1, s1, mu2, s2))
    tfid = fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, False)
    assert _rel(ours, clean) < 1e-9
    assert _rel(ours, tfid[KEY_METRIC_FID]) < 1e-9


def test_symmetric_in_its_arguments():
    mu1, s1 = _stats(100, 10, seed=6)
    mu2, s2 = _stats(100, 10, seed=7)
    assert _rel(frechet_distance(mu1, s1, mu2, s2), frechet_distance(mu2, s2, mu1, s1)) < 1e-10


@pytest.mark.parametrize("n", [20, 50])  # N <= d = 50: rank N - 1 < d
def test_singular_covariance_is_finite_and_matches_sqrtm(n):
    rng = np.random.default_rng(8)
    d = 50
    a = rng.standard_normal((n, d))
    b = rng.standard_normal((400, d)) * 0.7 + 0.1
    mu1, s1 = mean_and_covariance(a)
    mu2, s2 = mean_and_covariance(b)
    assert np.linalg.matrix_rank(s1) == n - 1
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(ours) and ours >= 0
    assert _rel(ours, _sqrtm_reference(mu1, s1, mu2, s2)) < 1e-6
    assert _rel(frechet_distance(mu2, s2, mu1, s1), ours) < 1e-6


@pytest.mark.parametrize(("n1", "n2"), [(20, 400), (400, 30), (12, 25), (49, 49)])
def test_few_samples_use_the_exact_gram_route(n1, n2):
    """min(N1, N2) < d: the N1 x N2 singular-value route equals the covariance routes."""
    rng = np.random.default_rng(n1 + n2)
    d = 50
    a = rng.standard_normal((n1, d)) @ _spd(d, rng)
    b = rng.standard_normal((n2, d)) * 0.7 + 0.1
    ours = fid_from_features(a, b)
    mu1, s1 = mean_and_covariance(a)
    mu2, s2 = mean_and_covariance(b)
    assert _rel(ours, _sqrtm_reference(mu1, s1, mu2, s2)) < 1e-6
    assert _rel(ours, frechet_distance(mu1, s1, mu2, s2)) < 1e-7
    assert _rel(fid_from_features(b, a), ours) < 1e-12
    assert fid_from_features(a, a) < 1e-9 * ours


def test_exactly_rank_deficient_covariance_uses_the_eigh_fallback():
    """S1 with exact zero eigenvalues: Cholesky fails and the symmetric root must be used."""
    rng = np.random.default_rng(9)
    d, r = 12, 4
    v = np.linalg.qr(rng.standard_normal((d, d)))[0]
    w = np.concatenate([rng.uniform(1, 2, r), np.zeros(d - r)])
    s1 = (v * w) @ v.T
    s1 = (s1 + s1.T) / 2
    with pytest.raises(sla.LinAlgError):
        sla.cholesky(s1, lower=True)
    s2 = _spd(d, rng)
    # tr((S1 S2)^(1/2)) = sum of sqrt of the r non-zero eigenvalues of S1^(1/2) S2 S1^(1/2)
    root = (v * np.sqrt(w)) @ v.T
    expected = float(np.sum(np.sqrt(np.linalg.eigvalsh(root @ s2 @ root)[-r:])))
    assert _rel(trace_sqrt_product(s1, s2), expected) < 1e-9


def test_from_stats_and_torch_inputs_match_from_features():
    rng = np.random.default_rng(10)
    a, b = rng.standard_normal((80, 6)), rng.standard_normal((60, 6)) + 0.3
    expected = fid_from_features(a, b)
    sa, sb = FeatureStats(6).update(a[:30]).update(a[30:]), FeatureStats(6).update(b)
    assert _rel(fid_from_stats(sa, sb), expected) < 1e-10
    assert _rel(fid_from_features(torch.from_numpy(a), torch.from_numpy(b)), expected) < 1e-12


_rng = np.random.default_rng(11)
_X = _rng.standard_normal((10, 3))
_MU, _S = np.zeros(3), np.eye(3)
_NAN = _X.copy()
_NAN[2, 1] = np.nan
_INF = _X.copy()
_INF[0, 0] = -np.inf


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: fid_from_features(_NAN, _X), "NaN"),
        (lambda: fid_from_features(_X, _INF), "NaN or infinite"),
        (lambda: fid_from_features(_X[0], _X), "2-D"),
        (lambda: fid_from_features(_X, _X[:, :2]), "dimensions differ"),
        (lambda: fid_from_features(_X[:1], _X), "at least 2"),
        (lambda: fid_from_features(_X, np.ones((0, 3))), "at least 2"),
        (lambda: frechet_distance(_MU, _S, np.zeros(4), np.eye(4)), "dimensions differ"),
        (lambda: frechet_distance(_MU, np.eye(4), _MU, _S), r"\(3, 3\)"),
        (lambda: frechet_distance(_MU, np.ones((3, 2)), _MU, _S), "square"),
        (lambda: frechet_distance(_MU, _S, _MU, np.triu(np.ones((3, 3)))), "symmetric"),
        (lambda: frechet_distance(_MU, -_S, _MU, _S), "sigma1: .* not positive semi-definite"),
        (lambda: frechet_distance(_MU, _S, _MU, -_S), "sigma2: .* not positive semi-definite"),
        (lambda: frechet_distance(np.array([0, np.nan, 0]), _S, _MU, _S), "NaN"),
        (lambda: frechet_distance(_MU, np.diag([1.0, np.inf, 1.0]), _MU, _S), "NaN"),
        (lambda: frechet_distance(np.zeros((1, 3)), _S, _MU, _S), "1-D"),
        (lambda: fid_from_stats(FeatureStats(3), FeatureStats(3)), "empty"),
        (lambda: fid_from_stats(_X, _X), "FeatureStats"),
    ],
)
def test_bad_input_raises_rdbench_error(call, match):
    with pytest.raises(RdbenchError, match=match):
        call()


@pytest.mark.parametrize("scale", [1e-120, 1e-90, 1e80, 1e150])
def test_extreme_feature_scales_are_rescaled(scale):
    """FID(c x, c y) = c^2 FID(x, y): products of huge or tiny features neither overflow nor
    underflow (1e-90 was off by 17x, 1e80 raised from the eigen-solver)."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(300, 16)), rng.normal(size=(300, 16)) + 0.3
    expected = fid_from_features(a, b)
    assert fid_from_features(a * scale, b * scale) / scale**2 == pytest.approx(expected, rel=1e-9)
    mu1, mu2 = a.mean(0) * scale, b.mean(0) * scale
    s1, s2 = np.cov(a.T) * scale**2, np.cov(b.T) * scale**2
    if np.all(np.isfinite(s1)) and np.all(s1[np.diag_indices(16)] > 0):
        assert frechet_distance(mu1, s1, mu2, s2) / scale**2 == pytest.approx(expected, rel=1e-9)


def test_complex_input_is_refused():
    x = np.ones((4, 2), dtype=complex)
    with pytest.raises(RdbenchError, match="complex"):
        fid_from_features(x, x)
