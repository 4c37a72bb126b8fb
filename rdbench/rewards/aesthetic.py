"""LAION aesthetic predictor v2 ("improved-aesthetic-predictor", Schuhmann et al. 2022).

Model: OpenAI CLIP ViT-L/14 (open_clip ``ViT-L-14-quickgelu``) image embedding, L2-normalised,
into a linear MLP 768-1024-128-64-16-1 (``sac+logos+ava1-l14-linearMSE.pth``; the original
``simple_inference.py`` interleaves Dropout layers and has no activations, so the state dict
keys are ``layers.0/2/4/6/7``). Preprocessing: CLIP's eval transform (bicubic resize of the
shortest side to 224, centre crop, OpenAI mean/std). Prompts are ignored. Scale: a 1-10 rating
regressed on SAC/LOGOS/AVA (SD images typically 5-6.5).
"""

from __future__ import annotations

import torch
from torch import nn

from rdbench import weights as W
from rdbench.errors import RdbenchError
from rdbench.hub import load_state_dict, resolve
from rdbench.rewards._open_clip import OpenClipReward, build_open_clip
from rdbench.rewards.base import RewardInfo, combine_digests

INFO = RewardInfo(
    name="aesthetic",
    summary="LAION aesthetic predictor v2 (CLIP ViT-L/14 embedding -> linear MLP)",
    source="https://github.com/christophschuhmann/improved-aesthetic-predictor",
    weights=(
        f"{W.AESTHETIC_MLP.name} ({W.AESTHETIC_MLP.url})",
        f"{W.CLIP_VIT_L_14.name} ({W.CLIP_VIT_L_14.url})",
    ),
    preprocessing="RGB, bicubic resize shortest side to 224, centre crop, OpenAI mean/std",
    scale="aesthetic rating, roughly 1-10 (SD images about 5-6.5); prompts are ignored",
    needs_prompts=False,
    max_tokens=None,
    options={
        "arch": "open_clip architecture (default ViT-L-14-quickgelu)",
        "clip_weights": "local CLIP checkpoint (default: the listed OpenAI ViT-L/14)",
    },
)


class AestheticMLP(nn.Module):
    """The predictor head of ``simple_inference.py`` (Dropout positions kept for the keys)."""

    def __init__(self, input_size: int = 768) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_size, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def load_mlp(path, input_size: int) -> AestheticMLP:
    """Strictly load a predictor-head state dict (``layers.N.weight/bias``) whose input size
    must equal the CLIP embedding size ``input_size``."""
    mlp = AestheticMLP(input_size)
    try:
        mlp.load_state_dict(load_state_dict(path), strict=True)
    except RuntimeError as exc:
        raise RdbenchError(
            f"{path} is not an aesthetic MLP for {input_size}-d CLIP embeddings: "
            f"{str(exc).splitlines()[0]}"
        ) from None
    return mlp.eval().requires_grad_(False)


class Aesthetic(OpenClipReward):
    """``mlp(normalise(clip_image_embedding))`` (see module docstring)."""

    info = INFO

    def __init__(self, *args, mlp: AestheticMLP, mlp_sha256: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.mlp = mlp.to(device=self.device, dtype=self.dtype)
        self.weights_sha256 = combine_digests(mlp_sha256, self.weights_sha256)

    def _forward(self, pixels: torch.Tensor, prompts: list[str] | None) -> torch.Tensor:
        return self.mlp(self.image_embeddings(pixels)).squeeze(-1)


def load(
    *,
    version: str,
    device: torch.device,
    dtype: torch.dtype,
    weights: str | None = None,
    arch: str = "ViT-L-14-quickgelu",
    clip_weights: str | None = None,
) -> Aesthetic:
    model, tokenizer, clip_sha = build_open_clip(arch, W.CLIP_VIT_L_14, clip_weights)
    resolved = resolve(W.AESTHETIC_MLP, weights)
    mlp = load_mlp(resolved.path, int(model.visual.output_dim))
    return Aesthetic(
        model,
        tokenizer,
        version=version,
        device=device,
        dtype=dtype,
        weights_sha256=clip_sha,
        arch=arch,
        mlp=mlp,
        mlp_sha256=resolved.sha256,
    )
