"""``rdbench cache info|clear``: inspect or empty the feature cache."""

from __future__ import annotations

import dataclasses

import click

from rdbench.cli._output import print_json, print_table


@click.group("cache")
def command() -> None:
    """Inspect or clear the feature cache ($RDBENCH_HOME/features).

    Features are cached per image content (sha256 of the file bytes) and per namespace:
    extractor id (model + weights digest), resize mode and feature-format version. A changed
    image is recomputed automatically; `rdbench evaluate --no-cache` bypasses the cache.
    """


@command.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def info(as_json: bool) -> None:
    """List cache namespaces with their entries and size on disk."""
    from rdbench.features.cache import FeatureCache

    cache = FeatureCache()
    rows = [dataclasses.asdict(item) for item in cache.info()]
    if as_json:
        print_json({"root": str(cache.root), "namespaces": rows})
        return
    click.echo(f"feature cache: {cache.root}")
    if not rows:
        click.echo("(empty)")
        return
    print_table(rows, ["extractor", "entries", "chunks", "bytes", "dim", "namespace"])


@command.command("clear")
@click.option(
    "--extractor",
    metavar="NAME",
    default=None,
    help="Only clear the namespaces of this extractor (inception, clip, dinov2) or reward "
    "(reward-<name>, e.g. reward-aesthetic): the names `rdbench cache info` lists.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def clear(extractor: str | None, yes: bool) -> None:
    """Delete cached features and reward scores (all of them, or one extractor's or reward's)."""
    from rdbench.errors import RdbenchError
    from rdbench.features.cache import FeatureCache

    cache = FeatureCache()
    names = sorted({item.extractor for item in cache.info()})
    if extractor is not None and extractor not in names:
        raise RdbenchError(
            f"no cache namespace of {extractor!r}; cached: {', '.join(names) or 'nothing'}"
        )
    what = f"cached {extractor} features" if extractor else "all cached features"
    if not yes:
        click.confirm(f"Delete {what} under {cache.root}?", abort=True)
    removed = cache.clear(extractor=extractor)
    click.echo(f"removed {removed} namespace(s) of {what}")
