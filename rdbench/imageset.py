"""The image-set format: a folder (or ``.zip``) of images, optionally with ``manifest.jsonl``.

**With a manifest** (per-prompt and paired metrics run): ``manifest.jsonl`` at the set's root
holds one JSON object per line, exactly what ``rdbench plan`` writes::

    {"path": "p0001/0.png", "prompt_id": "p0001", "prompt": "a red bus", "seed": 0,
     "category": "vehicles", "meta": {}}

- ``path`` (string, required): the image, relative to the root, ``/``-separated. It may not
  be absolute, contain ``..`` or ``\\``, or lead outside the root through a symlink.
- ``prompt_id`` (string, required), ``seed`` (integer >= 0, required), ``prompt`` (string
  or null, required key), ``category`` (string or null, optional), ``meta`` (object,
  optional). Other top-level fields are kept in ``meta``. Blank lines are ignored.
- Two lines may not share a ``path`` or a ``(prompt_id, seed)`` pair.

**Without a manifest** (only set-level metrics run): every image file under the root,
recursively, sorted by relative path; extensions :data:`rdbench.images.IMAGE_EXTENSIONS`
(case-insensitive); hidden files and folders (``.name``) are skipped. Symlinks are followed
wherever they point (it is the user's own folder), each directory once: a link back to an
already scanned directory is reported as a symlink loop.

**A .zip** of either layout works the same. If the archive holds one top-level folder and no
``manifest.jsonl`` at its root, that folder is the root. Members with absolute paths, ``..``
or symlink members are refused; ``__MACOSX`` and hidden members are ignored.

Image files that the manifest does not list are ignored.

**Errors.** Problems with the manifest text itself (invalid JSON or UTF-8, missing fields,
wrong types, paths leaving the root, duplicates) always raise :class:`RdbenchError` naming
the line. Problems with single files (missing, unreadable, not a regular file, symlink loop,
unsafe zip member) raise too, listing every bad file, unless ``on_error="skip"``: then they
are listed in :attr:`ImageSet.skipped` and left out. A set with no usable image raises.
Files are decoded later (:meth:`ImageSet.load`, :meth:`ImageSet.iter_rgb`), where corrupt
images raise :class:`~rdbench.images.ImageDecodeError` or, when skipping, join ``skipped``.
Files over :data:`MAX_FILE_BYTES` (1 GiB) are refused before reading.

**Identity.** :attr:`ImageSet.manifest_sha256` is the sha256 of the manifest's bytes; for a
set without manifest it is the sha256 of the sorted relative paths joined by ``\\n`` (UTF-8,
undecodable bytes of file names kept via ``surrogateescape``).

**File names** that are not valid UTF-8 are kept as Python strings with surrogate escapes
(``os.fsdecode``), so they round-trip to the file system; messages show them with ``repr``.

**Pairing.** Two sets are paired by ``(prompt_id, seed)``: :func:`pair`.
``rdbench manifest DIR`` writes a manifest for folders named ``<prompt_id>/<seed>.<ext>``:
:func:`write_manifest`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from rdbench.errors import RdbenchError
from rdbench.images import IMAGE_EXTENSIONS, MAX_PIXELS, decode_rgb

MANIFEST_NAME = "manifest.jsonl"
OnError = Literal["raise", "skip"]
ON_ERROR_CHOICES: tuple[str, ...] = ("raise", "skip")
_KNOWN_FIELDS = ("path", "prompt_id", "prompt", "seed", "category", "meta")
_MAX_LISTED = 10
#: Larger files are refused before reading (a zip member's size is its declared size).
MAX_FILE_BYTES = 1 << 30


def _check_file_size(size: int, location: str) -> None:
    if size > MAX_FILE_BYTES:
        raise RdbenchError(
            f"{location!r}: file is {size:,} bytes, over rdbench.imageset.MAX_FILE_BYTES "
            f"({MAX_FILE_BYTES:,}); no image file should be that large"
        )


@dataclass(frozen=True)
class ImageItem:
    """One image of a set. ``key`` is its relative POSIX path inside the set."""

    key: str
    prompt_id: str | None = None
    prompt: str | None = None
    seed: int | None = None
    category: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False)
    line: int | None = field(default=None, compare=False)  # manifest line number

    @property
    def pair_key(self) -> tuple[str, int] | None:
        """``(prompt_id, seed)``, or None for an image of a set without manifest."""
        if self.prompt_id is None or self.seed is None:
            return None
        return (self.prompt_id, self.seed)

    def read_bytes(self, image_set: ImageSet) -> bytes:
        """The file's bytes, read through ``image_set`` (same as ``image_set.read_bytes``)."""
        return image_set.read_bytes(self)


