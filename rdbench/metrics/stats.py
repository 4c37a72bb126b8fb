"""Streaming feature statistics: count, mean and covariance, mergeable across shards.

``FeatureStats`` keeps ``(n, mean, M2)`` in float64, where ``M2 = sum_i (x_i - mean)(x_i - mean)^T``
is the centred scatter matrix, and merges two summaries with Chan et al.'s parallel update
(Chan, Golub & LeVeque 1979):

    n = n_a + n_b,  delta = mean_b - mean_a,
    mean = mean_a + delta * n_b / n,
    M2 = M2_a + M2_b + delta delta^T * n_a n_b / n.

Why Chan's update rather than raw sums of ``x`` and ``x x^T`` (torchmetrics' choice): the
covariance from raw sums is ``(S_xx - n mu mu^T) / (n - 1)``, a difference of two large
numbers. Network features often have means far from zero compared with their spread, and
that subtraction then loses digits (catastrophic cancellation). Centred ``M2`` never forms
that difference. For all-reduce across processes (which can only add), ``to_sums()`` and
``from_sums()`` convert to and from the raw-sum form; do that once at the end, in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rdbench.errors import RdbenchError
from rdbench.metrics._checks import as_features, as_float64, check_finite, check_positive_int


def mean_and_covariance(features: Any, *, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Two-pass float64 mean ``mu`` (d,) and covariance ``sigma`` (d, d) of an (N, d) array.

    ``sigma = (X - mu)^T (X - mu) / (N - ddof)``; ``ddof=1`` (unbiased) is what clean-fid,
    pytorch-fid and torch-fidelity use for FID (``np.cov(..., rowvar=False)``).
    """
    x = as_features(features, "features", min_samples=ddof + 1)
    mu = x.mean(axis=0)
    xc = x - mu
    sigma = xc.T @ xc
    sigma = (sigma + sigma.T) / 2.0
    return mu, sigma / (x.shape[0] - ddof)


