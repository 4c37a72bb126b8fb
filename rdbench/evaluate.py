"""``rdbench.evaluate``: every metric of one image set, optionally against a reference set.

Flow (the same for the Python API and ``rdbench evaluate``):

1. open both sets (:meth:`rdbench.imageset.ImageSet.open`) and pair them by
   ``(prompt_id, seed)`` (:func:`rdbench.imageset.pair`);
2. per feature extractor, extract the features of each set once (through the feature cache);
3. set metrics of the generated set against the reference (:func:`compute_set_metrics`;
   which ones: the extractor's ``default_metrics`` unless ``metrics`` is given), the Vendi
   score of the whole set, and per-prompt diversity (:mod:`rdbench.metrics.prompt_diversity`)
   when the manifest has prompts with two or more images;
4. rewards through :func:`rdbench.rewards.score_imageset` (mean over images, per category,
   per image);
5. intervals: means over prompts (rewards, per-prompt diversity) get a cluster-bootstrap
   interval with ``mean_resamples`` resamples (vectorised, milliseconds). Set metrics get a
   half-sample (delete-half jackknife) interval only with ``bootstrap > 0``
   (:func:`rdbench.metrics.bootstrap.half_sample_intervals`: no duplicated rows, which would
   shrink k-NN radii); each resample recomputes the metrics on half the prompts (FID at
   d = 2048 costs about 1 s), so 200 resamples of FID + precision/recall/density/coverage on
   5,000 images take minutes. Halves are drawn by prompt (all images of a drawn prompt), by
   image for a set without manifest; both sets share the draw when they hold the same prompts;
6. paired differences (generated - reference) of rewards and per-prompt diversity over the
   images both sets share by ``(prompt_id, seed)``, with a paired bootstrap over prompts;
7. a :class:`rdbench.results.Result` with provenance (versions, manifest hashes, extractors
   and resize modes, counts), the paired differences (``paired``) and every skipped file with
   its reason (``skipped``).

Convention: ``reference`` is the base model's (or real) images, the positional set the method
under test. Without a reference only reference-free metrics run (Vendi, per-prompt diversity,
rewards). Same inputs and seed give the same numbers whatever the batch size.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import types
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rdbench import defaults
from rdbench.errors import RdbenchError
from rdbench.imageset import ON_ERROR_CHOICES, ImageSet, Pairing, pair
from rdbench.metrics.sets import MetricOptions, parse_metric_names
from rdbench.results import MetricValue, Result

MIN_SET_RESAMPLES = 50  # below: half-sample intervals under-cover (about 0.8 at 10 resamples)
_SLUG = re.compile(r"[^a-z0-9_.\-]+")


@dataclass(frozen=True)
class EvaluateOptions:
    """Everything :func:`evaluate` takes besides the two sets; the CLI builds the same object.

    ``weights`` maps an extractor name (``inception``, ``clip``, ``dinov2``) or a reward name
    to a local weights file or folder. ``extractor_options`` / ``reward_options`` map a name to
    that extractor's / reward's own options (e.g. ``{"clip": {"model": "ViT-L-14",
    "pretrained": "openai"}}``). ``per_prompt=None`` turns per-prompt diversity on when the
    generated set has a manifest with a prompt of two or more images. ``method`` ...
    ``split`` label the result (see :class:`rdbench.results.Method` and ``Setup``).
    """

    extractors: tuple[str, ...] = (defaults.EXTRACTOR,)
    metrics: tuple[str, ...] | None = None
    rewards: tuple[str, ...] = ()
    per_prompt: bool | None = None
    bootstrap: int = defaults.SET_BOOTSTRAP_RESAMPLES
    mean_resamples: int = defaults.BOOTSTRAP_RESAMPLES
    confidence: float = defaults.CONFIDENCE
    seed: int = defaults.SEED
    batch_size: int = defaults.BATCH_SIZE
    num_workers: int = defaults.NUM_WORKERS
    device: str | None = None
    cache: bool = True
    on_error: str = "raise"
    weights: Mapping[str, str] = field(default_factory=dict)
    extractor_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    reward_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    metric_options: MetricOptions = field(default_factory=MetricOptions)
    method: str = "unknown"
    regularizer: str | None = None
    strength: float | None = None
    base_model: str = "unknown"
    reward_model: str = "unknown"
    prompt_suite: str = "custom"
    split: str = "test"
    submitter: str | None = None
    progress: bool = True
    quiet: bool = False

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("extractors", _names(self.extractors, "extractors"))
        if not self.extractors:
            raise RdbenchError("extractors: name at least one feature extractor (e.g. inception)")
        import rdbench.features  # registers the extractors

        for name in self.extractors:
            rdbench.features.EXTRACTORS.get(name)
        if self.metrics is not None:
            put("metrics", tuple(parse_metric_names(self.metrics)))
        put("rewards", _names(self.rewards, "rewards"))
        if self.rewards:
            from rdbench.rewards import parse_name

            for name in self.rewards:
                parse_name(name)
        for name in ("bootstrap", "mean_resamples", "batch_size", "num_workers", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RdbenchError(f"{name} must be an integer >= 0, got {value!r}")
        if self.batch_size < 1:
            raise RdbenchError(f"batch_size must be >= 1, got {self.batch_size}")
        for name in ("bootstrap", "mean_resamples"):
            if getattr(self, name) == 1:
                raise RdbenchError(f"{name} must be 0 (no interval) or >= 2 resamples, got 1")
        if not 0.0 < float(self.confidence) < 1.0:
            raise RdbenchError(f"confidence must be in (0, 1), e.g. 0.95; got {self.confidence}")
        if self.on_error not in ON_ERROR_CHOICES:
            raise RdbenchError(f"on_error must be one of {ON_ERROR_CHOICES}, got {self.on_error!r}")
        _check_labels(self)
        from rdbench.rewards import REWARDS

        known = set(rdbench.features.EXTRACTORS) | set(REWARDS)
        unknown = sorted(set(self.weights) - known)
        if unknown:
            raise RdbenchError(
                f"weights for {unknown}: name a feature extractor or reward "
                f"({', '.join(sorted(known))})"
            )
        for what, table, registry in (
            ("extractor_options", self.extractor_options, rdbench.features.EXTRACTORS),
            ("reward_options", self.reward_options, REWARDS),
        ):
            extra = sorted(set(table) - set(registry))
            if extra:
                raise RdbenchError(f"{what} for {extra}: choose from {', '.join(registry)}")


@dataclass
class Evaluation:
    """What :func:`run_evaluation` found: the result plus what the schema has no field for.

    ``reference_metrics``: the reference set's value of each reference-free metric (same
    keys as ``result.metrics``). ``paired``: differences generated - reference over the shared
    ``(prompt_id, seed)`` pairs. ``skipped`` / ``reference_skipped``: ``(file, reason)``.
    """

    result: Result
    reference_metrics: dict[str, float] = field(default_factory=dict)
    paired: dict[str, MetricValue] = field(default_factory=dict)
    pairing: Pairing | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    reference_skipped: list[tuple[str, str]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ helpers


def _names(value: str | Sequence[str] | None, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    out = tuple(str(v).strip() for v in items if str(v).strip())
    if len(set(out)) != len(out):
        raise RdbenchError(f"{what}: {', '.join(out)} names one twice")
    return out


def _check_labels(o: EvaluateOptions) -> None:
    """Refuse labels the result schema would refuse, before any work is done."""
    from pydantic import ValidationError

    from rdbench.results import Method, Setup, describe_errors

    try:
        Method(name=o.method, regularizer=o.regularizer, strength=o.strength)
        Setup(
            base_model=o.base_model,
            reward_model=o.reward_model,
            prompt_suite=o.prompt_suite,
            split=o.split,
            n_prompts=0,
            n_seeds=0,
            n_images=0,
        )
    except ValidationError as exc:
        raise RdbenchError(f"result labels: {describe_errors(exc)}") from None


def _base_reward(name: str) -> str:
    return name.partition(":")[0].strip()


def slugify(text: str) -> str:
    """A ``results.Slug`` for a category or reward name: lower case, ``[a-z0-9_.-]``, <= 64."""
    slug = _SLUG.sub("-", text.lower()).strip("-._")[:64]
    return slug or "x"


def _slug_map(names: Sequence[str]) -> dict[str, str]:
    """Name -> unique slug (a short hash is appended when two names share a slug)."""
    import hashlib

    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in sorted(set(names)):
        slug = slugify(name)
        if slug in taken:
            slug = f"{slug[:55]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
        taken.add(slug)
        out[name] = slug
    return out


def _n_groups(groups: Sequence[Any] | None, n_rows: int) -> int:
    return len(set(groups)) if groups is not None else n_rows


class _Context:
    """The opened sets and options of one evaluation, and what it has found so far."""

    def __init__(
        self, gen: ImageSet, ref: ImageSet | None, options: EvaluateOptions, same: bool
    ) -> None:
        self.gen, self.ref, self.o, self.same = gen, ref, options, same
        self.metrics: dict[str, MetricValue] = {}
        self.reference_metrics: dict[str, float] = {}
        self.paired: dict[str, MetricValue] = {}
        self.reward_ids: list[str] = []  # full ids: weights digest and score-changing options
        self.per_category: dict[str, dict[str, MetricValue]] = {}
        self.per_image: dict[str, dict[str, float]] = {}
        self.skipped: dict[str, str] = dict(gen.skipped)
        self.ref_skipped: dict[str, str] = dict(ref.skipped) if ref is not None else {}
        self.messages: list[str] = []
        self.pairing = pair(gen, ref) if ref is not None else None
        self.gen_items = {item.key: item for item in gen.items}
        self.ref_items = {item.key: item for item in ref.items} if ref is not None else {}
        self.categories = {i.prompt_id: i.category for i in gen.items if i.prompt_id is not None}
        self.category_slugs = _slug_map([c for c in self.categories.values() if c is not None])

    def say(self, text: str) -> None:
        self.messages.append(text)
        if not self.o.quiet:
            print(f"rdbench: {text}", file=sys.stderr)

    def prompt_ids(self, keys: Sequence[str], reference: bool = False) -> list[str] | None:
        """The prompt id of each key, or None for a set without manifest."""
        image_set, items = (self.ref, self.ref_items) if reference else (self.gen, self.gen_items)
        if image_set is None or not image_set.has_manifest:
            return None
        return [items[k].prompt_id or "" for k in keys]

    def mean_interval(self, values: np.ndarray, groups: Sequence[str] | None) -> Any | None:
        from rdbench.metrics.bootstrap import mean_ci

        if self.o.mean_resamples < 2 or _n_groups(groups, len(values)) < 2:
            return None
        return mean_ci(
            values,
            groups,
            n_resamples=self.o.mean_resamples,
            confidence=self.o.confidence,
            seed=self.o.seed,
        )

    def shared_pairs(
        self, gen_keys: Container[str], ref_keys: Container[str]
    ) -> list[tuple[str, str, str]]:
        """``(generated key, reference key, prompt id)`` of the pairs present in both."""
        return [
            (a.key, b.key, a.prompt_id or "")
            for a, b in (self.pairing.pairs if self.pairing else [])
            if a.key in gen_keys and b.key in ref_keys
        ]

    def add_paired(
        self, key: str, a: np.ndarray, b: np.ndarray, groups: Sequence[str] | None
    ) -> None:
        """The mean of ``a - b`` with a paired bootstrap interval over ``groups``."""
        from rdbench.metrics.bootstrap import paired_mean_diff

        interval = None
        if self.o.mean_resamples >= 2 and _n_groups(groups, len(a)) >= 2:
            interval = paired_mean_diff(
                a,
                b,
                groups,
                groups,
                n_resamples=self.o.mean_resamples,
                confidence=self.o.confidence,
                seed=self.o.seed,
            )
        diff = float((a - b).mean())
        self.paired[key] = MetricValue.of(key, diff, interval, len(a), difference=True)

    def add_category(self, category: str, key: str, value: MetricValue) -> None:
        self.per_category.setdefault(self.category_slugs[category], {})[key] = value


# ------------------------------------------------------------------------------ features


def _per_prompt_enabled(ctx: _Context) -> bool:
    wanted = ctx.o.per_prompt
    if wanted is False:
        return False
    groups = ctx.gen.prompts() if (ctx.gen.has_manifest or wanted) else {}
    has_repeats = any(len(items) >= 2 for items in groups.values())
    if wanted and not has_repeats:
        raise RdbenchError(
            f"per-prompt diversity needs a prompt with at least 2 images (seeds); no prompt of "
            f"{str(ctx.gen.root)!r} has more than one"
        )
    return has_repeats


def _extract(ctx: _Context, image_set: ImageSet, extractor: Any, reference: bool) -> Any:
    from rdbench.distributed import distributed_extract

    o = ctx.o
    feats = distributed_extract(  # = extract_features in one process; sharded under torchrun
        image_set,
        extractor,
        batch_size=o.batch_size,
        num_workers=o.num_workers,
        cache=o.cache,
        on_error=o.on_error,
        progress=o.progress and not o.quiet,
    )
    if feats is not None:  # None on ranks other than 0 of a torchrun job
        (ctx.ref_skipped if reference else ctx.skipped).update(dict(feats.skipped))
    return feats


def _set_metric_names(ctx: _Context, extractor: Any) -> list[str]:
    if ctx.o.metrics is not None:
        return list(ctx.o.metrics)
    declared = set(extractor.default_metrics) | {"vendi"}  # Vendi is cheap and reference-free
    return [m for m in defaults.SET_METRICS if m in declared]


def _set_intervals(
    ctx: _Context,
    values: dict[str, float],
    ref: np.ndarray | None,
    gen: np.ndarray,
    ref_groups: list[str] | None,
    gen_groups: list[str] | None,
    metric_options: MetricOptions,
) -> dict[str, Any]:
    """Half-sample intervals of the set metrics in ``values`` (their full-data values), all
    from one shared set of draws; a metric that fails on half-samples loses only its own."""
    from rdbench.metrics.bootstrap import half_sample_intervals
    from rdbench.metrics.sets import compute_set_metrics
    from rdbench.metrics.vendi import vendi_score

    o = ctx.o
    if o.bootstrap < MIN_SET_RESAMPLES:
        ctx.say(
            f"{o.bootstrap} resamples give set-metric intervals that cover less than they claim "
            f"(use at least {MIN_SET_RESAMPLES}; 100-200 is practical)"
        )
    # Halves by prompt in each set that has prompt ids (by image otherwise); the same halves
    # of both sets when they hold the same prompts.
    arrays, groups, shared = [gen], [gen_groups], True
    if ref is not None:
        arrays, groups = [ref, gen], [ref_groups, gen_groups]
        shared = ref_groups is not None and gen_groups is not None
        shared = shared and set(ref_groups) == set(gen_groups)

    def intervals(names: list[str]) -> dict[str, Any]:
        def metrics(*arrays: np.ndarray) -> dict[str, float]:
            if ref is None:
                return {"vendi": vendi_score(arrays[0])}
            return compute_set_metrics(arrays[0], arrays[1], names, metric_options)

        return half_sample_intervals(
            metrics,
            *arrays,
            groups=groups if len(groups) > 1 else groups[0],
            independent=not shared,
            n_resamples=o.bootstrap,
            confidence=o.confidence,
            seed=o.seed,
            estimate={name: values[name] for name in names},
        )

    try:
        return intervals(list(values))
    except RdbenchError:  # too few prompts or images for some metric: the others keep theirs
        out: dict[str, Any] = {}
        for name in values:
            try:
                out |= intervals([name])
            except RdbenchError as exc:
                ctx.say(f"interval of {name} left out: {exc}")
        return out


def _prompt_diversity(
    ctx: _Context, source: str, gen: Any, ref: Any | None, gen_ids: list[str]
) -> None:
    """Per-prompt distance and Vendi of the generated set, by category, vs the reference."""
    from rdbench.metrics.prompt_diversity import by_category, per_prompt_scores

    try:
        scores = per_prompt_scores(gen.array, gen_ids)
    except RdbenchError as exc:
        if ctx.o.per_prompt:  # asked for explicitly
            raise
        ctx.say(f"per-prompt diversity ({source}) left out: {exc}")  # e.g. after skipped files
        return
    n = len(scores.prompt_ids)
    if scores.n_prompts_skipped:
        ctx.say(
            f"per-prompt diversity ({source}): {scores.n_prompts_skipped} prompt(s) with fewer "
            "than 2 images left out"
        )
    fields = (("prompt_diversity", "distance"), ("prompt_vendi", "vendi"))
    for metric, attr in fields:
        values = getattr(scores, attr)
        key = f"{metric}/{source}"
        ctx.metrics[key] = MetricValue.of(key, values.mean(), ctx.mean_interval(values, None), n)
    for category, part in by_category(scores, ctx.categories).items():
        for metric, attr in fields:
            values = getattr(part, attr)
            key = f"{metric}/{source}"
            interval = ctx.mean_interval(values, None)
            ctx.add_category(
                category, key, MetricValue.of(key, values.mean(), interval, len(part.prompt_ids))
            )
    if ref is None or ctx.ref is None or not ctx.ref.has_manifest:
        return
    ref_ids = ctx.prompt_ids(ref.keys, reference=True)
    assert ref_ids is not None
    try:
        ref_scores = per_prompt_scores(ref.array, ref_ids)
    except RdbenchError:
        return  # the reference has no prompt with two images
    ctx.reference_metrics[f"prompt_diversity/{source}"] = ref_scores.mean_distance
    ctx.reference_metrics[f"prompt_vendi/{source}"] = ref_scores.mean_vendi
    # Paired: only images present in both sets (same prompt and seed), prompt by prompt.
    gen_rows = {k: i for i, k in enumerate(gen.keys)}
    ref_rows = {k: i for i, k in enumerate(ref.keys)}
    pairs = [(gen_rows[g], ref_rows[r], p) for g, r, p in ctx.shared_pairs(gen_rows, ref_rows)]
    if not pairs:
        return
    ids = [p for _, _, p in pairs]
    try:
        a = per_prompt_scores(gen.array[[g for g, _, _ in pairs]], ids)
        b = per_prompt_scores(ref.array[[r for _, r, _ in pairs]], ids)
    except RdbenchError:
        return
    for metric, attr in fields:  # one value per prompt: the prompts are the groups
        ctx.add_paired(f"{metric}/{source}", getattr(a, attr), getattr(b, attr), None)


def _run_extractor(ctx: _Context, name: str, per_prompt: bool) -> Any:
    """Features of both sets with extractor ``name`` and every metric computed on them."""
    from rdbench.features import load_extractor
    from rdbench.metrics.sets import compute_set_metrics
    from rdbench.metrics.vendi import vendi_score

    o = ctx.o
    extractor = load_extractor(
        name, device=o.device, weights=o.weights.get(name), **o.extractor_options.get(name, {})
    )
    gen = _extract(ctx, ctx.gen, extractor, reference=False)
    ref = None
    if ctx.ref is not None:
        ref = gen if ctx.same else _extract(ctx, ctx.ref, extractor, reference=True)
    if gen is None:  # a rank other than 0 of a torchrun job: rank 0 computes the metrics
        return extractor
    if len(gen.keys) < 2:
        raise RdbenchError(f"only {len(gen.keys)} usable image(s) in {str(ctx.gen.root)!r}")
    gen_ids = ctx.prompt_ids(gen.keys)
    ref_ids = ctx.prompt_ids(ref.keys, reference=True) if ref is not None else None
    names = _set_metric_names(ctx, extractor)
    metric_options = dataclasses.replace(
        o.metric_options, seed=o.seed, device=o.device or o.metric_options.device
    )
    values: dict[str, float] = {}
    against_ref = [m for m in names if m != "vendi"]
    if ref is not None and against_ref:
        values.update(compute_set_metrics(ref.array, gen.array, against_ref, metric_options))
    elif against_ref:
        ctx.say(f"{name}: no --reference, so {', '.join(against_ref)} were not computed")
    if "vendi" in names:
        values["vendi"] = vendi_score(gen.array)
        if ref is not None:
            ctx.reference_metrics[f"vendi/{name}"] = vendi_score(ref.array)
    computed = [m for m in names if m in values]
    intervals: dict[str, Any] = {}
    if o.bootstrap and computed:
        intervals = _set_intervals(
            ctx,
            {m: values[m] for m in computed},
            ref.array if ref is not None and computed != ["vendi"] else None,
            gen.array,
            ref_ids,
            gen_ids,
            metric_options,
        )
    for metric in computed:
        key = f"{metric}/{name}"
        ctx.metrics[key] = MetricValue.of(key, values[metric], intervals.get(metric), len(gen.keys))
    if per_prompt and gen_ids is not None:
        _prompt_diversity(ctx, name, gen, ref, gen_ids)
    return extractor


# ------------------------------------------------------------------------------ rewards


def _category_means(
    ctx: _Context, key: str, scores: np.ndarray, ids: list[str] | None, n_of: Callable
) -> None:
    if ids is None:
        return
    by_cat: dict[str, list[int]] = {}
    for row, pid in enumerate(ids):
        category = ctx.categories.get(pid)
        if category is not None:
            by_cat.setdefault(category, []).append(row)
    for category, rows in sorted(by_cat.items()):
        sub, sub_ids = scores[rows], [ids[r] for r in rows]
        interval = ctx.mean_interval(sub, sub_ids)
        ctx.add_category(category, key, MetricValue.of(key, sub.mean(), interval, n_of(rows)))


def _run_reward(ctx: _Context, name: str) -> None:
    from rdbench.distributed import distributed_score
    from rdbench.rewards import load

    o = ctx.o
    base = _base_reward(name)
    reward = load(
        name, device=o.device, weights=o.weights.get(base), **o.reward_options.get(base, {})
    )
    settings = {"batch_size": o.batch_size, "cache": o.cache, "on_error": o.on_error}
    progress = o.progress and not o.quiet
    gen = distributed_score(ctx.gen, reward, progress=progress, **settings)
    if gen is None:  # a rank other than 0 of a torchrun job: score the reference shard too
        if ctx.ref is not None and not ctx.same:
            distributed_score(ctx.ref, reward, progress=progress, **settings)
        return
    ctx.reward_ids.append(gen.reward_id)
    ctx.skipped.update(dict(gen.skipped))
    if len(gen.keys) == 0:
        raise RdbenchError(f"reward {name!r}: no image of {str(ctx.gen.root)!r} could be scored")
    key = f"reward/{slugify(name.replace(':', '-'))}"
    ids = ctx.prompt_ids(gen.keys)
    ctx.metrics[key] = MetricValue.of(
        key, gen.scores.mean(), ctx.mean_interval(gen.scores, ids), len(gen.scores)
    )
    _category_means(ctx, key, gen.scores, ids, len)
    for item_key, score in zip(gen.keys, gen.scores.tolist(), strict=True):
        ctx.per_image.setdefault(item_key, {})[key.partition("/")[2]] = score
    if ctx.ref is None:
        return
    ref = gen if ctx.same else distributed_score(ctx.ref, reward, progress=progress, **settings)
    ctx.ref_skipped.update(dict(ref.skipped))
    if len(ref.keys):
        ctx.reference_metrics[key] = float(ref.scores.mean())
    gen_scores, ref_scores = gen.as_dict(), ref.as_dict()
    pairs = ctx.shared_pairs(gen_scores, ref_scores)
    if pairs:
        a = np.array([gen_scores[g] for g, _, _ in pairs])
        b = np.array([ref_scores[r] for _, r, _ in pairs])
        ctx.add_paired(key, a, b, [p for _, _, p in pairs])


# ------------------------------------------------------------------------------ result


def _notes(ctx: _Context, extractors: list[Any]) -> str:
    lines = ["extractor ids: " + ", ".join(e.id for e in extractors)]
    if ctx.reward_ids:
        lines.append("reward ids: " + ", ".join(ctx.reward_ids))
    if ctx.ref is None:
        lines.append("no reference set: only reference-free metrics were computed")
    text = "\n".join(lines)
    return text if len(text) <= 2000 else text[:1996] + " ..."


def _text(name: str) -> str:
    """A file name as valid UTF-8 text (undecodable bytes kept as ``\\udcXX`` escapes)."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _n_pairs_used(ctx: _Context) -> int | None:
    """Matched pairs with neither image skipped (what paired statistics can use)."""
    if ctx.pairing is None:
        return None
    return sum(
        1 for a, b in ctx.pairing.pairs if a.key not in ctx.skipped and b.key not in ctx.ref_skipped
    )