# --------------------------------------------------------------------------- file sources


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _stat_problem(path: Path) -> str | None:
    """Why the file at ``path`` cannot be read as an image file, or None if it can."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop"
        if exc.errno == errno.ENOENT:
            return "broken symlink" if os.path.islink(path) else "file does not exist"
        return f"cannot access it ({exc.strerror})"
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        return f"{kind}, not an image file"
    if not os.access(path, os.R_OK):
        return "permission denied (the file is not readable)"
    return None


class _Folder:
    """Images in a directory tree."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._real_root = root.resolve()

    def location(self, key: str) -> str:
        return str(self.root / key)

    def manifest_bytes(self) -> bytes | None:
        path = self.root / MANIFEST_NAME
        if not path.exists():
            return None
        try:
            return path.read_bytes()
        except OSError as exc:
            raise RdbenchError(f"cannot read {str(path)!r}: {exc.strerror}") from None

    def scan(self) -> tuple[list[str], list[tuple[str, str]]]:
        """Relative paths of all image files (sorted) and (path, reason) problems."""
        keys: list[str] = []
        problems: list[tuple[str, str]] = []
        seen: dict[tuple[int, int], str] = {}

        def walk(directory: Path, rel: str) -> None:
            st = os.stat(directory)
            ident = (st.st_dev, st.st_ino)
            if ident in seen:
                problems.append(
                    (
                        rel,
                        f"symlink loop: this folder was already scanned as {seen[ident] or '.'!r}",
                    )
                )
                return
            seen[ident] = rel
            try:
                with os.scandir(directory) as entries:
                    names = sorted(entry.name for entry in entries)
            except OSError as exc:
                problems.append((rel or ".", f"cannot list the folder ({exc.strerror})"))
                return
            for name in names:
                if name.startswith("."):
                    continue
                child, child_rel = directory / name, f"{rel}/{name}" if rel else name
                try:
                    is_dir = stat.S_ISDIR(os.stat(child).st_mode)
                except OSError:
                    is_dir = False
                if is_dir:
                    walk(child, child_rel)
                    continue
                problem = _stat_problem(child)
                if problem == "symlink loop" or (_is_image_name(name) and problem is not None):
                    problems.append((child_rel, problem))
                elif _is_image_name(name):
                    keys.append(child_rel)

        walk(self.root, "")
        return sorted(keys), problems

    def check(self, key: str) -> tuple[str | None, str | None]:
        """(structural error, per-file problem) for a manifest path inside the root."""
        path = self.root / key
        try:
            real = path.resolve()
        except (OSError, RuntimeError):
            return None, "symlink loop"
        if not real.is_relative_to(self._real_root):
            return f"{key!r} leads outside the set's folder through a symlink", None
        return None, _stat_problem(path)

    def read(self, key: str) -> bytes:
        try:
            with open(self.root / key, "rb") as fh:
                _check_file_size(os.fstat(fh.fileno()).st_size, self.location(key))
                return fh.read()
        except OSError as exc:
            raise RdbenchError(f"cannot read {self.location(key)!r}: {exc.strerror}") from None


