"""The toy base diffusion model: a small MLP noise predictor trained on CPU in seconds.

Why a trained MLP and not the exact analytic score of the noised mixture: LoRA needs
``nn.Linear`` layers to adapt, and a trained network exercises the same code path as Stable
Diffusion (peft LoRA on linear layers, adapters disabled for the base). The exact mixture
remains the ground truth: its samples are the reference for checking the base model, and the
mode structure gives exact diversity measures (:mod:`baselines.toy.mixture`).

``eps_theta(x_t, t, c)``: MLP on ``[x_t, sinusoidal(t / T), embedding(c)]``, trained with the
DDPM loss ``E ||eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t, c)||^2``.
Prompt index ``n_prompts`` is the null prompt (10% dropout in training) for CFG.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import nn
from tqdm import tqdm

from baselines.core.sampling import make_scheduler
from baselines.toy.mixture import Mixture
from rdbench.errors import RdbenchError
from rdbench.hub import atomic_write_bytes, load_state_dict

NUM_TRAIN_TIMESTEPS = 1000


def toy_scheduler(kind: str = "ddim") -> Any:
    """The noise schedule shared by training and sampling (DDPM linear betas, 1000 steps)."""
    config: dict[str, Any] = {
        "num_train_timesteps": NUM_TRAIN_TIMESTEPS,
        "beta_schedule": "linear",
        "timestep_spacing": "trailing",
    }
    if kind == "ddim":
        config.update(clip_sample=False, set_alpha_to_one=True)
    return make_scheduler(kind, **config)


@dataclass(frozen=True)
class ToyModelConfig:
    dim: int = 8
    hidden: int = 128
    depth: int = 3  # hidden Linear layers after the input layer
    time_dim: int = 32
    n_prompts: int = 1
    prompt_dim: int = 8


class ToyDenoiser(nn.Module):
    """``forward(x_t, t, cond) -> eps``; ``cond`` holds prompt indices (None: prompt 0)."""

    def __init__(self, config: ToyModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.prompt = nn.Embedding(c.n_prompts + 1, c.prompt_dim)
        widths = [c.dim + c.time_dim + c.prompt_dim] + [c.hidden] * (c.depth + 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(widths))
        self.out = nn.Linear(c.hidden, c.dim)

    def time_embedding(self, t: torch.Tensor, n: int) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float32).reshape(-1).expand(n) / NUM_TRAIN_TIMESTEPS
        half = self.config.time_dim // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(100.0) / half))
        ang = 2 * math.pi * t[:, None] * freqs[None] * 10
        return torch.cat([ang.sin(), ang.cos()], dim=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None):
        n = x.shape[0]
        if cond is None:
            cond = torch.zeros(n, dtype=torch.long)
        h = torch.cat([x, self.time_embedding(t, n), self.prompt(cond.reshape(-1).expand(n))], 1)
        for layer in self.layers:
            h = torch.nn.functional.silu(layer(h))
        return self.out(h)

    @property
    def lora_targets(self) -> list[str]:
        """Names of every ``nn.Linear`` (the LoRA target modules)."""
        return [n for n, m in self.named_modules() if isinstance(m, nn.Linear)]


def train_base(
    mixtures: list[Mixture],
    config: ToyModelConfig,
    *,
    steps: int = 3000,
    batch_size: int = 512,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
) -> ToyDenoiser:
    """Fit the MLP to the mixtures (prompt p -> ``mixtures[p]``) with the DDPM loss."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = ToyDenoiser(config)
    abar = toy_scheduler().alphas_cumprod
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    for _ in tqdm(range(steps), desc="toy base model", disable=not progress, leave=False):
        p = torch.randint(len(mixtures), (batch_size,), generator=g)
        x0 = (
            torch.stack([mixtures[int(k)].sample(1, g)[0] for k in p])
            if len(mixtures) > 1
            else mixtures[0].sample(batch_size, g)
        )
        t = torch.randint(NUM_TRAIN_TIMESTEPS, (batch_size,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        a = abar[t][:, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        cond = (
            torch.where(torch.rand(batch_size, generator=g) < 0.1, config.n_prompts, p)
            if config.n_prompts > 1
            else p
        )
        loss = ((model(xt, t, cond) - eps) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    return model.requires_grad_(False)


def cached_base(
    mixtures: list[Mixture],
    config: ToyModelConfig,
    folder: Path,
    *,
    progress: bool = True,
    **train_kwargs: Any,
) -> ToyDenoiser:
    """Train once and keep ``folder/toy_base_<key>.safetensors``; later calls load it."""
    recipe = {
        "model": asdict(config),
        "train": train_kwargs,
        "means": [m.means.tolist() for m in mixtures],
        "std": [m.std for m in mixtures],
    }
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    path = Path(folder) / f"toy_base_{key}.safetensors"
    if path.is_file():
        model = ToyDenoiser(config)
        try:
            model.load_state_dict(load_state_dict(path))
        except RdbenchError as exc:  # a damaged cache file (written before writes were atomic)
            print(f"retraining the toy base model: {exc}", file=sys.stderr)
        else:
            model.eval()
            return model.requires_grad_(False)
    model = train_base(mixtures, config, progress=progress, **train_kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(state))  # an interrupted write never leaves a partial file
    atomic_write_bytes(path.with_name(path.name + ".json"), json.dumps(recipe).encode())
    return model
