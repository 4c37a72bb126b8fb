"""``rdbench rewards``: the reward models rdbench can score with."""

from __future__ import annotations

import dataclasses

import click

from rdbench.cli._output import print_json


@click.group("rewards")
def command() -> None:
    """Reward models (PickScore, HPSv2, CLIPScore, aesthetic; ImageReward is listed but not
    loadable yet)."""


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def list_rewards(as_json: bool) -> None:
    """Each reward's source, weights files, preprocessing and score scale."""
    from rdbench.rewards import REWARDS

    infos = [REWARDS.get(name).info for name in REWARDS.names()]
    if as_json:
        print_json([dataclasses.asdict(info) for info in infos])
        return
    for info in infos:
        versions = ", ".join(
            v + (" (default)" if v == info.default_version and len(info.versions) > 1 else "")
            for v in info.versions
        )
        click.echo(f"{info.name}: {info.summary}")
        click.echo(f"  source:        {info.source}")
        click.echo(f"  versions:      {versions}")
        for weights in info.weights:
            click.echo(f"  weights:       {weights}")
        click.echo(f"  preprocessing: {info.preprocessing}")
        click.echo(f"  scale:         {info.scale}")
        tokens = (
            "no prompt needed"
            if not info.needs_prompts
            else (f"prompt truncated to {info.max_tokens} tokens")
        )
        click.echo(f"  text:          {tokens}")
        for key, text in info.options.items():
            click.echo(f"  option {key}: {text}")
        if info.notes:
            click.echo(f"  note:          {info.notes}")
