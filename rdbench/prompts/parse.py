"""Prompts, stable prompt ids, and parsers for the prompt file formats rdbench reads.

Prompt ids are ``f"{suite}-{h}"`` with ``h`` the first 12 hex digits of
``sha256(normalise_text(text))``. An exact duplicate (same normalised text) inside one suite
hashes ``f"{normalised}\\x00{k}"`` instead, ``k`` = 1, 2, ... its occurrence number in file
order. The row index is deliberately *not* hashed: reordering rows or adding new prompts
never changes the id of an existing prompt, and one suite's ids do not depend on any other
suite. Parsers return :class:`Record` rows; :func:`build_prompts` turns them into
:class:`Prompt` objects and applies the duplicate policy.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import unicodedata
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from rdbench.errors import RdbenchError

ID_HEX_DIGITS = 12
DuplicatePolicy = Literal["error", "keep", "drop"]
DUPLICATE_POLICIES: tuple[str, ...] = ("error", "keep", "drop")

# Column names accepted (case-insensitively) in user csv/tsv/jsonl files.
TEXT_COLUMNS = ("prompt", "caption", "text")
KNOWN_COLUMNS = ("category", "challenge", "note")


@dataclass(frozen=True)
class Prompt:
    """One prompt of a suite; ``index`` is its 0-based position in the suite's file order."""

    prompt_id: str
    text: str
    suite: str
    index: int
    category: str | None = None
    challenge: str | None = None
    note: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Record:
    """A parsed row before ids are given; ``where`` locates it for error messages."""

    text: str
    category: str | None = None
    challenge: str | None = None
    note: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    where: str = ""


def normalise_text(text: str) -> str:
    """The form of a prompt that ids hash: Unicode NFC, whitespace runs collapsed, stripped."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def loose_key(text: str) -> str:
    """Near-duplicate key: NFKC, case-folded, punctuation and whitespace runs -> one space."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"[\W_]+", " ", folded).strip()


def text_hash(normalised: str, occurrence: int = 0) -> str:
    key = normalised if occurrence == 0 else f"{normalised}\x00{occurrence}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:ID_HEX_DIGITS]


def duplicate_groups(texts: Iterable[str], *, loose: bool = False) -> list[list[int]]:
    """Indices of texts that share a key (exact: :func:`normalise_text`; loose: :func:`loose_key`)."""
    key = loose_key if loose else normalise_text
    groups: dict[str, list[int]] = defaultdict(list)
    for i, text in enumerate(texts):
        groups[key(text)].append(i)
    return [g for g in groups.values() if len(g) > 1]


def build_prompts(
    suite: str, records: Sequence[Record], *, duplicates: DuplicatePolicy = "error"
) -> list[Prompt]:
    """Give each record its stable id (see the module docstring) and apply the duplicate policy.

    ``duplicates``: ``"error"`` raises on any exact duplicate, ``"keep"`` keeps them with
    occurrence-numbered ids and warns, ``"drop"`` keeps the first occurrence only.
    """
    if duplicates not in DUPLICATE_POLICIES:
        raise RdbenchError(f"duplicates={duplicates!r}: use one of {', '.join(DUPLICATE_POLICIES)}")
    if not records:
        raise RdbenchError(f"suite {suite!r}: no prompts found")
    normalised = [normalise_text(r.text) for r in records]
    empty = [records[i].where or f"row {i}" for i, n in enumerate(normalised) if not n]
    if empty:
        raise RdbenchError(f"suite {suite!r}: empty prompt at {', '.join(empty[:5])}")
    groups = duplicate_groups(normalised)
    if groups and duplicates == "error":
        shown = "; ".join(
            f"{normalised[g[0]][:60]!r} at " + ", ".join(records[i].where or f"row {i}" for i in g)
            for g in groups[:3]
        )
        raise RdbenchError(
            f"suite {suite!r}: {len(groups)} prompt(s) appear more than once ({shown}); "
            "remove the duplicates, or pass duplicates='keep' (distinct ids) or 'drop' "
            "(first occurrence) / --duplicates keep|drop"
        )
    if groups and duplicates == "keep":
        extra = sum(len(g) - 1 for g in groups)
        warnings.warn(
            f"suite {suite!r}: {extra} exact duplicate prompt(s) kept with distinct ids",
            stacklevel=2,
        )
    seen: Counter[str] = Counter()
    prompts: list[Prompt] = []
    for record, norm in zip(records, normalised, strict=True):
        occurrence = seen[norm]
        seen[norm] += 1
        if occurrence and duplicates == "drop":
            continue
        prompts.append(
            Prompt(
                prompt_id=f"{suite}-{text_hash(norm, occurrence)}",
                text=record.text.strip(),
                suite=suite,
                index=len(prompts),
                category=record.category,
                challenge=record.challenge,
                note=record.note,
                meta=dict(record.meta),
            )
        )
    ids = Counter(p.prompt_id for p in prompts)
    clashes = [i for i, n in ids.items() if n > 1]
    if clashes:  # a 48-bit hash collision between different texts: astronomically rare
        raise RdbenchError(f"suite {suite!r}: prompt id collision for {clashes[:3]}")
    return prompts


