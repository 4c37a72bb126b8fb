"""Annealed Importance Guidance (AIG) and LoRA-scaled sampling, inference-time baselines.

AIG at sampler step ``i`` (``i = 0`` noisiest, see :mod:`baselines.core.schedules`):
``eps_hat_i = (1 - g_i) eps_base(x_i, c) + g_i eps_ft(x_i, c)`` with both predictions already
CFG-combined; one ordinary sampler step follows. This is the score of the geometric mixture
``p_base^(1 - g) p_ft^g``. ``g_i = 0`` and ``g_i = 1`` run one pass only, so they reproduce
the base / finetuned sampler exactly. Where ``0 < g_i < 1`` both predictions come from one
mixed-adapter forward on rows ``[x; x]`` (:data:`MIXING`):

- ``rows`` (default): every LoRA layer computes ``W x + s_r * B A x`` with a per-row scale
  ``s_r`` (0 on base rows, the adapter's scale on finetuned rows), made on the device once per
  step for each batch shape and dtype. No indexing and no host-to-device copies, so GPU
  kernels queue without stalls.
- ``peft``: peft's ``adapter_names`` mixed batches. Each LoRA layer gathers and scatters the
  rows with index tensors built from Python lists, which on CUDA is a blocking host-to-device
  copy per index, three per layer per forward (kept for comparison; see ``benchmarks/``).
- ``two-pass``: adapters disabled for one call, enabled for the other.

``rows`` and ``peft`` fall back to two passes when the conditioning cannot be batched, a LoRA
layer cannot mix (merged weights, variants such as DoRA, several active adapters; for ``rows``
also LoRA types other than Linear and Conv, and a scale that a half-precision tensor cannot
hold exactly), or a layer sees a batch that is not a multiple of ``2b``.

Both assume what UNets and transformers do: every LoRA layer sees the batch on dim 0 as whole
copies of ``[x; x]`` (``n = c * 2b`` rows, copy ``j`` at rows ``j*2b .. (j+1)*2b``, as CFG
stacks them). A model that folds other axes into dim 0 sample-major (say, ``B * frames``
rows, each sample's frames adjacent) gives wrong rows with no error: use ``two-pass``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache, partial
from typing import Any

import torch
from peft.tuners.lora import LoraLayer
from peft.tuners.lora.layer import Conv1d, Conv2d, Conv3d, Linear
from torch import nn

from baselines.core.lora import adapters_disabled, lora_layers
from baselines.core.sampling import Denoiser, Predictor, concat_cond
from baselines.core.schedules import Schedule, parse_schedule

MIXING = ("rows", "peft", "two-pass")
"""How :func:`base_and_finetuned` gets both predictions (see the module docstring)."""


_ROW_KINDS = (Linear, Conv1d, Conv2d, Conv3d)  # peft LoRA layers computing ``... * scaling``


class CannotMix(ValueError):
    """Raised where a batch or a LoRA layer cannot be mixed; callers fall back to two passes."""


def _layers(model: nn.Module, layers: Sequence[LoraLayer] | None) -> Sequence[LoraLayer]:
    return lora_layers(model) if layers is None else layers


def _tiles(n: int, period: int) -> int:
    """How many copies of the mixed batch (``period`` rows) a layer's ``n`` rows hold."""
    if n % period:
        raise CannotMix(f"batch {n} is not a multiple of the mixed-adapter batch {period}")
    return n // period


def _names_hook(names: list[str], module: nn.Module, args: tuple, kwargs: dict) -> tuple:
    kwargs["adapter_names"] = names * _tiles(len(args[0]), len(names))
    return args, kwargs


class _RowScales:
    """Per-row LoRA scales ``s * [0]*b + [s]*b`` (tiled), one device tensor per shape."""

    def __init__(self, b: int) -> None:
        self.b = b
        self.cache: dict[tuple, torch.Tensor] = {}

    def __call__(self, x: torch.Tensor, s: float, dtype: torch.dtype) -> torch.Tensor:
        n, key = x.shape[0], (x.shape[0], x.ndim, s, x.device, dtype)
        if key not in self.cache:
            _tiles(n, 2 * self.b)
            finetuned = torch.arange(n, device=x.device) % (2 * self.b) >= self.b
            self.cache[key] = (finetuned.to(dtype) * s).view(n, *[1] * (x.ndim - 1))
        return self.cache[key]


def _mixable_adapter(
    layers: Sequence[LoraLayer], kinds: tuple[type, ...] = (nn.Module,), adapter: str | None = None
) -> str:
    """``adapter`` (default: the active one), if each of ``layers`` is a plain unmerged
    ``adapter`` layer of one of ``kinds``; else :class:`CannotMix`."""
    adapter = layers[0].active_adapters[0] if adapter is None else adapter
    for m in layers:
        if m.merged or adapter in getattr(m, "lora_variant", {}) or adapter not in m.scaling:
            raise CannotMix(f"LoRA layer {type(m).__name__} cannot mix (merged or a variant)")
        if len(m.active_adapters) != 1:
            raise CannotMix(f"LoRA layer {type(m).__name__} has {m.active_adapters} active")
        if not isinstance(m, kinds):
            raise CannotMix(f"LoRA layer {type(m).__name__} cannot mix rows")
    return adapter


