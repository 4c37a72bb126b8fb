"""The reward interface: one loaded model, a batched PIL path and a differentiable path.

Subclasses implement three small methods:

* ``_pixels_from_pil(images)``: the official preprocessing -> normalised model input;
* ``_pixels_from_tensor(images)``: the same geometry with torch ops (differentiable);
* ``_forward(pixels, prompts)``: normalised pixels (and prompts) -> one score per image.

:meth:`Reward.score` runs ``_pixels_from_pil`` + ``_forward`` under ``torch.inference_mode``
in batches; :meth:`Reward.score_tensor` runs ``_pixels_from_tensor`` + ``_forward`` with
autograd. They agree up to interpolation round-off (see ``SCORE_TENSOR_ATOL`` of each reward).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rdbench.errors import RdbenchError
from rdbench.rewards.preprocess import check_image_tensor

ImageInput = Image.Image | str | os.PathLike[str]


@dataclass(frozen=True)
class RewardInfo:
    """What a reward is: shown by ``rdbench rewards list`` and recorded in results."""

    name: str
    summary: str
    source: str
    weights: tuple[str, ...]
    preprocessing: str
    scale: str
    versions: tuple[str, ...] = ("v1",)
    default_version: str = "v1"
    needs_prompts: bool = True
    max_tokens: int | None = 77
    notes: str = ""
    options: dict[str, str] = field(default_factory=dict)


def as_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    if dtype not in names:
        raise RdbenchError(f"unknown dtype {dtype!r}; use one of {', '.join(names)}")
    return names[dtype]


def combine_digests(*digests: str) -> str:
    """One sha256 over several files' sha256 digests (order matters): ``sha256("d1\0d2...")``."""
    return hashlib.sha256("\0".join(digests).encode()).hexdigest()


def folder_fingerprint(path: str | os.PathLike[str]) -> str:
    """sha256 over every file of a weights folder: ``sha256`` of the lines
    ``relative/path\0sha256(file)``, files sorted by path.

    Whole files are hashed (a fine-tuned checkpoint may differ only mid-file); each file's
    digest is remembered by :func:`rdbench.hub.sha256_file_cached`, so only the first load of
    a folder pays for reading it.
    """
    from rdbench.hub import sha256_file_cached

    digest = hashlib.sha256()
    root = Path(path)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = file.relative_to(root).as_posix()
        digest.update(f"{rel}\0{sha256_file_cached(file)}\n".encode())
    return digest.hexdigest()


_PLAIN = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def id_value(value: object) -> str:
    """An option value as written in a reward id: itself when it is a short plain token, else
    ``sha256:`` and the first 12 hex digits of its sha256 (prompt prefixes, paths...)."""
    text = str(value).removeprefix("torch.") if isinstance(value, torch.dtype) else str(value)
    if _PLAIN.fullmatch(text):
        return text
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:12]


def to_pil_rgb(image: ImageInput) -> Image.Image:
    """An RGB PIL image from a PIL image of any mode or an image file path, by the rules of
    :mod:`rdbench.images` (alpha composited on white, 16-bit grey scaled, EXIF rotation)."""
    from rdbench.images import decode_rgb, to_rgb

    if isinstance(image, str | os.PathLike):
        path = Path(image)
        if not path.is_file():
            raise RdbenchError(f"image file {str(path)!r} does not exist")
        return decode_rgb(path.read_bytes(), str(path))
    if not isinstance(image, Image.Image):
        raise RdbenchError(
            f"images must be PIL images or file paths, got {type(image).__name__}; "
            "use score_tensor for B x 3 x H x W tensors"
        )
    return to_rgb(image)


def encode_unique(prompts: list[str], encode) -> torch.Tensor:
    """``encode(prompts)`` computed once per distinct prompt (image sets repeat each prompt
    for several seeds, so a batch often holds few distinct prompts)."""
    unique = list(dict.fromkeys(prompts))
    if len(unique) == len(prompts):
        return encode(prompts)
    index = torch.tensor([unique.index(p) for p in prompts])
    embeddings = encode(unique)
    return embeddings[index.to(embeddings.device)]


