"""``rdbench manifest``: write ``manifest.jsonl`` for a ``<prompt_id>/<seed>.<ext>`` folder,
or check that a folder / .zip is a usable image set."""

from __future__ import annotations

from pathlib import Path

import click

from rdbench.cli._options import on_error_option
from rdbench.errors import RdbenchError
from rdbench.images import MAX_PIXELS
from rdbench.imageset import (
    MANIFEST_NAME,
    ImageSet,
    load_prompt_plan,
    write_manifest,
)


@click.command("manifest")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option(
    "--prompts",
    "prompts_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Generation plan (JSON Lines with prompt_id, prompt, category) to fill prompt texts.",
)
@click.option("--force", is_flag=True, help=f"Overwrite an existing {MANIFEST_NAME}.")
@click.option(
    "--check",
    is_flag=True,
    help="Do not write: open DIRECTORY (folder or .zip) and decode every image.",
)
@on_error_option("With --check: stop at bad files (raise) or list and skip them (skip).")
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=MAX_PIXELS,
    show_default=True,
    help="With --check: refuse images with more pixels (decompression bombs).",
)
def command(
    directory: Path,
    prompts_file: Path | None,
    force: bool,
    check: bool,
    on_error: str,
    max_pixels: int,
) -> None:
    """Write DIRECTORY/manifest.jsonl for images named <prompt_id>/<seed>.<ext>.

    Without --prompts the manifest's prompt texts are null. With --check, validate an
    existing image set instead and print a summary.
    """
    if check:
        if prompts_file is not None or force:
            raise click.UsageError("--check does not write; drop --prompts and --force")
        _check(directory, on_error, max_pixels)
        return
    prompts, categories = load_prompt_plan(prompts_file) if prompts_file else (None, None)
    target = write_manifest(directory, prompts=prompts, categories=categories, force=force)
    image_set = ImageSet.open(directory)
    click.echo(
        f"wrote {click.format_filename(target)}: {len(image_set)} images, "
        f"{len(image_set.prompts())} prompts"
    )


def _check(directory: Path, on_error: str, max_pixels: int) -> None:
    from tqdm import tqdm

    image_set = ImageSet.open(directory, on_error=on_error)  # type: ignore[arg-type]
    decoded = 0
    images = image_set.iter_rgb(on_error=on_error, max_pixels=max_pixels)  # type: ignore[arg-type]
    with tqdm(total=len(image_set), desc="decoding", unit="img", leave=False, disable=None) as bar:
        for _ in images:
            decoded += 1
            bar.update()
    for name, reason in image_set.skipped:
        click.echo(f"skipped {name!r}: {reason}", err=True)
    if decoded == 0:
        raise RdbenchError(f"no image in {click.format_filename(directory)!r} could be decoded")
    if image_set.has_manifest:
        layout = f"manifest with {len(image_set.prompts())} prompts"
    else:
        layout = "no manifest: only set-level metrics"
    click.echo(
        f"{click.format_filename(directory)}: {decoded} images decoded, "
        f"{len(image_set.skipped)} skipped; {layout}"
    )
