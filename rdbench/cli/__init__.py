"""The ``rdbench`` command line. Each command lives in its own module of this package."""

from __future__ import annotations

import sys

import click

from rdbench import __version__
from rdbench.errors import RdbenchError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rdbench")
def cli() -> None:
    """rdbench: reward and diversity metrics for text-to-image diffusion models.

    Data flow: images -> features -> metrics -> results -> leaderboard.
    """


# One module per command (or command group); each exposes ``command``.
COMMAND_MODULES = (
    "compare",
    "demo",
    "prompts",
    "plan",
    "manifest",
    "cache",
    "evaluate",
    "rewards",
    "score",
    "submit",
    "leaderboard",
)


def _register() -> None:
    import importlib

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"rdbench.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"rdbench.cli.{name}":
                raise
            continue  # command not written yet
        cli.add_command(module.command)


_register()


def run_cli(group: click.Group, argv: list[str] | None, prog_name: str) -> None:
    """Run a click group so that user errors are one line on stderr and exit code 2.

    Shared by ``rdbench`` and ``python -m baselines``: no traceback for bad input.
    """
    try:
        rv = group.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo(f"{prog_name}: aborted", err=True)
        sys.exit(130)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except RdbenchError as exc:
        click.echo(f"{prog_name}: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo(f"{prog_name}: interrupted; finished cache chunks are kept", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


def main(argv: list[str] | None = None) -> None:
    """The ``rdbench`` entry point."""
    run_cli(cli, argv, "rdbench")
