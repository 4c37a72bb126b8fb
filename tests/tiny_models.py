"""Tiny random-weight models saved in the real checkpoint formats, for offline tests.

Each ``make_*`` function writes files that the real loaders (``rdbench.hub`` and the
extractors) read exactly as they would read the published weights:

- :func:`make_inception`: a TorchScript archive named ``inception-2015-12-05.pt`` with the call
  interface of clean-fid's file (``forward(img, return_features=True)`` resizing inside, and a
  ``layers`` submodule taking ``(x - 128) / 128`` at 299x299 and returning ``N x 2048``).
  ``full=True`` uses torchvision's Inception-v3 body (real size, random weights).
- :func:`make_open_clip`: an open_clip state dict (safetensors) for a registered tiny config.
- :func:`make_dinov2`: a ``Dinov2Model.save_pretrained`` folder (config + safetensors).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

TINY_CLIP_MODEL = "rdbench-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}


class _InceptionLike(nn.Module):
    """Same call interface as clean-fid's TorchScript ``inception-2015-12-05.pt``."""

    def __init__(self, layers: nn.Module) -> None:
        super().__init__()
        self.layers = layers

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = F.interpolate(img, size=(299, 299), mode="bilinear", align_corners=False)
        return self.layers((x - 128.0) / 128.0)


def _tiny_layers(dim: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, kernel_size=5, stride=4),
        nn.ReLU(),
        nn.Conv2d(8, 16, kernel_size=3, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, dim),
    )


def _full_layers() -> nn.Module:
    from torchvision.models import inception_v3

    net = inception_v3(weights=None, aux_logits=False, init_weights=True)
    names = [
        "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
        "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
        "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
        "avgpool",
    ]  # fmt: skip
    return nn.Sequential(*[getattr(net, n) for n in names], nn.Flatten())


def make_inception(folder: str | Path, *, full: bool = False, seed: int = 0) -> Path:
    """Write a random-weight Inception-shaped TorchScript file; returns its path."""
    torch.manual_seed(seed)
    module = _InceptionLike(_full_layers() if full else _tiny_layers(2048)).eval()
    path = Path(folder) / "inception-2015-12-05.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still the format
        torch.jit.save(torch.jit.script(module), str(path))
    return path


def register_open_clip_config(folder: str | Path, name: str, config: dict) -> str:
    """Register ``config`` with open_clip as ``name`` (idempotent); creates ``folder``, where the
    json lands and where callers save the model's weights."""
    import open_clip

    Path(folder).mkdir(parents=True, exist_ok=True)
    if open_clip.get_model_config(name) is None:
        path = Path(folder) / f"{name}.json"
        path.write_text(json.dumps(config))
        open_clip.add_model_config(path)
    return name


def register_tiny_open_clip(folder: str | Path) -> str:
    """Register :data:`TINY_CLIP_CONFIG` with open_clip (idempotent); returns its name."""
    return register_open_clip_config(folder, TINY_CLIP_MODEL, TINY_CLIP_CONFIG)


def make_open_clip(folder: str | Path, *, seed: int = 0) -> tuple[str, Path]:
    """Tiny open_clip model with random weights saved as ``open_clip_model.safetensors``."""
    import open_clip
    from safetensors.torch import save_file

    name = register_tiny_open_clip(folder)
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    path = Path(folder) / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return name, path


def make_dinov2(folder: str | Path, *, seed: int = 0) -> Path:
    """Tiny ``Dinov2Model`` saved with ``save_pretrained`` (config.json + model.safetensors)."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    config = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=224,
        patch_size=14,
    )
    folder = Path(folder)
    Dinov2Model(config).eval().save_pretrained(folder, safe_serialization=True)
    return folder
