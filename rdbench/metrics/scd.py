"""Spectral Covariance Distance (SCD) and the sorted-eigenvalue distance d_Eig.

SCD (arXiv 2409.06493, "Elucidating Optimal Reward-Diversity Tradeoffs in Text-to-Image
Diffusion Models") compares the spread of two feature sets while ignoring where they sit
(means) and how they are oriented (eigenvectors). With the eigenvalues of each covariance
sorted in descending order and ``Sigma_1' = V_2 diag(lambda_1) V_2^T``,

    SCD = ||Sigma_1' - Sigma_2||_F^2 = sum_i (lambda_1^(i) - lambda_2^(i))^2.

Lower is better (0: same spectrum); it is symmetric in the two sets. ``top_k`` keeps the
k largest eigenvalues of each spectrum (the paper's choice is not known; default: all).

d_Eig (sorted eigenvalue comparison, NeurIPS 2022 DistShift workshop) is a different, named
option: ``sum_j (sqrt(lambda_1j) - sqrt(lambda_2j))^2`` on the same sorted spectra.

Eigenvalues come from ``eigvalsh`` (symmetric solver) and are clipped at 0 for round-off.
From features, the spectrum is computed from whichever of ``Xc^T Xc`` (d x d) and
``Xc Xc^T`` (N x N) is smaller (they share their non-zero eigenvalues) and zero-padded to d.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg as sla

from rdbench.errors import RdbenchError
from rdbench.metrics._checks import as_covariance, as_features, check_positive_int, check_same_dim
from rdbench.metrics.fid import check_psd_eigenvalues


def _descending(eig: np.ndarray, dim: int) -> np.ndarray:
    """Clip round-off negatives, sort descending, zero-pad to ``dim``."""
    out = np.zeros(dim, dtype=np.float64)
    out[: eig.size] = np.sort(np.clip(eig, 0.0, None))[::-1]
    return out


def covariance_spectrum(sigma: Any, name: str = "sigma") -> np.ndarray:
    """Eigenvalues of a symmetric PSD covariance (d, d), clipped at 0, sorted descending."""
    s = as_covariance(sigma, name)
    eig = sla.eigvalsh(s, check_finite=False)
    check_psd_eigenvalues(eig, name)
    return _descending(eig, s.shape[0])


def feature_spectrum(features: Any, name: str = "features") -> np.ndarray:
    """Eigenvalues (d,) of the unbiased covariance of (N, d) features, sorted descending."""
    x = as_features(features, name)
    n, d = x.shape
    xc = x - x.mean(axis=0)
    gram = xc @ xc.T if n < d else xc.T @ xc
    return _descending(sla.eigvalsh(gram, check_finite=False) / (n - 1), d)


def _truncate(l1: np.ndarray, l2: np.ndarray, top_k: int | None) -> tuple[np.ndarray, np.ndarray]:
    if l1.size != l2.size:
        raise RdbenchError(
            f"feature dimensions differ: {l1.size} vs {l2.size}; both sets must come from the "
            "same feature extractor"
        )
    if top_k is None:
        return l1, l2
    k = check_positive_int(top_k, "top_k")
    if k > l1.size:
        raise RdbenchError(f"top_k={k} exceeds the feature dimension {l1.size}; use k <= d")
    return l1[:k], l2[:k]


def _scd(l1: np.ndarray, l2: np.ndarray, top_k: int | None) -> float:
    l1, l2 = _truncate(l1, l2, top_k)
    return float(np.sum((l1 - l2) ** 2))


def _deig(l1: np.ndarray, l2: np.ndarray, top_k: int | None) -> float:
    l1, l2 = _truncate(l1, l2, top_k)
    return float(np.sum((np.sqrt(l1) - np.sqrt(l2)) ** 2))


def _feature_spectra(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    x = as_features(a, "a")
    y = as_features(b, "b")
    check_same_dim(x, y, "a", "b")
    return feature_spectrum(x, "a"), feature_spectrum(y, "b")


def scd_from_covariances(sigma1: Any, sigma2: Any, *, top_k: int | None = None) -> float:
    """SCD ``sum_i (lambda_1^(i) - lambda_2^(i))^2`` of two (d, d) covariances."""
    return _scd(covariance_spectrum(sigma1, "sigma1"), covariance_spectrum(sigma2, "sigma2"), top_k)


def spectral_covariance_distance(a: Any, b: Any, *, top_k: int | None = None) -> float:
    """SCD between two (N, d) feature arrays (unbiased covariances; N may differ)."""
    return _scd(*_feature_spectra(a, b), top_k)


def sorted_eigenvalue_distance_from_covariances(
    sigma1: Any, sigma2: Any, *, top_k: int | None = None
) -> float:
    """d_Eig ``sum_j (sqrt(lambda_1j) - sqrt(lambda_2j))^2`` of two (d, d) covariances."""
    return _deig(
        covariance_spectrum(sigma1, "sigma1"), covariance_spectrum(sigma2, "sigma2"), top_k
    )


def sorted_eigenvalue_distance(a: Any, b: Any, *, top_k: int | None = None) -> float:
    """d_Eig between two (N, d) feature arrays (not the paper's SCD: square roots first)."""
    return _deig(*_feature_spectra(a, b), top_k)
