"""A differentiable sampling loop over any denoiser, using diffusers' scheduler step math.

``sample`` runs ``T`` steps of a diffusers scheduler (DDIM with ``eta``, or Euler as in SDXL)
from initial noise. Truncated backpropagation (DRaFT-K): only the last ``grad_steps`` steps
build an autograd graph; earlier steps run under ``torch.no_grad`` and their output is
detached, so no gradient can reach them. ``checkpointed`` wraps a denoiser in gradient
checkpointing (recompute activations in the backward pass instead of storing them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from diffusers import DDIMScheduler, EulerDiscreteScheduler
from torch.utils.checkpoint import checkpoint

from rdbench.errors import RdbenchError

Denoiser = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]
"""``denoiser(x_t, t, cond) -> eps``: the noise prediction for latents at timestep ``t``."""

Predictor = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
"""``predict(x_t, t, i) -> eps`` at sampler step ``i`` (``i = 0`` noisiest)."""

SCHEDULERS = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler}


def make_scheduler(kind: str = "ddim", **config: Any) -> DDIMScheduler | EulerDiscreteScheduler:
    """A diffusers scheduler by name (``ddim`` or ``euler``) with ``config`` overrides."""
    if kind not in SCHEDULERS:
        raise RdbenchError(f"unknown scheduler {kind!r}; choose one of {sorted(SCHEDULERS)}")
    return SCHEDULERS[kind](**config)


def classifier_free_guidance(denoiser: Denoiser, scale: float, uncond: Any) -> Denoiser:
    """``eps = eps(x, t, uncond) + scale * (eps(x, t, cond) - eps(x, t, uncond))``.

    One batched call on ``[x; x]`` with ``[uncond; cond]`` (tensors concatenated on dim 0);
    ``uncond`` is broadcast to the batch when it has batch size 1.
    """

    def guided(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        u = uncond.expand_as(cond) if uncond.shape[0] == 1 else uncond
        eps_u, eps_c = denoiser(torch.cat([x, x]), t, torch.cat([u, cond])).chunk(2)
        return eps_u + scale * (eps_c - eps_u)

    return guided


def concat_cond(a: Any, b: Any) -> Any:
    """Stack two conditionings along the batch: tensors on dim 0, lists joined, dicts per key.

    Raises ``TypeError`` for anything else (callers then fall back to separate passes).
    """
    if a is None and b is None:
        return None
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return torch.cat([a, b])
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return {k: concat_cond(a[k], b[k]) for k in a}
    raise TypeError(f"cannot batch conditionings of types {type(a).__name__}, {type(b).__name__}")


def checkpointed(denoiser: Denoiser) -> Denoiser:
    """Gradient checkpointing of each denoiser call (only where a graph is being built)."""

    def call(x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return denoiser(x, t, cond)
        return checkpoint(denoiser, x, t, cond, use_reentrant=False)

    return call


def predictor(denoiser: Denoiser, cond: Any) -> Predictor:
    """The plain predictor: the same denoiser at every step."""
    return lambda x, t, i: denoiser(x, t, cond)


def _at_step(scheduler: Any, i: int) -> None:
    """Point stateful schedulers (Euler) at step ``i`` so a step can be re-run (DRaFT-LV)."""
    if hasattr(scheduler, "_step_index"):
        scheduler._step_index = i


def denoise_step(
    scheduler: Any,
    predict: Predictor,
    x: torch.Tensor,
    i: int,
    *,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """One sampler step ``i``: ``x_{t_i} -> x_{t_{i+1}}`` with the scheduler's own update."""
    t = scheduler.timesteps[i]
    _at_step(scheduler, i)
    eps = predict(scheduler.scale_model_input(x, t), t, i)
    _at_step(scheduler, i)
    if isinstance(scheduler, DDIMScheduler):
        return scheduler.step(eps, t, x, eta=eta, variance_noise=noise).prev_sample
    return scheduler.step(eps, t, x).prev_sample


def randn(
    shape: tuple[int, ...], generator: torch.Generator | None, *, like: torch.Tensor
) -> torch.Tensor:
    """Standard normal draws of ``shape`` with ``like``'s dtype and device.

    Drawn on the generator's device (torch refuses a CPU generator for CUDA draws), then moved,
    so a CPU training generator gives the same numbers on any accelerator.
    """
    where = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=where).to(like.device)


def needs_step_noise(scheduler: Any, eta: float) -> bool:
    """Whether :func:`sample` draws fresh noise at every step (DDIM with ``eta > 0``)."""
    return eta > 0 and isinstance(scheduler, DDIMScheduler)


def shard_randn(
    lead: tuple[int, ...],
    like: torch.Tensor,
    generator: torch.Generator | None,
    shard: tuple[int, int] = (0, 1),
) -> torch.Tensor:
    """Normal draws of shape ``(*lead, *like.shape)`` for process ``rank`` of ``world``.

    Every process draws the whole world batch (``world * len(like)`` rows, from generators in
    the same state) and keeps its own rows, so the numbers each sample gets do not depend on
    the number of processes.
    """
    rank, world = shard
    b = like.shape[0]
    full = randn((*lead, world * b, *like.shape[1:]), generator, like=like)
    return full[(slice(None),) * len(lead) + (slice(rank * b, (rank + 1) * b),)]


def sample(
    predict: Predictor,
    scheduler: Any,
    noise: torch.Tensor,
    *,
    num_steps: int,
    eta: float = 0.0,
    grad_steps: int = 0,
    generator: torch.Generator | None = None,
    step_noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample from initial ``noise`` (standard normal); gradients through the last ``grad_steps``.

    DDIM with ``eta > 0`` needs fresh noise at every step: pass ``step_noise`` of shape
    ``(num_steps, *noise.shape)`` for batch-size independent results, else it is drawn from
    ``generator``.
    """
    if num_steps < 1 or not 0 <= grad_steps <= num_steps:
        raise RdbenchError(
            f"need num_steps >= 1 and 0 <= grad_steps <= num_steps, got "
            f"{num_steps} and {grad_steps}"
        )
    scheduler.set_timesteps(num_steps, device=noise.device)
    if step_noise is None and needs_step_noise(scheduler, eta):
        step_noise = randn((num_steps, *noise.shape), generator, like=noise)
    x = noise * scheduler.init_noise_sigma
    first_grad = num_steps - grad_steps
    for i in range(num_steps):
        n = None if step_noise is None else step_noise[i]
        if i < first_grad:
            with torch.no_grad():
                x = denoise_step(scheduler, predict, x, i, eta=eta, noise=n).detach()
        else:
            x = denoise_step(scheduler, predict, x, i, eta=eta, noise=n)
    return x


def renoise_last(scheduler: Any, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Noise a final sample back to the last step's timestep (the input of the last step)."""
    t = scheduler.timesteps[-1:]
    return scheduler.add_noise(x0, noise, t)
