"""``generate --method M --plan plan.jsonl --out DIR``: fill an rdbench image set from a plan.

Each plan line becomes ``DIR/<prompt_id>/<seed>.png`` (the line's ``path``), sampled from
initial noise drawn with the line's own seed (:meth:`SDPipeline.initial_noise`), so every
method shares noise per ``(prompt_id, seed)`` and image sets are paired. Before the first
image, ``DIR/generation.json`` records what makes the set (method, LoRA sha256, sampler steps,
eta, CFG scale, scheduler, model, resolution, dtype); a rerun with the same settings skips the
existing images (resumable), any other settings are refused (the folder would mix two
methods). Each PNG is written atomically. When every image exists, the plan is written as
``DIR/manifest.jsonl``, so ``rdbench evaluate DIR --reference BASE_DIR`` follows directly.

An image depends on its prompt, seed and the settings, and on the batch it was sampled in
only through float rounding: batched UNet/VAE kernels round differently, so images sampled at
different ``batch_size`` agree to about 1e-6 (DDIM and Euler alike); their 8-bit PNGs are
almost always identical, but a value on a rounding boundary can differ by 1/255. The same
batch size repeats bit for bit.

Methods: ``base`` (adapters off), ``draft`` (LoRA scale 1), ``lora-scale:a`` (LoRA residual
times ``a``, ``0 <= a <= 1``), ``aig:<schedule>`` (AIG with a :mod:`baselines.core.schedules`
spec, e.g. ``aig:power:2``, ``aig:step:0.5``).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from baselines.core.guidance import aig_predictor, base_predictor
from baselines.core.lora import load_lora, lora_layers, lora_scale, recipe_path
from baselines.core.sampling import Predictor, predictor, sample
from baselines.core.schedules import parse_schedule
from baselines.sd.pipeline import LORA_TARGETS, SDPipeline
from rdbench.errors import RdbenchError
from rdbench.hub import atomic_write_bytes, sha256_file
from rdbench.imageset import MANIFEST_NAME
from rdbench.prompts.plan import read_plan, write_plan

METHOD_HELP = "base | draft | lora-scale:A (0 <= A <= 1) | aig:SCHEDULE (e.g. aig:power:2)"


@dataclass(frozen=True)
class Method:
    """A parsed ``--method``: ``kind`` in base/draft/lora-scale/aig and its parameter."""

    kind: str
    scale: float = 1.0
    schedule: str = ""

    @property
    def needs_lora(self) -> bool:
        return self.kind != "base"

    @property
    def slug(self) -> str:
        """A folder- and result-friendly name: ``lora-scale-0.5``, ``aig-power-2``."""
        text = {"lora-scale": f"lora-scale:{self.scale:g}", "aig": f"aig:{self.schedule}"}
        return text.get(self.kind, self.kind).replace(":", "-").replace(",", "_")

    def __str__(self) -> str:
        return {"lora-scale": f"lora-scale:{self.scale:g}", "aig": f"aig:{self.schedule}"}.get(
            self.kind, self.kind
        )


def parse_method(spec: str) -> Method:
    """``"aig:power:2"`` -> ``Method("aig", schedule="power:2")``; bad specs raise."""
    kind, _, arg = spec.strip().partition(":")
    if kind in ("base", "draft") and not arg:
        return Method(kind)
    if kind == "lora-scale":
        try:
            scale = float(arg)
        except ValueError:
            scale = -1.0
        if not 0.0 <= scale <= 1.0:
            raise RdbenchError(f"method {spec!r}: lora-scale needs a number in [0, 1]")
        return Method(kind, scale=scale)
    if kind == "aig" and arg:
        parse_schedule(arg)(0, 2)
        return Method(kind, schedule=arg)
    raise RdbenchError(f"unknown method {spec!r}; use {METHOD_HELP}")


@contextmanager
def method_predictor(
    pipe: SDPipeline, method: Method, cond: dict[str, Any], num_steps: int
) -> Iterator[Predictor]:
    """The sampler's predictor for ``method`` (LoRA scaling is active inside the block)."""
    den = pipe.denoiser()
    has_lora = any(True for _ in _lora_modules(pipe))
    if method.needs_lora and not has_lora:
        raise RdbenchError(f"method {method} needs LoRA weights: pass --lora PATH")
    if method.kind == "base":
        yield base_predictor(pipe.unet, den, cond) if has_lora else predictor(den, cond)
    elif method.kind == "aig":
        yield aig_predictor(pipe.unet, den, cond, method.schedule, num_steps)
    else:
        with lora_scale(pipe.unet, method.scale) if method.kind == "lora-scale" else nullcontext():
            yield predictor(den, cond)


def _lora_modules(pipe: SDPipeline) -> Iterator[Any]:
    try:
        yield from lora_layers(pipe.unet)
    except RdbenchError:
        return


def attach_lora(pipe: SDPipeline, path: str | Path) -> dict[str, Any]:
    """Load LoRA weights saved by ``train`` (adding LoRA layers of the saved shape if needed)."""
    path = Path(path)
    if not any(True for _ in _lora_modules(pipe)):
        meta = recipe_path(path)
        if not path.is_file() or not meta.is_file():
            raise RdbenchError(f"LoRA weights {path} (with {meta.name}) not found; train first")
        lora = json.loads(meta.read_text()).get("recipe", {}).get("lora", {})
        pipe.add_lora(lora.get("rank", 32), lora.get("alpha"), lora.get("targets", LORA_TARGETS))
    return load_lora(pipe.unet, path)


