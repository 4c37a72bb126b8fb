"""Validate result files and keep them in the leaderboard's store (a folder kept in git).

Store layout: ``<store>/<prompt suite>/<method>-<short hash>.json``, each file in canonical
form (``Result.to_json``). ``submit`` refuses, with an ``RdbenchError`` saying why:

- files over ``max_bytes`` (checked before reading), invalid UTF-8 or JSON, JSON nested
  deeper than ``MAX_DEPTH``, duplicate object keys, ``NaN``/``Infinity`` literals and numbers
  that overflow to infinity;
- anything the schema refuses (unknown schema version, unknown metric, value outside its
  metric's range, strings over their length limit, non-http(s) links, ...);
- a result already in the store: the same canonical hash, or the same *identity* (toy flag,
  suite, split, base model, reward model, method name, regulariser, strength, params and
  submitter) -- replacing a point means deleting its file and submitting the new result;
- names that would leave the store (suite and method must be slugs; the resolved target is
  checked to lie inside the store).

Checking a file that is already in the store compares it with the others only.
:func:`check_store` checks a whole store (names carry their own hash, no point twice).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rdbench.errors import RdbenchError
from rdbench.results import SLUG_PATTERN, Result, canonical_json

MAX_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 32
DEFAULT_STORE = Path(__file__).resolve().parents[1] / "leaderboard" / "submissions"


def _reject_constant(name: str) -> Any:
    raise RdbenchError(f"non-finite number {name} is not allowed; write a finite value or omit it")


def _parse_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise RdbenchError(f"number {text[:40]} overflows to infinity")
    return x


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise RdbenchError(f"duplicate key {key[:100]!r} in a JSON object")
        out[key] = value
    return out


def _depth(text: str) -> int:
    """Maximum bracket nesting outside strings (cheap guard before ``json.loads`` recurses)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_bytes(data: bytes, *, max_bytes: int = MAX_BYTES) -> Any:
    """Parse a result file's bytes as strict JSON (size, depth, NaN and duplicate-key checks)."""
    if len(data) > max_bytes:
        raise RdbenchError(f"file is {len(data)} bytes; the limit is {max_bytes}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RdbenchError(f"file is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    if _depth(text) > MAX_DEPTH:
        raise RdbenchError(f"JSON is nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_parse_float,
            object_pairs_hook=_no_duplicate_keys,
        )
    except json.JSONDecodeError as exc:
        raise RdbenchError(
            f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except (RecursionError, ValueError) as exc:  # RdbenchError is a ValueError too
        if isinstance(exc, RdbenchError):
            raise
        raise RdbenchError(f"unreadable JSON: {str(exc)[:200]}") from None


def validate_bytes(data: bytes, *, max_bytes: int = MAX_BYTES) -> Result:
    """Parse and validate a result document given as bytes (e.g. an upload)."""
    return Result.from_dict(parse_bytes(data, max_bytes=max_bytes))


def validate_file(path: str | os.PathLike[str], *, max_bytes: int = MAX_BYTES) -> Result:
    """Validate a result file; the size is checked before anything is read."""
    path = Path(path)
    if not path.is_file():
        raise RdbenchError(f"result file {path} does not exist or is not a regular file")
    size = path.stat().st_size
    if size > max_bytes:
        raise RdbenchError(f"{path.name} is {size} bytes; the limit is {max_bytes}")
    with path.open("rb") as f:
        data = f.read(max_bytes + 1)  # the file may have grown since stat
    return validate_bytes(data, max_bytes=max_bytes)


def identity(result: Result) -> str:
    """What makes two results the same point on the board (see the module docstring)."""
    m, s = result.method, result.setup
    key = {
        "toy": result.toy,
        "suite": s.prompt_suite,
        "split": s.split,
        "base_model": s.base_model,
        "reward_model": s.reward_model,
        "method": m.name,
        "regularizer": m.regularizer,
        "strength": None if m.strength is None else m.strength + 0.0,  # -0.0 is 0.0
        "params": {k: _plain(v) for k, v in m.params.items()},
        "submitter": result.provenance.submitter,
    }
    return canonical_json(key)


def _plain(v: Any) -> Any:
    """A param value as the board compares it: 1, 1.0 and -0.0 + 1 are the same number."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return v
    return float(v) + 0.0


def target_path(result: Result, store: str | os.PathLike[str]) -> Path:
    """``<store>/<suite>/<method>-<hash12>.json``, refusing anything that escapes ``store``."""
    import re

    suite, method = result.setup.prompt_suite, result.method.name
    for what, name in (("prompt suite", suite), ("method", method)):
        if not re.fullmatch(SLUG_PATTERN, name):
            raise RdbenchError(f"{what} {name!r} is not a safe name (lowercase slug)")
    root = Path(store).resolve()
    target = (root / suite / f"{method}-{result.short_hash()}.json").resolve()
    if not target.is_relative_to(root):
        raise RdbenchError(f"refusing to write {target}: it is outside the store {root}")
    return target


@dataclass(frozen=True)
class Rejected:
    """A store file that failed validation, with the reason (input-free, bounded length)."""

    path: Path
    reason: str


def load_store(
    store: str | os.PathLike[str], *, max_bytes: int = MAX_BYTES
) -> tuple[list[tuple[Path, Result]], list[Rejected]]:
    """Every ``*.json`` under ``store``: the valid results and the rejected files."""
    root = Path(store)
    results: list[tuple[Path, Result]] = []
    rejected: list[Rejected] = []
    if not root.is_dir():
        return results, rejected
    for path in sorted(root.rglob("*.json")):
        try:
            results.append((path, validate_file(path, max_bytes=max_bytes)))
        except RdbenchError as exc:
            rejected.append(Rejected(path, str(exc)[:1000]))
    return results, rejected


def submit(
    path: str | os.PathLike[str],
    store: str | os.PathLike[str] = DEFAULT_STORE,
    *,
    check: bool = False,
    max_bytes: int = MAX_BYTES,
) -> Path:
    """Validate ``path`` and write it in canonical form into ``store``; return the target.

    With ``check=True`` nothing is written (the duplicate checks still run).
    """
    result = validate_file(path, max_bytes=max_bytes)
    target = target_path(result, store)
    digest, ident = result.result_hash(), identity(result)
    existing, _ = load_store(store, max_bytes=max_bytes)
    for other_path, other in existing:
        if other_path.resolve() == Path(path).resolve():
            continue  # checking a file that is already in the store: not its own duplicate
        if other.result_hash() == digest:
            raise RdbenchError(f"this result is already in the store as {other_path}")
        if identity(other) == ident:
            raise RdbenchError(
                f"{other_path} already holds this method, strength, setup and submitter; "
                "to replace it, delete that file and submit again"
            )
    if target.exists() and target != Path(path).resolve():
        raise RdbenchError(f"{target} already exists")
    if not check:
        from rdbench.hub import atomic_write_bytes

        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, result.to_json().encode("ascii"))
    return target


def check_store(store: str | os.PathLike[str] = DEFAULT_STORE) -> list[str]:
    """Problems in a store, each one line (none: an empty list): files that fail validation,
    files not at ``<suite>/<method>-<hash12>.json`` of their own content (edited in place),
    and two files for the same point (:func:`identity`)."""
    root = Path(store).resolve()
    results, rejected = load_store(root)
    problems = [f"{x.path}: {x.reason}" for x in rejected]
    seen: dict[str, Path] = {}
    for path, result in results:
        if path.resolve() != target_path(result, root):
            problems.append(
                f"{path}: should be {target_path(result, root).relative_to(root)} "
                "(its name must carry its own hash; submit a changed result as a new file)"
            )
        ident = identity(result)
        if ident in seen:
            problems.append(f"{path}: the same point as {seen[ident]}")
        seen.setdefault(ident, path)
    return problems
