"""``reproduce --recipe R``: plan -> train -> generate every method of the sweep -> evaluate.

Output folder layout (every stage skips work that is already done, so a rerun resumes; work
made with other settings, such as a training of another recipe or images of a LoRA that has
since been retrained, is refused with an error rather than reused)::

    plan.jsonl                the evaluation plan (held-out prompts x seeds)
    train/kl-<lambda>/        one DRaFT run per KL lambda (lambda 0 is plain DRaFT)
    images/<method>/          one image set per method, paired by (prompt_id, seed)
    results/<method>.json     rdbench results (reference: images/base), leaderboard-ready
    summary.csv               one row per method: regulariser, strength and every metric

Methods: ``base``; ``draft`` (lambda 0); ``kl-<lambda>`` for each lambda > 0 of the KL sweep;
``lora-scale-<a>`` and ``aig-<schedule>`` on the lambda-0 LoRA (inference-time methods).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baselines.sd.generate import Method, generate, parse_method
from baselines.sd.pipeline import ImageScore, SDPipeline
from baselines.sd.recipes import Recipe
from baselines.sd.train import pipeline_for, train
from rdbench.hub import atomic_write_bytes
from rdbench.prompts.plan import make_plan, read_plan, write_plan


@dataclass(frozen=True)
class Job:
    """One image set to generate: its folder name, method, LoRA run and result labels."""

    slug: str
    method: Method
    kl_lambda: float | None  # which training's LoRA (None: no LoRA)
    regularizer: str | None
    strength: float | None


def jobs(recipe: Recipe) -> list[Job]:
    """Every image set ``reproduce`` makes for ``recipe``, base first."""
    out = [Job("base", parse_method("base"), None, None, None)]
    for lam in recipe.kl_lambdas():
        slug = "draft" if lam == 0 else f"kl-{lam:g}"
        out.append(Job(slug, parse_method("draft"), lam, None if lam == 0 else "kl", lam or None))
    for spec in recipe.inference_methods():
        method = parse_method(spec)
        if method.kind == "lora-scale":
            out.append(Job(method.slug, method, 0.0, "lora-scale", method.scale))
        else:
            family, _, arg = method.schedule.partition(":")
            strength = float(arg.split(",")[0]) if arg else None
            out.append(Job(method.slug, method, 0.0, f"aig-{family}", strength))
    return out


def _plan(recipe: Recipe, path: Path) -> list[dict[str, Any]]:
    e = recipe.eval
    lines = make_plan(e.prompts.load(), images_per_prompt=e.images_per_prompt, seed=e.seed)
    if path.is_file() and read_plan(path) != lines:
        from rdbench.errors import RdbenchError

        raise RdbenchError(f"{path} holds a different plan than the recipe's; use another --out")
    write_plan(lines, path)
    return lines


def _evaluate(recipe: Recipe, job: Job, images: Path, base: Path, options: dict[str, Any]) -> Any:
    from rdbench.evaluate import evaluate

    settings: dict[str, Any] = {
        "extractors": tuple(recipe.eval.extractors),
        "metrics": tuple(recipe.eval.metrics) if recipe.eval.metrics else None,
        "rewards": (recipe.train.reward,),
        "method": "base" if job.kl_lambda is None else "draft",
        "regularizer": job.regularizer,
        "strength": job.strength,
        "base_model": recipe.model.name,
        "reward_model": recipe.train.reward,
        "prompt_suite": recipe.eval.prompts.suite,
        "split": recipe.eval.prompts.split or "test",
        "extractor_options": recipe.eval.extractor_options,
        "progress": False,
    }
    reward = recipe.train.reward.partition(":")[0]
    if recipe.train.reward_weights:
        settings["weights"] = {reward: recipe.train.reward_weights}
    if recipe.train.reward_options:
        settings["reward_options"] = {reward: recipe.train.reward_options}
    settings.update(options)
    return evaluate(images, reference=base, **settings)


def _summary(path: Path, rows: list[dict[str, Any]]) -> None:
    keys = sorted({k for row in rows for k in row} - {"method", "regularizer", "strength"})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["method", "regularizer", "strength", *keys])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def reproduce(
    recipe: Recipe,
    out: str | Path,
    *,
    pipe: SDPipeline | None = None,
    score: ImageScore | None = None,
    evaluate_options: dict[str, Any] | None = None,
    evaluate: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = lambda s: None,
) -> list[Path]:
    """Run the whole study for ``recipe`` into ``out``; returns the result files written.

    ``pipe``/``score`` default to the recipe's model and reward; ``evaluate_options`` are
    :class:`rdbench.EvaluateOptions` fields overriding the recipe-derived ones.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = _plan(recipe, out / "plan.jsonl")
    log(f"plan: {len(lines)} images -> {out / 'plan.jsonl'}")
    pipe = pipe or pipeline_for(recipe)
    s = recipe.sampling
    loras: dict[float, Path] = {}
    results: list[Path] = []
    rows: list[dict[str, Any]] = []
    for job in jobs(recipe):
        lora = None
        if job.kl_lambda is not None:
            if job.kl_lambda not in loras:
                run = out / "train" / f"kl-{job.kl_lambda:g}"
                trained = train(
                    recipe, run, kl_lambda=job.kl_lambda, pipe=pipe, score=score, progress=progress
                )
                log(f"train kl-{job.kl_lambda:g}: {trained.steps_run} steps run -> {trained.lora}")
                loras[job.kl_lambda] = trained.lora
            lora = loras[job.kl_lambda]
        images = out / "images" / job.slug
        report = generate(
            pipe,
            lines,
            images,
            job.method,
            lora=lora,
            num_steps=s.steps,
            eta=s.eta,
            batch_size=recipe.eval.batch_size,
            progress=progress,
            info={"recipe": recipe.name, "kl_lambda": job.kl_lambda},
        )
        log(f"generate {job.slug}: {report.written} new, {report.skipped} existing")
        if not evaluate:
            continue
        result = _evaluate(recipe, job, images, out / "images" / "base", evaluate_options or {})
        results.append(result.save(out / "results" / f"{job.slug}.json"))
        metrics = {k: v.value for k, v in result.metrics.items()}
        rows.append(
            {
                "method": job.slug,
                "regularizer": job.regularizer,
                "strength": job.strength,
                **metrics,
            }
        )
        log(f"evaluate {job.slug}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    if rows:
        _summary(out / "summary.csv", rows)
    return results