class _Zip:
    """Images in a .zip archive, read member by member (the handle reopens after pickling)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: zipfile.ZipFile | None = None
        self._pid = os.getpid()
        self.members: dict[str, zipfile.ZipInfo] = {}
        self.problems: list[tuple[str, str]] = []
        names: list[tuple[list[str], zipfile.ZipInfo]] = []
        for info in self.zip.infolist():
            parts = info.filename.split("/")
            if info.is_dir():
                continue
            if info.filename.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", info.filename):
                self.problems.append((info.filename, "unsafe member: absolute path"))
            elif ".." in parts or "\\" in info.filename:
                self.problems.append((info.filename, "unsafe member: path with '..' or '\\'"))
            elif any(p.startswith(".") or p == "__MACOSX" for p in parts if p):
                continue  # hidden files, macOS resource forks
            elif stat.S_ISLNK(info.external_attr >> 16):
                self.problems.append((info.filename, "symlink member (not followed)"))
            else:
                names.append(([p for p in parts if p], info))
        tops = {parts[0] for parts, _ in names}
        strip = (
            len(tops) == 1
            and all(len(parts) > 1 for parts, _ in names)
            and not any(parts == [MANIFEST_NAME] for parts, _ in names)
        )
        for parts, info in names:
            key = "/".join(parts[1:] if strip else parts)
            if key in self.members:  # 'a/x.png' and 'a//x.png'
                self.problems.append((info.filename, f"the same image name as another: {key!r}"))
                continue
            self.members[key] = info

    @property
    def zip(self) -> zipfile.ZipFile:
        if self._handle is None or self._pid != os.getpid():
            try:
                self._handle, self._pid = zipfile.ZipFile(self.path), os.getpid()
            except (zipfile.BadZipFile, OSError) as exc:
                raise RdbenchError(f"cannot open {str(self.path)!r} as a zip: {exc}") from None
        return self._handle

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handle": None}

    def location(self, key: str) -> str:
        return f"{self.path}:{key}"

    def manifest_bytes(self) -> bytes | None:
        return self.read(MANIFEST_NAME) if MANIFEST_NAME in self.members else None

    def scan(self) -> tuple[list[str], list[tuple[str, str]]]:
        return sorted(k for k in self.members if _is_image_name(k)), list(self.problems)

    def check(self, key: str) -> tuple[str | None, str | None]:
        return None, (None if key in self.members else "file does not exist in the archive")

    def read(self, key: str) -> bytes:
        try:
            info = self.members[key]
            _check_file_size(info.file_size, self.location(key))
            return self.zip.read(info)
        except RdbenchError:
            raise
        except Exception as exc:  # noqa: BLE001 - encrypted, Deflate64/AES/zstd, bad zlib data
            raise RdbenchError(f"cannot read {self.location(key)!r}: {exc}") from None


# --------------------------------------------------------------------------- manifest lines


def iter_jsonl(data: bytes, source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) for each non-blank line; errors name the line."""
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
        except UnicodeDecodeError:
            raise RdbenchError(f"{source} line {number}: not valid UTF-8") from None
        if not text:
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RdbenchError(f"{source} line {number}: invalid JSON ({exc.msg})") from None
        except RecursionError:
            raise RdbenchError(f"{source} line {number}: JSON nested too deeply") from None
        if not isinstance(obj, dict):
            raise RdbenchError(
                f"{source} line {number}: expected a JSON object, got {type(obj).__name__}"
            )
        yield number, obj


def _field(obj: dict[str, Any], name: str, kinds: tuple[type, ...], where: str) -> Any:
    value = obj[name]
    if value is None and type(None) in kinds:
        return None
    if isinstance(value, bool) or not isinstance(value, kinds):
        wanted = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
        raise RdbenchError(
            f"{where}: field {name!r} must be {wanted}, got {type(value).__name__} {value!r}"
        )
    return value


def _normalise_path(value: str, where: str) -> str:
    """The canonical relative key of a manifest ``path``; refuses paths leaving the root."""
    if not value or value.startswith("/") or re.match(r"^[A-Za-z]:", value):
        raise RdbenchError(f"{where}: path {value!r} must be relative to the set's folder")
    if "\\" in value:
        raise RdbenchError(f"{where}: path {value!r} contains '\\'; separate folders with '/'")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if ".." in parts or not parts:
        raise RdbenchError(f"{where}: path {value!r} points outside the set's folder")
    return "/".join(parts)


def parse_manifest(data: bytes, source: str) -> list[ImageItem]:
    """Validate manifest text (fields, types, paths, duplicates) into items, in file order."""
    items: list[ImageItem] = []
    by_path: dict[str, int] = {}
    by_pair: dict[tuple[str, int], int] = {}
    texts: dict[str, tuple[str | None, int]] = {}
    for number, obj in iter_jsonl(data, source):
        where = f"{source} line {number}"
        missing = [name for name in ("path", "prompt_id", "prompt", "seed") if name not in obj]
        if missing:
            raise RdbenchError(f"{where}: missing field(s) {', '.join(missing)}")
        key = _normalise_path(_field(obj, "path", (str,), where), where)
        prompt_id = _field(obj, "prompt_id", (str,), where)
        seed = _field(obj, "seed", (int,), where)
        if seed < 0:
            raise RdbenchError(f"{where}: seed must be >= 0, got {seed}")
        meta = dict(_field(obj, "meta", (dict,), where)) if "meta" in obj else {}
        meta.update({k: v for k, v in obj.items() if k not in _KNOWN_FIELDS and k not in meta})
        if key in by_path:
            raise RdbenchError(
                f"{source} lines {by_path[key]} and {number} both point to {key!r}; "
                "each image must appear once"
            )
        if (prompt_id, seed) in by_pair:
            raise RdbenchError(
                f"{source} lines {by_pair[(prompt_id, seed)]} and {number} both have "
                f"prompt_id {prompt_id!r}, seed {seed}; (prompt_id, seed) must be unique"
            )
        prompt = _field(obj, "prompt", (str, type(None)), where)
        first, line = texts.setdefault(prompt_id, (prompt, number))
        if first != prompt:
            raise RdbenchError(
                f"{source} lines {line} and {number} give prompt_id {prompt_id!r} two texts "
                f"({first!r} and {prompt!r}); one prompt_id names one prompt"[:600]
            )
        by_path[key], by_pair[(prompt_id, seed)] = number, number
        items.append(
            ImageItem(
                key=key,
                prompt_id=prompt_id,
                prompt=prompt,
                seed=seed,
                category=_field(obj, "category", (str, type(None)), where)
                if "category" in obj
                else None,
                meta=meta,
                line=number,
            )
        )
    return items


