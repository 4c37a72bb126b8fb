"""Kernel Inception Distance (KID, Binkowski et al. 2018, "Demystifying MMD GANs").

KID is the unbiased estimate of the squared Maximum Mean Discrepancy with the polynomial
kernel ``k(x, y) = (gamma x.y + coef0)^degree`` (default ``gamma = 1/d``, ``coef0 = 1``,
``degree = 3``). For samples X (m) and Y (n):

    MMD^2_u = sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (n(n-1))
              - 2 sum_{i,j} k(x_i, y_j) / (m n).

Lower is better; the estimate is unbiased, so it can be slightly negative when the sets
come from the same distribution. ``kernel_inception_distance`` averages it over random
subsets exactly as torch-fidelity does (``np.random.RandomState(seed)``, per subset the
reference indices then the generated indices, drawn without replacement) and returns the
mean and the population standard deviation (``ddof=0``) over subsets.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from tqdm import tqdm

from rdbench import defaults
from rdbench.errors import RdbenchError
from rdbench.metrics._checks import as_features, check_positive_int, check_same_dim


def _kernel_params(gamma: float | None, coef0: float, dim: int) -> tuple[float, float]:
    if gamma is None:
        gamma = 1.0 / dim
    if not (isinstance(gamma, int | float) and math.isfinite(gamma) and gamma > 0):
        raise RdbenchError(f"gamma must be a positive finite number or None (1/d), got {gamma!r}")
    if not (isinstance(coef0, int | float) and math.isfinite(coef0)):
        raise RdbenchError(f"coef0 must be a finite number, got {coef0!r}")
    return float(gamma), float(coef0)


def polynomial_kernel(
    x: np.ndarray, y: np.ndarray, *, degree: int, gamma: float, coef0: float
) -> np.ndarray:
    """Kernel matrix ``(gamma x y^T + coef0)^degree`` for float64 arrays (m, d), (n, d)."""
    return (x @ y.T * gamma + coef0) ** degree


def _mmd2(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> float:
    m, n = x.shape[0], y.shape[0]
    kxx = polynomial_kernel(x, x, degree=degree, gamma=gamma, coef0=coef0)
    kyy = polynomial_kernel(y, y, degree=degree, gamma=gamma, coef0=coef0)
    kxy = polynomial_kernel(x, y, degree=degree, gamma=gamma, coef0=coef0)
    within_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * kxy.sum() / (m * n))


def _validated_pair(a: Any, b: Any, name_a: str, name_b: str) -> tuple[np.ndarray, np.ndarray]:
    x = as_features(a, name_a)
    y = as_features(b, name_b)
    check_same_dim(x, y, name_a, name_b)
    return x, y


def mmd2_unbiased(
    a: Any, b: Any, *, degree: int = 3, gamma: float | None = None, coef0: float = 1.0
) -> float:
    """Unbiased polynomial-kernel MMD^2 between all of ``a`` (m, d) and ``b`` (n, d)."""
    x, y = _validated_pair(a, b, "a", "b")
    degree = check_positive_int(degree, "degree")
    gamma, coef0 = _kernel_params(gamma, coef0, x.shape[1])
    return _mmd2(x, y, degree, gamma, coef0)


def kernel_inception_distance(
    reference: Any,
    generated: Any,
    *,
    subsets: int = defaults.KID_SUBSETS,
    subset_size: int = defaults.KID_SUBSET_SIZE,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = defaults.SEED,
    progress: bool = False,
) -> tuple[float, float]:
    """KID ``(mean, std)`` of ``mmd2_unbiased`` over ``subsets`` random subsets of each set.

    Each subset draws ``subset_size`` rows without replacement from each set; a subset size
    larger than either set is an error (lower ``subset_size``, e.g. to the smaller N).
    """
    x, y = _validated_pair(reference, generated, "reference", "generated")
    subsets = check_positive_int(subsets, "subsets")
    subset_size = check_positive_int(subset_size, "subset_size", minimum=2)
    degree = check_positive_int(degree, "degree")
    seed = check_positive_int(seed, "seed", minimum=0)
    if seed >= 2**32:
        raise RdbenchError(f"seed must be below 2**32 (numpy's RandomState), got {seed}")
    gamma, coef0 = _kernel_params(gamma, coef0, x.shape[1])
    n_ref, n_gen = x.shape[0], y.shape[0]
    if subset_size > min(n_ref, n_gen):
        raise RdbenchError(
            f"KID subset_size={subset_size} is larger than the number of samples (reference: "
            f"{n_ref}, generated: {n_gen}); use subset_size <= {min(n_ref, n_gen)}"
        )
    rng = np.random.RandomState(seed)
    values = np.empty(subsets, dtype=np.float64)
    for i in tqdm(range(subsets), desc="KID", unit="subset", disable=not progress, leave=False):
        xs = x[rng.choice(n_ref, subset_size, replace=False)]
        ys = y[rng.choice(n_gen, subset_size, replace=False)]
        values[i] = _mmd2(xs, ys, degree, gamma, coef0)
    return float(values.mean()), float(values.std())
