"""CLIPScore (Hessel et al. 2021, "CLIPScore: A Reference-free Evaluation Metric for Image
Captioning"), on ``open_clip_torch`` with OpenAI's CLIP ViT-B/32 weights.

Score: ``w * max(cos(image, text), 0)`` with ``w = 2.5`` and the caption prefixed by
``"A photo depicts "`` as in the authors' reference code (``prefix=""`` disables it;
torchmetrics reports ``100 * max(cos, 0)`` without a prefix). Preprocessing: CLIP's eval
transform (bicubic resize of the shortest side to 224, centre crop, OpenAI mean/std). Text is
truncated to 77 tokens. Range [0, 2.5].
"""

from __future__ import annotations

import torch

from rdbench import weights as W
from rdbench.errors import RdbenchError
from rdbench.rewards._open_clip import OpenClipReward, build_open_clip
from rdbench.rewards.base import RewardInfo

WEIGHT = 2.5
PREFIX = "A photo depicts "

INFO = RewardInfo(
    name="clipscore",
    summary="CLIPScore: 2.5 * max(cos, 0) with OpenAI CLIP ViT-B/32",
    source="Hessel et al. 2021, arXiv 2104.08718; https://github.com/jmhessel/clipscore",
    weights=(f"{W.CLIP_VIT_B_32.name} ({W.CLIP_VIT_B_32.url})",),
    preprocessing="RGB, bicubic resize shortest side to 224, centre crop, OpenAI mean/std",
    scale="2.5 * max(cos, 0), in [0, 2.5]; text prefixed with 'A photo depicts '",
    options={
        "arch": "open_clip architecture (default ViT-B-32-quickgelu)",
        "prefix": "text put before every prompt (default 'A photo depicts ')",
    },
)


class CLIPScore(OpenClipReward):
    """``2.5 * max(cos, 0)`` of normalised embeddings (see module docstring)."""

    info = INFO

    def __init__(self, *args, prefix: str = PREFIX, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.prefix = prefix

    def id_options(self) -> dict[str, object]:
        return {**super().id_options(), "prefix": self.prefix}

    def _forward(self, pixels: torch.Tensor, prompts: list[str] | None) -> torch.Tensor:
        texts = [self.prefix + p for p in prompts]
        return WEIGHT * self.cosine(pixels, texts).clamp(min=0.0)


def load(
    *,
    version: str,
    device: torch.device,
    dtype: torch.dtype,
    weights: str | None = None,
    arch: str = "ViT-B-32-quickgelu",
    prefix: str = PREFIX,
) -> CLIPScore:
    if not isinstance(prefix, str):
        raise RdbenchError(f"prefix must be a string, got {type(prefix).__name__}")
    model, tokenizer, sha = build_open_clip(arch, W.CLIP_VIT_B_32, weights)
    return CLIPScore(
        model,
        tokenizer,
        version=version,
        device=device,
        dtype=dtype,
        weights_sha256=sha,
        arch=arch,
        prefix=prefix,
    )
