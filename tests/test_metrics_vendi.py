"""Vendi score: closed-form cases, dual vs Gram form, kernel entry point, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rdbench.errors import RdbenchError
from rdbench.metrics.vendi import vendi_from_kernel, vendi_score

ORDERS = [0.5, 1.0, 2.0, math.inf]


def renyi_exp(p: np.ndarray, q: float) -> float:
    """exp of the Renyi entropy of a probability vector, written out per order."""
    p = p[p > 0]
    if q == 1.0:
        return math.exp(-float(np.sum(p * np.log(p))))
    if math.isinf(q):
        return 1.0 / float(p.max())
    return float(np.sum(p**q)) ** (1.0 / (1.0 - q))


@pytest.mark.parametrize("q", ORDERS)
def test_identical_points_give_one(q):
    x = np.tile([[0.3, -1.0, 2.0, 0.5]], (12, 1)) * np.arange(1, 13)[:, None]  # same direction
    assert vendi_score(x, q) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("q", ORDERS)
@pytest.mark.parametrize("n, d", [(5, 5), (4, 9)])
def test_orthogonal_points_give_n(q, n, d):
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
    x = basis[:n] * rng.uniform(0.5, 3.0, size=(n, 1))
    assert vendi_score(x, q) == pytest.approx(n, rel=1e-9)


@pytest.mark.parametrize("q", ORDERS)
def test_two_clusters_by_hand(q):
    """a copies of u and b copies of v with cos(u, v) = c.

    On span{u, v}, X^T X / n maps u -> (a u + b c v) / n and v -> (a c u + b v) / n, so its
    eigenvalues have trace 1 and determinant a b (1 - c^2) / n^2:
    lambda = (1 +- sqrt(1 - 4 a b (1 - c^2) / n^2)) / 2.
    """
    a, b, c = 7, 3, 0.4
    n = a + b
    u = np.array([1.0, 0.0, 0.0])
    v = np.array([c, math.sqrt(1 - c**2), 0.0])
    x = np.vstack([np.tile(u, (a, 1)), np.tile(v, (b, 1))])
    root = math.sqrt(1 - 4 * a * b * (1 - c**2) / n**2)
    expected = renyi_exp(np.array([(1 + root) / 2, (1 - root) / 2]), q)
    assert vendi_score(x, q) == pytest.approx(expected, rel=1e-9)
    # Orthogonal clusters (c = 0): exp(entropy) of the cluster proportions.
    x0 = np.vstack([np.tile(u, (a, 1)), np.tile([0.0, 1.0, 0.0], (b, 1))])
    assert vendi_score(x0, q) == pytest.approx(renyi_exp(np.array([a, b]) / n, q), rel=1e-9)


@pytest.mark.parametrize("q", ORDERS + [0.25, 3.0])
def test_dual_and_gram_forms_and_kernel_agree(q):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 6)) + 0.5  # n > d: the dual d x d form is used
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    gram = xn @ xn.T
    via_kernel = vendi_from_kernel(gram, q)
    assert vendi_score(x, q) == pytest.approx(via_kernel, rel=1e-9)
    # The rank is d = 6: the other 24 eigenvalues are rounding noise (left out: they would add
    # about 1e-3 to the q = 0.25 score).
    top = np.sort(np.linalg.eigvalsh(gram / 30))[-6:]
    assert via_kernel == pytest.approx(renyi_exp(top / top.sum(), q), rel=1e-9)
    tall = rng.normal(size=(4, 50))  # n < d: the n x n Gram form is used
    assert vendi_score(tall, q) == pytest.approx(vendi_from_kernel(_cos(tall), q), rel=1e-9)


def _cos(x: np.ndarray) -> np.ndarray:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    return xn @ xn.T


def test_order_is_monotone_and_bounded():
    x = np.random.default_rng(2).normal(size=(40, 8))
    scores = [vendi_score(x, q) for q in [0.5, 1.0, 2.0, math.inf]]
    assert all(a >= b - 1e-12 for a, b in zip(scores, scores[1:], strict=False))
    assert 1.0 <= scores[-1] and scores[0] <= 8 + 1e-9  # rank bound min(n, d)


def test_kernel_is_scale_free_and_rbf_works():
    x = np.random.default_rng(3).normal(size=(20, 3))
    sq = ((x[:, None] - x[None]) ** 2).sum(-1)
    rbf = np.exp(-sq / 2)
    assert vendi_from_kernel(3.0 * rbf) == pytest.approx(vendi_from_kernel(rbf))
    assert 1.0 < vendi_from_kernel(rbf) < 20.0


@pytest.mark.parametrize(
    "features, message",
    [
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), "infinite"),
        (np.ones(5), "2-D"),
        (np.zeros((0, 3)), "at least 1"),
        (np.array([[1.0, 2.0], [0.0, 0.0]]), "zero norm"),
    ],
)
def test_bad_features(features, message):
    with pytest.raises(RdbenchError, match=message):
        vendi_score(features)


@pytest.mark.parametrize(
    "kernel, message",
    [
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), "NaN"),
        (np.ones(3), "square"),
        (np.ones((2, 3)), "square"),
        (np.array([[1.0, 0.9], [0.1, 1.0]]), "symmetric"),
        (np.array([[1.0, 2.0], [2.0, 1.0]]), "positive semi-definite"),
        (np.zeros((2, 2)), "trace"),
    ],
)
def test_bad_kernel(kernel, message):
    with pytest.raises(RdbenchError, match=message):
        vendi_from_kernel(kernel)


@pytest.mark.parametrize("q", [0, -1.0, float("nan"), "two", None])
def test_bad_order(q):
    with pytest.raises(RdbenchError, match="q must be"):
        vendi_score(np.eye(3), q)


def test_single_sample_is_one():
    assert vendi_score(np.array([[0.2, 0.1]])) == pytest.approx(1.0)


@pytest.mark.parametrize("q", [500.0, 1e4])
def test_large_orders_do_not_underflow(q):
    """sum p^q underflowed to 0 for q >= ~500 (inf returned); the score tends to 1 / max p."""
    x = np.random.default_rng(5).normal(size=(100, 16))
    value = vendi_score(x, q)
    assert np.isfinite(value)
    assert vendi_score(x, float("inf")) <= value <= vendi_score(x, 200.0)


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_row_norms_at_extreme_scales(scale):
    x = np.random.default_rng(6).normal(size=(20, 4))
    assert vendi_score(x * scale) == pytest.approx(vendi_score(x), rel=1e-12)