def _problem_list(problems: list[tuple[str, str]]) -> str:
    shown = "; ".join(f"{name!r}: {why}" for name, why in problems[:_MAX_LISTED])
    more = len(problems) - _MAX_LISTED
    return shown + (f"; and {more} more" if more > 0 else "")


def _check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR_CHOICES:
        raise RdbenchError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")


# --------------------------------------------------------------------------- the set


class ImageSet:
    """A set of images with optional per-image prompt metadata; see the module docstring."""

    def __init__(
        self,
        root: Path,
        items: list[ImageItem],
        *,
        source: _Folder | _Zip,
        has_manifest: bool,
        manifest_sha256: str | None,
        skipped: list[tuple[str, str]] | None = None,
    ) -> None:
        self.root = root
        self.items = items
        self.has_manifest = has_manifest
        self.manifest_sha256 = manifest_sha256
        self.skipped: list[tuple[str, str]] = list(skipped or [])
        self._source = source

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, on_error: OnError = "raise") -> ImageSet:
        """Open a folder or ``.zip`` (a path to its ``manifest.jsonl`` also works)."""
        _check_on_error(on_error)
        root = Path(path).expanduser()
        if root.name == MANIFEST_NAME and root.is_file():
            root = root.parent
        if root.is_dir():
            source: _Folder | _Zip = _Folder(root)
        elif root.is_file():
            if not zipfile.is_zipfile(root):
                raise RdbenchError(
                    f"{str(root)!r} is neither a folder nor a .zip archive; an image set is a "
                    f"folder of images (optionally with {MANIFEST_NAME}) or a .zip of one"
                )
            source = _Zip(root)
        else:
            raise RdbenchError(f"image set {str(root)!r} does not exist")

        manifest = source.manifest_bytes()
        if manifest is None:
            keys, problems = source.scan()
            items = [ImageItem(key=k) for k in keys]
            digest = hashlib.sha256("\n".join(keys).encode("utf-8", "surrogateescape"))
        else:
            items, problems = cls._checked_manifest_items(source, manifest)
            digest = hashlib.sha256(manifest)
        if problems and on_error == "raise":
            raise RdbenchError(
                f"{len(problems)} bad file(s) in image set {str(root)!r}: "
                f"{_problem_list(problems)}; fix them or skip them with on_error='skip' "
                "(CLI: --on-error skip)"
            )
        if not items:
            what = (
                f"its {MANIFEST_NAME} lists no usable image"
                if manifest is not None
                else f"no image files ({', '.join(IMAGE_EXTENSIONS)}) were found"
            )
            skipped = f"; skipped: {_problem_list(problems)}" if problems else ""
            raise RdbenchError(f"image set {str(root)!r} is empty: {what}{skipped}")
        return cls(
            root,
            items,
            source=source,
            has_manifest=manifest is not None,
            manifest_sha256=digest.hexdigest(),
            skipped=problems,
        )

    @staticmethod
    def _checked_manifest_items(
        source: _Folder | _Zip, manifest: bytes
    ) -> tuple[list[ImageItem], list[tuple[str, str]]]:
        label = repr(source.location(MANIFEST_NAME))
        items, problems = [], []
        for item in parse_manifest(manifest, label):
            structural, problem = source.check(item.key)
            if structural is not None:
                raise RdbenchError(f"{label} line {item.line}: {structural}")
            if problem is not None:
                problems.append((item.key, f"{problem} (manifest line {item.line})"))
            else:
                items.append(item)
        return items, problems

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ImageItem]:
        return iter(self.items)

    def __repr__(self) -> str:
        kind = "manifest" if self.has_manifest else "no manifest"
        return f"ImageSet({str(self.root)!r}, {len(self)} images, {kind})"

    def describe(self, item: ImageItem | str) -> str:
        """The item's location (path, or ``archive.zip:member``) for messages and for
        :func:`~rdbench.images.decode_rgb`'s ``name``. It may hold surrogate escapes of
        undecodable file-name bytes, so format it with ``repr`` (``{name!r}``) to print."""
        return self._source.location(item if isinstance(item, str) else item.key)

    def read_bytes(self, item: ImageItem | str) -> bytes:
        """The raw bytes of one image; :class:`RdbenchError` naming the file if unreadable."""
        return self._source.read(item if isinstance(item, str) else item.key)

    def load(self, item: ImageItem | str, *, max_pixels: int | None = MAX_PIXELS) -> Image.Image:
        """One image decoded to RGB by :func:`rdbench.images.decode_rgb`."""
        key = item if isinstance(item, str) else item.key
        return decode_rgb(self.read_bytes(key), self.describe(key), max_pixels=max_pixels)

    def iter_rgb(
        self, *, on_error: OnError = "raise", max_pixels: int | None = MAX_PIXELS
    ) -> Iterator[tuple[ImageItem, Image.Image]]:
        """Decode every item in order; with ``on_error="skip"`` bad ones go to ``skipped``."""
        _check_on_error(on_error)
        for item in self.items:
            try:
                image = self.load(item, max_pixels=max_pixels)
            except RdbenchError as exc:  # ImageDecodeError or an unreadable file
                if on_error == "raise":
                    raise
                if all(key != item.key for key, _ in self.skipped):
                    reason = str(exc).removeprefix(f"{self.describe(item)!r}: ")
                    self.skipped.append((item.key, reason))
                continue
            yield item, image

    def prompts(self) -> dict[str, list[ImageItem]]:
        """Items grouped by ``prompt_id``, in order of first appearance (needs a manifest)."""
        if not self.has_manifest:
            raise RdbenchError(
                f"image set {str(self.root)!r} has no {MANIFEST_NAME}, so its images have no "
                "prompts; per-prompt metrics need one (write it with `rdbench manifest DIR`)"
            )
        groups: dict[str, list[ImageItem]] = {}
        for item in self.items:
            groups.setdefault(item.prompt_id or "", []).append(item)
        return groups