class FeatureStats:
    """Running count, mean and covariance of d-dimensional features (float64, Chan's merge).

    ``update(batch)`` folds an (B, d) batch in place and returns ``self``; ``merge(other)``
    returns a NEW summary of both (neither operand changes). Any split of the data, updated
    and merged in any order, gives the one-pass statistics up to float64 round-off.
    """

    def __init__(self, dim: int) -> None:
        self.dim = check_positive_int(dim, "dim")
        self._n = 0
        self._mean = np.zeros(self.dim, dtype=np.float64)
        self._m2 = np.zeros((self.dim, self.dim), dtype=np.float64)

    # -- accumulation --------------------------------------------------------------------
    def update(self, batch: Any) -> FeatureStats:
        """Add an (B, d) batch of features (numpy or torch) in place; returns ``self``."""
        x = as_features(batch, "batch", min_samples=1)
        if x.shape[1] != self.dim:
            raise RdbenchError(
                f"batch: has {x.shape[1]} features per sample, but these statistics were "
                f"created with dim={self.dim}"
            )
        mean_b = x.mean(axis=0)
        xc = x - mean_b
        self._combine(x.shape[0], mean_b, xc.T @ xc)
        return self

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Return a new ``FeatureStats`` summarising the data of ``self`` and ``other``."""
        if not isinstance(other, FeatureStats):
            raise RdbenchError(f"merge: expected a FeatureStats, got {type(other).__name__}")
        if other.dim != self.dim:
            raise RdbenchError(f"merge: dimensions differ ({self.dim} vs {other.dim})")
        out = self.copy()
        out._combine(other._n, other._mean, other._m2)
        return out

    def _combine(self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        if n_b == 0:
            return
        n_a, n = self._n, self._n + n_b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / n)
        self._m2 = self._m2 + m2_b + np.outer(delta, delta) * (n_a * n_b / n)
        self._n = n

    def copy(self) -> FeatureStats:
        out = FeatureStats(self.dim)
        out._n, out._mean, out._m2 = self._n, self._mean.copy(), self._m2.copy()
        return out

    # -- results -------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return self._n

    @property
    def mean(self) -> np.ndarray:
        if self._n == 0:
            raise RdbenchError("FeatureStats is empty: call update() with features first")
        return self._mean.copy()

    def covariance(self, ddof: int = 1) -> np.ndarray:
        """``M2 / (n - ddof)``, symmetric (d, d); needs ``n > ddof`` samples."""
        if self._n <= ddof:
            raise RdbenchError(
                f"covariance with ddof={ddof} needs more than {ddof} sample(s); "
                f"these statistics hold {self._n}"
            )
        return (self._m2 + self._m2.T) / (2.0 * (self._n - ddof))

    # -- serialisation and all-reduce ----------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """State as numpy arrays ``{"count": (), "mean": (d,), "m2": (d, d)}`` (e.g. for np.savez)."""
        return {
            "count": np.asarray(self._n, dtype=np.int64),
            "mean": self._mean.copy(),
            "m2": self._m2.copy(),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> FeatureStats:
        """Inverse of ``to_arrays`` (accepts a dict or an ``np.load`` archive)."""
        missing = {"count", "mean", "m2"} - set(arrays.keys())
        if missing:
            raise RdbenchError(f"FeatureStats arrays: missing key(s) {sorted(missing)}")
        mean = as_float64(arrays["mean"], "mean")
        m2 = as_float64(arrays["m2"], "m2")
        return cls._from_state(_count(arrays["count"]), mean, m2)

    def to_sums(self) -> tuple[int, np.ndarray, np.ndarray]:
        """Raw float64 sums ``(n, sum_x, sum_xxT)`` for a sum all-reduce across processes.

        All-reduce recipe: each rank calls ``to_sums()``, sums the three parts over ranks
        (e.g. ``torch.distributed.all_reduce`` on float64 tensors), then ``from_sums``.
        """
        sum_x = self._mean * self._n
        sum_xx = self._m2 + np.outer(self._mean, self._mean) * self._n
        return self._n, sum_x, sum_xx

    @classmethod
    def from_sums(cls, n: int, sum_x: Any, sum_xx: Any) -> FeatureStats:
        """Inverse of ``to_sums``: ``mean = sum_x / n``, ``M2 = sum_xxT - n mean mean^T``."""
        sum_x = as_float64(sum_x, "sum_x")
        sum_xx = as_float64(sum_xx, "sum_xxT")
        n = _count(n)
        mean = sum_x / n if n > 0 else np.zeros_like(sum_x)
        m2 = sum_xx - np.outer(mean, mean) * n
        return cls._from_state(n, mean, m2)

    @classmethod
    def _from_state(cls, n: int, mean: np.ndarray, m2: np.ndarray) -> FeatureStats:
        if n < 0 or mean.ndim != 1 or m2.shape != (mean.size, mean.size):
            raise RdbenchError(
                f"FeatureStats state: need count >= 0, mean (d,) and m2 (d, d); got count={n}, "
                f"mean {mean.shape}, m2 {m2.shape}"
            )
        check_finite(mean, "mean")
        check_finite(m2, "m2")
        out = cls(mean.size)
        out._n, out._mean, out._m2 = n, mean.copy(), m2.copy()
        return out

    def __repr__(self) -> str:
        return f"FeatureStats(dim={self.dim}, count={self._n})"


def _count(value: Any) -> int:
    """A sample count: one whole number >= 0 (a saved scalar array is fine)."""
    arr = np.asarray(value)
    if arr.ndim != 0 or arr.dtype.kind not in "iuf" or not np.isfinite(arr):
        raise RdbenchError(f"count must be one whole number >= 0, got {value!r}"[:200])
    if arr != np.floor(arr) or arr < 0:
        raise RdbenchError(f"count must be a whole number >= 0, got {arr.item()!r}")
    return int(arr)
