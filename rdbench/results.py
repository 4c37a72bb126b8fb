"""The result schema: one JSON file per evaluated model (method at one strength).

A result carries what was evaluated (method and its regulariser strength, base model, reward
model, prompt suite and split), how (counts, feature extractors and resize modes, image-set
manifest hashes), every metric with its bootstrap interval, and provenance (versions, git
commit, date, submitter, links), and what the evaluation could not use or compared on the side:
``skipped`` files with the reason, ``paired`` differences (generated - reference over images
sharing ``(prompt_id, seed)``). ``SCHEMA_VERSION`` names the format written; loaders read the
versions in ``READABLE_VERSIONS`` (``rdbench.result/1`` lacks ``skipped`` and ``paired``) and
refuse others.

Metric keys: ``"<metric>/<source>"`` or ``"<metric>"``. ``<metric>`` is a name in ``METRICS``
(its range and direction); ``<source>`` is the feature extractor the metric was computed on
(``fid/inception``, ``recall/dinov2``) and must be listed in ``Result.extractors``, or, for
``reward``, the reward model (``reward/pickscore``). Exact toy metrics take no source.

Canonical form (``Result.to_json``): ``model_dump(mode="json")`` written with sorted keys,
2-space indent, ASCII only, Python's shortest round-trip float repr, NaN/inf refused, one
trailing newline. ``result_hash`` is the SHA-256 of those bytes; ``short_hash`` its first 12
hex digits. Build one from Python::

    Result(method=Method(name="draft", regularizer="kl", strength=0.5),
           setup=Setup(base_model="toy-gmm", reward_model="toy", prompt_suite="toy", ...),
           metrics={"reward/toy": MetricValue(value=1.2, low=1.1, high=1.3)},
           manifest_sha256="...", provenance=Provenance.collect(submitter="me"), toy=True)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from rdbench import __version__
from rdbench.errors import RdbenchError
from rdbench.registry import Registry

SCHEMA_VERSION = "rdbench.result/2"
READABLE_VERSIONS = ("rdbench.result/1", SCHEMA_VERSION)

# String limits: names and identifiers <= 200 characters, free text <= 2000.
MAX_NAME = 200
MAX_TEXT = 2000
MAX_ENTRIES = 200  # metrics, categories, params, versions, extractors
MAX_PER_IMAGE = 100_000
MAX_ABS_VALUE = 1e12  # no metric comes near; keeps sums and areas on the board finite

SLUG_PATTERN = r"^[a-z0-9][a-z0-9_.\-]{0,63}$"
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
_TEXT_PATTERN = r"^[^\x00-\x08\x0b-\x1f\x7f]*$"  # newline and tab allowed
_URL_PATTERN = r"^https?://[^\s<>\"'\\\x00-\x1f\x7f]+$"
_SHA256_PATTERN = r"^[0-9a-f]{64}$"
_METRIC_KEY_PATTERN = r"^[a-z0-9_]+(/[a-z0-9][a-z0-9_.\-]{0,63})?$"

Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME, pattern=_NO_CONTROL)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT, pattern=_TEXT_PATTERN)]
Url = Annotated[str, StringConstraints(max_length=MAX_TEXT, pattern=_URL_PATTERN)]
Sha256 = Annotated[str, StringConstraints(pattern=_SHA256_PATTERN)]
Count = Annotated[int, Field(ge=0)]
ParamValue = float | int | bool | Annotated[str, StringConstraints(max_length=MAX_NAME)]


@dataclass(frozen=True)
class MetricSpec:
    """A metric's admissible range ``[low, high]`` and direction; ``needs_source`` says whether
    its key must name a feature extractor (``"feature"``), a reward model (``"reward"``) or
    nothing (``None``)."""

    low: float
    high: float
    higher_is_better: bool
    needs_source: str | None
    description: str

    def bounds(self, difference: bool = False) -> tuple[float, float]:
        """``(low, high)``, or the range of a difference of two values (``difference``)."""
        return (self.low - self.high, self.high - self.low) if difference else (self.low, self.high)

    def contains(self, x: float, difference: bool = False) -> bool:
        low, high = self.bounds(difference)
        return low <= x <= high


METRICS: Registry[MetricSpec] = Registry("metric")
_INF = math.inf
for _name, _spec in {
    "fid": MetricSpec(0, _INF, False, "feature", "Frechet distance"),
    # The unbiased MMD^2 estimate can be slightly negative.
    "kid": MetricSpec(-_INF, _INF, False, "feature", "kernel inception distance"),
    "precision": MetricSpec(0, 1, True, "feature", "improved precision (fidelity)"),
    "recall": MetricSpec(0, 1, True, "feature", "improved recall (diversity)"),
    "density": MetricSpec(0, _INF, True, "feature", "density (Naeem et al. 2020)"),
    "coverage": MetricSpec(0, 1, True, "feature", "coverage (Naeem et al. 2020)"),
    "scd": MetricSpec(0, _INF, False, "feature", "spectral covariance distance"),
    "vendi": MetricSpec(1, _INF, True, "feature", "Vendi score of the whole set"),
    "prompt_vendi": MetricSpec(1, _INF, True, "feature", "Vendi score per prompt, averaged"),
    "prompt_diversity": MetricSpec(
        0, 2, True, "feature", "mean pairwise cosine distance per prompt"
    ),
    "reward": MetricSpec(-_INF, _INF, True, "reward", "mean reward"),
    "mode_coverage": MetricSpec(
        0, 1, True, None, "toy: fraction of modes with 1/4 of their share (nearest mode)"
    ),
    "mode_entropy": MetricSpec(0, _INF, True, None, "toy: entropy of the mode histogram"),
    "on_mode": MetricSpec(
        0, 1, True, None, "toy: fraction of samples within some mode's 99% radius"
    ),
    "w2_to_base": MetricSpec(0, _INF, False, None, "toy: Wasserstein-2 to the base model"),
    "kl_to_base": MetricSpec(
        0, _INF, False, None, "toy: KL of the mode histogram to the mixture weights"
    ),
}.items():
    METRICS.register(_name, _spec)


def split_key(key: str) -> tuple[str, str | None]:
    """``"fid/inception"`` -> ``("fid", "inception")``; ``"mode_coverage"`` -> ``(..., None)``."""
    metric, _, source = key.partition("/")
    return metric, source or None


def metric_spec(key: str) -> MetricSpec:
    """The ``MetricSpec`` of a metric key such as ``"fid/inception"``."""
    return METRICS.get(split_key(key)[0])


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, allow_inf_nan=False, frozen=True, validate_default=True
    )


class MetricValue(_Model):
    """A point estimate with an optional bootstrap interval.

    ``low``/``high`` are interval bounds at ``confidence`` (a percentile bootstrap for means,
    a half-sample interval for set metrics, :mod:`rdbench.metrics.bootstrap`); the point
    estimate is computed on the full set.
    """

    value: Annotated[float, Field(ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE)]
    low: Annotated[float, Field(ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE)] | None = None
    high: Annotated[float, Field(ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE)] | None = None
    confidence: float | None = Field(default=None, gt=0, lt=1)
    n_resamples: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=0, description="samples (or pairs) it was computed on")

    @model_validator(mode="after")
    def _interval(self) -> MetricValue:
        if (self.low is None) != (self.high is None):
            raise ValueError("give both 'low' and 'high' of the interval, or neither")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"interval low {self.low} is above high {self.high}")
        return self

    @classmethod
    def of(
        cls,
        key: str,
        value: float,
        interval: Any | None = None,
        n: int | None = None,
        difference: bool = False,
    ) -> MetricValue:
        """``value`` with an optional interval (``low``, ``high``, ``confidence``,
        ``n_resamples``), clipped to the range of metric ``key`` (of a difference with
        ``difference``): intervals that add a spread to the estimate, like half-sample
        intervals, can reach past it, and the true value cannot."""
        if interval is None:
            return cls(value=float(value), n=n)
        lo, hi = metric_spec(key).bounds(difference)
        return cls(
            value=float(value),
            low=min(max(float(interval.low), lo), hi),
            high=min(max(float(interval.high), lo), hi),
            confidence=float(interval.confidence),
            n_resamples=int(interval.n_resamples),
            n=n,
        )

    def check_range(self, key: str, where: str = "metrics", difference: bool = False) -> None:
        """Values in the metric's range (``difference``: in the range of differences)."""
        spec = metric_spec(key)
        for what, x in (("value", self.value), ("low", self.low), ("high", self.high)):
            if x is not None and not spec.contains(x, difference):
                low, high = spec.bounds(difference)
                raise ValueError(
                    f"{where}: metric {key!r}: {what} {x} is outside its range [{low}, {high}]"
                )


