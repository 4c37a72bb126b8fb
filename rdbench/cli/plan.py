"""``rdbench plan``: the JSON Lines list of images to generate for a prompt selection."""

from __future__ import annotations

import sys
from typing import Any

import click

from rdbench.cli.prompts import _split_selection, load_selection, selection_options
from rdbench.prompts.plan import make_plan, write_plan


@click.command("plan")
@click.option(
    "--suite",
    required=True,
    help="Prompt suite (see `rdbench prompts list`); 'file' with --path for your own file.",
)
@selection_options
@click.option(
    "--images-per-prompt",
    type=click.IntRange(min=1),
    required=True,
    help="Images to generate per prompt; image j of every prompt uses seed SEED + j.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="First noise seed; the same seeds serve every prompt and every method.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    show_default=True,
    help="Write the plan to this file ('-': stdout).",
)
def command(suite: str, images_per_prompt: int, seed: int, out: str, **kwargs: Any) -> None:
    """Write one manifest line per image to generate: path, prompt_id, prompt, seed, category.

    Every method generates from the same plan, so image sets are paired by (prompt_id, seed)
    and share their initial noise; save the plan as the image folder's manifest.
    """
    selected = load_selection(suite, _split_selection(kwargs))
    lines = make_plan(selected, images_per_prompt=images_per_prompt, seed=seed)
    write_plan(lines, sys.stdout if out == "-" else out)
    click.echo(
        f"plan: {len(selected)} prompts x {images_per_prompt} images = {len(lines)} lines"
        + ("" if out == "-" else f" -> {out}"),
        err=True,
    )
