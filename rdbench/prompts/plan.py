"""Generation plans: one JSON line per image to generate, identical to image-set manifest lines.

Each line has ``path`` (``f"{prompt_id}/{seed}.png"``, relative POSIX path in the image
folder), ``prompt_id``, ``prompt``, ``seed`` (int), ``category`` (when the prompt has one) and
``meta`` (``suite``, ``index``, and ``challenge``/``note`` when present). Prompt ``j``-th image
uses seed ``seed + j``, the same for every prompt and every method: base, finetuned and
regularised image sets generated from one plan are paired by ``(prompt_id, seed)`` and share
their initial noise. A folder filled from a plan, with the plan saved as its manifest,
evaluates with no extra step.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from rdbench.errors import RdbenchError
from rdbench.prompts.parse import Prompt

PLAN_FIELDS: tuple[str, ...] = ("path", "prompt_id", "prompt", "seed", "category", "meta")
REQUIRED_FIELDS: tuple[str, ...] = ("path", "prompt_id", "prompt", "seed")


def image_path(prompt_id: str, seed: int) -> str:
    return f"{prompt_id}/{seed}.png"


def plan_line(prompt: Prompt, seed: int) -> dict[str, Any]:
    """The manifest line for one image of ``prompt`` with noise seed ``seed``."""
    meta: dict[str, Any] = {"suite": prompt.suite, "index": prompt.index}
    if prompt.challenge:
        meta["challenge"] = prompt.challenge
    if prompt.note:
        meta["note"] = prompt.note
    meta.update(prompt.meta)
    line: dict[str, Any] = {
        "path": image_path(prompt.prompt_id, seed),
        "prompt_id": prompt.prompt_id,
        "prompt": prompt.text,
        "seed": seed,
    }
    if prompt.category:
        line["category"] = prompt.category
    line["meta"] = meta
    return line


def make_plan(
    prompts: Iterable[Prompt], *, images_per_prompt: int, seed: int = 0
) -> list[dict[str, Any]]:
    """Lines for ``images_per_prompt`` images of each prompt, seeds ``seed .. seed + n - 1``."""
    if isinstance(images_per_prompt, bool) or not isinstance(images_per_prompt, int):
        raise RdbenchError(f"images_per_prompt must be an integer, got {images_per_prompt!r}")
    if images_per_prompt < 1:
        raise RdbenchError(f"images_per_prompt must be >= 1, got {images_per_prompt}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise RdbenchError(f"seed must be a non-negative integer, got {seed!r}")
    lines = [plan_line(p, seed + j) for p in prompts for j in range(images_per_prompt)]
    if not lines:
        raise RdbenchError("the plan is empty: the prompt selection has no prompts")
    _check_unique(lines, "plan")
    return lines


def _check_unique(lines: Sequence[dict[str, Any]], where: str) -> None:
    seen: set[tuple[str, int]] = set()
    for line in lines:
        key = (line["prompt_id"], line["seed"])
        if key in seen:
            raise RdbenchError(f"{where}: (prompt_id, seed) {key} appears twice")
        seen.add(key)


def write_plan(lines: Iterable[dict[str, Any]], out: str | os.PathLike[str] | TextIO) -> None:
    """Write JSON Lines (UTF-8, one object per line, fields in :data:`PLAN_FIELDS` order)."""
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    if hasattr(out, "write"):
        out.write(text)
        return
    from rdbench.hub import atomic_write_bytes

    atomic_write_bytes(Path(out), text.encode("utf-8"))


def read_plan(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read and validate a plan (or manifest) written by :func:`write_plan`."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RdbenchError(f"plan file {str(path)!r} does not exist") from None
    lines = []
    for i, text in enumerate(raw.splitlines(), start=1):
        if not text.strip():
            continue
        where = f"{path.name}:{i}"
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RdbenchError(f"{where}: not valid JSON ({exc.msg})") from None
        lines.append(_check_line(obj, where))
    _check_unique(lines, str(path))
    return lines


def _check_line(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise RdbenchError(f"{where}: expected a JSON object")
    missing = [k for k in REQUIRED_FIELDS if k not in obj]
    unknown = [k for k in obj if k not in PLAN_FIELDS]
    if missing or unknown:
        raise RdbenchError(
            f"{where}: missing field(s) {missing}, unknown field(s) {unknown}; a plan line has "
            f"{', '.join(REQUIRED_FIELDS)} and optional category, meta"
        )
    if isinstance(obj["seed"], bool) or not isinstance(obj["seed"], int):
        raise RdbenchError(f"{where}: seed must be an integer, got {obj['seed']!r}")
    for key in ("path", "prompt_id", "prompt"):
        if not isinstance(obj[key], str) or not obj[key]:
            raise RdbenchError(f"{where}: {key} must be a non-empty string")
    parts = obj["path"].split("/")
    if obj["path"].startswith("/") or "\\" in obj["path"] or ".." in parts:
        raise RdbenchError(f"{where}: path {obj['path']!r} must be relative, POSIX, without '..'")
    if "meta" in obj and not isinstance(obj["meta"], dict):
        raise RdbenchError(f"{where}: meta must be a JSON object")
    return obj