class Method(_Model):
    """What produced the images: ``name`` (``draft``, ``kl``, ``lora-scale``, ``aig``, ``base``),
    the regulariser and its strength (KL lambda, LoRA scale, AIG power, ...), other params."""

    name: Slug
    regularizer: Slug | None = None
    strength: float | None = None
    params: dict[Slug, ParamValue] = Field(default_factory=dict, max_length=MAX_ENTRIES)
    description: Text = ""

    @property
    def label(self) -> str:
        """``name`` or ``name+regularizer``: the series a leaderboard line connects."""
        return self.name if self.regularizer is None else f"{self.name}+{self.regularizer}"


class Setup(_Model):
    """The evaluation protocol: models, prompt suite and split, and how many of everything."""

    base_model: Name
    reward_model: Name
    prompt_suite: Slug
    split: Slug = "test"
    n_prompts: Count
    n_seeds: Count
    n_images: Count
    n_reference_images: Count | None = None
    n_pairs: Count | None = None


class Extractor(_Model):
    """A feature extractor as used: registry id, resize mode, and its weights' SHA-256."""

    id: Slug
    resize_mode: Slug
    weights_sha256: Sha256 | None = None


class PerImage(_Model):
    """One image's rewards, so frontiers can be recomputed per prompt."""

    key: Name
    prompt_id: Name
    seed: int
    rewards: dict[Slug, float] = Field(max_length=MAX_ENTRIES)


