"""The prompt-suite registry and :func:`load_suite`.

Built-in suites (``rdbench prompts list``): ``partiprompts``, ``hpsv2`` and ``drawbench`` are
held-out evaluation sets (their only split is ``test``, the whole suite); ``pickapic`` (training
captions) and ``file`` (a user file) are training suites with seeded, stratified
train/val/test splits (:mod:`rdbench.prompts.splits`). Files come through
:func:`rdbench.hub.resolve`: a ``path`` argument, ``RDBENCH_FILE_<NAME>``, the cache or a
download, with the sha256 checked where one is published.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rdbench import hub
from rdbench.errors import RdbenchError
from rdbench.hub import RemoteFile
from rdbench.prompts.parse import (
    DuplicatePolicy,
    Prompt,
    Record,
    build_prompts,
    read_delimited,
    read_json_list,
    read_user_file,
)
from rdbench.prompts.splits import (
    DEFAULT_FRACTIONS,
    check_split,
    filter_categories,
    select_split,
    stratified_limit,
)
from rdbench.registry import Registry

PathLike = str | Path


@dataclass(frozen=True)
class SourceFile:
    """Where a suite's prompts came from; ``verified`` = matched the published sha256."""

    location: str
    sha256: str | None
    verified: bool


@dataclass(frozen=True)
class SuiteSpec:
    """A registered suite. ``reader(path)`` returns the raw records and their sources."""

    name: str
    description: str
    source: str
    license: str
    size: str
    role: Literal["eval", "train"]
    duplicates: DuplicatePolicy
    reader: Callable[[PathLike | None], tuple[list[Record], list[SourceFile]]]
    files: tuple[RemoteFile, ...] = ()

    @property
    def splits(self) -> tuple[str, ...]:
        return ("test",) if self.role == "eval" else ("train", "val", "test")


SUITES: Registry[SuiteSpec] = Registry("prompt suite")


@dataclass(frozen=True)
class PromptSuite:
    """Prompts loaded from one suite, with the selection that produced them."""

    name: str
    prompts: tuple[Prompt, ...]
    sources: tuple[SourceFile, ...]
    split: str | None = None
    seed: int = 0

    def __len__(self) -> int:
        return len(self.prompts)

    def __iter__(self) -> Iterator[Prompt]:
        return iter(self.prompts)

    def __getitem__(self, i: int) -> Prompt:
        return self.prompts[i]

    def category_counts(self) -> dict[str, int]:
        return _counts(p.category for p in self.prompts)

    def challenge_counts(self) -> dict[str, int]:
        return _counts(p.challenge for p in self.prompts)


def _counts(values: Iterable[str | None]) -> dict[str, int]:
    counts = Counter(v for v in values if v)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _resolve(file: RemoteFile, path: PathLike | None) -> tuple[Path, SourceFile]:
    try:
        found = hub.resolve(file, path)
    except RdbenchError as exc:
        if path is not None:
            raise
        raise RdbenchError(f"{exc}\n  or pass the file: path=... (CLI: --path FILE)") from None
    verified = file.sha256 is not None and found.sha256 == file.sha256
    return found.path, SourceFile(str(found.path), found.sha256, verified)


# --- PartiPrompts ------------------------------------------------------------------------------
PARTI_FILE = RemoteFile(
    name="partiprompts",
    filename="PartiPrompts.tsv",
    url="https://raw.githubusercontent.com/google-research/parti/main/PartiPrompts.tsv",
    sha256="fab29e41bb512a169b56acab4cf2a41dcb675e285df2efcde6640c7dd3c440eb",
    description="PartiPrompts (google-research/parti)",
)


def _read_parti(path: PathLike | None) -> tuple[list[Record], list[SourceFile]]:
    local, source = _resolve(PARTI_FILE, path)
    header = ("Prompt", "Category", "Challenge", "Note")
    return read_delimited(local, "\t", expected_header=header), [source]


