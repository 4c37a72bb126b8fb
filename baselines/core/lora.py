"""LoRA through peft on any ``nn.Module``: add, freeze, scale, disable, save and load.

The same calls work for a diffusers UNet (``unet.add_adapter`` uses the same peft injection)
and for the toy MLP. LoRA computes ``W x + s * B A x`` with ``s = lora_alpha / r``; the
inference scale ``alpha'`` multiplies ``s``, so ``alpha' = 0`` is the base model exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from peft import (
    LoraConfig,
    get_peft_model_state_dict,
    inject_adapter_in_model,
    set_peft_model_state_dict,
)
from peft.tuners.lora import LoraLayer
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from rdbench.errors import RdbenchError
from rdbench.hub import atomic_write_bytes

ADAPTER = "default"


def add_lora(
    model: nn.Module,
    target_modules: Sequence[str],
    *,
    rank: int = 8,
    alpha: float | None = None,
    init: bool | str = True,
    adapter_name: str = ADAPTER,
) -> nn.Module:
    """Inject LoRA layers in place (``init=True``: B = 0, so the model starts as the base).

    Every non-LoRA parameter is frozen; only ``lora_`` parameters train.
    """
    config = LoraConfig(
        r=rank,
        lora_alpha=rank if alpha is None else alpha,
        target_modules=list(target_modules),
        init_lora_weights=init,
    )
    inject_adapter_in_model(config, model, adapter_name=adapter_name)
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)
    return model


def lora_layers(model: nn.Module) -> list[LoraLayer]:
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    if not layers:
        raise RdbenchError("the model has no LoRA layers; call baselines.core.lora.add_lora first")
    return layers


def _unmerged(layers: Sequence[LoraLayer]) -> Sequence[LoraLayer]:
    """``layers``, if no adapter is merged into its base weights (scaling or disabling a merged
    adapter changes nothing, and peft's unmerge under a changed scale corrupts the weights)."""
    if any(m.merged for m in layers):
        raise RdbenchError(
            "the LoRA weights are merged into the base weights; unmerge them (peft's "
            "unmerge_adapter) before disabling or scaling the adapter"
        )
    return layers


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable LoRA parameters (what the optimizer sees)."""
    return [p for n, p in model.named_parameters() if "lora_" in n and p.requires_grad]


@contextmanager
def adapters_disabled(
    model: nn.Module, *, layers: Sequence[LoraLayer] | None = None
) -> Iterator[None]:
    """Run the base model from the same network: no second copy in memory.

    Sets the flag behind peft's ``disable_adapters`` (what ``enable_adapters(False)`` sets)
    and restores it on exit. ``enable_adapters`` also turns ``requires_grad`` off and on for
    every adapter parameter, several module walks per layer (about 10 ms of host time on an SD
    UNet's 128 LoRA layers, and samplers disable adapters at every step); a disabled adapter
    takes no part in the forward, so it gets no gradient either way. ``layers``:
    ``lora_layers(model)`` if already looked up (samplers do it once, not per step).
    """
    layers = _unmerged(lora_layers(model) if layers is None else layers)
    previous = [m._disable_adapters for m in layers]
    for m in layers:
        m._disable_adapters = True
    try:
        yield
    finally:
        for m, was_disabled in zip(layers, previous, strict=True):
            m._disable_adapters = was_disabled


@contextmanager
def lora_scale(model: nn.Module, scale: float) -> Iterator[None]:
    """Multiply every LoRA residual by ``scale`` (``alpha'``) inside the block.

    ``scale = 0`` gives ``W x + 0 * (B A x) == W x`` bit for bit; ``scale = 1`` is unchanged.
    """
    layers = _unmerged(lora_layers(model))
    saved = [dict(m.scaling) for m in layers]
    for m in layers:
        for key in m.scaling:
            m.scaling[key] = m.scaling[key] * float(scale)
    try:
        yield
    finally:
        for m, scaling in zip(layers, saved, strict=True):
            m.scaling.update(scaling)


def active_adapter(model: nn.Module) -> str:
    return lora_layers(model)[0].active_adapters[0]


def save_lora(model: nn.Module, path: str | Path, recipe: dict[str, Any]) -> Path:
    """Write the LoRA weights as safetensors and ``<path>.json`` with the recipe that made them
    (each file atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = get_peft_model_state_dict(model, adapter_name=active_adapter(model))
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    atomic_write_bytes(path, save(tensors))  # a crash never leaves a truncated file
    meta = json.dumps(recipe, indent=2, sort_keys=True, default=str).encode()
    atomic_write_bytes(recipe_path(path), meta)
    return path


def recipe_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def load_lora(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load LoRA weights saved by :func:`save_lora` into a model with the same LoRA layers.

    Returns the recipe. Missing or unexpected LoRA keys raise :class:`RdbenchError`.
    """
    path = Path(path)
    if not path.is_file():
        raise RdbenchError(f"LoRA weights {path} not found; train an adapter first")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise RdbenchError(
            f"LoRA weights {path} are unreadable ({exc}); the file may be truncated: retrain"
        ) from None
    adapter = active_adapter(model)
    expected = get_peft_model_state_dict(model, adapter_name=adapter)
    if set(state) != set(expected):
        diff = sorted(set(state) ^ set(expected))[:5]
        raise RdbenchError(f"LoRA file {path} does not match the model's LoRA layers: {diff}")
    shapes = [k for k in sorted(state) if state[k].shape != expected[k].shape]
    if shapes:
        k = shapes[0]
        raise RdbenchError(
            f"LoRA file {path} does not match the model's LoRA layers: {k} has shape "
            f"{tuple(state[k].shape)}, the model {tuple(expected[k].shape)} (another rank?)"
        )
    result = set_peft_model_state_dict(model, state, adapter_name=adapter)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise RdbenchError(f"LoRA file {path} has keys the model lacks: {unexpected[:5]}")
    rp = recipe_path(path)
    if not rp.is_file():
        return {}
    try:
        return json.loads(rp.read_text())
    except (ValueError, OSError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise RdbenchError(f"LoRA recipe {rp} is unreadable ({exc})") from None


def lora_norm(model: nn.Module) -> float:
    """Frobenius norm of all LoRA B matrices (0 for a fresh ``init=True`` adapter)."""
    with torch.no_grad():
        return float(sum((p**2).sum() for n, p in model.named_parameters() if "lora_B" in n) ** 0.5)
