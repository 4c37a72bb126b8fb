"""``clip``: open_clip image embeddings, L2-normalised (unit length, ``dim = embed_dim``).

The model is named by open_clip's ``model`` (architecture, e.g. ``ViT-B-32``) and
``pretrained`` tag (e.g. ``openai``). The architecture is built with random weights and the
checkpoint is loaded through :func:`rdbench.hub.load_state_dict` (safetensors or
``torch.load(weights_only=True)``), strictly. The file comes from ``rdbench.weights`` for the
default model, otherwise from the tag's Hugging Face repository (``open_clip_model.safetensors``)
or from the ``weights=`` override. Activation (``quick_gelu``), mean/std and image size come
from the tag's open_clip config. Preprocessing: bicubic shorter side to the input size, center
crop (open_clip's ``resize_mode="shortest"``), ``/ 255``, normalise by mean/std.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from rdbench import hub
from rdbench import weights as weights_registry
from rdbench.errors import RdbenchError
from rdbench.features.base import EXTRACTORS, NormalizedExtractor, Preprocessor

CLIP_METRICS = ("vendi", "scd", "per_prompt_diversity")
DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "openai"


def clip_remote_file(model: str, pretrained: str) -> hub.RemoteFile:
    """The checkpoint for ``model``/``pretrained``: a ``rdbench.weights`` entry or the tag's repo."""
    import open_clip

    name = re.sub(r"[^a-z0-9_.\-]", "-", f"clip-{model}-{pretrained}".lower())
    if name in weights_registry.WEIGHTS:
        entry = weights_registry.WEIGHTS.get(name)
        assert isinstance(entry, hub.RemoteFile)
        return entry
    repo = (open_clip.get_pretrained_cfg(model, pretrained) or {}).get("hf_hub", "").strip("/")
    if not repo:
        raise RdbenchError(
            f"clip: no known download for model {model!r} with pretrained tag {pretrained!r}; "
            "pass weights=/path/to/open_clip checkpoint (state dict, .safetensors or .bin)"
        )
    return hub.RemoteFile(
        name=name,
        filename="open_clip_model.safetensors",
        url=f"https://huggingface.co/{repo}/resolve/main/open_clip_model.safetensors",
        sha256=None,
        description=f"open_clip {model} ({pretrained}) image/text weights",
    )


class ClipExtractor(NormalizedExtractor):
    """open_clip ``encode_image`` embeddings divided by their L2 norm."""

    name = "clip"
    resize_mode = "resize_center_crop"
    default_metrics = CLIP_METRICS

    def __init__(
        self, model: Any, model_name: str, pretrained: str, sha256: str, device: torch.device
    ) -> None:
        import open_clip

        cfg = dict(open_clip.get_model_preprocess_cfg(model))
        cfg.update(
            {k: v for k, v in (open_clip.get_pretrained_cfg(model_name, pretrained) or {}).items()
             if k in ("mean", "std", "interpolation", "resize_mode")}
        )  # fmt: skip
        if cfg.get("interpolation", "bicubic") != "bicubic" or cfg.get(
            "resize_mode", "shortest"
        ) not in ("shortest",):
            raise RdbenchError(
                f"clip: {model_name}/{pretrained} preprocessing {cfg} is not supported "
                "(only bicubic + shortest-side resize with center crop)"
            )
        size = cfg.get("size", 224)
        self.input_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.model = model.eval().requires_grad_(False)
        self.preprocessor = Preprocessor(self.resize_mode, self.input_size)
        self.set_normalization(
            cfg.get("mean", open_clip.OPENAI_DATASET_MEAN),
            cfg.get("std", open_clip.OPENAI_DATASET_STD),
        )
        self.id = f"clip:{model_name}:{pretrained}:{sha256[:16]}"
        self.dim = int(model.visual.output_dim)
        self.to(device)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """``encode_image(((x / 255) - mean) / std)``, then divided by its L2 norm."""
        x = self.normalize(batch)
        z = self.model.encode_image(x).float()
        return torch.nn.functional.normalize(z, dim=-1)


@EXTRACTORS.register("clip")
def load_clip(
    *,
    device: torch.device,
    weights: str | None = None,
    model: str = DEFAULT_MODEL,
    pretrained: str = DEFAULT_PRETRAINED,
) -> ClipExtractor:
    """open_clip ``model`` with ``pretrained`` tag; ``weights`` overrides the checkpoint file."""
    import open_clip

    if open_clip.get_model_config(model) is None:
        raise RdbenchError(
            f"clip: unknown open_clip model {model!r}; see open_clip.list_models() "
            f"(e.g. {DEFAULT_MODEL!r})"
        )
    if weights is None:
        found = hub.resolve(clip_remote_file(model, pretrained))
    else:
        found = hub.resolve(
            hub.RemoteFile(f"clip-{model}-{pretrained}".lower(), "checkpoint", "", None),
            local_path=weights,
        )
    tag_cfg = open_clip.get_pretrained_cfg(model, pretrained) or {}
    net = open_clip.create_model(
        model, pretrained=None, force_quick_gelu=bool(tag_cfg.get("quick_gelu", False))
    )
    state = hub.load_state_dict(found.path)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise RdbenchError(
            f"clip: {str(found.path)!r} does not match open_clip {model!r}: {str(exc)[:300]}"
        ) from None
    return ClipExtractor(net, model, pretrained, found.sha256, device)
