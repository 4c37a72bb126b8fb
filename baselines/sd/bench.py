"""Speed and memory of the SD baselines on random-weight models (no downloads, no network).

Used by ``benchmarks/baselines_speed.py`` (tiny pipeline, CPU) and ``benchmarks/gpu_smoke.py``
(SD-1.x-sized UNet and VAE, CUDA). The text encoder is left out: the conditioning is random
``77 x cross_attention_dim`` embeddings, and the reward is the images' mean brightness, so
the figures are the diffusion model's cost (a real reward model adds its own forward/backward).

Measured: DRaFT-K optimizer steps per second and peak CUDA memory with and without gradient
checkpointing; sampling time of the finetuned model (at the batch and at twice the batch),
and of AIG with each mixing of :data:`baselines.core.guidance.MIXING`, as ratios to the
finetuned model's plain sampling; and the aten ops one sampler step runs.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from baselines.core.draft import DraftConfig, train_draft
from baselines.core.guidance import MIXING, aig_predictor, base_and_finetuned, base_predictor
from baselines.core.lora import lora_parameters
from baselines.core.sampling import concat_cond, make_scheduler, predictor, sample
from baselines.sd.pipeline import SDPipeline

#: UNet2DConditionModel config of CompVis/stable-diffusion-v1-4 (unet/config.json)
SD14_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
#: AutoencoderKL config of SD v1.x (vae/config.json)
SD_VAE = {
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
TINY_UNET = {
    "sample_size": 8,
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 8,
}
TINY_VAE = {
    "block_out_channels": (8, 16),
    "down_block_types": ("DownEncoderBlock2D",) * 2,
    "up_block_types": ("UpDecoderBlock2D",) * 2,
    "latent_channels": 4,
    "norm_num_groups": 2,
}
SIZES = {"tiny": (TINY_UNET, TINY_VAE), "sd14": (SD14_UNET, SD_VAE)}


def random_pipeline(
    size: str, device: str | torch.device, dtype: torch.dtype, *, rank: int = 32, seed: int = 0
) -> SDPipeline:
    """A random-weight SD pipeline of ``size`` (``tiny`` or ``sd14``) with a fresh LoRA."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    unet_cfg, vae_cfg = SIZES[size]
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_cfg)
    vae = AutoencoderKL(**vae_cfg)
    for module in (unet, vae):
        module.requires_grad_(False).eval().to(device, dtype)
    scheduler = make_scheduler(
        "ddim",
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = SDPipeline(unet, vae, [], [], scheduler, guidance_scale=7.5, source=f"random-{size}")
    pipe._uncond = {"embeds": torch.zeros(1, 77, unet.config.cross_attention_dim).to(device, dtype)}
    pipe.add_lora(rank)
    with torch.no_grad():  # a moved adapter, so finetuned != base
        for p in lora_parameters(unet):
            p.normal_(0.0, 0.01)
    return pipe


def random_cond(pipe: SDPipeline, n: int, seed: int = 0) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    embeds = torch.randn(n, 77, pipe.unet.config.cross_attention_dim, generator=g)
    return {"embeds": embeds.to(pipe.device, pipe.dtype), "prompts": ["x"] * n}


def brightness(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    return images.mean(dim=(1, 2, 3))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


class _OpCensus(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


def op_census(fn: Callable[[], Any]) -> Counter[str]:
    """How many times each aten op (``aten.mm.default``, ...) runs inside ``fn()``.

    Device-independent evidence for launch-bound GPU work: every op is at least one kernel
    launch, and ``aten.lift_fresh`` marks a tensor made from Python data (on CUDA, a blocking
    host-to-device copy that stalls the queue).
    """
    with _OpCensus() as census:
        fn()
    return census.ops


@dataclass(frozen=True)
class DraftTiming:
    checkpointing: bool
    steps_per_s: float
    peak_gib: float | None


def time_draft(
    pipe: SDPipeline, *, batch: int, num_steps: int, steps: int, k: int = 1, checkpointing: bool
) -> DraftTiming:
    """DRaFT-K optimizer steps per second (after one warm-up step) and peak CUDA memory."""
    device = pipe.device
    pipe.set_checkpointing(checkpointing)

    def batches(g: torch.Generator) -> tuple[dict[str, Any], torch.Tensor]:
        noise = torch.randn(batch, *pipe.latent_shape, generator=g).to(device, pipe.dtype)
        return random_cond(pipe, batch), noise

    def run(n: int) -> None:
        config = DraftConfig(
            steps=n, num_inference_steps=num_steps, k=k, checkpoint=checkpointing, lr=1e-5
        )
        train_draft(
            pipe.unet,
            pipe.denoiser(),
            pipe.scheduler,
            pipe.latent_reward(brightness),
            batches,
            config,
            progress=False,
        )

    _peak_reset(device)
    run(1)  # warm-up (kernels, allocator)
    _sync(device)
    start = time.perf_counter()
    run(steps)
    _sync(device)
    elapsed = time.perf_counter() - start
    return DraftTiming(checkpointing, steps / elapsed, _peak_gib(device))


def time_sampling(
    pipe: SDPipeline, *, batch: int, num_steps: int, repeats: int, schedule: str = "power:2"
) -> dict[str, Any]:
    """Seconds per batch of finetuned sampling, base sampling and AIG with each mixing; ratios
    to plain (finetuned) sampling.

    ``plain_double`` samples ``2 x batch`` images: the compute of one mixed forward on
    ``[x; x]``, so ``aig_rows`` near ``plain_double`` means mixing adds no overhead of its own.
    ``ops`` counts the aten ops of one UNet step (plain, and each mixing);
    ``max_abs_diff`` compares each one-forward mixing with two passes (final latents, and both
    predictions of one UNet step), next to the rounding floor: plain sampling of ``x`` alone
    vs inside ``[x; x]`` (zero in float32 on the CPU; low-precision GPU kernels round by batch
    size, and sampling amplifies it).
    """
    device = pipe.device
    cond = random_cond(pipe, batch)
    cond2 = concat_cond(cond, cond)
    noise = torch.randn(batch, *pipe.latent_shape, generator=torch.Generator().manual_seed(1))
    noise = noise.to(device, pipe.dtype).repeat(2, *[1] * len(pipe.latent_shape))
    den = pipe.denoiser()
    makers: dict[str, Callable[[], Any]] = {
        "plain": lambda: predictor(den, cond),
        "plain_double": lambda: predictor(den, cond2),
        "base": lambda: base_predictor(pipe.unet, den, cond),
        **{
            f"aig_{m.replace('-', '_')}": partial(
                aig_predictor, pipe.unet, den, cond, schedule, num_steps, mixing=m
            )
            for m in MIXING
        },
    }
    out: dict[str, Any] = {}
    final: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, make in makers.items():
            x = noise if name == "plain_double" else noise[:batch]
            sample(make(), pipe.scheduler, x, num_steps=2)  # warm-up
            _sync(device)
            start = time.perf_counter()
            for _ in range(repeats):
                final[name] = sample(make(), pipe.scheduler, x, num_steps=num_steps)
            _sync(device)
            out[name] = (time.perf_counter() - start) / repeats
        t, x = pipe.scheduler.timesteps[0], noise[:batch]
        step = {m: base_and_finetuned(pipe.unet, den, x, t, cond, mixing=m) for m in MIXING}
        step_plain = (den(x, t, cond), den(noise, t, cond2)[:batch])
        out["ops"] = {
            "plain": _op_summary(lambda: den(x, t, cond)),
            **{
                m: _op_summary(partial(base_and_finetuned, pipe.unet, den, x, t, cond, mixing=m))
                for m in MIXING
            },
        }
    for name in list(makers)[1:]:
        out[f"{name}_ratio"] = out[name] / out["plain"]
    diffs: dict[str, dict[str, float]] = {}
    for m in MIXING[:-1]:
        (base, ft), (base2, ft2) = step[m], step["two-pass"]
        diffs[m] = {
            "final": _max_abs(final[f"aig_{m.replace('-', '_')}"], final["aig_two_pass"]),
            "step": max(_max_abs(base, base2), _max_abs(ft, ft2)),
        }
    diffs["plain_batch"] = {
        "final": _max_abs(final["plain"], final["plain_double"][:batch]),
        "step": _max_abs(*step_plain),
    }
    out["max_abs_diff"] = diffs
    return out


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def _op_summary(fn: Callable[[], Any]) -> dict[str, int]:
    ops = op_census(fn)
    return {"total": sum(ops.values()), "host_tensors": ops["aten.lift_fresh.default"]}


def run_benchmark(
    size: str,
    device: str,
    dtype: torch.dtype,
    *,
    batch: int,
    num_steps: int,
    draft_steps: int,
    repeats: int,
    rank: int = 32,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every measurement for one model size; prints a readable line per figure."""
    dev = torch.device(device)
    pipe = random_pipeline(size, dev, dtype, rank=rank)
    n_unet = sum(p.numel() for p in pipe.unet.parameters()) / 1e6
    log(
        f"[{size}] UNet {n_unet:.1f} M params, latents {pipe.latent_shape}, "
        f"image {pipe.image_size}px, {dtype}, {device}, batch {batch}, {num_steps} steps, "
        f"LoRA rank {rank}"
    )
    figures: dict[str, Any] = {"size": size, "device": device, "dtype": str(dtype)}
    for ckpt in (False, True):
        t = time_draft(
            pipe, batch=batch, num_steps=num_steps, steps=draft_steps, checkpointing=ckpt
        )
        mem = "n/a (CPU)" if t.peak_gib is None else f"{t.peak_gib:.2f} GiB"
        log(
            f"  DRaFT-1 step, checkpointing {'on ' if ckpt else 'off'}: "
            f"{t.steps_per_s:.3f} steps/s ({1 / t.steps_per_s:.2f} s/step), peak memory {mem}"
        )
        figures[f"draft_{'ckpt' if ckpt else 'nockpt'}"] = t.__dict__
    s = time_sampling(pipe, batch=batch, num_steps=num_steps, repeats=repeats)
    log(f"  sampling {num_steps} steps, finetuned: {s['plain']:.3f} s")
    labels = {
        "plain_double": f"finetuned, batch {2 * batch}",
        "base": "base (adapters disabled)",
        "aig_rows": "AIG, one forward, row-scaled LoRA",
        "aig_peft": "AIG, one forward, peft adapter_names",
        "aig_two_pass": "AIG, two passes",
    }
    for key, label in labels.items():
        log(f"    {label}: {s[key]:.3f} s ({s[key + '_ratio']:.2f}x)")
    d = s["max_abs_diff"]
    log(
        "  max |diff| (final latents / one UNet step): AIG rows vs two passes "
        f"{d['rows']['final']:.2e} / {d['rows']['step']:.2e}, peft vs two passes "
        f"{d['peft']['final']:.2e} / {d['peft']['step']:.2e}; rounding floor, plain x vs "
        f"x in [x; x]: {d['plain_batch']['final']:.2e} / {d['plain_batch']['step']:.2e}"
    )
    ops = ", ".join(
        f"{k} {v['total']} ({v['host_tensors']} from host)" for k, v in s["ops"].items()
    )
    log(f"  aten ops per step: {ops}")
    figures["sampling"] = s
    return figures
