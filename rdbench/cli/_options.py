"""Click options that several commands share, defined once."""

from __future__ import annotations

import click

from rdbench.imageset import ON_ERROR_CHOICES


def on_error_option(help_text: str):
    """``--on-error raise|skip``: how a command treats a bad image file."""
    return click.option(
        "--on-error",
        type=click.Choice(ON_ERROR_CHOICES),
        default="raise",
        show_default=True,
        help=help_text,
    )
