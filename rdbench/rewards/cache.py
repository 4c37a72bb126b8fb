"""A content-keyed cache of reward scores under ``$RDBENCH_HOME/scores/<reward id>/``.

Key: ``sha256(image bytes) + ":" + sha256(prompt)`` (empty prompt part for rewards that ignore
prompts); the folder is the reward id ``name:version@weights-sha``, so a different version or
different weights never share scores. Scores are stored in JSON chunk files written atomically
(temporary file + rename); a chunk that does not parse is reported, deleted and its scores are
simply recomputed.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path

from rdbench.hub import atomic_write_bytes, home

FORMAT = "rdbench-score-cache/1"


def score_key(image_bytes: bytes, prompt: str | None) -> str:
    """The cache key of one (image, prompt) pair."""
    image = hashlib.sha256(image_bytes).hexdigest()
    text = "" if prompt is None else hashlib.sha256(prompt.encode("utf-8")).hexdigest()
    return f"{image}:{text}"


class ScoreCache:
    """Scores of one reward id; ``get`` looks keys up, ``put`` stores new ones atomically."""

    def __init__(self, reward_id: str, root: Path | None = None) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.\-@]", "_", reward_id)
        self.reward_id = reward_id
        self.folder = (root or home() / "scores") / safe
        self._scores: dict[str, float] | None = None

    def _load(self) -> dict[str, float]:
        if self._scores is not None:
            return self._scores
        scores: dict[str, float] = {}
        for chunk in sorted(self.folder.glob("chunk-*.json")):
            try:
                data = json.loads(chunk.read_bytes())
                if data.get("format") != FORMAT or data.get("reward_id") != self.reward_id:
                    raise ValueError("not a score chunk of this reward")
                part = {str(k): float(v) for k, v in data["scores"].items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                warnings.warn(
                    f"score cache chunk {chunk} is corrupt ({exc}); deleted, its scores will "
                    "be recomputed",
                    stacklevel=3,
                )
                chunk.unlink(missing_ok=True)
                continue
            scores.update(part)
        self._scores = scores
        return scores

    def get(self, key: str) -> float | None:
        return self._load().get(key)

    def __len__(self) -> int:
        return len(self._load())

    def put(self, scores: dict[str, float]) -> None:
        """Store ``scores`` as one new chunk (no-op when empty)."""
        if not scores:
            return
        payload = {"format": FORMAT, "reward_id": self.reward_id, "scores": scores}
        data = json.dumps(payload, sort_keys=True).encode()
        name = f"chunk-{hashlib.sha256(data).hexdigest()[:20]}.json"
        atomic_write_bytes(self.folder / name, data)
        self._load().update(scores)