# --------------------------------------------------------------------------- pairing


@dataclass(frozen=True)
class Pairing:
    """Images of two sets matched by ``(prompt_id, seed)``, in the order of set ``a``."""

    pairs: list[tuple[ImageItem, ImageItem]]
    only_a: list[ImageItem]
    only_b: list[ImageItem]
    note: str = ""

    @property
    def n_matched(self) -> int:
        return len(self.pairs)

    def summary(self) -> str:
        text = (
            f"{self.n_matched} pairs matched by (prompt_id, seed); "
            f"{len(self.only_a)} only in the first set, {len(self.only_b)} only in the second"
        )
        return f"{text} ({self.note})" if self.note else text


def pair(a: ImageSet, b: ImageSet) -> Pairing:
    """Match the images of ``a`` and ``b`` that share ``(prompt_id, seed)``.

    Sets without a manifest have no prompt ids, so nothing pairs; ``note`` says why.
    """
    missing = [str(s.root) for s in (a, b) if not s.has_manifest]
    if missing:
        note = f"no pairs: {', '.join(map(repr, missing))} has no {MANIFEST_NAME}"
        return Pairing([], list(a.items), list(b.items), note)
    index_b = {item.pair_key: item for item in b.items}
    keys_a = {item.pair_key for item in a.items}
    pairs = [(item, index_b[item.pair_key]) for item in a.items if item.pair_key in index_b]
    only_a = [item for item in a.items if item.pair_key not in index_b]
    only_b = [item for item in b.items if item.pair_key not in keys_a]
    differ = sorted(
        {x.prompt_id for x, y in pairs if None not in (x.prompt, y.prompt) and x.prompt != y.prompt}
    )
    note = ""
    if differ:  # same ids, other prompts: the two sets come from different plans
        note = (
            f"{len(differ)} prompt id(s) have other prompt texts in the two sets (first: "
            f"{differ[0]!r}); check that both were generated from the same plan"[:400]
        )
    return Pairing(pairs, only_a, only_b, note)


