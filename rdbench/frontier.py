"""Pareto frontiers and hypervolumes in the 2-D (reward, diversity) plane.

Each axis has a direction: ``maximize=(True, False)`` means "higher reward is better, lower
FID is better". Internally every axis is flipped to "higher is better".

Dominance: p dominates q when p is at least as good on both axes and strictly better on one.
The Pareto front is the set of points no other point dominates. Ties: exact duplicates of a
front point do not dominate each other, so all copies are kept; a point that ties on one
axis and is worse on the other is dominated.

Hypervolume (2-D: an area): the area of the union of the boxes spanned by each point and
the reference point r, counting only the part better than r on both axes,
    HV(P; r) = area( U_{p in P} [r_x, p_x] x [r_y, p_y] )     (in "higher is better" terms).
A method's rank score (``frontier_area``) is the hypervolume of its points against one
reference point shared by all methods on the board: the area its frontier encloses.
Dominated points add nothing, so the score depends on the frontier only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rdbench.errors import RdbenchError
from rdbench.metrics._checks import as_float64, check_finite

Directions = tuple[bool, bool] | Sequence[bool]


def _as_points(points: Any, name: str = "points") -> np.ndarray:
    arr = as_float64(points, name)
    if arr.size == 0:
        return arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise RdbenchError(f"{name} must have shape (n, 2) as (reward, diversity), got {arr.shape}")
    check_finite(arr, name)
    return arr


def _signs(maximize: Directions) -> np.ndarray:
    if len(maximize) != 2 or not all(isinstance(m, bool | np.bool_) for m in maximize):
        raise RdbenchError(f"maximize must be two booleans (one per axis), got {maximize!r}")
    return np.where(np.asarray(maximize, dtype=bool), 1.0, -1.0)


def pareto_front(points: Any, maximize: Directions = (True, True)) -> np.ndarray:
    """Indices of the non-dominated points, ordered by the first axis from best to worst.

    O(n log n): sort by axis 0 (best first, ties broken by axis 1 best first) and keep a point
    when its axis-1 value beats every earlier point's (or exactly duplicates the last kept).
    """
    pts = _as_points(points) * _signs(maximize)
    if len(pts) == 0:
        return np.zeros(0, dtype=np.int64)
    x, y = pts[:, 0], pts[:, 1]
    order = np.lexsort((-y, -x))
    keep: list[int] = []
    best_y = -np.inf
    for i in order:
        if y[i] > best_y:
            keep.append(int(i))
            best_y = y[i]
        elif keep and y[i] == best_y and x[i] == x[keep[-1]]:
            keep.append(int(i))  # exact duplicate of the last front point
    return np.asarray(keep, dtype=np.int64)


def is_pareto(points: Any, maximize: Directions = (True, True)) -> np.ndarray:
    """Boolean mask of the Pareto-front points."""
    n = len(_as_points(points))
    mask = np.zeros(n, dtype=bool)
    mask[pareto_front(points, maximize)] = True
    return mask


def hypervolume_2d(points: Any, reference: Any, maximize: Directions = (True, True)) -> float:
    """Area dominated by ``points`` and bounded by ``reference`` (see the module docstring).

    Points not strictly better than ``reference`` on both axes contribute nothing.
    """
    signs = _signs(maximize)
    pts = _as_points(points) * signs
    ref = as_float64(reference, "reference")
    if ref.shape != (2,):
        raise RdbenchError(
            f"reference must be one (reward, diversity) point, got shape {ref.shape}"
        )
    check_finite(ref, "reference")
    ref = ref * signs
    pts = pts[(pts[:, 0] > ref[0]) & (pts[:, 1] > ref[1])]
    if len(pts) == 0:
        return 0.0
    front = pts[pareto_front(pts)]  # x descending, y ascending
    widths = front[:, 0] - ref[0]
    heights = np.diff(np.concatenate([[ref[1]], front[:, 1]]))
    return float(np.sum(widths * heights))


def reference_point(
    points: Any, maximize: Directions = (True, True), *, margin: float = 0.0
) -> np.ndarray:
    """The nadir (worst value on each axis) of ``points``, pushed ``margin`` x range further
    out, so that with ``margin > 0`` even the extreme points enclose some area. An axis on
    which all points agree (a saturated recall, one point) uses ``max(|value|, 1)`` as its
    range."""
    if not (margin >= 0 and np.isfinite(margin)):
        raise RdbenchError(f"margin must be a finite number >= 0, got {margin!r}")
    signs = _signs(maximize)
    pts = _as_points(points) * signs
    if len(pts) == 0:
        raise RdbenchError("a reference point needs at least one point")
    low, high = pts.min(axis=0), pts.max(axis=0)
    span = np.where(high > low, high - low, np.maximum(np.abs(low), 1.0))
    return (low - margin * span) * signs


def frontier_area(points: Any, reference: Any, maximize: Directions = (True, True)) -> float:
    """A method's rank score: the hypervolume of its points against the shared ``reference``."""
    return hypervolume_2d(points, reference, maximize)


def frontier_line(points: Any, strengths: Sequence[float | None]) -> np.ndarray:
    """Indices of a method's points in the order of its regularisation strength (the line the
    leaderboard draws); points without a strength go last, in their given order."""
    n = len(_as_points(points))
    if len(strengths) != n:
        raise RdbenchError(f"got {len(strengths)} strengths for {n} points")
    keyed = [(s is None, 0.0 if s is None else float(s), i) for i, s in enumerate(strengths)]
    return np.asarray([i for *_, i in sorted(keyed)], dtype=np.int64)
