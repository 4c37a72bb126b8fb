"""``train --recipe R``: DRaFT LoRA finetuning of Stable Diffusion, checkpointed and resumable.

A run folder holds::

    lora.safetensors (+ .json)   final LoRA weights and the recipe that made them
    curve.csv                    step, reward, kl, loss, grad_norm, seconds (one row per step;
                                 row 0 marks the start: seconds 0, the other cells empty)
    checkpoints/step-NNNNNN/     lora.safetensors + state.pt (optimizer, generator, step)
    checkpoints/latest           name of the newest complete checkpoint (written last)

Rerunning the same command resumes from ``checkpoints/latest``: the optimizer state and the
random generator (prompt and noise draws) are restored, so an interrupted run continues as if
it had never stopped; a finished run is not retrained, and a longer ``train.steps`` continues
it. A folder made by a different recipe (any training setting but ``train.steps``) or trained
beyond the requested steps is refused with an error naming the difference. The reward of row ``s`` is measured on
the micro-batches of step ``s``, before that step's update.

Training runs through an ``accelerate.Accelerator`` with the recipe's mixed precision
(:meth:`Recipe.mixed_precision`). Under ``accelerate launch`` (or ``torchrun``) each process
trains on its own share of every draw: ``train.batch_size`` is per process, so the effective
batch is ``batch_size * grad_accum * processes`` (lower ``grad_accum`` to keep the paper's).
All processes draw from one shared generator and average their gradients, so their LoRA
weights stay identical; only the main process writes the run folder.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from baselines.core.draft import make_optimizer, train_draft
from baselines.core.lora import load_lora, lora_layers, recipe_path, save_lora
from baselines.sd.pipeline import LORA_INITS, ImageScore, SDPipeline, load_pipeline
from baselines.sd.recipes import Recipe
from rdbench.errors import RdbenchError
from rdbench.hub import atomic_write_bytes

CURVE_FIELDS = ("step", "reward", "kl", "loss", "grad_norm", "seconds")
LORA_FILE = "lora.safetensors"


@dataclass(frozen=True)
class TrainResult:
    lora: Path
    curve: Path
    steps_run: int  # optimizer steps run by this call (0: already finished)


def pipeline_for(recipe: Recipe, device: str | torch.device | None = None) -> SDPipeline:
    """Load the recipe's model with its sampler settings (through :mod:`rdbench.hub`);
    ``device`` overrides ``model.device``."""
    m, s = recipe.model, recipe.sampling
    return load_pipeline(
        m.name,
        m.path,
        device=device or m.device,
        dtype=m.dtype,
        scheduler=s.scheduler,
        guidance_scale=s.guidance_scale,
        resolution=s.resolution,
    )


def reward_score(recipe: Recipe, pipe: SDPipeline) -> ImageScore:
    """The recipe's reward model (``rdbench.rewards.load``), differentiable in the images."""
    import rdbench.rewards

    reward = rdbench.rewards.load(
        recipe.train.reward,
        device=pipe.device,
        dtype=pipe.dtype,
        weights=recipe.train.reward_weights,
        **recipe.train.reward_options,
    )
    reward.requires_grad_(False)
    return reward.score_tensor


def fresh_lora(pipe: SDPipeline, recipe: Recipe, seed: int) -> None:
    """Add (or reset) the recipe's LoRA: B = 0, A drawn as ``lora.init`` from ``seed`` (the same
    start every run)."""
    spec = recipe.lora
    if not any("lora_" in n for n, _ in pipe.unet.named_parameters()):
        pipe.add_lora(spec.rank, spec.alpha, spec.targets, spec.init)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for layer in lora_layers(pipe.unet):
            for name in layer.lora_A:
                layer.reset_lora_parameters(name, LORA_INITS[spec.init])


