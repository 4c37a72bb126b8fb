"""Deterministic, stratified splits, category filters and subsampling of prompt lists.

Everything here depends only on ``(prompt_id, category, seed)``, never on row order:

* :func:`assign_splits` ranks the prompts of each category by
  ``sha256(f"split:{seed}:{prompt_id}")`` and cuts the ranking at counts given by
  largest-remainder rounding of ``n_category * fractions``. Each category is split exactly
  in proportion (stratified), and one category's assignment ignores every other category.
* :func:`stratified_limit` gives each category a quota of ``limit * n_category / n`` (largest
  remainder) and keeps the first ``quota`` prompts of that category's
  ``sha256(f"limit:{seed}:{prompt_id}")`` ranking, returned in the original order.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

from rdbench.errors import RdbenchError
from rdbench.prompts.parse import Prompt

SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)


def apportion(total: int, weights: Sequence[float]) -> list[int]:
    """Split the integer ``total`` in proportion to ``weights`` (largest-remainder method).

    Counts sum to ``total``; ties in the remainders go to the earlier weight.
    """
    wsum = float(sum(weights))
    if total < 0 or wsum <= 0 or any(w < 0 for w in weights):
        raise RdbenchError(f"cannot apportion {total} by weights {list(weights)}")
    exact = [total * w / wsum for w in weights]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _rank_key(salt: str, seed: int, prompt_id: str) -> bytes:
    return hashlib.sha256(f"{salt}:{seed}:{prompt_id}".encode()).digest()


def _by_category(prompts: Iterable[Prompt]) -> dict[str, list[Prompt]]:
    groups: dict[str, list[Prompt]] = defaultdict(list)
    for p in prompts:
        groups[p.category or ""].append(p)
    return groups


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(not 0 <= f <= 1 for f in fractions):
        raise RdbenchError(
            f"split fractions {list(fractions)}: give three numbers in [0, 1] for "
            "train, val and test, e.g. 0.8 0.1 0.1"
        )
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise RdbenchError(f"split fractions {list(fractions)} sum to {sum(fractions)}, not 1")
    return (float(fractions[0]), float(fractions[1]), float(fractions[2]))


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise RdbenchError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return split


def assign_splits(
    prompts: Sequence[Prompt], *, seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> dict[str, str]:
    """``prompt_id -> "train" | "val" | "test"``, stratified by category (module docstring)."""
    fractions = check_fractions(fractions)
    out: dict[str, str] = {}
    for group in _by_category(prompts).values():
        ranked = sorted(group, key=lambda p: _rank_key("split", seed, p.prompt_id))
        start = 0
        for name, count in zip(SPLITS, apportion(len(ranked), fractions), strict=True):
            out.update((p.prompt_id, name) for p in ranked[start : start + count])
            start += count
    return out


def select_split(
    prompts: Sequence[Prompt],
    split: str,
    *,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> list[Prompt]:
    """The prompts of one seeded split, in their original order."""
    check_split(split)
    assignment = assign_splits(prompts, seed=seed, fractions=fractions)
    return [p for p in prompts if assignment[p.prompt_id] == split]


def filter_categories(prompts: Sequence[Prompt], categories: Iterable[str]) -> list[Prompt]:
    """Prompts whose category is one of ``categories`` (matched case-insensitively)."""
    wanted = {c.strip().casefold() for c in categories}
    available = sorted({p.category for p in prompts if p.category})
    unknown = wanted - {c.casefold() for c in available}
    if unknown:
        raise RdbenchError(
            f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {sorted(unknown)}; "
            f"available: {', '.join(available) or '(this suite has no categories)'}"
        )
    return [p for p in prompts if p.category and p.category.casefold() in wanted]


def stratified_limit(prompts: Sequence[Prompt], limit: int, *, seed: int = 0) -> list[Prompt]:
    """At most ``limit`` prompts, proportional per category (module docstring), original order."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise RdbenchError(f"limit must be a positive integer, got {limit!r}")
    if limit >= len(prompts):
        return list(prompts)
    groups = _by_category(prompts)
    names = sorted(groups)
    quotas = apportion(limit, [len(groups[n]) for n in names])
    keep: set[str] = set()
    for name, quota in zip(names, quotas, strict=True):
        ranked = sorted(groups[name], key=lambda p: _rank_key("limit", seed, p.prompt_id))
        keep.update(p.prompt_id for p in ranked[:quota])
    return [p for p in prompts if p.prompt_id in keep]
