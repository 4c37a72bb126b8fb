"""DRaFT-K and DRaFT-LV reward finetuning of LoRA weights (Clark et al. 2023), with KL.

Per micro-batch (initial noise ``x_T`` and conditioning ``c``):

- DRaFT-K: ``x_0 = sample(x_T)`` with gradients through the last K steps only;
  ``loss = -mean r(x_0, c) + lambda * KL``.
- DRaFT-LV: ``x_0 = sample(x_T)`` without gradients; then ``n`` times: re-noise ``x_0`` to
  the last step's timestep with fresh noise and denoise once with gradients (the sampler's
  own last step, with fresh step noise too when DDIM's eta > 0);
  ``loss = -mean_j mean r(x_0^(j), c) + lambda * KL`` (the KL term over the ``n`` steps).

The optimizer is AdamW over the LoRA parameters only, with gradient clipping (max norm) and
gradient accumulation. An optional ``accelerate.Accelerator`` handles backward, clipping and
mixed precision, and with several processes averages the gradients over them before clipping;
without one, plain torch is used. Its autocast is entered around each micro-batch's forward,
never across optimizer steps: autocast caches the low-precision copy of every trainable
weight until its outermost context exits, so one context around the loop would keep the
LoRA weights as they were at the first forward.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from baselines.core.lora import lora_parameters
from baselines.core.regularizers import KLPredictor
from baselines.core.sampling import (
    Denoiser,
    checkpointed,
    denoise_step,
    needs_step_noise,
    renoise_last,
    sample,
    shard_randn,
)
from rdbench.errors import RdbenchError

Reward = Callable[[torch.Tensor, Any], torch.Tensor]
"""``reward(x_0, cond) -> (B,)`` differentiable rewards."""

Batches = Callable[[torch.Generator], tuple[Any, torch.Tensor]]
"""``batches(generator) -> (cond, noise)`` for one micro-batch (with several processes: this
process's rows of a world batch drawn the same on every process, as ``shard_randn`` draws)."""


@dataclass(frozen=True)
class DraftConfig:
    """One DRaFT recipe. Defaults follow the paper's SD settings where they carry over."""

    steps: int = 100  # optimizer steps
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 2.5e-4
    weight_decay: float = 5e-3
    grad_clip: float = 10.0
    num_inference_steps: int = 25
    eta: float = 0.0
    k: int = 1  # DRaFT-K: gradients through the last K sampling steps
    lv: int = 0  # DRaFT-LV: number of re-noise/denoise repeats (0: plain DRaFT-K)
    kl_lambda: float = 0.0
    checkpoint: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.grad_accum < 1 or self.lv < 0 or self.kl_lambda < 0:
            raise RdbenchError(f"invalid DRaFT config {self}")
        if not 1 <= self.k <= self.num_inference_steps:
            raise RdbenchError(f"DRaFT-K needs 1 <= k <= num_inference_steps, got k={self.k}")

    @property
    def method(self) -> str:
        return f"draft-lv{self.lv}" if self.lv else f"draft-k{self.k}"

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **asdict(self)}


def draft_loss(
    model: nn.Module,
    denoiser: Denoiser,
    scheduler: Any,
    reward: Reward,
    cond: Any,
    noise: torch.Tensor,
    config: DraftConfig,
    generator: torch.Generator | None = None,
    shard: tuple[int, int] = (0, 1),
) -> tuple[torch.Tensor, dict[str, float]]:
    """The DRaFT loss for one micro-batch, and its parts (reward, kl) as floats.

    ``shard = (rank, world)``: this micro-batch is process ``rank``'s rows of a world batch;
    the step noise (DDIM with eta > 0) and DRaFT-LV's re-noise are drawn for the world batch
    and sliced (:func:`baselines.core.sampling.shard_randn`), as the caller's initial noise
    must be, so the run does not depend on the number of processes.
    """
    net = checkpointed(denoiser) if config.checkpoint else denoiser
    predict = KLPredictor(model, net, cond)
    steps = config.num_inference_steps
    step_noise = None
    if needs_step_noise(scheduler, config.eta):
        step_noise = shard_randn((steps,), noise, generator, shard)
    if config.lv:
        x0 = sample(
            predict,
            scheduler,
            noise,
            num_steps=steps,
            eta=config.eta,
            grad_steps=0,
            step_noise=step_noise,
        )
        rewards = []
        for _ in range(config.lv):
            fresh = shard_randn((), noise, generator, shard)
            x_last = renoise_last(scheduler, x0, fresh)
            # the sampler's own last step: with DDIM eta > 0 it adds its noise too
            last_noise = None if step_noise is None else shard_randn((), noise, generator, shard)
            x = denoise_step(
                scheduler, predict, x_last, steps - 1, eta=config.eta, noise=last_noise
            )
            rewards.append(reward(x, cond))
        r = torch.stack(rewards).mean(0)
    else:
        x0 = sample(
            predict,
            scheduler,
            noise,
            num_steps=steps,
            eta=config.eta,
            grad_steps=config.k,
            step_noise=step_noise,
        )
        r = reward(x0, cond)
    kl = predict.penalty().to(r.device)
    loss = -r.mean() + config.kl_lambda * kl
    parts = {"reward": float(r.mean().detach()), "kl": float(kl.detach())}
    return loss, {**parts, "loss": float(loss.detach())}


