"""Score a whole image set with one reward: batched, cached, with per-image error handling.

This is what ``rdbench score`` and ``rdbench evaluate --reward`` call.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from rdbench.errors import RdbenchError
from rdbench.rewards.base import Reward
from rdbench.rewards.cache import ScoreCache, score_key

FLUSH_EVERY = 1024  # new scores per cache chunk (an interrupted run loses at most this many)


@dataclass
class ScoreResult:
    """Per-image scores of one reward: ``scores[i]`` belongs to ``keys[i]`` (set keys, in set
    order); ``skipped`` lists ``(key, reason)`` of images that could not be scored."""

    reward_id: str
    keys: list[str]
    scores: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)
    cached: int = 0

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.keys, self.scores.tolist(), strict=True))


def score_imageset(
    imageset,
    reward: Reward | str,
    *,
    batch_size: int = 32,
    cache: bool = True,
    on_error: Literal["raise", "skip"] = "raise",
    progress: bool = True,
) -> ScoreResult:
    """Score every image of ``imageset`` (an :class:`rdbench.imageset.ImageSet`) with ``reward``
    (a loaded reward or a name for :func:`rdbench.rewards.load`) against its manifest prompt.

    Scores come from the cache when the same image bytes, prompt and reward id were scored
    before. ``on_error="skip"`` records unreadable images in ``skipped`` instead of raising.
    """
    from rdbench.images import decode_rgb

    if on_error not in ("raise", "skip"):
        raise RdbenchError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise RdbenchError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(reward, str):
        from rdbench.rewards import load

        reward = load(reward)
    items = list(imageset.items)
    needs_prompts = reward.info.needs_prompts
    if needs_prompts:
        missing = [it.key for it in items if not (it.prompt or "").strip()]
        if missing:
            why = (
                "the set has no manifest.jsonl"
                if not imageset.has_manifest
                else (f"{len(missing)} manifest entries have no prompt (first: {missing[0]!r})")
            )
            raise RdbenchError(
                f"reward {reward.name!r} scores images against their prompts, but {why}; "
                "write a manifest with a prompt per image (`rdbench manifest`), or use a "
                "prompt-free reward such as 'aesthetic'"
            )
    store = ScoreCache(reward.reward_id) if cache else None
    found: dict[str, float] = {}
    skipped: list[tuple[str, str]] = []
    pending: dict[str, float] = {}
    n_cached = 0

    from tqdm import tqdm

    bar = tqdm(
        total=len(items),
        desc=f"score {reward.name}",
        unit="img",
        file=sys.stderr,
        disable=not progress,
        leave=False,
    )
    for start in range(0, len(items), batch_size):
        todo, images, prompts = [], [], []
        for item in items[start : start + batch_size]:
            prompt = item.prompt if needs_prompts else None
            try:
                data = imageset.read_bytes(item)
                key = score_key(data, prompt)
                hit = store.get(key) if store is not None else None
                if hit is None:
                    images.append(decode_rgb(data, imageset.describe(item)))
            except RdbenchError as exc:
                if on_error == "raise":
                    raise
                skipped.append((item.key, str(exc)))
                continue
            if hit is not None:
                found[item.key] = hit
                n_cached += 1
            else:
                todo.append((item.key, key))
                prompts.append(prompt)
        if images:
            values = reward.score(
                images, prompts if needs_prompts else None, batch_size=len(images)
            )
            for (item_key, key), value in zip(todo, values.tolist(), strict=True):
                found[item_key] = value
                pending[key] = value
        if store is not None and len(pending) >= FLUSH_EVERY:
            store.put(pending)
            pending = {}
        bar.update(min(batch_size, len(items) - start))
    bar.close()
    if store is not None:
        store.put(pending)
    keys = [it.key for it in items if it.key in found]
    scores = np.array([found[k] for k in keys], dtype=np.float64)
    return ScoreResult(reward.reward_id, keys, scores, skipped, n_cached)
