"""``rdbench evaluate``: every metric of an image set, optionally against a reference set."""

from __future__ import annotations

from typing import Any

import click

from rdbench import defaults
from rdbench.cli._options import on_error_option
from rdbench.cli.score import _pairs
from rdbench.errors import RdbenchError


def _grouped(values: tuple[str, ...], what: str) -> dict[str, dict[str, str]]:
    """``("clip.model=ViT-L-14", ...)`` -> ``{"clip": {"model": "ViT-L-14"}}``."""
    out: dict[str, dict[str, str]] = {}
    for key, value in _pairs(values, what):
        name, dot, option = key.partition(".")
        if not dot or not name or not option:
            raise RdbenchError(f"{what} {key}=...: use NAME.KEY=VALUE, e.g. clip.model=ViT-L-14")
        out.setdefault(name, {})[option] = value
    return out


def _print_report(evaluation: Any) -> None:
    from rdbench.cli._output import print_table

    result = evaluation.result
    rows = [
        {
            "metric": key,
            "value": v.value,
            "low": v.low,
            "high": v.high,
            "n": v.n,
            "reference": evaluation.reference_metrics.get(key),
        }
        for key, v in result.metrics.items()
    ]
    columns = ["metric", "value", "low", "high", "n"]
    if evaluation.reference_metrics:
        columns.append("reference")
    print_table(rows, columns)
    if evaluation.paired:
        click.echo("\npaired differences (generated - reference, shared prompt_id and seed):")
        paired = [
            {"metric": k, "difference": v.value, "low": v.low, "high": v.high, "pairs": v.n}
            for k, v in evaluation.paired.items()
        ]
        print_table(paired, ["metric", "difference", "low", "high", "pairs"])
    if result.per_category:
        click.echo("\nper category:")
        cat_rows = [
            {"category": c, "metric": k, "value": v.value, "low": v.low, "high": v.high, "n": v.n}
            for c, table in result.per_category.items()
            for k, v in table.items()
        ]
        print_table(cat_rows, ["category", "metric", "value", "low", "high", "n"])
    setup = result.setup
    click.echo(
        f"\n{setup.n_images} images, {setup.n_prompts} prompts"
        + (f", {setup.n_reference_images} reference images" if setup.n_reference_images else "")
        + (f", {setup.n_pairs} pairs" if setup.n_pairs is not None else "")
        + f"; extractors: {', '.join(f'{e.id} ({e.resize_mode})' for e in result.extractors)}"
    )