def to_png(image: torch.Tensor) -> bytes:
    """A ``3 x H x W`` image in [0, 1] as 8-bit PNG bytes (``round(255 x)``)."""
    array = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array.permute(1, 2, 0).cpu().numpy())).save(
        buf, format="PNG"
    )
    return buf.getvalue()


@torch.no_grad()
def sample_images(
    pipe: SDPipeline,
    method: Method,
    prompts: list[str],
    seeds: list[int],
    *,
    num_steps: int,
    eta: float = 0.0,
) -> torch.Tensor:
    """Images in [0, 1] for one batch of (prompt, seed) pairs."""
    cond = pipe.encode(prompts)
    noise = pipe.initial_noise(seeds)
    step_noise = None
    if eta > 0:  # per-image step noise too, so results do not depend on the batch split
        step_noise = torch.stack(
            [
                torch.randn(
                    (num_steps, *pipe.latent_shape),
                    generator=torch.Generator().manual_seed(int(s) + 1_000_003),
                )
                for s in seeds
            ],
            dim=1,
        ).to(pipe.device, pipe.dtype)
    with method_predictor(pipe, method, cond, num_steps) as predict:
        latents = sample(
            predict, pipe.scheduler, noise, num_steps=num_steps, eta=eta, step_noise=step_noise
        )
    return pipe.decode(latents)


@dataclass(frozen=True)
class GenerateReport:
    out: Path
    written: int
    skipped: int


def settings(
    pipe: SDPipeline, method: Method, lora_sha256: str | None, num_steps: int, eta: float
) -> dict[str, Any]:
    """What decides a set's images (besides prompt and seed): recorded in ``generation.json``."""
    return {
        "method": str(method),
        "lora_sha256": lora_sha256,
        "num_steps": num_steps,
        "eta": eta,
        "guidance_scale": pipe.guidance_scale,
        "scheduler": type(pipe.scheduler).__name__,
        "model": pipe.source,
        "resolution": pipe.image_size,
        "dtype": str(pipe.dtype).removeprefix("torch."),
    }


def _check_settings(out: Path, wanted: dict[str, Any]) -> None:
    """Refuse to add images to ``out`` unless they were made with the ``wanted`` settings."""
    record = out / "generation.json"
    if not record.is_file():
        if any(out.glob("*/*.png")):
            raise RdbenchError(
                f"{out} holds images but no generation.json saying how they were made; write "
                f"the set to another folder, or delete {out} to regenerate it"
            )
        return
    try:
        saved = json.loads(record.read_text())
    except (OSError, ValueError):
        saved = {}
    diff = [f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in wanted.items() if saved.get(k) != v]
    if diff:
        raise RdbenchError(
            f"{out} holds images made with other settings ({'; '.join(diff)}); write the "
            f"set to another folder, or delete {out} to regenerate it"
        )


def _write_record(out: Path, record: dict[str, Any]) -> None:
    data = json.dumps(record, indent=2, sort_keys=True, default=str).encode()
    atomic_write_bytes(out / "generation.json", data)


def generate(
    pipe: SDPipeline,
    plan: str | Path | list[dict[str, Any]],
    out: str | Path,
    method: str | Method,
    *,
    lora: str | Path | None = None,
    num_steps: int = 25,
    eta: float = 0.0,
    batch_size: int = 8,
    progress: bool = True,
    info: dict[str, Any] | None = None,
) -> GenerateReport:
    """Fill ``out`` with every image of ``plan`` for ``method``; see the module docstring.

    Results depend on ``batch_size`` only through float rounding (rarely 1/255 in a PNG).
    Raises :class:`RdbenchError` when ``out`` holds a set from another plan or other settings.
    """
    method = parse_method(method) if isinstance(method, str) else method
    lines = read_plan(plan) if isinstance(plan, str | Path) else list(plan)
    if not lines:
        raise RdbenchError("the plan is empty")
    out = Path(out)
    manifest = out / MANIFEST_NAME
    if manifest.is_file() and read_plan(manifest) != lines:
        raise RdbenchError(
            f"{out} already holds an image set from a different plan; use another --out"
        )
    record: dict[str, Any] = {**(info or {})}
    digest = None
    if lora is not None:
        record["lora_recipe"] = attach_lora(pipe, lora)  # checks that the file exists
        record["lora"] = str(lora)
        digest = sha256_file(lora)
    wanted = settings(pipe, method, digest, num_steps, eta)
    _check_settings(out, wanted)
    record.update(wanted)
    _write_record(out, record)
    todo = [line for line in lines if not (out / line["path"]).is_file()]
    bar = tqdm(total=len(todo), desc=f"generate {method}", disable=not progress, leave=False)
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        images = sample_images(
            pipe,
            method,
            [line["prompt"] for line in batch],
            [line["seed"] for line in batch],
            num_steps=num_steps,
            eta=eta,
        )
        for line, image in zip(batch, images, strict=True):
            atomic_write_bytes(out / line["path"], to_png(image))
        bar.update(len(batch))
    bar.close()
    write_plan(lines, manifest)
    return GenerateReport(out, len(todo), len(lines) - len(todo))
