"""HPSv2 (Wu et al. 2023, "Human Preference Score v2"), built on ``open_clip_torch``.

Model: open_clip ``ViT-H-14`` whose weights are the HPS checkpoint from the Hugging Face
repository ``xswu/HPSv2`` (``HPS_v2_compressed.pt`` for v2.0, ``HPS_v2.1_compressed.pt`` for
v2.1, a dict with key ``state_dict``). The ``hpsv2`` PyPI package is not used: it vendors an
old open_clip, pins old pytest/protobuf and reloads the checkpoint at every call.

Preprocessing (the package's ``image_transform(..., resize_longest_max=True)`` of hpsv2 1.2.0):
RGB, ``ToTensor``, then on the float tensor a bicubic antialiased resize of the longest side
to 224 (torchvision), centred zero padding to 224 x 224, OpenAI CLIP mean/std. Because the
official transform already works on tensors, ``score`` and ``score_tensor`` run the same ops
and agree to float round-off.
Score: ``cos(image_embedding, text_embedding)`` of the L2-normalised embeddings, no logit
scale; about 0.2-0.35 for SD images. The HPSv2 benchmark reports ``100 * mean(score)``.
Text is truncated to 77 tokens.
"""

from __future__ import annotations

import torch

from rdbench import weights as W
from rdbench.errors import RdbenchError
from rdbench.rewards._open_clip import OpenClipReward, build_open_clip
from rdbench.rewards.base import RewardInfo

CHECKPOINTS = {"v2.0": W.HPSV2_0, "v2.1": W.HPSV2_1}

INFO = RewardInfo(
    name="hpsv2",
    summary="Human Preference Score v2 (open_clip ViT-H-14 + HPS checkpoint)",
    source="Wu et al. 2023, arXiv 2306.09341; https://github.com/tgxs002/HPSv2",
    weights=tuple(f"{v}: {f.name} ({f.url})" for v, f in CHECKPOINTS.items()),
    preprocessing="RGB, to float, bicubic resize longest side to 224, zero-pad to square, "
    "OpenAI mean/std",
    scale="cosine similarity (about 0.2-0.35); the HPSv2 benchmark reports 100 x cosine",
    versions=tuple(CHECKPOINTS),
    default_version="v2.1",
    options={"arch": "open_clip architecture (default ViT-H-14)"},
)


class HPSv2(OpenClipReward):
    """HPSv2 score = cosine of normalised open_clip embeddings (see module docstring)."""

    info = INFO
    resize = "longest"
    score_tensor_atol = 1e-5

    def _forward(self, pixels: torch.Tensor, prompts: list[str] | None) -> torch.Tensor:
        return self.cosine(pixels, prompts)


def load(
    *,
    version: str,
    device: torch.device,
    dtype: torch.dtype,
    weights: str | None = None,
    arch: str = "ViT-H-14",
) -> HPSv2:
    if version not in CHECKPOINTS:
        raise RdbenchError(f"unknown HPSv2 version {version!r}; use one of {list(CHECKPOINTS)}")
    model, tokenizer, sha = build_open_clip(arch, CHECKPOINTS[version], weights)
    return HPSv2(
        model, tokenizer, version=version, device=device, dtype=dtype, weights_sha256=sha, arch=arch
    )