def _build_result(ctx: _Context, extractors: list[Any]) -> Result:
    """The result; per-image rewards are left out (with a message) where they would make it
    larger than a result may be (``MAX_PER_IMAGE`` entries, ``MAX_BYTES`` of JSON)."""
    from rdbench.results import MAX_PER_IMAGE, PerImage
    from rdbench.submissions import MAX_BYTES

    if not ctx.metrics:
        raise RdbenchError(
            "nothing to report: no metric could be computed (give --reference for set metrics, "
            "a manifest with 2+ images per prompt for per-prompt diversity, or --reward)"
        )
    if not (ctx.per_image and ctx.gen.has_manifest):
        return _assemble_result(ctx, extractors, None)
    per_image = [
        PerImage(
            key=_text(k),
            prompt_id=ctx.gen_items[k].prompt_id or "-",
            seed=ctx.gen_items[k].seed or 0,
            rewards=r,
        )
        for k, r in ctx.per_image.items()
    ]
    if len(per_image) <= MAX_PER_IMAGE:
        result = _assemble_result(ctx, extractors, per_image)
        if len(result.to_json()) <= MAX_BYTES:
            return result
    ctx.say(
        f"per-image rewards of {len(per_image)} images left out of the result: with them it "
        f"would exceed what a result may hold ({MAX_PER_IMAGE} images, {MAX_BYTES} bytes)"
    )
    return _assemble_result(ctx, extractors, None)