def _prompt_batches(
    pipe: SDPipeline, prompts: list[str], batch_size: int, rank: int = 0, world: int = 1
) -> Callable[[torch.Generator], tuple[dict[str, Any], torch.Tensor]]:
    """Uniform prompt draws and initial noise, both from the training generator: ``world``
    micro-batches are drawn (the same on every process) and process ``rank`` takes its own."""
    if not prompts:
        raise RdbenchError("the training prompt selection is empty")
    mine = slice(rank * batch_size, (rank + 1) * batch_size)

    def draw(generator: torch.Generator) -> tuple[dict[str, Any], torch.Tensor]:
        idx = torch.randint(len(prompts), (world * batch_size,), generator=generator).tolist()
        noise = torch.randn((world * batch_size, *pipe.latent_shape), generator=generator)
        texts = [prompts[i] for i in idx[mine]]
        return pipe.encode(texts), noise[mine].to(pipe.device, pipe.dtype)

    return draw


def _write_curve(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CURVE_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def read_curve(path: str | Path) -> list[dict[str, float]]:
    """The rows of ``curve.csv`` as floats (``step`` as int, empty cells as NaN)."""
    with open(path, newline="") as fh:
        return [
            {k: int(v) if k == "step" else float(v or "nan") for k, v in row.items()}
            for row in csv.DictReader(fh)
        ]


def _save_checkpoint(
    run: Path,
    pipe: SDPipeline,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    step: int,
    meta: dict[str, Any],
) -> None:
    folder = run / "checkpoints" / f"step-{step:06d}"
    save_lora(pipe.unet, folder / LORA_FILE, {**meta, "step": step})
    state = {"step": step, "optimizer": optimizer.state_dict(), "generator": generator.get_state()}
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(folder / "state.pt", buf.getvalue())
    atomic_write_bytes(run / "checkpoints" / "latest", folder.name.encode())
    for old in (run / "checkpoints").glob("step-*"):
        if old != folder:
            for f in old.iterdir():
                f.unlink()
            old.rmdir()


def _resume(
    run: Path,
    pipe: SDPipeline,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    meta: dict[str, Any],
    steps: int,
) -> int:
    latest = run / "checkpoints" / "latest"
    if not latest.is_file():
        return 0
    folder = run / "checkpoints" / latest.read_text().strip()
    _saved_step(run, folder / LORA_FILE, meta, steps)
    load_lora(pipe.unet, folder / LORA_FILE)
    try:
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise RdbenchError(f"cannot resume from {folder}: {exc}; delete it to restart") from None
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    return int(state["step"])


# settings that do not change the trained weights: the length (a longer run continues a
# shorter one), where checkpoints fall, activation checkpointing, and where the model lives
_FREE = {
    "recipe": ("name", "description", "eval", "sweep", "model.path", "model.device"),
    "recipe.train": ("steps", "checkpoint_every", "grad_checkpointing"),
    "draft": ("steps", "checkpoint"),
}


def _training_settings(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` flattened to dotted keys, without the settings in ``_FREE``."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else key, value)
        else:
            flat[prefix] = node

    walk("", {"recipe": meta.get("recipe"), "draft": meta.get("draft")})
    free = tuple(f"{group}.{key}" for group, keys in _FREE.items() for key in keys)
    return {k: v for k, v in flat.items() if not any(k == f or k.startswith(f + ".") for f in free)}


def _saved_step(run: Path, lora: Path, meta: dict[str, Any], steps: int) -> int:
    """The step ``lora`` (in ``run``) was saved at, after checking it was trained with
    ``meta``'s settings and not beyond ``steps``; any mismatch raises :class:`RdbenchError`."""
    try:
        saved = json.loads(recipe_path(lora).read_text())
        step = int(saved["step"])
    except (OSError, ValueError, KeyError, TypeError):
        raise RdbenchError(
            f"cannot tell how {lora} was trained ({recipe_path(lora).name} is missing or "
            f"unreadable); train into a new folder"
        ) from None
    old, new = _training_settings(saved), _training_settings(meta)
    keys = sorted(old.keys() | new.keys())
    diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
    if diff:
        raise RdbenchError(
            f"{run} was trained with other settings ({'; '.join(diff[:5])}); "
            f"train into a new folder"
        )
    if step > steps:
        raise RdbenchError(
            f"{run} is trained to step {step}, beyond the requested train.steps={steps}; "
            f"train into a new folder (or ask for train.steps={step})"
        )
    return step


def train(
    recipe: Recipe,
    out: str | Path,
    *,
    kl_lambda: float | None = None,
    pipe: SDPipeline | None = None,
    score: ImageScore | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train (or resume, or skip if finished) one DRaFT LoRA into the run folder ``out``.

    ``pipe`` and ``score`` default to the recipe's model and reward; tests pass tiny ones.
    ``pipe`` gets the LoRA added if it has none; its weights are the trained ones on return
    (loaded from the run folder when the run had already finished).
    """
    from accelerate import Accelerator

    run = Path(out)
    config = recipe.draft_config(kl_lambda)
    meta = {"recipe": recipe.model_dump(mode="json"), "draft": config.to_dict()}
    final = run / LORA_FILE
    if final.is_file() and _saved_step(run, final, meta, config.steps) == config.steps:
        if pipe is not None:
            fresh_lora(pipe, recipe, config.seed)
            load_lora(pipe.unet, final)
        return TrainResult(final, run / "curve.csv", 0)
    # the core accumulates gradients itself, so no gradient_accumulation_steps here (accelerate
    # would divide the loss again); the pipeline is placed by us, not by prepare()
    acc = Accelerator(
        cpu=recipe.model.device == "cpu",
        mixed_precision=recipe.mixed_precision(),
        device_placement=False,
    )
    main, world = acc.is_main_process, acc.num_processes
    pipe = pipe or pipeline_for(recipe, acc.device if world > 1 else None)
    fresh_lora(pipe, recipe, config.seed)
    pipe.set_checkpointing(config.checkpoint)
    score = score or reward_score(recipe, pipe)
    prompts = [p.text for p in recipe.train.prompts.load()]
    optimizer = make_optimizer(pipe.unet, config)
    generator = torch.Generator().manual_seed(config.seed)
    start = _resume(run, pipe, optimizer, generator, meta, config.steps)
    curve = run / "curve.csv"
    rows = [r for r in read_curve(curve) if r["step"] <= start] if curve.is_file() and start else []
    if log and start and main:
        log(f"resuming {run} at step {start}/{config.steps}")
    began = time.perf_counter() - (rows[-1]["seconds"] if rows else 0.0)

    def on_step(step: int, info: dict[str, float]) -> None:
        if step == 0:  # the start (train_draft reports it only when not resuming)
            if main:
                rows.append({"step": 0, "seconds": 0.0})
                _write_curve(curve, rows)
            return
        if world > 1:  # the curve shows the mean over processes
            keys = ("reward", "kl", "loss")
            mean = acc.reduce(torch.tensor([info[k] for k in keys], device=acc.device), "mean")
            info = {**info, **dict(zip(keys, mean.tolist(), strict=True))}
        if not main:
            return
        rows.append({**info, "step": step, "seconds": round(time.perf_counter() - began, 3)})
        _write_curve(curve, rows)
        if step % recipe.train.checkpoint_every == 0 or step == config.steps:
            _save_checkpoint(run, pipe, optimizer, generator, step, meta)

    if main:
        run.mkdir(parents=True, exist_ok=True)
    train_draft(
        pipe.unet,
        pipe.denoiser(),
        pipe.scheduler,
        pipe.latent_reward(score),
        _prompt_batches(pipe, prompts, recipe.train.batch_size, acc.process_index, world),
        config,
        on_step=on_step,
        accelerator=acc,
        progress=progress and acc.is_local_main_process,
        optimizer=optimizer,
        generator=generator,
        start_step=start,
    )
    if main:
        save_lora(pipe.unet, final, {**meta, "step": config.steps})
    acc.wait_for_everyone()
    return TrainResult(final, curve, config.steps - start)
