"""Seeded stratified splits, category filters and stratified subsampling."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from rdbench.errors import RdbenchError
from rdbench.prompts.parse import Record, build_prompts
from rdbench.prompts.splits import (
    SPLITS,
    apportion,
    assign_splits,
    filter_categories,
    select_split,
    stratified_limit,
)

SIZES = {"animals": 50, "food": 31, "rare": 7, "single": 1}


def _prompts(sizes=SIZES, suite="s"):
    records = [
        Record(text=f"{cat} prompt {i}", category=cat) for cat, n in sizes.items() for i in range(n)
    ]
    return build_prompts(suite, records)


@pytest.mark.parametrize(
    ("total", "weights", "expected"),
    [
        (10, (0.8, 0.1, 0.1), [8, 1, 1]),
        (5, (0.8, 0.1, 0.1), [4, 1, 0]),  # remainders 0.5/0.5 tie -> the earlier one
        (1, (0.8, 0.1, 0.1), [1, 0, 0]),
        (7, (1, 1, 1), [3, 2, 2]),
        (0, (0.5, 0.5), [0, 0]),
    ],
)
def test_apportion_known_answers(total, weights, expected):
    assert apportion(total, weights) == expected


def test_apportion_sums_and_stays_within_one_of_exact():
    rng = random.Random(0)
    for _ in range(200):
        weights = [rng.random() for _ in range(rng.randint(1, 8))]
        total = rng.randint(0, 500)
        counts = apportion(total, weights)
        assert sum(counts) == total
        exact = [total * w / sum(weights) for w in weights]
        assert all(abs(c - e) < 1 for c, e in zip(counts, exact, strict=True))


def test_splits_are_disjoint_complete_and_stratified():
    prompts = _prompts()
    assignment = assign_splits(prompts, seed=3)
    assert set(assignment) == {p.prompt_id for p in prompts}
    parts = [select_split(prompts, s, seed=3) for s in SPLITS]
    ids = [p.prompt_id for part in parts for p in part]
    assert len(ids) == len(set(ids)) == len(prompts)
    for cat, n in SIZES.items():
        counts = [sum(p.category == cat for p in part) for part in parts]
        assert counts == apportion(n, (0.8, 0.1, 0.1))


def test_splits_stable_for_a_seed_and_change_with_it():
    prompts = _prompts()
    assert assign_splits(prompts, seed=1) == assign_splits(prompts, seed=1)
    assert assign_splits(prompts, seed=1) != assign_splits(prompts, seed=2)


def test_splits_ignore_row_order_and_other_categories():
    prompts = _prompts()
    shuffled = prompts[:]
    random.Random(5).shuffle(shuffled)
    assert assign_splits(shuffled, seed=0) == assign_splits(prompts, seed=0)
    more = _prompts({**SIZES, "new": 40})
    extended = assign_splits(more, seed=0)
    assert {k: extended[k] for k in assign_splits(prompts, seed=0)} == assign_splits(prompts)


def test_select_split_keeps_original_order():
    prompts = _prompts()
    train = select_split(prompts, "train")
    assert [p.index for p in train] == sorted(p.index for p in train)


def test_bad_split_and_fractions():
    prompts = _prompts()
    with pytest.raises(RdbenchError, match="unknown split 'dev'"):
        select_split(prompts, "dev")
    with pytest.raises(RdbenchError, match="sum to"):
        assign_splits(prompts, fractions=(0.5, 0.4, 0.4))
    with pytest.raises(RdbenchError, match="three numbers"):
        assign_splits(prompts, fractions=(0.5, 0.5))


def test_custom_fractions():
    prompts = _prompts({"a": 20})
    counts = Counter(assign_splits(prompts, fractions=(0.5, 0.25, 0.25)).values())
    assert counts == {"train": 10, "val": 5, "test": 5}


def test_category_filter_is_case_insensitive_and_checks_names():
    prompts = _prompts()
    kept = filter_categories(prompts, ["ANIMALS", "rare"])
    assert Counter(p.category for p in kept) == {"animals": 50, "rare": 7}
    with pytest.raises(RdbenchError, match=r"unknown category \['plants'\]; available: animals"):
        filter_categories(prompts, ["plants"])


def test_stratified_limit_is_proportional_deterministic_and_ordered():
    prompts = _prompts()
    sub = stratified_limit(prompts, 30, seed=0)
    assert len(sub) == 30
    names = sorted(SIZES)
    quotas = dict(zip(names, apportion(30, [SIZES[n] for n in names]), strict=True))
    assert Counter(p.category for p in sub) == {k: v for k, v in quotas.items() if v}
    assert [p.index for p in sub] == sorted(p.index for p in sub)
    assert {p.prompt_id for p in sub} <= {p.prompt_id for p in prompts}
    assert stratified_limit(prompts, 30, seed=0) == sub
    assert stratified_limit(prompts, 30, seed=1) != sub
    shuffled = prompts[::-1]
    assert {p.prompt_id for p in stratified_limit(shuffled, 30)} == {p.prompt_id for p in sub}


def test_limit_edge_cases():
    prompts = _prompts()
    assert stratified_limit(prompts, 10_000) == prompts
    for bad in (0, -1, True, 2.5):
        with pytest.raises(RdbenchError, match="positive integer"):
            stratified_limit(prompts, bad)  # type: ignore[arg-type]