# --------------------------------------------------------------------------- writing


def load_prompt_plan(path: str | os.PathLike[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Prompt texts and categories by ``prompt_id`` from a JSONL plan or manifest.

    Each line needs ``prompt_id`` and ``prompt`` (``category`` optional); a prompt id may
    repeat (one line per seed) but must keep the same text.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RdbenchError(f"cannot read prompt file {str(path)!r}: {exc.strerror}") from None
    prompts: dict[str, str] = {}
    categories: dict[str, str] = {}
    for number, obj in iter_jsonl(data, repr(str(path))):
        where = f"{str(path)!r} line {number}"
        if "prompt_id" not in obj or "prompt" not in obj:
            raise RdbenchError(f"{where}: each line needs 'prompt_id' and 'prompt'")
        pid = _field(obj, "prompt_id", (str,), where)
        text = _field(obj, "prompt", (str,), where)
        if prompts.setdefault(pid, text) != text:
            raise RdbenchError(f"{where}: prompt_id {pid!r} has two different prompt texts")
        category = _field(obj, "category", (str, type(None)), where) if "category" in obj else None
        if category is not None:
            categories[pid] = category
    return prompts, categories


_SEED_NAME = re.compile(r"^(\d+)(\.[^.]+)$")


def write_manifest(
    root: str | os.PathLike[str],
    *,
    prompts: Mapping[str, str] | None = None,
    categories: Mapping[str, str] | None = None,
    force: bool = False,
) -> Path:
    """Write ``root/manifest.jsonl`` for a folder laid out as ``<prompt_id>/<seed>.<ext>``.

    ``seed`` is a non-negative integer, ``ext`` an image extension. With ``prompts``, every
    prompt id must have a text there (``categories`` is optional); without, ``prompt`` is
    null. Lines are sorted by (prompt_id, seed). The file is written atomically and an
    existing manifest is kept unless ``force``.
    """
    from rdbench.hub import atomic_write_bytes

    root = Path(root).expanduser()
    if not root.is_dir():
        raise RdbenchError(f"{str(root)!r} is not a folder; `rdbench manifest` needs a folder")
    target = root / MANIFEST_NAME
    if target.exists() and not force:
        raise RdbenchError(f"{str(target)!r} already exists; pass --force to overwrite it")
    keys, problems = _Folder(root).scan()
    if problems:
        raise RdbenchError(f"bad file(s) in {str(root)!r}: {_problem_list(problems)}")
    entries: dict[tuple[str, int], str] = {}
    misfits, duplicates = [], []
    for key in keys:
        parts = key.split("/")
        match = _SEED_NAME.match(parts[-1])
        if len(parts) != 2 or match is None:
            misfits.append(key)
            continue
        pair_key = (parts[0], int(match.group(1)))
        if pair_key in entries:
            duplicates.append(f"{entries[pair_key]!r} and {key!r}")
        entries.setdefault(pair_key, key)
    if misfits:
        shown = ", ".join(map(repr, misfits[:_MAX_LISTED]))
        raise RdbenchError(
            f"{len(misfits)} file(s) in {str(root)!r} do not follow the pattern "
            f"<prompt_id>/<seed>.<ext> (seed an integer): {shown}"
        )
    if duplicates:
        raise RdbenchError(f"same prompt_id and seed twice: {'; '.join(duplicates[:10])}")
    if not entries:
        raise RdbenchError(f"no image files in {str(root)!r}; expected <prompt_id>/<seed>.png")
    if prompts is not None:
        unknown = sorted({pid for pid, _ in entries if pid not in prompts})
        if unknown:
            raise RdbenchError(
                f"{len(unknown)} prompt id(s) in {str(root)!r} are not in the prompt file: "
                f"{', '.join(map(repr, unknown[:_MAX_LISTED]))}"
            )
    lines = []
    for (pid, seed), key in sorted(entries.items()):
        record = {
            "path": key,
            "prompt_id": pid,
            "prompt": None if prompts is None else prompts[pid],
            "seed": seed,
            "category": (categories or {}).get(pid),
            "meta": {},
        }
        try:
            lines.append(json.dumps(record, ensure_ascii=False).encode("utf-8"))
        except UnicodeEncodeError:  # undecodable file-name bytes: keep them as \\udcXX escapes
            lines.append(json.dumps(record).encode("ascii"))
    atomic_write_bytes(target, b"\n".join(lines) + b"\n")
    return target
