"""Per-prompt diversity: closed forms, brute force, unweighted averaging, categories, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rdbench.errors import RdbenchError
from rdbench.metrics.prompt_diversity import (
    by_category,
    mean_pairwise_cosine_distance,
    per_prompt_scores,
    prompt_diversity,
)


def _brute_force_distance(x: np.ndarray) -> float:
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    pairs = [(i, j) for i, j in itertools.permutations(range(len(u)), 2)]
    return float(np.mean([1.0 - u[i] @ u[j] for i, j in pairs]))


def test_identical_images_have_zero_distance_and_vendi_one():
    x = np.tile(np.array([[0.3, -1.2, 2.0, 0.5]]), (5, 1))
    assert mean_pairwise_cosine_distance(x) == 0.0  # exactly
    scores = per_prompt_scores(x, ["a"] * 5)
    assert scores.vendi[0] == pytest.approx(1.0, abs=1e-9)


def test_orthogonal_features_have_distance_one_and_vendi_n():
    x = np.eye(4) * np.array([[1.0], [2.0], [0.5], [7.0]])  # scale does not matter
    assert mean_pairwise_cosine_distance(x) == pytest.approx(1.0, abs=1e-12)
    assert per_prompt_scores(x, ["a"] * 4).vendi[0] == pytest.approx(4.0, rel=1e-9)


def test_opposite_pair_has_distance_two():
    x = np.array([[1.0, 2.0, -1.0], [-2.0, -4.0, 2.0]])
    assert mean_pairwise_cosine_distance(x) == pytest.approx(2.0, abs=1e-12)


def test_matches_brute_force_and_is_invariant_to_row_scale_and_order():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 6))
    d = mean_pairwise_cosine_distance(x)
    assert d == pytest.approx(_brute_force_distance(x), rel=1e-12)
    scaled = x * rng.uniform(0.1, 10.0, size=(9, 1))
    assert mean_pairwise_cosine_distance(scaled[::-1]) == pytest.approx(d, rel=1e-12)


def test_mean_is_unweighted_over_prompts_and_small_prompts_are_skipped():
    collapsed = np.tile([[1.0, 0.0, 0.0]], (2, 1))  # distance 0, vendi 1
    orthogonal = np.eye(3)  # distance 1, vendi 3
    single = np.array([[0.0, 1.0, 1.0]])
    x = np.vstack([orthogonal[:1], collapsed, orthogonal[1:], single])
    ids = ["b", "a", "a", "b", "b", "c"]
    scores = per_prompt_scores(x, ids)
    assert scores.prompt_ids == ["b", "a"]  # order of first appearance; "c" has one image
    assert scores.n_prompts_skipped == 1
    np.testing.assert_array_equal(scores.n_images, [3, 2])
    np.testing.assert_allclose(scores.distance, [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(scores.vendi, [3.0, 1.0], rtol=1e-9)
    distance, vendi = prompt_diversity(x, ids)
    assert distance == pytest.approx(0.5) and vendi == pytest.approx(2.0)
    # with min_images=3 only "b" is left
    assert prompt_diversity(x, ids, min_images=3) == pytest.approx((1.0, 3.0))


def test_by_category_and_subset():
    x = np.vstack([np.eye(2), np.tile([[1.0, 1.0]], (2, 1)), np.eye(2)])
    scores = per_prompt_scores(x, ["p", "p", "q", "q", "r", "r"])
    groups = by_category(scores, {"p": "animals", "q": "animals", "r": None})
    assert list(groups) == ["animals"]
    assert groups["animals"].prompt_ids == ["p", "q"]
    assert groups["animals"].mean_distance == pytest.approx(0.5)
    with pytest.raises(RdbenchError, match="prompt id"):
        scores.subset(["zzz"])


def test_bad_input():
    with pytest.raises(RdbenchError, match="at least 2 images"):
        per_prompt_scores(np.eye(3), ["a", "b", "c"])
    with pytest.raises(RdbenchError, match="one prompt id per feature row"):
        per_prompt_scores(np.eye(3), ["a", "a"])
    with pytest.raises(RdbenchError, match="zero norm"):
        mean_pairwise_cosine_distance(np.array([[0.0, 0.0], [1.0, 0.0]]))
    with pytest.raises(RdbenchError, match="at least 2"):
        mean_pairwise_cosine_distance(np.ones((1, 3)))
    with pytest.raises(RdbenchError, match="NaN"):
        mean_pairwise_cosine_distance(np.array([[np.nan, 1.0], [1.0, 0.0]]))
