"""Reward scores cached in :class:`rdbench.features.cache.FeatureCache` as 1-d features.

Namespace ``reward:<reward id>`` (``name:version@weights-sha;dtype=...;arch=...``, see
:attr:`rdbench.rewards.base.Reward.reward_id`), so a different version, score-changing option,
dtype or weights file never shares scores; ``rdbench cache info|clear`` lists and removes
them with the feature namespaces. Row key: ``sha256(image bytes)`` for prompt-free rewards,
else ``sha256(image sha256 + ":" + sha256(prompt))``. Rows are float32, which holds the
float32 (or half precision) model outputs exactly. Chunks are written atomically and a
corrupt chunk is deleted with a warning and recomputed (see the feature cache).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from rdbench.features.cache import FeatureCache


def score_key(image_bytes: bytes, prompt: str | None) -> str:
    """The cache key (64 hex digits) of one (image, prompt) pair."""
    image = hashlib.sha256(image_bytes).hexdigest()
    if prompt is None:
        return image
    text = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
    return hashlib.sha256(f"{image}:{text}".encode()).hexdigest()


class ScoreCache:
    """Scores of one reward id; ``get`` looks a key up, ``put`` stores a chunk atomically."""

    def __init__(self, reward_id: str, root: str | Path | None = None) -> None:
        self.reward_id = reward_id
        name = reward_id.partition(":")[0]
        self._ns = FeatureCache(root).namespace(
            f"reward:{reward_id}", dim=1, extractor=f"reward-{name}"
        )

    @property
    def folder(self) -> Path:
        return self._ns.path

    def get(self, key: str) -> float | None:
        row = self._ns.get([key]).get(key)
        return None if row is None else float(row[0])

    def __len__(self) -> int:
        return len(self._ns)

    def put(self, scores: dict[str, float]) -> None:
        """Store ``scores`` as one new chunk (no-op when empty)."""
        if scores:
            keys = list(scores)
            self._ns.put(keys, np.array([[scores[k]] for k in keys], dtype=np.float32))
