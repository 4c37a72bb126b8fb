"""Procedurally drawn test images and image sets (no downloads, deterministic).

Reusable by every test that needs images on disk::

    from imagegen import make_image_set  # tests/ is on sys.path under pytest
    root = make_image_set(tmp_path / "base", n_prompts=4, seeds=range(8))

Styles:
- ``"shapes"``: a per-prompt colour gradient with 1-4 ellipses/rectangles whose colours,
  sizes and positions depend on the seed (diverse within a prompt, distinct across prompts);
- ``"collapsed"``: the same picture for every seed of a prompt (a mode-collapsed model);
- ``"gradient"``: only the background gradient, with a seed-dependent direction;
- ``"noise"``: uniform random pixels.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

STYLES = ("shapes", "collapsed", "gradient", "noise")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
SHAPES = ("circle", "square", "ring", "stripe")


def prompt_text(index: int) -> str:
    return f"a {COLOURS[index % len(COLOURS)]} {SHAPES[(index // len(COLOURS)) % len(SHAPES)]}"


def prompt_id(index: int) -> str:
    return f"p{index:04d}"


def draw_image(
    prompt_index: int,
    image_seed: int,
    *,
    size: tuple[int, int] = (64, 64),
    style: str = "shapes",
    seed: int = 0,
) -> Image.Image:
    """One RGB image, a pure function of its arguments."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    width, height = size
    rng = np.random.default_rng([seed, prompt_index, 0 if style == "collapsed" else image_seed])
    if style == "noise":
        return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    base = np.random.default_rng([seed, prompt_index, 10**6]).integers(0, 256, (2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width]
    t = (np.cos(angle) * xx / width + np.sin(angle) * yy / height + 1) / 2
    pixels = (1 - t)[..., None] * base[0] + t[..., None] * base[1]
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if style == "gradient":
        return image
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 5))):
        x0, y0 = rng.uniform(0, 0.7) * width, rng.uniform(0, 0.7) * height
        w, h = rng.uniform(0.15, 0.5) * width, rng.uniform(0.15, 0.5) * height
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x0 + w, y0 + h), fill=fill)
    return image


def encode(image: Image.Image, fmt: str = "PNG", **save_args: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **save_args)
    return buf.getvalue()


def make_image_set(
    root: str | Path,
    n_prompts: int,
    seeds: Iterable[int],
    size: tuple[int, int] = (64, 64),
    style: str = "shapes",
    seed: int = 0,
    *,
    manifest: bool = True,
    ext: str = "png",
    first_prompt: int = 0,
) -> Path:
    """Write ``root/<prompt_id>/<seed>.<ext>`` for each prompt and seed (and a manifest).

    The manifest lines are the plan format: path, prompt_id, prompt, seed, category, meta.
    ``seed`` varies the drawing for the whole set (another "model"), ``seeds`` are the
    per-image seeds that pair images across sets.
    """
    root = Path(root)
    seeds = list(seeds)
    lines = []
    for index in range(first_prompt, first_prompt + n_prompts):
        pid = prompt_id(index)
        (root / pid).mkdir(parents=True, exist_ok=True)
        for image_seed in seeds:
            image = draw_image(index, image_seed, size=size, style=style, seed=seed)
            rel = f"{pid}/{image_seed}.{ext}"
            (root / rel).write_bytes(encode(image, "JPEG" if ext in ("jpg", "jpeg") else "PNG"))
            record = {
                "path": rel,
                "prompt_id": pid,
                "prompt": prompt_text(index),
                "seed": image_seed,
                "category": COLOURS[index % len(COLOURS)],
                "meta": {},
            }
            lines.append(json.dumps(record))
    if manifest:
        (root / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def make_plain_folder(
    root: str | Path, n: int, size: tuple[int, int] = (64, 64), style: str = "shapes", seed: int = 0
) -> Path:
    """``n`` images ``img_000.png``... in one folder, no manifest (a set-level-only set)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = draw_image(i % 8, i, size=size, style=style, seed=seed)
        (root / f"img_{i:03d}.png").write_bytes(encode(image))
    return root


def write_manifest_lines(root: str | Path, records: Iterable[dict]) -> Path:
    """Write ``records`` (dicts) as ``root/manifest.jsonl``."""
    path = Path(root) / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def zip_folder(folder: str | Path, zip_path: str | Path, *, top_folder: str | None = None) -> Path:
    """Zip every file under ``folder`` (optionally inside one top-level folder name)."""
    folder, zip_path = Path(folder), Path(zip_path)
    with zipfile.ZipFile(zip_path, "w") as zf:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = path.relative_to(folder).as_posix()
            zf.write(path, f"{top_folder}/{rel}" if top_folder else rel)
    return zip_path


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose IHDR claims ``width`` x ``height`` (a bomb header).

    Only the header is patched (with a correct CRC), so opening it trips a size check
    without any large allocation.
    """
    data = bytearray(encode(Image.new("RGB", (1, 1), (0, 0, 0))))
    # 8-byte signature, 4-byte length, "IHDR", then width and height (big-endian).
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)