class SkippedFile(_Model):
    """An image the evaluation could not use (undecodable, too small, ...) and why."""

    image_set: Literal["generated", "reference"]
    key: Name
    reason: Text


class Links(_Model):
    paper: Url | None = None
    code: Url | None = None
    weights: Url | None = None


class Provenance(_Model):
    """Who made the result, when, and with which software."""

    rdbench_version: Name
    versions: dict[Slug, Name] = Field(default_factory=dict, max_length=MAX_ENTRIES)
    git_commit: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{7,40}$")] | None = None
    created: Annotated[str, StringConstraints(max_length=64)]
    submitter: Name = "anonymous"

    @field_validator("created")
    @classmethod
    def _iso_date(cls, v: str) -> str:
        try:
            when = dt.datetime.fromisoformat(v)
        except ValueError:
            raise ValueError(f"'created' must be an ISO 8601 date, got {v!r}") from None
        if when.tzinfo is None:
            raise ValueError("'created' needs a timezone, e.g. 2024-05-01T12:00:00+00:00")
        return v

    @classmethod
    def collect(cls, submitter: str | None = None, **overrides: Any) -> Provenance:
        """Fill versions of the installed libraries, the UTC date and the git commit (if any).

        ``submitter`` defaults to ``$RDBENCH_SUBMITTER`` or ``"anonymous"``.
        """
        values: dict[str, Any] = {
            "rdbench_version": __version__,
            "versions": library_versions(),
            "git_commit": git_commit(),
            "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            "submitter": submitter or os.environ.get("RDBENCH_SUBMITTER") or "anonymous",
        }
        return cls(**(values | overrides))


_LIBRARIES = (
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "clean-fid",
    "open_clip_torch",
    "transformers",
    "diffusers",
    "peft",
)


def library_versions() -> dict[str, str]:
    """Installed versions of python and the libraries that change numbers."""
    import platform

    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name.lower()] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(where: Path | None = None) -> str | None:
    """The checked-out commit of the repository holding ``where`` (rdbench's), or ``None``."""
    where = where or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and len(sha) == 40 else None


