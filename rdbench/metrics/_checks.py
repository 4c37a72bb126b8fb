"""Input validation shared by every metric: arrays in, float64 out, clear errors otherwise."""

from __future__ import annotations

from typing import Any

import numpy as np

from rdbench.errors import RdbenchError


def as_float64(x: Any, name: str) -> np.ndarray:
    """Convert a numpy array, torch tensor or nested list to a float64 numpy array."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    if np.iscomplexobj(x):
        raise RdbenchError(f"{name}: complex values; features and statistics must be real")
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RdbenchError(f"{name}: cannot convert to a float array ({exc})") from None
    return arr


def check_finite(arr: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise RdbenchError(f"{name}: contains {bad} NaN or infinite value(s); all must be finite")


def as_features(x: Any, name: str, *, min_samples: int = 2) -> np.ndarray:
    """Validate an (N, d) feature matrix: 2-D, finite, N >= ``min_samples``, d >= 1."""
    arr = as_float64(x, name)
    if arr.ndim != 2:
        raise RdbenchError(
            f"{name}: expected a 2-D array of shape (n_samples, n_features), got shape "
            f"{arr.shape}; reshape a single vector with x[None, :]"
        )
    n, d = arr.shape
    if d < 1:
        raise RdbenchError(f"{name}: has 0 features per sample; need at least 1")
    if n < min_samples:
        raise RdbenchError(f"{name}: has {n} sample(s); this metric needs at least {min_samples}")
    check_finite(arr, name)
    return arr


def check_same_dim(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[-1] != b.shape[-1]:
        raise RdbenchError(
            f"feature dimensions differ: {name_a} has {a.shape[-1]}, {name_b} has "
            f"{b.shape[-1]}; both sets must come from the same feature extractor"
        )


def as_vector(x: Any, name: str) -> np.ndarray:
    arr = as_float64(x, name)
    if arr.ndim != 1 or arr.size < 1:
        raise RdbenchError(f"{name}: expected a non-empty 1-D vector, got shape {arr.shape}")
    check_finite(arr, name)
    return arr


def as_covariance(x: Any, name: str, *, dim: int | None = None) -> np.ndarray:
    """Validate a square, finite, symmetric covariance matrix (symmetry to 1e-8 relative)."""
    arr = as_float64(x, name)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise RdbenchError(f"{name}: expected a square (d, d) matrix, got shape {arr.shape}")
    if dim is not None and arr.shape[0] != dim:
        raise RdbenchError(f"{name}: expected shape ({dim}, {dim}), got {arr.shape}")
    check_finite(arr, name)
    scale = max(float(np.max(np.abs(arr))), 1e-300)
    if float(np.max(np.abs(arr - arr.T))) > 1e-8 * scale:
        raise RdbenchError(f"{name}: covariance matrix is not symmetric")
    return arr


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise RdbenchError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
