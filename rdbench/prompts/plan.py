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
    """Read and validate a plan (or manifest) written by :func:`write_plan`.

    The line format is checked by the one manifest parser, :func:`rdbench.imageset.
    parse_manifest` (fields, types, paths, unique ``(prompt_id, seed)``); a plan is stricter
    only in that every prompt text is non-empty and no field outside :data:`PLAN_FIELDS`
    appears.
    """
    from rdbench.imageset import iter_jsonl, parse_manifest

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RdbenchError(f"plan file {str(path)!r} does not exist") from None
    parse_manifest(data, path.name)
    lines = []
    for number, obj in iter_jsonl(data, path.name):
        where = f"{path.name} line {number}"
        unknown = [k for k in obj if k not in PLAN_FIELDS]
        if unknown:
            raise RdbenchError(
                f"{where}: unknown field(s) {unknown}; a plan line has "
                f"{', '.join(REQUIRED_FIELDS)} and optional category, meta"
            )
        if not obj["prompt"]:
            raise RdbenchError(f"{where}: prompt must be a non-empty string")
        lines.append(obj)
    return lines