def _assemble_result(ctx: _Context, extractors: list[Any], per_image: list[Any] | None) -> Result:
    from rdbench.results import (
        MAX_PER_IMAGE,
        Extractor,
        Method,
        Provenance,
        Setup,
        SkippedFile,
    )

    o = ctx.o
    used = [item for item in ctx.gen.items if item.key not in ctx.skipped]
    n_ref = None
    if ctx.ref is not None:
        n_ref = sum(1 for item in ctx.ref.items if item.key not in ctx.ref_skipped)
    sha = {e.name: getattr(e, "weights_sha256", None) for e in extractors}
    return Result(
        method=Method(name=o.method, regularizer=o.regularizer, strength=o.strength),
        setup=Setup(
            base_model=o.base_model,
            reward_model=o.reward_model,
            prompt_suite=o.prompt_suite,
            split=o.split,
            n_prompts=len({i.prompt_id for i in used if i.prompt_id is not None}),
            n_seeds=len({i.seed for i in used if i.seed is not None}),
            n_images=len(used),
            n_reference_images=n_ref,
            n_pairs=_n_pairs_used(ctx),
        ),
        extractors=[
            Extractor(
                id=e.name,
                resize_mode=e.resize_mode,
                weights_sha256=sha[e.name]
                if isinstance(sha[e.name], str) and len(sha[e.name]) == 64
                else None,
            )
            for e in extractors
        ],
        metrics=ctx.metrics,
        per_category=ctx.per_category or None,
        per_image=per_image,
        paired=ctx.paired or None,
        skipped=[
            SkippedFile(image_set=what, key=_text(key), reason=_text(why[:2000]))
            for what, table in (("generated", ctx.skipped), ("reference", ctx.ref_skipped))
            for key, why in table.items()
        ][:MAX_PER_IMAGE]
        or None,
        manifest_sha256=ctx.gen.manifest_sha256,
        reference_manifest_sha256=ctx.ref.manifest_sha256 if ctx.ref is not None else None,
        provenance=Provenance.collect(submitter=o.submitter),
        notes=_notes(ctx, extractors),
    )


