"""Pareto fronts and hypervolumes on hand-made point sets, checked against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rdbench.errors import RdbenchError
from rdbench.frontier import (
    frontier_area,
    frontier_line,
    hypervolume_2d,
    is_pareto,
    pareto_front,
    reference_point,
)

# A staircase: (3,1), (2,2) twice, (1,3) on the front; (1,1) and (0.5,2) dominated.
STAIRS = np.array([[1, 3], [2, 2], [3, 1], [1, 1], [2, 2], [0.5, 2]], dtype=float)


def brute_front(points: np.ndarray) -> set[int]:
    """O(n^2) definition: i is on the front unless some j is >= everywhere and > somewhere."""
    out = set()
    for i, p in enumerate(points):
        if not any(np.all(q >= p) and np.any(q > p) for q in points):
            out.add(i)
    return out


def brute_hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact union area by coordinate compression: a grid cell counts if a point covers it."""
    pts = points[(points[:, 0] > ref[0]) & (points[:, 1] > ref[1])]
    xs = np.unique(np.concatenate([[ref[0]], pts[:, 0]]))
    ys = np.unique(np.concatenate([[ref[1]], pts[:, 1]]))
    area = 0.0
    for (x0, x1), (y0, y1) in itertools.product(itertools.pairwise(xs), itertools.pairwise(ys)):
        if np.any((pts[:, 0] >= x1) & (pts[:, 1] >= y1)):
            area += (x1 - x0) * (y1 - y0)
    return area


def test_staircase_front_and_area_by_hand():
    front = pareto_front(STAIRS)
    assert set(front.tolist()) == {0, 1, 2, 4}
    assert front[0] == 2 and front[-1] == 0  # best first axis first
    # Boxes [0,1]x[0,3], [0,2]x[0,2], [0,3]x[0,1]: 3 + 2 + 1 = 6 in staircase slices.
    assert hypervolume_2d(STAIRS, [0, 0]) == pytest.approx(6.0)
    # Reference (1, 1): boxes [1,2]x[1,2] and the rest have zero width or height -> 1.
    assert hypervolume_2d(STAIRS, [1, 1]) == pytest.approx(1.0)


def test_ties_on_one_axis_are_dominated():
    pts = [[1, 2], [2, 2], [2, 1]]
    assert pareto_front(pts).tolist() == [1]
    assert is_pareto(pts).tolist() == [False, True, False]


def test_direction_flip_gives_same_front_and_area():
    flipped = STAIRS * [1, -1]  # e.g. diversity as FID: lower is better
    assert set(pareto_front(flipped, (True, False)).tolist()) == set(pareto_front(STAIRS).tolist())
    assert hypervolume_2d(flipped, [0, 0], (True, False)) == pytest.approx(6.0)
    both = -STAIRS
    assert hypervolume_2d(both, [0, 0], (False, False)) == pytest.approx(6.0)
    # With the wrong directions the front is the opposite corner.
    assert set(pareto_front(STAIRS, (False, False)).tolist()) == {5, 3}


def test_dominated_points_do_not_change_hypervolume():
    base = hypervolume_2d(STAIRS, [0, 0])
    assert hypervolume_2d(np.vstack([STAIRS, [[1.5, 1.5], [0.1, 0.1]]]), [0, 0]) == base
    assert hypervolume_2d(np.vstack([STAIRS, [[2.5, 2.5]]]), [0, 0]) > base
    # A point worse than the reference on one axis adds nothing.
    assert hypervolume_2d(np.vstack([STAIRS, [[10.0, -1.0]]]), [0, 0]) == base


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force_on_random_integer_points(seed):
    rng = np.random.default_rng(seed)
    pts = rng.integers(0, 6, size=(25, 2)).astype(float)  # many ties and duplicates
    assert set(pareto_front(pts).tolist()) == brute_front(pts)
    ref = np.array([0.5, -1.0])
    assert hypervolume_2d(pts, ref) == pytest.approx(brute_hypervolume(pts, ref))
    maximize = (bool(seed % 2), True)
    signs = np.where(maximize, 1.0, -1.0)
    assert set(pareto_front(pts, maximize).tolist()) == brute_front(pts * signs)


def test_frontier_area_is_hypervolume_against_shared_reference():
    method_a = STAIRS[[0, 1, 2]]
    method_b = np.array([[2.5, 2.5]])
    ref = reference_point(np.vstack([method_a, method_b]))
    assert ref.tolist() == [1.0, 1.0]
    assert frontier_area(method_a, ref) == pytest.approx(1.0)
    assert frontier_area(method_b, ref) == pytest.approx(1.5 * 1.5)


def test_reference_point_margin_and_directions():
    pts = [[0, 10], [4, 30]]
    assert reference_point(pts, (True, False), margin=0.5).tolist() == [-2.0, 40.0]
    with pytest.raises(RdbenchError, match="margin"):
        reference_point(pts, margin=-1)
    with pytest.raises(RdbenchError, match="at least one"):
        reference_point(np.zeros((0, 2)))


def test_frontier_line_orders_by_strength():
    pts = np.zeros((4, 2))
    assert frontier_line(pts, [2.0, None, 0.1, 1.0]).tolist() == [2, 3, 0, 1]


def test_empty_and_bad_input():
    assert pareto_front(np.zeros((0, 2))).tolist() == []
    assert hypervolume_2d(np.zeros((0, 2)), [0, 0]) == 0.0
    with pytest.raises(RdbenchError, match=r"shape \(n, 2\)"):
        pareto_front(np.zeros((3, 3)))
    with pytest.raises(RdbenchError, match="NaN"):
        pareto_front([[0, np.nan]])
    with pytest.raises(RdbenchError, match="two booleans"):
        pareto_front(STAIRS, (1, 0))
    with pytest.raises(RdbenchError, match="reference"):
        hypervolume_2d(STAIRS, [0, 0, 0])


def test_reference_point_on_an_axis_where_all_points_agree():
    """Recall saturated at 1.0 everywhere: the margin uses max(|value|, 1), so the dominating
    point still encloses area and the ranking is not a tie at 0."""
    pts = np.array([[1.0, 1.0], [3.0, 1.0], [2.0, 1.0]])
    ref = reference_point(pts, margin=0.05)
    assert ref == pytest.approx([0.9, 0.95])
    areas = [hypervolume_2d(p[None], ref) for p in pts]
    assert areas[1] > areas[2] > areas[0] > 0
    assert reference_point(np.array([[-5.0, 2.0]]), margin=0.1) == pytest.approx([-5.5, 1.8])