class Result(_Model):
    """One evaluated model: a point (or several metrics) on the reward-diversity plane."""

    schema_version: str = Field(
        default=SCHEMA_VERSION, json_schema_extra={"enum": list(READABLE_VERSIONS)}
    )
    toy: bool = False
    method: Method
    setup: Setup
    extractors: list[Extractor] = Field(default_factory=list, max_length=MAX_ENTRIES)
    metrics: dict[str, MetricValue] = Field(min_length=1, max_length=MAX_ENTRIES)
    per_category: dict[Slug, dict[str, MetricValue]] | None = Field(
        default=None, max_length=MAX_ENTRIES
    )
    per_image: list[PerImage] | None = Field(default=None, max_length=MAX_PER_IMAGE)
    paired: dict[str, MetricValue] | None = Field(
        default=None,
        max_length=MAX_ENTRIES,
        description="generated - reference over images sharing (prompt_id, seed); n = pairs",
    )
    skipped: list[SkippedFile] | None = Field(default=None, max_length=MAX_PER_IMAGE)
    manifest_sha256: Sha256
    reference_manifest_sha256: Sha256 | None = None
    provenance: Provenance
    links: Links = Field(default_factory=Links)
    notes: Text = ""

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: str) -> str:
        if v not in READABLE_VERSIONS:
            raise ValueError(
                f"unknown schema version {v[:MAX_NAME]!r}; this rdbench reads "
                + ", ".join(map(repr, READABLE_VERSIONS))
            )
        return v

    @model_validator(mode="after")
    def _metric_keys(self) -> Result:
        extractor_ids = {e.id for e in self.extractors}
        if len(extractor_ids) != len(self.extractors):
            raise ValueError("extractor ids must be unique")
        if self.schema_version != SCHEMA_VERSION and (self.paired or self.skipped):
            raise ValueError(f"'paired' and 'skipped' need schema version {SCHEMA_VERSION!r}")
        tables = [("metrics", self.metrics)]
        tables += [(f"per_category[{c}]", t) for c, t in (self.per_category or {}).items()]
        for where, table in tables:
            for key, value in table.items():
                _check_key(key, extractor_ids, where)
                value.check_range(key, where)
        for key, value in (self.paired or {}).items():
            _check_key(key, extractor_ids, "paired")
            value.check_range(key, "paired", difference=True)
        return self

    # --- convenience -------------------------------------------------------------------
    def metric(self, key: str) -> MetricValue | None:
        return self.metrics.get(key)

    def to_json(self) -> str:
        """The canonical form (see the module docstring)."""
        return canonical_json(self.model_dump(mode="json"))

    def result_hash(self) -> str:
        return hashlib.sha256(self.to_json().encode("ascii")).hexdigest()

    def short_hash(self) -> str:
        return self.result_hash()[:12]

    def save(self, path: str | os.PathLike[str]) -> Path:
        from rdbench.hub import atomic_write_bytes

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, self.to_json().encode("ascii"))
        return path

    @classmethod
    def from_dict(cls, data: Any) -> Result:
        """Validate a parsed JSON document; errors become one ``RdbenchError``."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise RdbenchError(f"invalid result: {describe_errors(exc)}") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Result:
        """Read and validate a result file with the submission rules (size, NaN, depth)."""
        from rdbench.submissions import validate_file

        return validate_file(path)


def _check_key(key: str, extractor_ids: set[str], where: str) -> None:
    import re

    if not re.fullmatch(_METRIC_KEY_PATTERN, key):
        raise ValueError(
            f"{where}: metric key {key[:MAX_NAME]!r} must look like 'fid/inception', "
            "'reward/pickscore' or 'mode_coverage'"
        )
    metric, source = split_key(key)
    if metric not in METRICS:
        raise ValueError(f"{where}: unknown metric {metric!r}; known: {', '.join(METRICS)}")
    needs = METRICS.get(metric).needs_source
    if needs is None and source is not None:
        raise ValueError(f"{where}: metric {metric!r} takes no source, use {metric!r}")
    if needs == "reward" and source is None:
        raise ValueError(f"{where}: {metric!r} needs the reward model, e.g. 'reward/pickscore'")
    if needs == "feature" and source not in extractor_ids:
        listed = ", ".join(sorted(extractor_ids)) or "(none)"
        raise ValueError(
            f"{where}: {key!r} needs a feature extractor listed in 'extractors' "
            f"(as '{metric}/<extractor id>'); listed: {listed}"
        )


def canonical_json(data: Any) -> str:
    """Sorted keys, 2-space indent, ASCII, no NaN/inf, newline at end."""
    try:
        return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=True, allow_nan=False) + "\n"
    except ValueError as exc:
        raise RdbenchError(f"cannot write a result with non-finite numbers: {exc}") from None


def describe_errors(exc: ValidationError, limit: int = 5) -> str:
    """A short, input-free description of pydantic errors (inputs may be huge or hostile):
    JSON keys in locations are ASCII-escaped, so no control character reaches a terminal."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:limit]:
        loc = ".".join(ascii(str(p)[:64])[1:-1] for p in err["loc"]) or "(top level)"
        parts.append(f"{loc}: {ascii(err['msg'][:300])[1:-1]}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


def _tighten(node: Any) -> Any:
    """What pydantic's export leaves open and validation refuses: metric-table keys get the
    metric-key pattern, pattern-keyed objects (params, categories) no other keys."""
    if isinstance(node, dict):
        node = {k: _tighten(v) for k, v in node.items()}
        if "patternProperties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        if node.get("additionalProperties") == {"$ref": "#/$defs/MetricValue"}:
            node["propertyNames"] = {"pattern": _METRIC_KEY_PATTERN}
        return node
    if isinstance(node, list):
        return [_tighten(v) for v in node]
    return node


def export_schema(path: str | os.PathLike[str] | None = None) -> str:
    """The JSON Schema of ``Result`` as canonical JSON; written to ``path`` when given."""
    schema = _tighten(Result.model_json_schema())
    schema["$id"] = SCHEMA_VERSION
    schema["title"] = "rdbench result"
    text = canonical_json(schema)
    if path is not None:
        Path(path).write_text(text, encoding="ascii")
    return text
