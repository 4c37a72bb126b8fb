"""PickScore v1 (Kirstain et al. 2023, "Pick-a-Pic: An Open Dataset of User Preferences for
Text-to-Image Generation").

Model: transformers ``CLIPModel`` from the Hugging Face repository ``yuvalkirstain/PickScore_v1``
(CLIP ViT-H/14 finetuned on Pick-a-Pic); tokenizer and image preprocessing from
``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``. Preprocessing (``CLIPImageProcessor``): RGB, bicubic
resize of the shortest side to 224, centre crop 224 (offsets floored), rescale 1/255, OpenAI
mean/std. Text is padded/truncated to 77 tokens (the end token is kept).
Score: ``exp(logit_scale) * cos(image_embedding, text_embedding)`` (logit scale 100 for
PickScore, so about 20-23 for SD images). A softmax over the scores of several images of one
prompt gives preference probabilities.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

from rdbench import weights as W
from rdbench.errors import RdbenchError
from rdbench.hub import resolve_folder
from rdbench.rewards.base import (
    Reward,
    RewardInfo,
    combine_digests,
    encode_unique,
    folder_fingerprint,
)
from rdbench.rewards.preprocess import (
    normalize,
    pil_resize_center_crop,
    tensor_resize_center_crop,
)

INFO = RewardInfo(
    name="pickscore",
    summary="PickScore v1 (CLIP ViT-H/14 finetuned on Pick-a-Pic preferences)",
    source="Kirstain et al. 2023, arXiv 2305.01569; https://github.com/yuvalkirstain/PickScore",
    weights=(
        f"{W.PICKSCORE.name}: Hugging Face {W.PICKSCORE.repo_id}",
        f"{W.PICKSCORE_PROCESSOR.name}: Hugging Face {W.PICKSCORE_PROCESSOR.repo_id}",
    ),
    preprocessing="RGB, bicubic resize shortest side to 224, centre crop, OpenAI mean/std",
    scale="exp(logit_scale) * cosine (about 20-23 for SD images)",
    options={"processor": "local folder with the tokenizer and preprocessor_config.json"},
)

_PROCESSOR_FILES = ("preprocessor_config.json",)


def _image_config(folder: Path) -> tuple[int, int, list[float], list[float]]:
    """(resize size, crop size, mean, std) from ``preprocessor_config.json``."""
    try:
        cfg = json.loads((folder / "preprocessor_config.json").read_text())
        size, crop = cfg["size"], cfg["crop_size"]
        size = size["shortest_edge"] if isinstance(size, dict) else int(size)
        crop = crop["height"] if isinstance(crop, dict) else int(crop)
        return int(size), int(crop), list(cfg["image_mean"]), list(cfg["image_std"])
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise RdbenchError(
            f"{folder}: cannot read CLIP preprocessing from preprocessor_config.json ({exc})"
        ) from None


def _features(output) -> torch.Tensor:
    """transformers 4 returns a tensor, transformers 5 an output whose pooler is projected."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class PickScore(Reward):
    """``exp(logit_scale) * cos`` with transformers' CLIPModel (see module docstring)."""

    info = INFO
    score_tensor_atol = 0.5  # on the ~20-23 scale of the real model; see tests for tiny ones

    def __init__(
        self, model, tokenizer, processor_dir: Path, *, version, device, dtype, weights_sha256: str
    ) -> None:
        super().__init__(version, device, dtype)
        self.model = model.to(device=device, dtype=dtype)
        self.tokenizer = tokenizer
        self.resize_size, self.crop_size, self.mean, self.std = _image_config(processor_dir)
        self.weights_sha256 = weights_sha256

    def _pixels_from_pil(self, images: list[Image.Image]) -> torch.Tensor:
        size, crop = self.resize_size, self.crop_size
        batch = torch.stack([pil_resize_center_crop(im, size, crop, floor=True) for im in images])
        return normalize(batch, self.mean, self.std)

    def _pixels_from_tensor(self, images: torch.Tensor) -> torch.Tensor:
        pixels = tensor_resize_center_crop(images, self.resize_size, self.crop_size, floor=True)
        return normalize(pixels, self.mean, self.std)

    def image_embeddings(self, pixels: torch.Tensor) -> torch.Tensor:
        feats = _features(self.model.get_image_features(pixel_values=pixels))
        return torch.nn.functional.normalize(feats, dim=-1)

    def text_embeddings(self, prompts: list[str]) -> torch.Tensor:
        return encode_unique(prompts, self._encode_text)

    def _encode_text(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            prompts, padding="max_length", truncation=True, max_length=77, return_tensors="pt"
        ).to(self.device)
        feats = _features(
            self.model.get_text_features(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            )
        )
        return torch.nn.functional.normalize(feats, dim=-1)

    def _forward(self, pixels: torch.Tensor, prompts: list[str] | None) -> torch.Tensor:
        cos = (self.image_embeddings(pixels) * self.text_embeddings(prompts)).sum(-1)
        return self.model.logit_scale.exp() * cos


def _fingerprint(model_dir: Path, processor_dir: Path) -> str:
    """Digest of the model folder and, when separate, the tokenizer/preprocessing folder."""
    model = folder_fingerprint(model_dir)
    if processor_dir.resolve() == model_dir.resolve():
        return model
    return combine_digests(model, folder_fingerprint(processor_dir))


def load(
    *,
    version: str,
    device: torch.device,
    dtype: torch.dtype,
    weights: str | None = None,
    processor: str | None = None,
) -> PickScore:
    try:
        from transformers import AutoTokenizer, CLIPModel
    except ImportError:
        raise RdbenchError("pickscore needs transformers: pip install 'rdbench[rewards]'") from None
    model_dir = resolve_folder(W.PICKSCORE, weights)
    if processor is None and all((model_dir / f).is_file() for f in _PROCESSOR_FILES):
        processor_dir = model_dir  # a folder that carries its own processor
    else:
        processor_dir = resolve_folder(W.PICKSCORE_PROCESSOR, processor)
    try:
        model = CLIPModel.from_pretrained(str(model_dir), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(processor_dir), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise RdbenchError(f"cannot load PickScore from {model_dir}: {exc}") from None
    model.eval().requires_grad_(False)
    return PickScore(
        model,
        tokenizer,
        processor_dir,
        version=version,
        device=device,
        dtype=dtype,
        weights_sha256=_fingerprint(model_dir, processor_dir),
    )
