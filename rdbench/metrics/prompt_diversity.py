"""Per-prompt diversity: how different the images of one prompt are, averaged over prompts.

For the n >= 2 images of a prompt with features x_1..x_n (rows L2-normalised to unit length
u_i), two scores are computed:

- mean pairwise cosine distance
  D = 1 / (n (n - 1)) * sum_{i != j} (1 - u_i . u_j) = 1 - (||sum_i u_i||^2 - n) / (n (n - 1)),
  in [0, 2]: 0 when all images of the prompt are identical (a collapsed model), 1 for
  mutually orthogonal features, higher is more diverse;
- the Vendi score (Friedman & Dieng 2023) of the prompt's images with the cosine kernel
  (:func:`rdbench.metrics.vendi.vendi_score`), in [1, n].

Each prompt counts once (an unweighted mean over prompts), so prompts with more seeds do not
dominate; prompts with fewer than ``min_images`` (default 2) images are left out and counted
in ``n_prompts_skipped``. Per-prompt diversity is the diversity measure that reward
finetuning destroys first (mode collapse within a prompt); it needs no reference set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rdbench.errors import RdbenchError
from rdbench.metrics._checks import as_features, check_positive_int
from rdbench.metrics.vendi import vendi_score


def mean_pairwise_cosine_distance(features: Any) -> float:
    """Mean of 1 - cos(x_i, x_j) over ordered pairs i != j of the (n, d) ``features``, n >= 2.

    With unit rows u_i, 1 - u_i . u_j = ||u_i - u_j||^2 / 2 and
    sum_{i<j} ||u_i - u_j||^2 = n sum_i ||w_i||^2 - ||sum_i w_i||^2 for w_i = u_i - u_1
    (translation invariance), so the cost is O(n d) and identical images give exactly 0.
    """
    x = as_features(features, "features", min_samples=2)
    norms = np.linalg.norm(x, axis=1)
    if np.any(norms == 0):
        raise RdbenchError(
            "features: a row has zero norm; the cosine distance needs a non-zero feature vector"
        )
    w = x / norms[:, None]
    w -= w[0].copy()
    n = w.shape[0]
    total = w.sum(axis=0)
    pair_sum = n * float(np.einsum("ij,ij->", w, w)) - float(total @ total)
    return float(np.clip(pair_sum / (n * (n - 1)), 0.0, 2.0))


@dataclass(frozen=True)
class PromptScores:
    """Per-prompt scores, one entry per prompt with at least ``min_images`` images.

    ``prompt_ids``, ``distance``, ``vendi`` and ``n_images`` are aligned; prompts appear in
    order of first appearance in the input.
    """

    prompt_ids: list[str]
    distance: np.ndarray
    vendi: np.ndarray
    n_images: np.ndarray
    n_prompts_skipped: int

    @property
    def mean_distance(self) -> float:
        return float(self.distance.mean())

    @property
    def mean_vendi(self) -> float:
        return float(self.vendi.mean())

    def subset(self, prompt_ids: Sequence[str]) -> PromptScores:
        """The scores of ``prompt_ids`` (in that order); each must be present."""
        index = {p: i for i, p in enumerate(self.prompt_ids)}
        missing = [p for p in prompt_ids if p not in index]
        if missing:
            raise RdbenchError(f"no per-prompt scores for prompt id(s) {missing[:5]}")
        rows = np.array([index[p] for p in prompt_ids], dtype=np.int64)
        return PromptScores(
            list(prompt_ids), self.distance[rows], self.vendi[rows], self.n_images[rows], 0
        )


def per_prompt_scores(
    features: Any,
    prompt_ids: Sequence[str],
    *,
    q: float = 1.0,
    min_images: int = 2,
) -> PromptScores:
    """Mean pairwise cosine distance and Vendi score (order ``q``) of each prompt's images.

    ``features`` is (N, d); ``prompt_ids`` gives the prompt of each row. Raises
    :class:`RdbenchError` when no prompt has ``min_images`` images.
    """
    min_images = check_positive_int(min_images, "min_images", minimum=2)
    x = as_features(features, "features", min_samples=1)
    ids = [str(p) for p in prompt_ids]
    if len(ids) != x.shape[0]:
        raise RdbenchError(
            f"prompt_ids: expected one prompt id per feature row ({x.shape[0]}), got {len(ids)}"
        )
    groups: dict[str, list[int]] = {}
    for row, pid in enumerate(ids):
        groups.setdefault(pid, []).append(row)
    kept = {pid: rows for pid, rows in groups.items() if len(rows) >= min_images}
    if not kept:
        raise RdbenchError(
            f"per-prompt diversity needs a prompt with at least {min_images} images (seeds); "
            f"every one of the {len(groups)} prompt(s) has fewer"
        )
    distance = np.array([mean_pairwise_cosine_distance(x[rows]) for rows in kept.values()])
    vendi = np.array([vendi_score(x[rows], q=q) for rows in kept.values()])
    sizes = np.array([len(rows) for rows in kept.values()], dtype=np.int64)
    return PromptScores(list(kept), distance, vendi, sizes, len(groups) - len(kept))


def prompt_diversity(
    features: Any, prompt_ids: Sequence[str], *, q: float = 1.0, min_images: int = 2
) -> tuple[float, float]:
    """``(mean pairwise cosine distance, Vendi)`` per prompt, each averaged over prompts."""
    scores = per_prompt_scores(features, prompt_ids, q=q, min_images=min_images)
    return scores.mean_distance, scores.mean_vendi


def by_category(scores: PromptScores, categories: dict[str, str | None]) -> dict[str, PromptScores]:
    """Split per-prompt ``scores`` by each prompt's category (prompts without one are left out)."""
    members: dict[str, list[str]] = {}
    for pid in scores.prompt_ids:
        category = categories.get(pid)
        if category is not None:
            members.setdefault(category, []).append(pid)
    return {c: scores.subset(pids) for c, pids in sorted(members.items())}