# --------------------------------------------------------------------------------------------
# Parsers


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise RdbenchError(f"prompt file {str(path)!r} does not exist") from None
    except UnicodeDecodeError as exc:
        raise RdbenchError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _record(fields: dict[str, Any], where: str, source: str) -> Record:
    """A record from one row/object whose keys are column names (any case)."""
    lower = {str(k).strip().lower(): v for k, v in fields.items()}
    text_key = next((k for k in TEXT_COLUMNS if k in lower), None)
    if text_key is None:
        raise RdbenchError(
            f"{where}: no prompt column; name it one of {', '.join(TEXT_COLUMNS)} "
            f"(found: {', '.join(map(str, fields)) or 'none'})"
        )
    raw = lower[text_key]
    if not isinstance(raw, str):
        raise RdbenchError(f"{where}: the prompt must be a string, got {type(raw).__name__}")
    text = raw.strip()
    if not text:
        raise RdbenchError(f"{where}: empty prompt in {source}; every row needs prompt text")
    meta = {
        k: v
        for k, v in fields.items()
        if str(k).strip().lower() not in (text_key, *KNOWN_COLUMNS, "meta")
    }
    if isinstance(lower.get("meta"), dict):
        meta.update(lower["meta"])
    return Record(
        text=text,
        category=_clean(lower.get("category")),
        challenge=_clean(lower.get("challenge")),
        note=_clean(lower.get("note")),
        meta=meta,
        where=where,
    )


def read_delimited(
    path: str | Path, delimiter: str, *, expected_header: Sequence[str] | None = None
) -> list[Record]:
    """A csv (``,``, standard quoting) or tsv (``\\t``, no quoting) file with a header row.

    Every row must have as many fields as the header; blank lines are skipped. TSV is read
    with quoting off so that quotes inside prompts (PartiPrompts has 28) are kept verbatim.
    """
    path = Path(path)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    lines = _read_text(path).splitlines()
    reader = csv.reader(lines, delimiter=delimiter, quoting=quoting, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise RdbenchError(f"{path}: empty file; expected a header row") from None
    header = [h.strip() for h in header]
    if expected_header is not None and header != list(expected_header):
        raise RdbenchError(
            f"{path}: header is {header}, expected {list(expected_header)}; is this the right file?"
        )
    records = []
    try:
        for row in reader:
            where = f"{path.name}:{reader.line_num}"
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise RdbenchError(
                    f"{where}: malformed row with {len(row)} field(s), expected {len(header)} "
                    f"({', '.join(header)}) separated by {delimiter!r}"
                )
            records.append(_record(dict(zip(header, row, strict=True)), where, path.name))
    except csv.Error as exc:
        raise RdbenchError(f"{path.name}:{reader.line_num}: malformed row ({exc})") from None
    return records


def read_txt(path: str | Path) -> list[Record]:
    """One prompt per line; blank lines are skipped."""
    path = Path(path)
    return [
        Record(text=line.strip(), where=f"{path.name}:{i}")
        for i, line in enumerate(_read_text(path).splitlines(), start=1)
        if line.strip()
    ]


def read_jsonl(path: str | Path) -> list[Record]:
    """One JSON object per line with a ``prompt`` (or ``caption``/``text``) key.

    ``category``, ``challenge`` and ``note`` are kept; other keys (and a ``meta`` object) go
    into the prompt's ``meta``.
    """
    path = Path(path)
    records = []
    for i, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name}:{i}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RdbenchError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise RdbenchError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        records.append(_record(obj, where, path.name))
    return records


def read_json_list(path: str | Path, *, category: str | None = None) -> list[Record]:
    """A JSON list of prompt strings (the HPSv2 benchmark format), all in ``category``."""
    path = Path(path)
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise RdbenchError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, list):
        raise RdbenchError(f"{path}: expected a JSON list of prompt strings")
    records = []
    for i, item in enumerate(data):
        where = f"{path.name}[{i}]"
        if isinstance(item, dict):
            record = _record(item, where, path.name)
            records.append(record if record.category else replace(record, category=category))
            continue
        if not isinstance(item, str):
            raise RdbenchError(f"{where}: expected a string, got {type(item).__name__}")
        if not item.strip():
            raise RdbenchError(f"{where}: empty prompt in {path.name}")
        records.append(Record(text=item.strip(), category=category, where=where))
    return records


USER_FORMATS = (".txt", ".csv", ".tsv", ".jsonl", ".json")


def read_user_file(path: str | Path) -> list[Record]:
    """A user prompt file, by extension: .txt, .csv, .tsv, .jsonl or .json (a list)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return read_txt(path)
    if suffix in (".csv", ".tsv"):
        return read_delimited(path, "," if suffix == ".csv" else "\t")
    if suffix == ".jsonl":
        return read_jsonl(path)
    if suffix == ".json":
        return read_json_list(path)
    raise RdbenchError(
        f"{path}: unknown prompt file type {suffix or '(none)'!r}; use one of "
        f"{', '.join(USER_FORMATS)}"
    )