def make_optimizer(model: nn.Module, config: DraftConfig) -> torch.optim.Optimizer:
    """AdamW over the model's LoRA parameters with the config's lr and weight decay."""
    params = lora_parameters(model)
    if not params:
        raise RdbenchError("no trainable LoRA parameters: add_lora(model, ...) first")
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _average_grads(params: list[nn.Parameter], accelerator: Any) -> None:
    """Data parallelism: mean of the gradients over processes, in one collective. The model is
    not DDP-wrapped (the samplers call it many times per backward), so this is the sync."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = accelerator.reduce(torch.cat([p.grad.flatten() for p in params]), reduction="mean")
    for p, g in zip(params, flat.split([p.numel() for p in params]), strict=True):
        p.grad.copy_(g.view_as(p))


def train_draft(
    model: nn.Module,
    denoiser: Denoiser,
    scheduler: Any,
    reward: Reward,
    batches: Batches,
    config: DraftConfig,
    *,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    accelerator: Any | None = None,
    progress: bool = True,
    optimizer: torch.optim.Optimizer | None = None,
    generator: torch.Generator | None = None,
    start_step: int = 0,
) -> list[dict[str, float]]:
    """Train the model's LoRA weights in place; returns the per-step history.

    ``on_step(step, info)`` runs after each optimizer step (``step`` counts from 1); step 0 is
    reported before training starts so curves include the starting point. To resume, pass the
    restored ``optimizer`` (from :func:`make_optimizer`), ``generator`` and ``start_step``.
    With an ``accelerator`` of several processes, each trains on its rows of the world batch
    and every noise draw is made for the world batch (see :func:`draft_loss`).
    """
    params = lora_parameters(model)
    if not params:
        raise RdbenchError("no trainable LoRA parameters: add_lora(model, ...) first")
    if optimizer is None:
        optimizer = make_optimizer(model, config)
    if accelerator is not None:
        optimizer = accelerator.prepare(optimizer)
    if generator is None:
        generator = torch.Generator().manual_seed(config.seed)
    shard = (
        (0, 1) if accelerator is None else (accelerator.process_index, accelerator.num_processes)
    )
    history: list[dict[str, float]] = []
    if on_step is not None and start_step == 0:
        on_step(0, {})
    for step in tqdm(
        range(start_step + 1, config.steps + 1),
        desc=config.method,
        disable=not progress,
        file=None,
        leave=False,
    ):
        optimizer.zero_grad(set_to_none=True)
        parts = {"reward": 0.0, "kl": 0.0, "loss": 0.0}
        for _ in range(config.grad_accum):
            with accelerator.autocast() if accelerator is not None else nullcontext():
                cond, noise = batches(generator)
                loss, info = draft_loss(
                    model, denoiser, scheduler, reward, cond, noise, config, generator, shard
                )
            loss = loss / config.grad_accum
            (accelerator.backward(loss) if accelerator is not None else loss.backward())
            for key in parts:
                parts[key] += info[key] / config.grad_accum
        if accelerator is not None:
            if accelerator.num_processes > 1:
                _average_grads(params, accelerator)
            norm = accelerator.clip_grad_norm_(params, config.grad_clip)
        else:
            norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        info = {**parts, "grad_norm": float(norm), "step": step}
        history.append(info)
        if on_step is not None:
            on_step(step, info)
    return history
