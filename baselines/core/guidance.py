"""Annealed Importance Guidance (AIG) and LoRA-scaled sampling, inference-time baselines.

AIG at sampler step ``i`` (``i = 0`` noisiest, see :mod:`baselines.core.schedules`):
``eps_hat_i = (1 - g_i) eps_base(x_i, c) + g_i eps_ft(x_i, c)`` with both predictions already
CFG-combined; one ordinary sampler step follows. This is the score of the geometric mixture
``p_base^(1 - g) p_ft^g``. Where ``0 < g_i < 1``, both predictions come from one batched
forward with peft's mixed-adapter batches (rows ``[x; x]`` tagged ``__base__`` / adapter),
falling back to two passes if the model's LoRA layers refuse ``adapter_names``. ``g_i = 0``
and ``g_i = 1`` run one pass only, so they reproduce the base / finetuned sampler exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from torch import nn

from baselines.core.lora import active_adapter, adapters_disabled, lora_layers
from baselines.core.sampling import Denoiser, Predictor, concat_cond
from baselines.core.schedules import Schedule, parse_schedule


def _names_hook(names: list[str], module: nn.Module, args: tuple, kwargs: dict) -> tuple:
    n = len(args[0])
    if n % len(names):
        raise ValueError(f"batch {n} is not a multiple of the mixed-adapter batch {len(names)}")
    kwargs["adapter_names"] = names * (n // len(names))
    return args, kwargs


@contextmanager
def mixed_adapters(model: nn.Module, names: list[str]) -> Iterator[None]:
    """Tag batch rows with adapter names in every LoRA layer (tiled over wrappers like CFG)."""
    handles = [
        m.register_forward_pre_hook(partial(_names_hook, names), with_kwargs=True)
        for m in lora_layers(model)
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def base_and_finetuned(
    model: nn.Module,
    denoiser: Denoiser,
    x: torch.Tensor,
    t: torch.Tensor,
    cond: Any,
    *,
    batched: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(eps_base, eps_ft)``: one mixed-adapter forward where possible, else two passes."""
    if batched:
        b = x.shape[0]
        names = ["__base__"] * b + [active_adapter(model)] * b
        try:
            cond2 = concat_cond(cond, cond)
            with mixed_adapters(model, names):
                eps = denoiser(torch.cat([x, x]), t, cond2)
            return eps[:b], eps[b:]
        except (TypeError, ValueError):
            pass  # unbatchable cond or LoRA variant without mixed batches: two passes below
    with adapters_disabled(model):
        eps_base = denoiser(x, t, cond)
    return eps_base, denoiser(x, t, cond)


def aig_predictor(
    model: nn.Module,
    denoiser: Denoiser,
    cond: Any,
    schedule: str | Schedule,
    num_steps: int,
    *,
    batched: bool = True,
) -> Predictor:
    """The AIG predictor for :func:`baselines.core.sampling.sample`."""
    g_of = parse_schedule(schedule)

    def predict(x: torch.Tensor, t: torch.Tensor, i: int) -> torch.Tensor:
        g = g_of(i, num_steps)
        if g == 0.0:
            with adapters_disabled(model):
                return denoiser(x, t, cond)
        if g == 1.0:
            return denoiser(x, t, cond)
        eps_base, eps_ft = base_and_finetuned(model, denoiser, x, t, cond, batched=batched)
        return (1.0 - g) * eps_base + g * eps_ft

    return predict


def base_predictor(model: nn.Module, denoiser: Denoiser, cond: Any) -> Predictor:
    """The base model (adapters disabled) at every step."""

    def predict(x: torch.Tensor, t: torch.Tensor, i: int) -> torch.Tensor:
        with adapters_disabled(model):
            return denoiser(x, t, cond)

    return predict


__all__ = ["aig_predictor", "base_and_finetuned", "base_predictor", "mixed_adapters"]