@cache
def _exact_in(s: float, dtype: torch.dtype) -> bool:
    """Whether ``tensor * s`` equals ``tensor * torch.tensor(s, dtype=dtype)`` (opmath float32)."""
    if dtype in (torch.float32, torch.float64):
        return True
    s32 = torch.tensor(s, dtype=torch.float32)
    return bool(s32.to(dtype).float() == s32)


@contextmanager
def row_scaled(
    model: nn.Module, b: int, *, layers: Sequence[LoraLayer] | None = None
) -> Iterator[None]:
    """Rows ``[x (b rows); x (b rows)]`` get base / finetuned LoRA layers (tiled over CFG).

    Each LoRA layer computes ``W x + s_r * B A x`` with ``s_r = 0`` on base rows, so those are
    exactly ``W x`` (while ``B A x`` is finite); the adapter's scale ``s`` on entry (including
    an outer :func:`baselines.core.lora.lora_scale`) is kept, and scale changes made inside
    the block are not seen. ``layers``: ``lora_layers(model)`` if already looked up.
    """
    layers = _layers(model, layers)
    adapter = _mixable_adapter(layers, _ROW_KINDS)
    scales, saved = _RowScales(b), [m.scaling[adapter] for m in layers]
    for m, s in zip(layers, saved, strict=True):
        if not _exact_in(s, m.lora_B[adapter].weight.dtype):
            raise CannotMix(f"LoRA scale {s} is not exact in {m.lora_B[adapter].weight.dtype}")

    def hook(s: float, m: nn.Module, args: tuple, kwargs: dict) -> None:
        m.scaling[adapter] = scales(args[0], s, m.lora_B[adapter].weight.dtype)

    handles = [
        m.register_forward_pre_hook(partial(hook, s), with_kwargs=True)
        for m, s in zip(layers, saved, strict=True)
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for m, s in zip(layers, saved, strict=True):
            m.scaling[adapter] = s


@contextmanager
def mixed_adapters(
    model: nn.Module, names: list[str], *, layers: Sequence[LoraLayer] | None = None
) -> Iterator[None]:
    """Tag batch rows with peft adapter names in every LoRA layer (tiled over wrappers like CFG)."""
    layers = _layers(model, layers)
    _mixable_adapter(layers, adapter=next(n for n in names if n != "__base__"))
    handles = [
        m.register_forward_pre_hook(partial(_names_hook, names), with_kwargs=True) for m in layers
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
    mixing: str = "rows",
    layers: Sequence[LoraLayer] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(eps_base, eps_ft)``: one mixed-adapter forward where possible, else two passes.

    ``layers``: ``lora_layers(model)`` if already looked up (a walk over every module, which
    costs milliseconds of host time on an SD UNet: samplers look them up once, not per step).
    """
    if mixing not in MIXING:
        raise ValueError(f"unknown mixing {mixing!r}; choose one of {MIXING}")
    layers = _layers(model, layers)
    if mixing != "two-pass":
        b = x.shape[0]
        try:
            try:
                cond2 = concat_cond(cond, cond)
            except TypeError as err:
                raise CannotMix(str(err)) from err
            if mixing == "rows":
                mix = row_scaled(model, b, layers=layers)
            else:
                names = ["__base__"] * b + [layers[0].active_adapters[0]] * b
                mix = mixed_adapters(model, names, layers=layers)
            with mix:
                eps = denoiser(torch.cat([x, x]), t, cond2)
            return eps[:b], eps[b:]
        except CannotMix:
            pass  # a batch or LoRA layer that cannot mix: two passes below
    with adapters_disabled(model, layers=layers):
        eps_base = denoiser(x, t, cond)
    return eps_base, denoiser(x, t, cond)


def aig_predictor(
    model: nn.Module,
    denoiser: Denoiser,
    cond: Any,
    schedule: str | Schedule,
    num_steps: int,
    *,
    mixing: str = "rows",
) -> Predictor:
    """The AIG predictor for :func:`baselines.core.sampling.sample` (the model's LoRA layers
    are looked up here, once)."""
    g_of, layers = parse_schedule(schedule), lora_layers(model)

    def predict(x: torch.Tensor, t: torch.Tensor, i: int) -> torch.Tensor:
        g = g_of(i, num_steps)
        if g == 0.0:
            with adapters_disabled(model, layers=layers):
                return denoiser(x, t, cond)
        if g == 1.0:
            return denoiser(x, t, cond)
        eps_base, eps_ft = base_and_finetuned(
            model, denoiser, x, t, cond, mixing=mixing, layers=layers
        )
        return (1.0 - g) * eps_base + g * eps_ft

    return predict


def base_predictor(model: nn.Module, denoiser: Denoiser, cond: Any) -> Predictor:
    """The base model (adapters disabled) at every step."""
    layers = lora_layers(model)

    def predict(x: torch.Tensor, t: torch.Tensor, i: int) -> torch.Tensor:
        with adapters_disabled(model, layers=layers):
            return denoiser(x, t, cond)

    return predict


__all__ = [
    "MIXING",
    "CannotMix",
    "aig_predictor",
    "base_and_finetuned",
    "base_predictor",
    "mixed_adapters",
    "row_scaled",
]
