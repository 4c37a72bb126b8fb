"""Click commands ``train``, ``generate`` and ``reproduce`` of the SD baselines.

Wire them into a CLI group with ``for c in COMMANDS: cli.add_command(c)`` (or add the group
:data:`sd`). Every command takes ``--recipe`` (a shipped name such as ``sd14-pickscore`` or a
``.toml`` path) and repeatable ``--set section.key=value`` overrides, e.g.
``--set model.path=/models/sd14 --set train.steps=200``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from baselines.sd.generate import METHOD_HELP
from baselines.sd.recipes import Recipe, load_recipe, parse_override

_recipe = click.option(
    "--recipe",
    required=True,
    help="Shipped recipe name (sd14-pickscore, sd14-hpsv2, sdxl-pickscore, sdxl-hpsv2) or a "
    ".toml file.",
)
_set = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a recipe value (TOML syntax), e.g. --set train.steps=10. Repeatable.",
)
_progress = click.option("--progress/--no-progress", default=True, help="Progress bars on stderr.")
_outdir = click.Path(file_okay=False, path_type=Path)


def _load(recipe: str, overrides: tuple[str, ...]) -> Recipe:
    return load_recipe(recipe, dict(parse_override(o) for o in overrides))


def _log(text: str) -> None:
    click.echo(text, err=True)


@click.command("train")
@_recipe
@_set
@click.option("--out", type=_outdir, required=True, help="Run folder (rerun to resume).")
@click.option("--kl-lambda", type=float, default=None, help="Override train.kl_lambda.")
@_progress
def train_command(
    recipe: str, overrides: tuple[str, ...], out: Path, kl_lambda: float | None, progress: bool
) -> None:
    """DRaFT LoRA finetuning: checkpoints, resume, reward curve in OUT/curve.csv."""
    from baselines.sd.train import train

    result = train(_load(recipe, overrides), out, kl_lambda=kl_lambda, progress=progress, log=_log)
    click.echo(f"LoRA: {result.lora} ({result.steps_run} steps run); curve: {result.curve}")


@click.command("generate")
@_recipe
@_set
@click.option("--method", required=True, help=METHOD_HELP)
@click.option(
    "--plan",
    "plan",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Generation plan from `rdbench plan` (JSON Lines); it becomes the set's manifest.",
)
@click.option(
    "--out",
    type=_outdir,
    required=True,
    help="Image-set folder (resumable with the same settings).",
)
@click.option(
    "--lora",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="LoRA weights from `train` (RUN/lora.safetensors); needed by every method but base.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="eval.batch_size")
@_progress
def generate_command(
    recipe: str,
    overrides: tuple[str, ...],
    method: str,
    plan: Path,
    out: Path,
    lora: Path | None,
    batch_size: int | None,
    progress: bool,
) -> None:
    """Fill an rdbench image set from a plan: OUT/<prompt_id>/<seed>.png + manifest.jsonl.

    Rerunning with the same settings resumes; other settings (method, LoRA, sampler, model)
    into the same OUT are refused. --batch-size changes images only by float rounding (about
    1e-6; rarely a PNG value by 1/255), for DDIM and Euler alike.
    """
    from baselines.sd.generate import generate, parse_method
    from baselines.sd.train import pipeline_for

    r = _load(recipe, overrides)
    parsed = parse_method(method)  # fail before loading the model
    report = generate(
        pipeline_for(r),
        plan,
        out,
        parsed,
        lora=lora,
        num_steps=r.sampling.steps,
        eta=r.sampling.eta,
        batch_size=batch_size or r.eval.batch_size,
        progress=progress,
        info={"recipe": r.name},
    )
    click.echo(f"{report.out}: {report.written} images written, {report.skipped} already there")


@click.command("reproduce")
@_recipe
@_set
@click.option("--out", type=_outdir, required=True, help="Study folder (rerun to resume).")
@click.option("--no-evaluate", is_flag=True, help="Stop after generating the image sets.")
@_progress
def reproduce_command(
    recipe: str, overrides: tuple[str, ...], out: Path, no_evaluate: bool, progress: bool
) -> None:
    """Plan, train every KL lambda, generate every method of the sweep, evaluate."""
    from baselines.sd.reproduce import reproduce

    options: dict[str, Any] = {}
    paths = reproduce(
        _load(recipe, overrides),
        out,
        evaluate=not no_evaluate,
        evaluate_options=options,
        progress=progress,
        log=_log,
    )
    click.echo(f"{len(paths)} result files in {out / 'results'}; summary: {out / 'summary.csv'}")


COMMANDS = (train_command, generate_command, reproduce_command)


@click.group("sd")
def sd() -> None:
    """Stable Diffusion baselines: train, generate, reproduce."""


for _command in COMMANDS:
    sd.add_command(_command)
