"""Stable Diffusion components as the pieces :mod:`baselines.core` combines.

:class:`SDPipeline` holds a diffusers UNet, VAE, CLIP text encoder(s) and tokenizer(s) and
exposes what DRaFT and AIG need and nothing more:

- :meth:`SDPipeline.encode`: prompts -> a conditioning dict ``{"embeds", "prompts"}`` (SDXL
  adds ``"pooled"`` and ``"time_ids"``); dicts batch with
  :func:`baselines.core.sampling.concat_cond`, so AIG runs base and finetuned in one forward.
- :meth:`SDPipeline.denoiser`: ``eps(x, t, cond)`` with classifier-free guidance,
  ``eps = eps_u + w (eps_c - eps_u)`` from one UNet call on ``[x; x]``.
- :meth:`SDPipeline.decode`: latents -> images in [0, 1] (differentiable).
- :meth:`SDPipeline.initial_noise`: latents ``N(0, I)`` from one CPU generator per image seed,
  so every method shares noise per ``(prompt_id, seed)`` whatever the batch size.

Model folders are Hugging Face diffusers repositories resolved through :mod:`rdbench.hub`
(:func:`load_pipeline`): ``sd-v1-4`` and ``sdxl-base-1.0`` from :mod:`rdbench.weights`, any
other ``org/name`` repository id, or a local folder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from baselines.core.lora import add_lora
from baselines.core.sampling import SCHEDULERS, Denoiser, concat_cond
from rdbench.devices import resolve_device
from rdbench.errors import RdbenchError
from rdbench.hub import RemoteFolder, resolve_folder
from rdbench.rewards.base import as_dtype

LORA_TARGETS = ("to_k", "to_q", "to_v", "to_out.0")
#: LoRA A initialisations, as peft's ``init_lora_weights``: "gaussian" is N(0, 1/r^2) (diffusers'
#: LoRA training scripts), "kaiming" peft's default Kaiming-uniform
LORA_INITS: dict[str, bool | str] = {"gaussian": "gaussian", "kaiming": True}
SD_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
SDXL_PARTS = (*SD_PARTS, "text_encoder_2", "tokenizer_2")
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"  # diffusers modules (safetensors only)
ENCODER_FILE = "model.safetensors"  # transformers text encoders

ImageScore = Callable[[torch.Tensor, list[str]], torch.Tensor]
"""``score(images in [0, 1], prompts) -> (B,)`` differentiable (``Reward.score_tensor``)."""


def model_folder(model: str, path: str | Path | None = None) -> Path:
    """The local diffusers folder of ``model``: a :mod:`rdbench.weights` name or ``org/name``.

    ``path`` (a local folder) wins; else ``RDBENCH_FILE_<NAME>``, the cache, or the Hub.
    """
    from rdbench.weights import WEIGHTS

    if model in WEIGHTS:
        entry = WEIGHTS.get(model)
        if not isinstance(entry, RemoteFolder):
            raise RdbenchError(f"weights entry {model!r} is a single file, not a model folder")
    elif path is not None:
        return resolve_folder(RemoteFolder(name=_slug(model), repo_id=model), local_path=path)
    elif re.fullmatch(r"[\w.\-]+/[\w.\-]+", model):
        entry = RemoteFolder(name=_slug(model), repo_id=model, description=f"model {model}")
    else:
        raise RdbenchError(
            f"unknown model {model!r}: use sd-v1-4, sdxl-base-1.0, a Hugging Face repository id "
            "(org/name) or give a local diffusers folder"
        )
    return resolve_folder(entry, local_path=path)


def _slug(model: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")


@dataclass
class SDPipeline:
    """SD v1.x or SDXL components on one device; see the module docstring."""

    unet: nn.Module
    vae: nn.Module
    text_encoders: list[nn.Module]
    tokenizers: list[Any]
    scheduler: Any
    guidance_scale: float = 7.5
    resolution: int | None = None
    source: str = ""
    _uncond: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def xl(self) -> bool:
        return len(self.text_encoders) == 2

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_size(self) -> int:
        return self.resolution or self.unet.config.sample_size * self.vae_factor

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        if self.image_size % self.vae_factor:
            raise RdbenchError(
                f"resolution {self.image_size} is not a multiple of the VAE factor {self.vae_factor}"
            )
        side = self.image_size // self.vae_factor
        return (self.unet.config.in_channels, side, side)

    # --- conditioning -------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> dict[str, Any]:
        """Text conditioning for ``prompts`` (no gradients: the text encoders stay frozen)."""
        prompts = list(prompts)
        hidden, pooled = [], None
        for tokenizer, encoder in zip(self.tokenizers, self.text_encoders, strict=True):
            ids = tokenizer(
                prompts,
                padding="max_length",
                max_length=tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids.to(self.device)
            out = encoder(ids, output_hidden_states=self.xl)
            # SD 1.x: last hidden state; SDXL: penultimate layers of both encoders, concatenated
            hidden.append(out.hidden_states[-2] if self.xl else out.last_hidden_state)
            pooled = out[0] if self.xl else None  # text_embeds of the projection encoder
        cond: dict[str, Any] = {"embeds": torch.cat(hidden, dim=-1).to(self.dtype)}
        if self.xl:
            side = self.image_size
            ids = torch.tensor([[side, side, 0, 0, side, side]], dtype=self.dtype)
            cond["pooled"] = pooled.to(self.dtype)
            cond["time_ids"] = ids.to(self.device).expand(len(prompts), -1)
        cond["prompts"] = prompts
        return cond

    def uncond(self, n: int) -> dict[str, Any]:
        """The empty-prompt conditioning for ``n`` rows (SDXL: zeros, as its config forces)."""
        if self._uncond is None:
            empty = self.encode([""])
            empty.pop("prompts")
            if self.xl:
                empty = {k: torch.zeros_like(v) if k != "time_ids" else v for k, v in empty.items()}
            self._uncond = empty
        out: dict[str, Any] = {k: v.expand(n, *v.shape[1:]) for k, v in self._uncond.items()}
        out["prompts"] = [""] * n
        return out

    def _eps(self, x: torch.Tensor, t: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
        extra = {}
        if self.xl:
            extra["added_cond_kwargs"] = {
                "text_embeds": cond["pooled"],
                "time_ids": cond["time_ids"],
            }
        return self.unet(x, t, encoder_hidden_states=cond["embeds"], **extra).sample

    def denoiser(self, guidance_scale: float | None = None) -> Denoiser:
        """``eps(x, t, cond)`` with CFG: ``eps_u + w (eps_c - eps_u)`` (``w = 1``: no CFG)."""
        w = self.guidance_scale if guidance_scale is None else guidance_scale

        def eps(x: torch.Tensor, t: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
            if w == 1.0:
                return self._eps(x, t, cond)
            both = concat_cond(self.uncond(x.shape[0]), cond)
            eps_u, eps_c = self._eps(torch.cat([x, x]), t, both).chunk(2)
            return eps_u + w * (eps_c - eps_u)

        return eps

    # --- latents and pixels --------------------------------------------------------------
    def initial_noise(self, seeds: Sequence[int]) -> torch.Tensor:
        """``x_T`` for each seed: float32 N(0, I) from ``torch.Generator().manual_seed(seed)``."""
        rows = [
            torch.randn(self.latent_shape, generator=torch.Generator().manual_seed(int(s)))
            for s in seeds
        ]
        return torch.stack(rows).to(self.device, self.dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE decode to images in [0, 1]: ``clamp(D(z / s) / 2 + 0.5)`` (differentiable)."""
        z = latents / self.vae.config.scaling_factor
        image = self.vae.decode(z.to(next(self.vae.parameters()).dtype)).sample
        return (image.float() / 2 + 0.5).clamp(0, 1)

    def latent_reward(self, score: ImageScore) -> Callable[[torch.Tensor, Any], torch.Tensor]:
        """The core's ``reward(x_0, cond)``: decode, then score against ``cond["prompts"]``."""
        return lambda x0, cond: score(self.decode(x0), cond["prompts"])

    def set_checkpointing(self, on: bool) -> None:
        """Gradient checkpointing of the VAE decoder's blocks (the reward's backward pass goes
        through the decoder at full resolution); the UNet's is ``DraftConfig.checkpoint``."""
        if on:
            self.vae.enable_gradient_checkpointing()
        else:
            self.vae.disable_gradient_checkpointing()

    def add_lora(
        self,
        rank: int,
        alpha: float | None = None,
        targets: Sequence[str] = LORA_TARGETS,
        init: str = "gaussian",
    ) -> None:
        """LoRA on the UNet's attention projections (B = 0 at start, A drawn as ``init``:
        :data:`LORA_INITS`); weights kept in float32."""
        add_lora(self.unet, targets, rank=rank, alpha=alpha, init=LORA_INITS[init])
        for name, param in self.unet.named_parameters():
            if "lora_" in name:
                param.data = param.data.float()


