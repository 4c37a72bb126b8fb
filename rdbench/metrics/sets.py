"""Compute several set metrics of a generated feature set against a reference set at once.

Metrics that share work are computed together (precision, recall, density and coverage in
one k-NN pass). The convention everywhere: ``reference`` is the base model's (or real) features,
``generated`` the features of the method under test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from rdbench import defaults
from rdbench.errors import RdbenchError
from rdbench.metrics._checks import as_features, check_same_dim


@dataclass(frozen=True)
class MetricOptions:
    """Typed options for :func:`compute_set_metrics`."""

    pr_k: int = defaults.PRECISION_RECALL_K
    dc_k: int = defaults.DENSITY_COVERAGE_K
    kid_subsets: int = defaults.KID_SUBSETS
    kid_subset_size: int = defaults.KID_SUBSET_SIZE
    scd_top_k: int | None = None
    seed: int = defaults.SEED
    device: str = "cpu"  # k-NN metrics' torch device; None = CPU


def _fid(ref: np.ndarray, gen: np.ndarray, o: MetricOptions) -> dict[str, float]:
    from rdbench.metrics.fid import fid_from_features

    return {"fid": fid_from_features(ref, gen)}


def _manifold(ref: np.ndarray, gen: np.ndarray, o: MetricOptions) -> dict[str, float]:
    """Precision, recall, density and coverage share one pass over the k-NN distances."""
    from rdbench.metrics.manifold import prdc

    out = prdc(ref, gen, k_pr=o.pr_k, k_dc=o.dc_k, device=o.device)
    return {m: getattr(out, m) for m in ("precision", "recall", "density", "coverage")}


def _scd(ref: np.ndarray, gen: np.ndarray, o: MetricOptions) -> dict[str, float]:
    from rdbench.metrics.scd import spectral_covariance_distance

    return {"scd": spectral_covariance_distance(gen, ref, top_k=o.scd_top_k)}


def _kid(ref: np.ndarray, gen: np.ndarray, o: MetricOptions) -> dict[str, float]:
    from rdbench.metrics.kid import kernel_inception_distance

    size = min(o.kid_subset_size, len(ref), len(gen))
    mean, _std = kernel_inception_distance(
        ref, gen, subsets=o.kid_subsets, subset_size=size, seed=o.seed
    )
    return {"kid": mean}


def _vendi(ref: np.ndarray, gen: np.ndarray, o: MetricOptions) -> dict[str, float]:
    from rdbench.metrics.vendi import vendi_score

    return {"vendi": vendi_score(gen)}


_Group = Callable[[np.ndarray, np.ndarray, MetricOptions], dict[str, float]]

# metric name -> the group function that computes it (and possibly its siblings)
_GROUPS: dict[str, _Group] = {
    "fid": _fid,
    "precision": _manifold,
    "recall": _manifold,
    "density": _manifold,
    "coverage": _manifold,
    "scd": _scd,
    "kid": _kid,
    "vendi": _vendi,
}
assert set(_GROUPS) == set(defaults.SET_METRICS)


def parse_metric_names(names: str | Iterable[str] | None) -> list[str]:
    """``"fid,recall"`` or a list -> validated names in canonical order; None -> all."""
    if names is None:
        return list(defaults.SET_METRICS)
    items = names.split(",") if isinstance(names, str) else list(names)
    items = [n.strip().lower() for n in items if n.strip()]
    unknown = [n for n in items if n not in _GROUPS]
    if unknown or not items:
        raise RdbenchError(
            f"unknown metric(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from: {', '.join(defaults.SET_METRICS)}"
        )
    return [n for n in defaults.SET_METRICS if n in items]


def compute_set_metrics(
    reference: np.ndarray,
    generated: np.ndarray,
    metrics: Sequence[str] | str | None = None,
    options: MetricOptions | None = None,
) -> dict[str, float]:
    """Every requested metric of ``generated`` against ``reference``, in canonical order."""
    names = parse_metric_names(metrics)
    options = options or MetricOptions()
    ref = as_features(reference, "reference features")
    gen = as_features(generated, "generated features")
    check_same_dim(ref, gen, "reference features", "generated features")
    if "vendi" in names:  # refuse zero rows before the expensive metrics run
        from rdbench.metrics.vendi import check_nonzero_rows

        check_nonzero_rows(gen, "generated features")
    out: dict[str, float] = {}
    for name in names:
        if name not in out:
            out.update(_GROUPS[name](ref, gen, options))
    return {name: float(out[name]) for name in names}
