"""ImageReward (Xu et al. 2023, "ImageReward: Learning and Evaluating Human Preferences for
Text-to-Image Generation") -- registered but not available in this version of rdbench.

The official model is BLIP (ViT-L image encoder + BERT text encoder with cross-attention) with
an MLP head: ``reward = (mlp(text_encoder(prompt, image)[CLS]) - 0.16717362830052426) /
1.0333394966054072``, text truncated to 35 tokens. The ``image-reward`` package (1.5) does not
import with transformers 5 (its ``BLIP/med.py`` imports ``apply_chunking_to_forward`` from
``transformers.modeling_utils``, which no longer exports it) and also needs OpenAI's ``clip``
package, so it is not a dependency; a port of its scoring path onto transformers' BLIP (with
the checkpoint's key mapping) has not been written and verified yet. Loading raises a clear
error instead of returning unverified numbers.
"""

from __future__ import annotations

import torch

from rdbench.errors import RdbenchError
from rdbench.rewards.base import Reward, RewardInfo

MEAN = 0.16717362830052426
STD = 1.0333394966054072

INFO = RewardInfo(
    name="imagereward",
    summary="ImageReward v1.0 (BLIP + MLP head) -- NOT AVAILABLE in this rdbench version",
    source="Xu et al. 2023, arXiv 2304.05977; https://github.com/THUDM/ImageReward",
    weights=("THUDM/ImageReward: ImageReward.pt, med_config.json",),
    preprocessing="RGB, bicubic resize to 224 x 224, OpenAI mean/std (BLIP)",
    scale=f"(mlp(CLS) - {MEAN}) / {STD}: standardised, about -2..2",
    max_tokens=35,
    notes="unavailable: the image-reward package does not import with current transformers "
    "and rdbench's own BLIP port is not written yet",
)

UNAVAILABLE = (
    "reward 'imagereward' is not available in this version of rdbench: the official "
    "`image-reward` package does not import with transformers 5 (its BLIP code imports "
    "apply_chunking_to_forward, which transformers no longer exports) and rdbench's own port "
    "onto transformers' BLIP is not written yet. Use pickscore, hpsv2, clipscore or aesthetic."
)


def load(
    *, version: str, device: torch.device, dtype: torch.dtype, weights: str | None = None
) -> Reward:
    raise RdbenchError(UNAVAILABLE)