# --- DrawBench ---------------------------------------------------------------------------------
DRAWBENCH_FILE = RemoteFile(
    name="drawbench",
    filename="DrawBench.csv",
    url="https://raw.githubusercontent.com/kennymckormick/DrawBench-Glance/main/imagen.csv",
    sha256="5e135bae590252ac2913fb6f4bd551699dd8211e856943385321c59b896d5efb",
    description="DrawBench (Imagen paper; CSV copy from kennymckormick/DrawBench-Glance)",
)


def _read_drawbench(path: PathLike | None) -> tuple[list[Record], list[SourceFile]]:
    local, source = _resolve(DRAWBENCH_FILE, path)
    return read_delimited(local, ",", expected_header=("Prompt", "Category")), [source]


# --- HPSv2 benchmark ---------------------------------------------------------------------------
HPSV2_STYLES = ("anime", "concept-art", "paintings", "photo")
HPSV2_FILES = tuple(
    RemoteFile(
        name=f"hpsv2-{style}",
        filename=f"{style}.json",
        url=f"https://huggingface.co/datasets/zhwang/HPDv2/resolve/main/benchmark/{style}.json",
        sha256=None,  # not published; the digest of the file used is recorded in SourceFile
        description=f"HPSv2 benchmark prompts, style {style!r} (Hugging Face zhwang/HPDv2)",
    )
    for style in HPSV2_STYLES
)


def _read_hpsv2(path: PathLike | None) -> tuple[list[Record], list[SourceFile]]:
    folder = None if path is None else Path(path).expanduser()
    if folder is not None and not folder.is_dir():
        raise RdbenchError(
            f"hpsv2: path {str(folder)!r} must be a folder holding "
            f"{', '.join(f.filename for f in HPSV2_FILES)}"
        )
    records: list[Record] = []
    sources: list[SourceFile] = []
    for style, file in zip(HPSV2_STYLES, HPSV2_FILES, strict=True):
        local, source = _resolve(file, None if folder is None else folder / file.filename)
        records += read_json_list(local, category=style)
        sources.append(source)
    return records, sources


# --- Pick-a-Pic --------------------------------------------------------------------------------
PICKAPIC_DATASET = "yuvalkirstain/pickapic_v1_no_images"
PICKAPIC_SPLIT = "train"


def _hf_captions(dataset: str, split: str) -> list[str]:
    """The ``caption`` column of a Hugging Face dataset split, cached under rdbench's home."""
    how = (
        f"  source: https://huggingface.co/datasets/{dataset} (split {split!r}, column 'caption')\n"
        f"  either run once online to fill the cache at {hub.home() / 'hf' / 'datasets'}, or "
        "pass a local captions file with --path / path= (.txt, .csv, .tsv, .jsonl with a "
        "'caption' or 'prompt' column)"
    )
    try:
        import datasets
    except ImportError:
        raise RdbenchError(
            f"pickapic needs the 'datasets' package: pip install 'rdbench[prompts]'\n{how}"
        ) from None
    if hub.offline() and not datasets.config.HF_HUB_OFFLINE:
        raise RdbenchError(
            f"{dataset} is not available (offline mode; set HF_HUB_OFFLINE=1 before start to "
            f"read the Hugging Face cache)\n{how}"
        )
    try:
        ds = datasets.load_dataset(
            dataset, split=split, cache_dir=str(hub.home() / "hf" / "datasets")
        )
        return list(ds["caption"])
    except Exception as exc:  # noqa: BLE001 - hub/datasets errors are many; all mean unavailable
        reason = "offline mode and nothing cached" if hub.offline() else type(exc).__name__
        raise RdbenchError(f"{dataset} is not available ({reason})\n{how}") from None


def _read_pickapic(path: PathLike | None) -> tuple[list[Record], list[SourceFile]]:
    if path is not None:
        return _read_file(path)
    captions = _hf_captions(PICKAPIC_DATASET, PICKAPIC_SPLIT)
    records = [
        Record(text=c.strip(), where=f"{PICKAPIC_SPLIT}[{i}]")
        for i, c in enumerate(captions)
        if isinstance(c, str) and c.strip()
    ]
    digest = hashlib.sha256("\n".join(captions).encode("utf-8")).hexdigest()
    return records, [
        SourceFile(f"hf://datasets/{PICKAPIC_DATASET}:{PICKAPIC_SPLIT}", digest, False)
    ]