def _missing_parts(folder: Path) -> list[str]:
    parts = SDXL_PARTS if (folder / "text_encoder_2").is_dir() else SD_PARTS
    return [p for p in parts if not (folder / p).is_dir()]


def _missing_weights(folder: Path, xl: bool) -> list[str]:
    """The ``<part>/<file>`` safetensors weights (or their shard index) the folder lacks."""
    files = {"unet": WEIGHTS_FILE, "vae": WEIGHTS_FILE, "text_encoder": ENCODER_FILE}
    if xl:
        files["text_encoder_2"] = ENCODER_FILE
    return [
        f"{part}/{name}"
        for part, name in files.items()
        if not any((folder / part / f).is_file() for f in (name, name + ".index.json"))
    ]


def load_pipeline(
    model: str,
    path: str | Path | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    scheduler: str = "ddim",
    guidance_scale: float = 7.5,
    resolution: int | None = None,
) -> SDPipeline:
    """Load SD v1.x / SDXL components from a diffusers folder (see :func:`model_folder`).

    The scheduler is ``scheduler`` (``ddim`` or ``euler``) built from the folder's own noise
    schedule (betas, train steps). Every module is frozen and in eval mode.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import (
        AutoTokenizer,
        CLIPTextModel,
        CLIPTextModelWithProjection,
    )

    folder = model_folder(model, path)
    missing = _missing_parts(folder)
    if missing:
        raise RdbenchError(
            f"{str(folder)!r} is not a diffusers Stable Diffusion folder: missing {missing}"
        )
    if scheduler not in SCHEDULERS:
        raise RdbenchError(f"unknown scheduler {scheduler!r}; choose one of {sorted(SCHEDULERS)}")
    device = resolve_device(device)
    dt = as_dtype(dtype)
    xl = (folder / "text_encoder_2").is_dir()
    absent = _missing_weights(folder, xl)
    if absent:
        raise RdbenchError(
            f"{str(folder)!r} lacks the safetensors weights {absent} (only safetensors are "
            f"loaded: convert .bin/.ckpt weights, or download the folder again)"
        )
    st = {"torch_dtype": dt, "use_safetensors": True}
    try:
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", **st)
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", **st)
        encoders = [CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", **st)]
        tokenizers = [AutoTokenizer.from_pretrained(folder, subfolder="tokenizer")]
        if xl:
            encoders.append(
                CLIPTextModelWithProjection.from_pretrained(
                    folder, subfolder="text_encoder_2", **st
                )
            )
            tokenizers.append(AutoTokenizer.from_pretrained(folder, subfolder="tokenizer_2"))
        config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise RdbenchError(f"cannot load the SD components in {str(folder)!r}: {exc}") from None
    sched = SCHEDULERS[scheduler].from_config(config)
    if xl and dt == torch.float16 and vae.config.get("force_upcast", False):
        vae = vae.to(torch.float32)  # SDXL's VAE overflows in fp16; diffusers upcasts it too
    for module in (unet, vae, *encoders):
        module.requires_grad_(False).eval().to(device)
    return SDPipeline(
        unet=unet,
        vae=vae,
        text_encoders=encoders,
        tokenizers=tokenizers,
        scheduler=sched,
        guidance_scale=guidance_scale,
        resolution=resolution,
        source=str(folder),
    )