class Reward(torch.nn.Module):
    """Base class of every reward model; build one with :func:`rdbench.rewards.load`."""

    info: RewardInfo
    #: absolute tolerance of ``score`` vs ``score_tensor`` on the same 8-bit images
    score_tensor_atol: float = 0.0

    def __init__(self, version: str, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__()
        self.version = version
        self.device = device
        self.dtype = dtype
        #: sha256 covering every weights file the scores depend on (see ``combine_digests``)
        self.weights_sha256: str = ""

    @property
    def name(self) -> str:
        return self.info.name

    def id_options(self) -> dict[str, object]:
        """Every setting besides the weights that changes the scores (subclasses add theirs)."""
        return {"dtype": self.dtype}

    @property
    def reward_id(self) -> str:
        """``name:version@sha12;key=value;...``: what a cached or recorded score was computed
        with. ``sha12`` starts the digest of all weights files; the options are
        :meth:`id_options`, sorted by key (values by :func:`id_value`)."""
        options = sorted(self.id_options().items())
        tail = "".join(f";{key}={id_value(value)}" for key, value in options)
        return f"{self.info.name}:{self.version}@{self.weights_sha256[:12]}{tail}"

    # --- to implement ---------------------------------------------------------------------
    def _pixels_from_pil(self, images: list[Image.Image]) -> torch.Tensor:
        raise NotImplementedError

    def _pixels_from_tensor(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _forward(self, pixels: torch.Tensor, prompts: list[str] | None) -> torch.Tensor:
        raise NotImplementedError

    # --- public ---------------------------------------------------------------------------
    def check_prompts(self, prompts: Sequence[str] | str | None, n: int) -> list[str] | None:
        """Prompts as a list of ``n`` non-empty strings (or None for prompt-free rewards)."""
        if not self.info.needs_prompts:
            if prompts is not None and not isinstance(prompts, str) and len(prompts) != n:
                raise RdbenchError(f"got {n} images but {len(prompts)} prompts")
            return None
        if prompts is None:
            raise RdbenchError(
                f"reward {self.name!r} compares each image with its prompt: pass one prompt per "
                "image (an image set needs a manifest with prompts)"
            )
        if isinstance(prompts, str):
            prompts = [prompts] * n
        prompts = list(prompts)
        if len(prompts) != n:
            raise RdbenchError(
                f"got {n} images but {len(prompts)} prompts; pass one prompt per image "
                "(or a single string for all)"
            )
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, str):
                raise RdbenchError(f"prompt {i} is {type(prompt).__name__}, expected str")
            if not prompt.strip():
                raise RdbenchError(
                    f"prompt {i} is empty; reward {self.name!r} scores an image against its "
                    "prompt, so every image needs a non-empty prompt"
                )
        return prompts

    def score(
        self,
        images: Sequence[ImageInput] | ImageInput,
        prompts: Sequence[str] | str | None = None,
        *,
        batch_size: int = 32,
    ) -> np.ndarray:
        """Scores (float64, one per image) with the official preprocessing, no gradients."""
        if isinstance(images, Image.Image | str | os.PathLike):
            images = [images]
        images = list(images)
        if not images:
            raise RdbenchError("no images to score")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise RdbenchError(f"batch_size must be a positive integer, got {batch_size!r}")
        prompts = self.check_prompts(prompts, len(images))
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                batch = [to_pil_rgb(im) for im in images[start : start + batch_size]]
                pixels = self._pixels_from_pil(batch).to(self.device, self.dtype)
                texts = None if prompts is None else prompts[start : start + batch_size]
                out.append(self._forward(pixels, texts).float().cpu())
        return torch.cat(out).numpy().astype(np.float64)

    def score_tensor(
        self, images: torch.Tensor, prompts: Sequence[str] | str | None = None
    ) -> torch.Tensor:
        """Differentiable float32 scores (shape ``B``) of a ``B x 3 x H x W`` batch in [0, 1].

        The model runs in the reward's dtype; the scores are cast to float32 so that a loss
        built on them is not computed in half precision. Values outside [0, 1] are not clipped.
        """
        images = check_image_tensor(images)
        prompts = self.check_prompts(prompts, images.shape[0])
        pixels = self._pixels_from_tensor(images.to(self.device, self.dtype))
        return self._forward(pixels, prompts).float()

    def extra_repr(self) -> str:
        return f"reward_id={self.reward_id!r}, device={self.device}, dtype={self.dtype}"
