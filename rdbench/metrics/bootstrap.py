"""Percentile bootstrap confidence intervals for set metrics, plain or clustered by prompt.

Rows are resampled in *groups*: with ``groups`` (a prompt id per row) one resample draws
G prompt ids with replacement (G = number of distinct prompts) and takes every row of each
drawn prompt, as many times as it was drawn (a cluster bootstrap, Davison & Hinkley 1997,
sec. 3.8). Without ``groups`` every row is its own group. Several arrays passed together
share the draw: a prompt drawn twice contributes its rows of *every* array twice, which is
what pairs two image sets generated from the same prompts and seeds
(``paired_bootstrap_diff``).

The interval is the percentile interval [Q(alpha/2), Q(1 - alpha/2)] of the resampled
statistics (Efron & Tibshirani 1993, ch. 13), alpha = 1 - confidence; ``estimate`` is the
statistic on the full data. Same inputs and seed give the same interval.

Set metrics (FID, KID, SCD, Vendi, precision, recall, density, coverage) take
:func:`half_sample_intervals` instead: resampling with replacement duplicates rows, and
duplicates shrink k-NN radii to zero (precision/recall/coverage intervals then miss their own
estimate) and distort covariances. A half-sample keeps r = floor(G/2) of the G groups, drawn
*without* replacement, so no row repeats. Its statistics theta_s vary about their mean like the
full-data estimate about its expectation once scaled by c = sqrt(r / (G - r)) (= 1 for even G):
without replacement Var(theta_r) ~ (sigma^2 / r)(1 - r / G) = c^-2 sigma^2 / G. The interval is
[theta + c Q(alpha/2), theta + c Q(1 - alpha/2)] with Q the quantiles of theta_s - mean(theta_s):
the delete-d jackknife with d = G / 2 (Shao & Wu 1989, Ann. Stat. 17; its histogram as an
interval: Wu 1990, Ann. Stat. 18), centred on the estimate, so the shift of metrics biased in
n (FID, k-NN radii) between G and G / 2 cancels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rdbench import defaults
from rdbench.errors import RdbenchError
from rdbench.metrics._checks import as_vector, check_positive_int

_CHUNK_CELLS = 4_000_000  # resamples x groups drawn at once by the vectorised path


@dataclass(frozen=True)
class Interval:
    """A point estimate with an interval (percentile bootstrap, or half-sample)."""

    estimate: float
    low: float
    high: float
    n_resamples: int
    confidence: float

    @property
    def width(self) -> float:
        return self.high - self.low

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def bootstrap_ci(
    metric_fn: Callable[..., float],
    *arrays: Any,
    groups: Any = None,
    independent: bool = False,
    n_resamples: int = defaults.BOOTSTRAP_RESAMPLES,
    confidence: float = defaults.CONFIDENCE,
    seed: int = defaults.SEED,
) -> Interval:
    """Percentile bootstrap interval of ``metric_fn(*arrays)``.

    ``groups``: None (each row is a group), one sequence of ids used for every array, or one
    sequence per array (e.g. the prompt id of each image in each set). Without
    ``independent``, all arrays are resampled with the same draw of groups: every array must
    then contain the same group ids (or, with ``groups=None``, the same number of rows).
    With ``independent=True`` each array is resampled on its own (unpaired samples).
    """
    n_resamples, confidence = _check_settings(n_resamples, confidence)
    arrs, grps = _prepare(arrays, groups, independent)
    estimate = _call(metric_fn, arrs, "the full data")
    rng = np.random.default_rng(seed)
    if independent:
        draws = [list(_draws(rng, len(g), n_resamples)) for g in grps]
        resamples = (
            [a[g.rows(d[b])] for a, g, d in zip(arrs, grps, draws, strict=True)]
            for b in range(n_resamples)
        )
    else:
        resamples = (
            [a[g.rows(idx)] for a, g in zip(arrs, grps, strict=True)]
            for idx in _draws(rng, len(grps[0]), n_resamples)
        )
    stats = [_call(metric_fn, sample, b) for b, sample in enumerate(resamples)]
    return percentile_interval(estimate, np.asarray(stats), n_resamples, confidence)


def half_sample_intervals(
    metric_fn: Callable[..., Mapping[str, float]],
    *arrays: Any,
    groups: Any = None,
    independent: bool = False,
    n_resamples: int = defaults.BOOTSTRAP_RESAMPLES,
    confidence: float = defaults.CONFIDENCE,
    seed: int = defaults.SEED,
    estimate: Mapping[str, float] | None = None,
) -> dict[str, Interval]:
    """Delete-half jackknife intervals (module docstring) of every value ``metric_fn`` returns.

    ``metric_fn(*arrays)`` returns a mapping ``name -> value`` (several metrics read off one
    resample); ``groups`` and ``independent`` as in :func:`bootstrap_ci`. Each resample keeps
    half of the groups of each array, drawn without replacement (the same half of every array
    unless ``independent``). ``estimate``: the full-data values when already computed.
    """
    n_resamples, confidence = _check_settings(n_resamples, confidence)
    arrs, grps = _prepare(arrays, groups, independent)
    if estimate is None:
        estimate = _call_many(metric_fn, arrs, "the full data", None)
    estimate = {name: _number(v, "the full data") for name, v in estimate.items()}
    rng = np.random.default_rng(seed)
    halves = [len(g) // 2 for g in grps]

    def half(g: _Groups, r: int) -> np.ndarray:
        return g.rows(np.sort(rng.permutation(len(g))[:r]))

    stats: dict[str, list[float]] = {name: [] for name in estimate}
    for b in range(n_resamples):
        if independent:
            sample = [a[half(g, r)] for a, g, r in zip(arrs, grps, halves, strict=True)]
        else:
            rows_of = np.sort(rng.permutation(len(grps[0]))[: halves[0]])
            sample = [a[g.rows(rows_of)] for a, g in zip(arrs, grps, strict=True)]
        values = _call_many(metric_fn, sample, b, halves)
        if values.keys() != estimate.keys():
            raise RdbenchError("metric_fn must return the same names on every resample")
        for name, v in values.items():
            stats[name].append(v)
    scale = float(np.sqrt(np.mean([r / (len(g) - r) for g, r in zip(grps, halves, strict=True)])))
    alpha = 1.0 - confidence
    out = {}
    for name, values in stats.items():
        dev = np.asarray(values) - np.mean(values)
        low, high = estimate[name] + scale * np.quantile(dev, [alpha / 2.0, 1.0 - alpha / 2.0])
        out[name] = Interval(estimate[name], float(low), float(high), n_resamples, confidence)
    return out


def half_sample_ci(
    metric_fn: Callable[..., float],
    *arrays: Any,
    groups: Any = None,
    independent: bool = False,
    n_resamples: int = defaults.BOOTSTRAP_RESAMPLES,
    confidence: float = defaults.CONFIDENCE,
    seed: int = defaults.SEED,
) -> Interval:
    """:func:`half_sample_intervals` of one metric: the interval to use for set metrics."""
    return half_sample_intervals(
        lambda *a: {"value": metric_fn(*a)},
        *arrays,
        groups=groups,
        independent=independent,
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
    )["value"]


def paired_bootstrap_diff(
    metric_fn: Callable[[Any], float],
    a: Any,
    b: Any,
    groups_a: Any = None,
    groups_b: Any = None,
    *,
    n_resamples: int = defaults.BOOTSTRAP_RESAMPLES,
    confidence: float = defaults.CONFIDENCE,
    seed: int = defaults.SEED,
) -> Interval:
    """Interval of ``metric_fn(a) - metric_fn(b)`` for two sets paired by prompt.

    Each resample draws prompt ids with replacement and takes all rows of each drawn prompt
    from both sets, so the shared prompt (and seed) effect cancels in the difference. Both
    sets must hold the same prompt ids; with no groups, rows are paired one to one.
    A set-level metric against a fixed reference is a closure, e.g.
    ``lambda x: fid_from_features(x, base_features)``.
    """

    def diff(x: np.ndarray, y: np.ndarray) -> float:
        return metric_fn(x) - metric_fn(y)

    groups = None if groups_a is None and groups_b is None else [groups_a, groups_b]
    return bootstrap_ci(
        diff, a, b, groups=groups, n_resamples=n_resamples, confidence=confidence, seed=seed
    )


def mean_ci(
    values: Any,
    groups: Any = None,
    *,
    n_resamples: int = defaults.BOOTSTRAP_RESAMPLES,
    confidence: float = defaults.CONFIDENCE,
    seed: int = defaults.SEED,
) -> Interval:
    """Vectorised ``bootstrap_ci(np.mean, values, groups=groups)``: same draws, same result.

    A resample's mean is sum_g w_g S_g / sum_g w_g c_g with w_g the number of times group g
    was drawn, S_g its sum and c_g its size.
    """
    return _mean_interval([values], [groups], n_resamples, confidence, seed)


def paired_mean_diff(
    values_a: Any,
    values_b: Any,
    groups_a: Any = None,
    groups_b: Any = None,
    *,
    n_resamples: int = defaults.BOOTSTRAP_RESAMPLES,
    confidence: float = defaults.CONFIDENCE,
    seed: int = defaults.SEED,
) -> Interval:
    """Vectorised ``paired_bootstrap_diff(np.mean, ...)`` for per-item values (e.g. rewards)."""
    return _mean_interval([values_a, values_b], [groups_a, groups_b], n_resamples, confidence, seed)


# ---------------------------------------------------------------------------- internals


def _mean_interval(
    values: list[Any], groups: list[Any], n_resamples: int, confidence: float, seed: int
) -> Interval:
    n_resamples, confidence = _check_settings(n_resamples, confidence)
    vecs = [as_vector(v, f"values[{i}]") for i, v in enumerate(values)]
    grps = [
        _groups(g, v.size, f"groups[{i}]")
        for i, (v, g) in enumerate(zip(vecs, groups, strict=True))
    ]
    _check_same_groups(grps)
    sums = [np.array([v[m].sum() for m in g.members]) for v, g in zip(vecs, grps, strict=True)]
    sizes = [np.array([m.size for m in g.members], dtype=np.float64) for g in grps]
    n_groups = len(grps[0])

    def stat(weights: np.ndarray) -> np.ndarray:
        means = [(weights @ s) / (weights @ c) for s, c in zip(sums, sizes, strict=True)]
        return means[0] if len(means) == 1 else means[0] - means[1]

    estimate = float(stat(np.ones((1, n_groups)))[0])
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // n_groups)
    stats, batch = [], []
    for idx in _draws(rng, n_groups, n_resamples):
        batch.append(idx)
        if len(batch) == chunk:
            stats.append(stat(_counts(np.stack(batch), n_groups)))
            batch = []
    if batch:
        stats.append(stat(_counts(np.stack(batch), n_groups)))
    return percentile_interval(estimate, np.concatenate(stats), n_resamples, confidence)


def _counts(idx: np.ndarray, n_groups: int) -> np.ndarray:
    """(B, G) drawn indices -> (B, G) float counts of each group per resample."""
    offsets = idx + n_groups * np.arange(idx.shape[0])[:, None]
    flat = np.bincount(offsets.ravel(), minlength=idx.size)
    return flat.reshape(idx.shape[0], n_groups).astype(np.float64)


def _draws(rng: np.random.Generator, n_groups: int, n_resamples: int) -> Iterator[np.ndarray]:
    """The group indices of each resample; the one random stream every path shares."""
    for _ in range(n_resamples):
        yield rng.integers(0, n_groups, size=n_groups)


@dataclass(frozen=True)
class _Groups:
    """Row indices of each group, groups sorted by id; ``ids`` is None for one row per group."""

    members: list[np.ndarray]
    ids: np.ndarray | None

    def rows(self, idx: np.ndarray) -> np.ndarray:
        return np.concatenate([self.members[g] for g in idx])

    def __len__(self) -> int:
        return len(self.members)


def _groups(groups: Any, n_rows: int, name: str) -> _Groups:
    if groups is None:
        if n_rows < 2:
            raise RdbenchError(f"need at least 2 rows to bootstrap, got {n_rows}")
        return _Groups([np.array([i]) for i in range(n_rows)], None)
    ids = np.asarray(groups)
    if ids.ndim != 1 or ids.size != n_rows:
        raise RdbenchError(
            f"{name}: expected one group id per row ({n_rows}), got shape {ids.shape}"
        )
    uniq, inverse = np.unique(ids, return_inverse=True)
    if uniq.size < 2:
        raise RdbenchError(f"{name}: need at least 2 distinct groups to bootstrap, got 1")
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=uniq.size))[:-1]
    return _Groups(np.split(order, bounds), uniq)


def _check_same_groups(groups: Sequence[_Groups]) -> None:
    first = groups[0]
    for i, other in enumerate(groups[1:], start=1):
        if first.ids is None and other.ids is None:
            if len(first) != len(other):
                raise RdbenchError(
                    f"paired resampling needs the same number of rows: arrays[0] has "
                    f"{len(first)}, arrays[{i}] has {len(other)}; pass groups (a prompt id "
                    "per row) or independent=True"
                )
        elif first.ids is None or other.ids is None or not np.array_equal(first.ids, other.ids):
            raise RdbenchError(
                f"paired resampling needs the same group ids in every array; arrays[0] and "
                f"arrays[{i}] differ ({len(first)} vs {len(other)} groups); keep only the "
                "shared prompts or use independent=True"
            )


def _per_array_groups(groups: Any, n_arrays: int) -> list[Any]:
    if groups is None:
        return [None] * n_arrays
    if (
        isinstance(groups, list | tuple)
        and len(groups) == n_arrays
        and all(g is None or np.ndim(g) == 1 for g in groups)
        and n_arrays > 1
    ):
        return list(groups)
    return [groups] * n_arrays


def _as_rows(a: Any, name: str) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    arr = np.asarray(a)
    if arr.ndim < 1:
        raise RdbenchError(f"{name}: expected an array with one row per sample, got a scalar")
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        raise RdbenchError(f"{name}: contains NaN or infinite values; all must be finite")
    return arr


def _prepare(
    arrays: Sequence[Any], groups: Any, independent: bool
) -> tuple[list[np.ndarray], list[_Groups]]:
    """Checked row arrays and their groups (the same group ids everywhere unless independent)."""
    if not arrays:
        raise RdbenchError("pass at least one array after metric_fn")
    arrs = [_as_rows(a, f"arrays[{i}]") for i, a in enumerate(arrays)]
    per_array = _per_array_groups(groups, len(arrs))
    grps = [
        _groups(g, a.shape[0], f"groups[{i}]")
        for i, (a, g) in enumerate(zip(arrs, per_array, strict=True))
    ]
    if not independent:
        _check_same_groups(grps)
    return arrs, grps


def _call_many(
    metric_fn: Callable[..., Mapping[str, float]],
    arrs: list[np.ndarray],
    where: Any,
    halves: list[int] | None,
) -> dict[str, float]:
    try:
        values = metric_fn(*arrs)
    except RdbenchError as exc:
        if halves is None:
            raise
        sizes = " and ".join(
            f"{r} group(s), {len(a)} rows" for r, a in zip(halves, arrs, strict=True)
        )
        raise RdbenchError(
            f"a half-sample ({sizes}) is too small for the metric: {exc}; "
            "half-sample intervals need at least twice the metric's minimum"
        ) from None
    if not isinstance(values, Mapping) or not values:
        raise RdbenchError("metric_fn must return a mapping of metric names to numbers")
    return {name: _number(v, where) for name, v in values.items()}


def _call(metric_fn: Callable[..., float], arrs: list[np.ndarray], where: Any) -> float:
    return _number(metric_fn(*arrs), where)


def _number(value: Any, where: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise RdbenchError(f"metric_fn must return a number, got {type(value).__name__}") from None
    if not np.isfinite(value):
        label = where if isinstance(where, str) else f"resample {where}"
        raise RdbenchError(f"metric_fn returned {value} on {label}; it must be finite")
    return value


def _check_settings(n_resamples: Any, confidence: Any) -> tuple[int, float]:
    n_resamples = check_positive_int(n_resamples, "n_resamples", minimum=2)
    try:
        confidence = float(confidence)
    except (TypeError, ValueError):
        raise RdbenchError(f"confidence must be a number in (0, 1), got {confidence!r}") from None
    if not 0.0 < confidence < 1.0:
        raise RdbenchError(f"confidence must be in (0, 1) (e.g. 0.95), got {confidence}")
    return n_resamples, confidence


def percentile_interval(
    estimate: float, stats: np.ndarray, n_resamples: int, confidence: float
) -> Interval:
    """Percentile interval: the (1-c)/2 and (1+c)/2 quantiles of resampled ``stats``.

    For callers that resample once and read several statistics off each resample (as
    ``rdbench evaluate`` does for its set metrics).
    """
    alpha = 1.0 - confidence
    low, high = np.quantile(stats, [alpha / 2.0, 1.0 - alpha / 2.0])
    return Interval(float(estimate), float(low), float(high), n_resamples, confidence)