@click.command("evaluate")
@click.argument("image_dir", type=click.Path())
@click.option(
    "--reference",
    "-r",
    type=click.Path(),
    default=None,
    help="Reference set (the base model's or real images). Without it only reference-free "
    "metrics run (vendi, per-prompt diversity, rewards).",
)
@click.option(
    "--extractor",
    "extractors",
    default=defaults.EXTRACTOR,
    show_default=True,
    help="Comma-separated feature extractors (inception, clip, dinov2).",
)
@click.option(
    "--metrics",
    default=None,
    help=f"Comma-separated set metrics ({', '.join(defaults.SET_METRICS)}); default: each "
    "extractor's own defaults plus vendi.",
)
@click.option("--reward", "rewards", default="", help="Comma-separated rewards, e.g. pickscore.")
@click.option(
    "--per-prompt/--no-per-prompt",
    default=None,
    help="Per-prompt diversity (default: on when the manifest has 2+ images for a prompt).",
)
@click.option(
    "--bootstrap",
    type=click.IntRange(min=0),
    default=defaults.SET_BOOTSTRAP_RESAMPLES,
    show_default=True,
    help="Resamples for set-metric intervals; 0 = none. Each keeps half the prompts, drawn "
    "without replacement (a delete-half jackknife: no duplicated images to shrink k-NN radii), "
    "and recomputes the metrics (FID at d=2048: ~1 s), so 100-200 is a practical choice.",
)
@click.option(
    "--mean-resamples",
    type=click.IntRange(min=0),
    default=defaults.BOOTSTRAP_RESAMPLES,
    show_default=True,
    help="Bootstrap resamples for rewards and per-prompt diversity (cheap); 0 = none.",
)
@click.option("--confidence", default=defaults.CONFIDENCE, show_default=True, help="CI level.")
@click.option("--seed", default=defaults.SEED, show_default=True, help="Seed (bootstrap, KID).")
@click.option("--batch-size", default=defaults.BATCH_SIZE, show_default=True, help="Batch size.")
@click.option(
    "--workers", default=defaults.NUM_WORKERS, show_default=True, help="DataLoader workers."
)
@click.option("--device", default=None, help="torch device (default: cuda if available).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the feature/score cache.")
@on_error_option("Stop at a bad image file, or skip it and list it.")
@click.option(
    "--weights",
    multiple=True,
    metavar="NAME=PATH",
    help="Local weights for an extractor or reward (e.g. inception=/w/inception.pt); repeatable.",
)
@click.option(
    "--extractor-option",
    multiple=True,
    metavar="NAME.KEY=VALUE",
    help="Extractor option, e.g. clip.model=ViT-L-14, clip.pretrained=openai, "
    "inception.resize_mode=legacy_tensorflow; repeatable.",
)
@click.option(
    "--reward-option",
    multiple=True,
    metavar="NAME.KEY=VALUE",
    help="Reward option, e.g. hpsv2.arch=ViT-H-14; repeatable.",
)
@click.option("--pr-k", default=defaults.PRECISION_RECALL_K, show_default=True, help="k of P/R.")
@click.option("--dc-k", default=defaults.DENSITY_COVERAGE_K, show_default=True, help="k of D/C.")
@click.option("--scd-top-k", type=int, default=None, help="SCD: keep the top k eigenvalues.")
@click.option("--method", default="unknown", show_default=True, help="Method name (a slug).")
@click.option("--regularizer", default=None, help="Regularizer (kl, lora-scale, aig...).")
@click.option("--strength", type=float, default=None, help="Regularizer strength.")
@click.option("--base-model", default="unknown", show_default=True, help="Base model name.")
@click.option("--reward-model", default="unknown", show_default=True, help="Finetuning reward.")
@click.option("--prompt-suite", default="custom", show_default=True, help="Prompt suite slug.")
@click.option("--split", default="test", show_default=True, help="Prompt split slug.")
@click.option("--submitter", default=None, help="Submitter (default $RDBENCH_SUBMITTER).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the result.")
@click.option("--json", "as_json", is_flag=True, help="Print the result JSON, not a table.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or messages on stderr.")
def command(image_dir: str, reference: str | None, **kw: Any) -> None:
    """Evaluate IMAGE_DIR (folder or .zip, optionally with manifest.jsonl) against --reference.

    Set metrics (fid, kid, precision, recall, density, coverage, scd) compare IMAGE_DIR with
    the reference; vendi, per-prompt diversity and rewards need no reference. Paired
    differences use the images both sets share by (prompt_id, seed).
    """
    from rdbench.evaluate import EvaluateOptions, run_evaluation
    from rdbench.metrics.sets import MetricOptions

    rewards = tuple(r.strip() for r in kw["rewards"].split(",") if r.strip())
    options = EvaluateOptions(
        extractors=tuple(kw["extractors"].split(",")),
        metrics=tuple(kw["metrics"].split(",")) if kw["metrics"] else None,
        rewards=rewards,
        per_prompt=kw["per_prompt"],
        bootstrap=kw["bootstrap"],
        mean_resamples=kw["mean_resamples"],
        confidence=kw["confidence"],
        seed=kw["seed"],
        batch_size=kw["batch_size"],
        num_workers=kw["workers"],
        device=kw["device"],
        cache=not kw["no_cache"],
        on_error=kw["on_error"],
        weights=dict(_pairs(kw["weights"], "--weights")),
        extractor_options=_grouped(kw["extractor_option"], "--extractor-option"),
        reward_options=_grouped(kw["reward_option"], "--reward-option"),
        metric_options=MetricOptions(pr_k=kw["pr_k"], dc_k=kw["dc_k"], scd_top_k=kw["scd_top_k"]),
        method=kw["method"],
        regularizer=kw["regularizer"],
        strength=kw["strength"],
        base_model=kw["base_model"],
        reward_model=kw["reward_model"],
        prompt_suite=kw["prompt_suite"],
        split=kw["split"],
        submitter=kw["submitter"],
        progress=not kw["quiet"],
        quiet=kw["quiet"],
    )
    evaluation = _validated(lambda: run_evaluation(image_dir, reference, options))
    from rdbench.distributed import is_main

    if not is_main():
        return  # ranks other than 0 of a torchrun job: rank 0 writes and prints
    if kw["out"]:
        path = evaluation.result.save(kw["out"])
        if not kw["quiet"]:
            click.echo(f"rdbench: wrote {path}", err=True)
    if kw["as_json"]:
        click.echo(evaluation.result.to_json(), nl=False)
    else:
        _print_report(evaluation)


def _validated(run: Any) -> Any:
    """Labels that break the result schema (``--method 'My Method'``) become one-line errors."""
    from pydantic import ValidationError

    from rdbench.results import describe_errors

    try:
        return run()
    except ValidationError as exc:
        raise RdbenchError(f"cannot build the result: {describe_errors(exc)}") from None
