"""``rdbench submit``: validate result files and add them to the leaderboard's store."""

from __future__ import annotations

from pathlib import Path

import click

from rdbench.submissions import DEFAULT_STORE, MAX_BYTES, submit


@click.command("submit")
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--check", is_flag=True, help="Validate only; write nothing.")
@click.option(
    "--store",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_STORE,
    show_default=True,
    help="The leaderboard's submissions folder.",
)
@click.option(
    "--max-bytes",
    type=click.IntRange(min=1),
    default=MAX_BYTES,
    show_default=True,
    help="Refuse result files larger than this many bytes (checked before parsing).",
)
def command(results: tuple[Path, ...], check: bool, store: Path, max_bytes: int) -> None:
    """Validate RESULTS (result JSON files) and write each, in canonical form, to
    STORE/<suite>/<method>-<hash>.json. Open a pull request with the new files to publish them.
    """
    for path in results:
        target = submit(path, store, check=check, max_bytes=max_bytes)
        if check:
            click.echo(f"ok: {path} is valid (would be written to {target})")
        else:
            click.echo(f"wrote {target}")
