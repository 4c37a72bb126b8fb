"""Vendi score (Friedman & Dieng 2023, "The Vendi Score: A Diversity Evaluation Metric for ML").

For n samples with a similarity kernel K (K_ii = 1), let lambda be the eigenvalues of K / n
(non-negative, summing to 1). The Vendi score of order q is the exponential of their Renyi
entropy:

    VS_q = exp(H_q(lambda)),  H_1 = -sum_i lambda_i log lambda_i,
    H_q = log(sum_i lambda_i^q) / (1 - q) for q != 1,  H_inf = -log max_i lambda_i.

It is the "effective number of distinct samples": 1 for n identical samples, n for n mutually
dissimilar (orthogonal) ones. Higher is more diverse.

``vendi_score`` uses the cosine kernel K = X X^T with rows of X L2-normalised. The non-zero
eigenvalues of X X^T / n equal those of the d x d dual X^T X / n, so the cost is
O(n min(n, d)^2) and the n x n matrix is never formed when n > d.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rdbench.errors import RdbenchError
from rdbench.metrics._checks import as_features, as_float64, check_finite


def vendi_score(features: Any, q: float = 1.0) -> float:
    """Vendi score of order ``q`` with the cosine kernel on (n, d) ``features``.

    Rows are L2-normalised (a zero row has no direction and is rejected). Uses the d x d
    dual X^T X / n when n >= d and the n x n Gram matrix X X^T / n otherwise.
    """
    q = _check_order(q)
    x = as_features(features, "features", min_samples=1)
    # Scale each row by its largest |entry| first: norms neither overflow nor underflow.
    peak = check_nonzero_rows(x, "features")
    x = x / peak[:, None]
    x = x / np.linalg.norm(x, axis=1)[:, None]
    n, d = x.shape
    gram = (x.T @ x) if n >= d else (x @ x.T)
    return _vendi_from_eigenvalues(np.linalg.eigvalsh(gram / n), q)


def check_nonzero_rows(x: np.ndarray, name: str) -> np.ndarray:
    """Each row's largest |entry|; a zero row (no direction for the cosine kernel) is refused."""
    peak = np.max(np.abs(x), axis=1)
    zero = np.flatnonzero(peak == 0)
    if zero.size:
        raise RdbenchError(
            f"{name}: {zero.size} row(s) have zero norm (first: row {int(zero[0])}); the "
            "cosine kernel of the Vendi score needs a non-zero feature vector for every sample"
        )
    return peak


def vendi_from_kernel(kernel: Any, q: float = 1.0) -> float:
    """Vendi score of order ``q`` from a user-supplied (n, n) similarity matrix.

    The kernel must be symmetric positive semi-definite; its eigenvalues are divided by its
    trace, which is K / n for the unit-diagonal kernels of the paper.
    """
    q = _check_order(q)
    k = as_float64(kernel, "kernel")
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] < 1:
        raise RdbenchError(f"kernel: expected a square (n, n) matrix, got shape {k.shape}")
    check_finite(k, "kernel")
    scale = max(float(np.max(np.abs(k))), 1e-300)
    if float(np.max(np.abs(k - k.T))) > 1e-8 * scale:
        raise RdbenchError("kernel: the similarity matrix is not symmetric")
    trace = float(np.trace(k))
    if trace <= 0:
        raise RdbenchError(f"kernel: trace is {trace}; a similarity kernel has K_ii > 0")
    eig = np.linalg.eigvalsh(k / trace)
    if eig.min() < -1e-8 * max(eig.max(), 0.0) - 1e-12:
        raise RdbenchError(
            f"kernel: not positive semi-definite (smallest eigenvalue {eig.min():.3g} of K / "
            "trace(K)); use a positive semi-definite similarity such as a cosine or RBF kernel"
        )
    return _vendi_from_eigenvalues(eig, q)


def _vendi_from_eigenvalues(eig: np.ndarray, q: float) -> float:
    """exp(Renyi entropy of order q) of eigenvalues normalised to sum to 1."""
    eig = np.clip(eig, 0.0, None)
    eig = eig / eig.sum()
    # Drop eigenvalues that are rounding noise: they would inflate the q < 1 entropies.
    p = eig[eig > eig.max() * eig.size * np.finfo(np.float64).eps]
    if math.isinf(q):
        return float(1.0 / p.max())
    if q == 1.0:
        return float(np.exp(-np.sum(p * np.log(p))))
    # sum p^q = pmax^q sum (p / pmax)^q: no underflow to 0 for large q
    pmax = p.max()
    log_sum = q * np.log(pmax) + np.log(np.sum((p / pmax) ** q))
    return float(np.exp(log_sum / (1.0 - q)))


def _check_order(q: Any) -> float:
    try:
        q = float(q)
    except (TypeError, ValueError):
        raise RdbenchError(f"q must be a number > 0 or math.inf, got {q!r}") from None
    if not (q > 0):  # also rejects NaN
        raise RdbenchError(f"q must be > 0 (0.5, 1, 2 or math.inf are common), got {q!r}")
    return q