# ------------------------------------------------------------------------------ API


def _options(options: EvaluateOptions | None, overrides: dict[str, Any]) -> EvaluateOptions:
    base = options or EvaluateOptions()
    known = {f.name for f in dataclasses.fields(EvaluateOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise RdbenchError(
            f"evaluate: unknown option(s) {unknown}; see rdbench.EvaluateOptions for the list"
        )
    return dataclasses.replace(base, **overrides) if overrides else base


def run_evaluation(
    image_dir: str | Path,
    reference: str | Path | None = None,
    options: EvaluateOptions | None = None,
    **overrides: Any,
) -> Evaluation:
    """Evaluate ``image_dir`` (optionally against ``reference``); see the module docstring.

    ``overrides`` are :class:`EvaluateOptions` fields (validated at once). Messages (pairing,
    skipped files, metrics left out) go to stderr unless ``quiet``.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) each rank extracts features and rewards of its
    rank-strided shard of each set (blocks of ``batch_size`` images), rank 0 alone computes the metrics (on the rows gathered
    in set order, so the numbers equal a single process's), and every rank returns rank 0's
    evaluation. A failure on any rank raises on all; see :mod:`rdbench.distributed`.
    """
    from rdbench import distributed

    o = _options(options, overrides)
    dist = distributed.context()
    if not dist.active:
        return _run_evaluation(image_dir, reference, o)  # type: ignore[return-value]
    with distributed.failures_shared(dist):
        device, quiet = dist.device(o.device), o.quiet or not dist.is_main
        evaluation = _run_evaluation(
            image_dir, reference, dataclasses.replace(o, device=device, quiet=quiet)
        )
    return distributed.share(evaluation, dist)


def _run_evaluation(
    image_dir: str | Path, reference: str | Path | None, o: EvaluateOptions
) -> Evaluation | None:
    gen = ImageSet.open(image_dir, on_error=o.on_error)  # type: ignore[arg-type]
    ref = None
    same = False
    if reference is not None:
        same = Path(reference).expanduser().resolve() == Path(image_dir).expanduser().resolve()
        ref = gen if same else ImageSet.open(reference, on_error=o.on_error)  # type: ignore[arg-type]
    ctx = _Context(gen, ref, o, same)
    if ctx.pairing is not None:
        ctx.say(
            f"paired {ctx.pairing.n_matched} of {len(gen)} images by (prompt_id, seed)"
            + (f" ({ctx.pairing.note})" if ctx.pairing.note else "")
        )
    else:
        ctx.say("no reference set: computing reference-free metrics only")
    per_prompt = _per_prompt_enabled(ctx)
    extractors = [_run_extractor(ctx, name, per_prompt) for name in o.extractors]
    for name in o.rewards:
        _run_reward(ctx, name)
    from rdbench.distributed import is_main

    if not is_main():
        return None  # a rank other than 0 of a torchrun job: rank 0 has the gathered data
    for what, skipped in (("generated", ctx.skipped), ("reference", ctx.ref_skipped)):
        if skipped:
            listed = "; ".join(f"{k!r}: {why}" for k, why in skipped.items())
            ctx.say(f"skipped {len(skipped)} {what} file(s): {listed}")
    result = _build_result(ctx, extractors)
    return Evaluation(
        result=result,
        reference_metrics=ctx.reference_metrics,
        paired=ctx.paired,
        pairing=ctx.pairing,
        skipped=list(ctx.skipped.items()),
        reference_skipped=list(ctx.ref_skipped.items()),
        messages=ctx.messages,
    )


def evaluate(
    image_dir: str | Path,
    reference: str | Path | None = None,
    options: EvaluateOptions | None = None,
    **overrides: Any,
) -> Result:
    """The :class:`~rdbench.results.Result` of :func:`run_evaluation` (what ``--out`` holds).

    >>> result = rdbench.evaluate("samples/draft", reference="samples/base",
    ...                           extractors=("inception", "clip"), rewards=("pickscore",))
    >>> result.metrics["fid/inception"].value
    """
    return run_evaluation(image_dir, reference, options, **overrides).result


class _CallableModule(types.ModuleType):
    """``rdbench.evaluate`` is both this module and the function: calling it evaluates."""

    def __call__(self, *args: Any, **kwargs: Any) -> Result:
        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
