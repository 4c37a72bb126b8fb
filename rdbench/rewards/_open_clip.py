"""Shared pieces of the rewards built on ``open_clip_torch`` (HPSv2, CLIPScore, aesthetic)."""

from __future__ import annotations

import contextlib
import logging

import torch
from PIL import Image

from rdbench.errors import RdbenchError
from rdbench.hub import RemoteFile, load_state_dict, resolve
from rdbench.rewards.base import Reward, RewardInfo, encode_unique
from rdbench.rewards.preprocess import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    normalize,
    pil_resize_center_crop,
    pil_to_tensor,
    tensor_resize_center_crop,
    tensor_resize_longest_pad,
)


def _import_open_clip():
    try:
        import open_clip
    except ImportError:
        raise RdbenchError(
            "this reward needs open_clip_torch: pip install 'rdbench[rewards]'"
        ) from None
    return open_clip


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


@contextlib.contextmanager
def _quiet_random_init():
    """open_clip warns that the model is random before rdbench loads the checkpoint into it."""
    root = logging.getLogger()
    flt = _DropRandomInitWarning()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def build_open_clip(
    arch: str, file: RemoteFile, weights: str | None
) -> tuple[torch.nn.Module, object, str]:
    """open_clip model ``arch`` with the checkpoint ``file`` (or ``weights``), its tokenizer
    and the checkpoint's sha256. Strict loading: a wrong architecture is an error."""
    open_clip = _import_open_clip()
    if arch not in open_clip.list_models():
        raise RdbenchError(f"unknown open_clip architecture {arch!r}")
    resolved = resolve(file, weights)
    state = load_state_dict(resolved.path)
    state = {k.removeprefix("module."): v for k, v in state.items()}  # DDP-saved checkpoints
    with _quiet_random_init():
        model = open_clip.create_model(arch, pretrained=None, load_weights=False)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise RdbenchError(
            f"{resolved.path} does not match open_clip architecture {arch!r}: {first}"
        ) from None
    model.eval().requires_grad_(False)
    return model, open_clip.get_tokenizer(arch), resolved.sha256


class OpenClipReward(Reward):
    """An open_clip model plus the official image transform (``resize``: ``"shortest"``
    = resize shortest side + centre crop; ``"longest"`` = resize longest side + zero pad)."""

    resize: str = "shortest"
    score_tensor_atol = 2e-2

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        *,
        version: str,
        device: torch.device,
        dtype: torch.dtype,
        weights_sha256: str,
        arch: str,
    ) -> None:
        super().__init__(version, device, dtype)
        self.model = model.to(device=device, dtype=dtype)
        self.tokenizer = tokenizer
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, tuple | list) else size)
        self.weights_sha256 = weights_sha256
        self.arch = arch

    def id_options(self) -> dict[str, object]:
        return {**super().id_options(), "arch": self.arch}

    def _pixels_from_pil(self, images: list[Image.Image]) -> torch.Tensor:
        if self.resize == "longest":  # HPSv2: ToTensor first, then resize the float tensor
            pixels = [
                tensor_resize_longest_pad(pil_to_tensor(im)[None], self.image_size)[0]
                for im in images
            ]
        else:
            pixels = [pil_resize_center_crop(im, self.image_size) for im in images]
        return normalize(torch.stack(pixels), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)

    def _pixels_from_tensor(self, images: torch.Tensor) -> torch.Tensor:
        fn = tensor_resize_longest_pad if self.resize == "longest" else tensor_resize_center_crop
        return normalize(fn(images, self.image_size), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)

    def image_embeddings(self, pixels: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings."""
        return torch.nn.functional.normalize(self.model.encode_image(pixels), dim=-1)

    def text_embeddings(self, prompts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings; prompts past the context length are truncated
        (open_clip keeps the first 76 tokens and puts the end token last)."""

        def encode(texts: list[str]) -> torch.Tensor:
            tokens = self.tokenizer(texts).to(self.device)
            return torch.nn.functional.normalize(self.model.encode_text(tokens), dim=-1)

        return encode_unique(prompts, encode)

    def cosine(self, pixels: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return (self.image_embeddings(pixels) * self.text_embeddings(prompts)).sum(-1)


__all__ = ["OpenClipReward", "RewardInfo", "build_open_clip"]
