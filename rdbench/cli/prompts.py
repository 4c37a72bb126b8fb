"""``rdbench prompts list|show|stats``: the prompt suites and what a selection contains."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from rdbench.cli._output import print_json, print_table
from rdbench.prompts import SUITES, PromptSuite, load_suite
from rdbench.prompts.parse import DUPLICATE_POLICIES, duplicate_groups
from rdbench.prompts.splits import DEFAULT_FRACTIONS, SPLITS


def selection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options that select prompts from a suite, shared by ``prompts`` and ``plan``."""
    options = [
        click.option(
            "--path",
            type=click.Path(),
            default=None,
            help="Local suite file (a folder with the four json files for hpsv2) instead of "
            "the cache or a download; required when the suite is `file`.",
        ),
        click.option(
            "--split",
            type=click.Choice(SPLITS),
            default=None,
            help="Evaluation suites: 'test' (the whole held-out suite). Training suites "
            "(pickapic, file): a seeded split stratified by category. Default: all prompts.",
        ),
        click.option(
            "--category",
            "categories",
            multiple=True,
            help="Keep only this category (repeatable, case-insensitive).",
        ),
        click.option(
            "--limit",
            type=click.IntRange(min=1),
            default=None,
            help="Keep at most N prompts, subsampled proportionally per category.",
        ),
        click.option(
            "--split-seed",
            type=int,
            default=0,
            show_default=True,
            help="Seed of the train/val/test split and of --limit subsampling.",
        ),
        click.option(
            "--fractions",
            type=float,
            nargs=3,
            default=DEFAULT_FRACTIONS,
            show_default=True,
            help="Train, val and test fractions for training suites.",
        ),
        click.option(
            "--duplicates",
            type=click.Choice(DUPLICATE_POLICIES),
            default=None,
            help="Exact duplicate prompts: error, keep (distinct ids) or drop (first kept). "
            "Default: the suite's policy (error for user files).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def load_selection(suite: str, options: dict[str, Any]) -> PromptSuite:
    """Call :func:`load_suite` with the values of :func:`selection_options`."""
    return load_suite(
        suite,
        path=options["path"],
        split=options["split"],
        categories=options["categories"] or None,
        limit=options["limit"],
        seed=options["split_seed"],
        fractions=options["fractions"],
        duplicates=options["duplicates"],
    )


def _split_selection(kwargs: dict[str, Any]) -> dict[str, Any]:
    keys = ("path", "split", "categories", "limit", "split_seed", "fractions", "duplicates")
    return {k: kwargs.pop(k) for k in keys}


@click.group("prompts")
def command() -> None:
    """Prompt suites: list them, show a selection, count its categories."""


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_suites(as_json: bool) -> None:
    """List the registered prompt suites with their source, licence and size."""
    rows = [
        {
            "suite": spec.name,
            "role": spec.role,
            "splits": ",".join(spec.splits),
            "size": spec.size,
            "license": spec.license,
            "description": spec.description,
            "source": spec.source,
        }
        for spec in (SUITES.get(n) for n in SUITES.names())
    ]
    if as_json:
        print_json(rows)
    else:
        print_table(rows, ["suite", "role", "splits", "size", "license", "description"])


@command.command("show")
@click.argument("suite")
@selection_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per prompt.")
def show(suite: str, as_json: bool, **kwargs: Any) -> None:
    """Print the prompts of SUITE (id, category, text), after split/category/limit."""
    selected = load_selection(suite, _split_selection(kwargs))
    for p in selected:
        if as_json:
            obj = {
                "prompt_id": p.prompt_id,
                "prompt": p.text,
                "category": p.category,
                "challenge": p.challenge,
                "index": p.index,
            }
            click.echo(json.dumps(obj, ensure_ascii=False))
        else:
            click.echo(f"{p.prompt_id}\t{p.category or ''}\t{p.text}")


@command.command("stats")
@click.argument("suite")
@selection_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def stats(suite: str, as_json: bool, **kwargs: Any) -> None:
    """Per-category and per-challenge counts of SUITE, near-duplicates and file checksums."""
    selected = load_selection(suite, _split_selection(kwargs))
    near = duplicate_groups((p.text for p in selected), loose=True)
    summary = {
        "suite": selected.name,
        "split": selected.split,
        "prompts": len(selected),
        "categories": selected.category_counts(),
        "challenges": selected.challenge_counts(),
        "near_duplicate_groups": [[selected[i].prompt_id for i in g] for g in near],
        "sources": [vars(s) for s in selected.sources],
    }
    if as_json:
        print_json(summary)
        return
    click.echo(f"{selected.name}: {len(selected)} prompts (split: {selected.split or 'all'})")
    for title, counts in (
        ("category", summary["categories"]),
        ("challenge", summary["challenges"]),
    ):
        if counts:
            click.echo("")
            print_table([{title: k, "prompts": v} for k, v in counts.items()], [title, "prompts"])
    click.echo(f"\nnear-duplicate groups (case/punctuation-insensitive): {len(near)}")
    for s in selected.sources:
        status = "verified" if s.verified else "no published sha256 to check"
        click.echo(f"source: {s.location}  sha256 {s.sha256}  ({status})")