# --- user file ---------------------------------------------------------------------------------
def _read_file(path: PathLike | None) -> tuple[list[Record], list[SourceFile]]:
    if path is None:
        raise RdbenchError(
            "suite 'file' needs a prompt file: pass path=... (CLI: --suite file --path FILE); "
            "formats: .txt (one prompt per line), .csv/.tsv (header with a 'prompt' column, "
            "optional 'category'), .jsonl ({'prompt': ..., 'category': ...}), .json (a list)"
        )
    local = Path(path).expanduser()
    records = read_user_file(local)
    return records, [SourceFile(str(local), hub.sha256_file(local), False)]


for _spec in (
    SuiteSpec(
        name="partiprompts",
        description="PartiPrompts: 1632 prompts, 12 categories, 11 challenge aspects",
        source=PARTI_FILE.url,
        license="Apache-2.0",
        size="1632",
        role="eval",
        duplicates="keep",
        reader=_read_parti,
        files=(PARTI_FILE,),
    ),
    SuiteSpec(
        name="hpsv2",
        description="HPSv2 benchmark prompts: anime, concept-art, paintings, photo (800 each)",
        source="https://huggingface.co/datasets/zhwang/HPDv2/tree/main/benchmark",
        license="see source",
        size="3200",
        role="eval",
        duplicates="keep",
        reader=_read_hpsv2,
        files=HPSV2_FILES,
    ),
    SuiteSpec(
        name="drawbench",
        description="DrawBench (Imagen): 200 prompts, 11 categories",
        source=DRAWBENCH_FILE.url,
        license="see source",
        size="200",
        role="eval",
        duplicates="keep",
        reader=_read_drawbench,
        files=(DRAWBENCH_FILE,),
    ),
    SuiteSpec(
        name="pickapic",
        description="Pick-a-Pic v1 training captions (unique), the DRaFT training prompts",
        source=f"https://huggingface.co/datasets/{PICKAPIC_DATASET}",
        license="see source",
        size="unique captions of 584k rows",
        role="train",
        duplicates="drop",
        reader=_read_pickapic,
    ),
    SuiteSpec(
        name="file",
        description="your own prompts: .txt, .csv, .tsv, .jsonl or .json (--path FILE)",
        source="--path FILE",
        license="yours",
        size="-",
        role="train",
        duplicates="error",
        reader=_read_file,
    ),
):
    SUITES.register(_spec.name, _spec)


def load_suite(
    name: str,
    *,
    path: PathLike | None = None,
    split: str | None = None,
    categories: Sequence[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    duplicates: DuplicatePolicy | None = None,
) -> PromptSuite:
    """Load a suite, then select ``split``, then ``categories``, then a stratified ``limit``.

    ``split=None`` keeps every prompt. Evaluation suites accept only ``"test"`` (the whole
    held-out suite); training suites accept ``train``/``val``/``test`` with ``fractions`` and
    ``seed`` (:func:`rdbench.prompts.splits.assign_splits`). ``seed`` also drives ``limit``.
    ``duplicates`` overrides the suite's policy (``error``/``keep``/``drop``).
    """
    spec = SUITES.get(name)
    records, sources = spec.reader(path)
    prompts = build_prompts(name, records, duplicates=duplicates or spec.duplicates)
    if split is not None:
        check_split(split)
        if split not in spec.splits:
            raise RdbenchError(
                f"suite {name!r} is a held-out evaluation set: its only split is 'test' "
                f"(the whole suite), not {split!r}"
            )
        if spec.role == "train":
            prompts = select_split(prompts, split, seed=seed, fractions=fractions)
    if categories:
        prompts = filter_categories(prompts, categories)
    if limit is not None:
        prompts = stratified_limit(prompts, limit, seed=seed)
    return PromptSuite(name, tuple(prompts), tuple(sources), split, seed)
