"""``rdbench score``: per-image reward scores of an image set, as JSON lines."""

from __future__ import annotations

import json
import os
import sys

import click

from rdbench.cli._options import on_error_option
from rdbench.errors import RdbenchError


def _pairs(
    values: tuple[str, ...], what: str, *, allow_empty: bool = False
) -> list[tuple[str, str]]:
    """``NAME=VALUE`` strings as pairs; an empty VALUE only where ``allow_empty``
    (``--option clipscore.prefix=`` turns the prefix off)."""
    out = []
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip() or not (rest or allow_empty):
            form = "NAME=VALUE (VALUE may be empty)" if allow_empty else "NAME=VALUE"
            raise RdbenchError(f"{what} must look like {form}, got {value!r}")
        out.append((key.strip(), rest))
    return out


def _apply_weights(pairs: list[tuple[str, str]], rewards: list[str]) -> dict[str, str]:
    """``--weights``: a reward name -> that reward's ``weights=``; a ``rdbench.weights`` entry
    name (e.g. ``clip-vit-l-14-openai``) -> its ``RDBENCH_FILE_<NAME>`` override."""
    from rdbench.weights import WEIGHTS

    per_reward: dict[str, str] = {}
    for name, path in pairs:
        if name in rewards:
            per_reward[name] = path
        elif name in WEIGHTS:
            os.environ[WEIGHTS.get(name).env_var] = path
        else:
            raise RdbenchError(
                f"--weights {name}=...: {name!r} is neither a requested reward "
                f"({', '.join(rewards)}) nor a weights entry ({', '.join(WEIGHTS.names())})"
            )
    return per_reward


@click.command("score")
@click.argument("image_dir", type=click.Path(exists=True))
@click.option(
    "--reward",
    "rewards",
    required=True,
    help="Comma-separated rewards, a version after ':' (e.g. pickscore,hpsv2:v2.0).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write JSON lines here instead of stdout.",
)
@click.option(
    "--batch-size",
    default=32,
    show_default=True,
    type=click.IntRange(min=1),
    help="Images scored per forward pass.",
)
@click.option("--device", default=None, help="torch device (default: cuda if available, else cpu).")
@click.option("--dtype", default=None, help="float32 (default), float16 or bfloat16.")
@click.option(
    "--weights",
    "weights",
    multiple=True,
    metavar="NAME=PATH",
    help="Local weights for a reward (NAME = reward) or a weights entry; repeatable.",
)
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="REWARD.KEY=VALUE",
    help="Reward option, e.g. hpsv2.arch=ViT-H-14, or clipscore.prefix= (empty: no prefix); "
    "repeatable.",
)
@click.option("--no-cache", is_flag=True, help="Do not read or write the score cache.")
@on_error_option("Stop at an unreadable image, or skip it.")
def command(
    image_dir, rewards, out, batch_size, device, dtype, weights, options, no_cache, on_error
):
    """Score every image of IMAGE_DIR (folder or .zip, with manifest.jsonl for prompts).

    One JSON line per image: {"key", "prompt_id", "seed", "<reward>": score, ...}; a skipped
    image has null scores. Scores are cached by image content, prompt and reward id (weights
    digest, dtype and score-changing options; printed to stderr).
    """
    from rdbench.imageset import ImageSet
    from rdbench.rewards import load, parse_name

    names = [n.strip() for n in rewards.split(",") if n.strip()]
    if not names:
        raise RdbenchError("--reward needs at least one reward name")
    bases = [parse_name(n)[0].info.name for n in names]
    per_reward = _apply_weights(_pairs(weights, "--weights"), bases)
    reward_options: dict[str, dict[str, str]] = {}
    for key, value in _pairs(options, "--option", allow_empty=True):
        reward, dot, opt = key.partition(".")
        if not dot or reward not in bases:
            raise RdbenchError(f"--option {key}=...: use REWARD.KEY with REWARD one of {bases}")
        reward_options.setdefault(reward, {})[opt] = value

    image_set = ImageSet.open(image_dir, on_error=on_error)
    columns: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    from rdbench.rewards import score_imageset

    for name, base in zip(names, bases, strict=True):
        reward = load(
            name,
            device=device,
            dtype=dtype,
            weights=per_reward.get(base),
            **reward_options.get(base, {}),
        )
        result = score_imageset(
            image_set, reward, batch_size=batch_size, cache=not no_cache, on_error=on_error
        )
        click.echo(f"rdbench: {name} = {result.reward_id}", err=True)
        columns[name] = result.as_dict()
        skipped.update(dict(result.skipped))
        del reward
    for key, reason in skipped.items():
        click.echo(f"rdbench: skipped {key}: {reason}", err=True)

    stream = open(out, "w", encoding="utf-8") if out else sys.stdout  # noqa: SIM115
    try:
        for item in image_set.items:
            row = {"key": item.key, "prompt_id": item.prompt_id, "seed": item.seed}
            row.update({name: columns[name].get(item.key) for name in names})
            stream.write(json.dumps(row) + "\n")
    finally:
        if out:
            stream.close()
    if out:
        click.echo(f"wrote {len(image_set.items)} lines to {out}", err=True)
