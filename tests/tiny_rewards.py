"""Tiny random-weight reward models saved in the official checkpoint formats.

- :func:`make_hpsv2`: ``{"state_dict": open_clip_state_dict}`` saved by ``torch.save`` (the
  layout of ``HPS_v2*_compressed.pt``) for a tiny registered open_clip architecture.
- :func:`make_open_clip_file`: a plain open_clip state dict (``open_clip_pytorch_model.bin``).
- :func:`make_aesthetic_mlp`: the predictor head of ``simple_inference.py`` (``layers.0..7``),
  written from an independent copy of the original ``nn.Sequential`` layout.
- :func:`make_pickscore`: ``CLIPModel.save_pretrained`` + ``CLIPTokenizer`` (tiny byte-level
  vocab.json / merges.txt) + ``CLIPImageProcessor`` in one folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tiny_models import register_open_clip_config
from torch import nn

TINY_ARCH = "rdbench-tiny-reward-clip"
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}


def register_tiny_arch(folder: str | Path) -> str:
    """Register :data:`TINY_CONFIG` with open_clip under :data:`TINY_ARCH` (idempotent)."""
    return register_open_clip_config(folder, TINY_ARCH, TINY_CONFIG)


def _tiny_open_clip_state(folder: Path, seed: int) -> dict[str, torch.Tensor]:
    import open_clip

    arch = register_tiny_arch(folder)
    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None)
    with torch.no_grad():  # random init leaves some parameters at zero; make them matter
        for param in model.parameters():
            param.add_(0.02 * torch.randn_like(param))
    return model.state_dict()


def make_hpsv2(folder: str | Path, *, seed: int = 0) -> Path:
    """HPS checkpoint layout: ``torch.save({"state_dict": ...})``."""
    folder = Path(folder)
    path = folder / "HPS_v2.1_compressed.pt"
    torch.save({"state_dict": _tiny_open_clip_state(folder, seed)}, path)
    return path


def make_open_clip_file(folder: str | Path, *, seed: int = 0) -> Path:
    """OpenAI CLIP in open_clip format: a plain state dict ``open_clip_pytorch_model.bin``."""
    folder = Path(folder)
    path = folder / f"open_clip_pytorch_model_{seed}.bin"
    torch.save(_tiny_open_clip_state(folder, seed), path)
    return path


class OriginalAestheticMLP(nn.Module):
    """Layout of ``MLP`` in improved-aesthetic-predictor's ``simple_inference.py``."""

    def __init__(self, input_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.layers = nn.Sequential(
            nn.Linear(self.input_size, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )


def make_aesthetic_mlp(folder: str | Path, *, input_size: int = 16, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    path = Path(folder) / "sac+logos+ava1-l14-linearMSE.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(OriginalAestheticMLP(input_size).state_dict(), path)
    return path


def _byte_vocab() -> tuple[dict[str, int], list[str]]:
    """A CLIP-style byte-level BPE vocabulary: every byte, alone and word-final, + 3 merges."""
    # GPT-2/CLIP byte -> printable character table
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = [b for b in range(256) if b not in printable]
    chars = [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]
    merges = ["t h", "th e</w>", "a n"]
    tokens = chars + [c + "</w>" for c in chars] + ["th", "the</w>", "an"]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def make_pickscore(folder: str | Path, *, seed: int = 0, image_size: int = 32) -> Path:
    """A folder like ``yuvalkirstain/PickScore_v1`` plus the processor files."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = _byte_vocab()
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    bos = tokenizer.convert_tokens_to_ids("<|startoftext|>")
    tokenizer.save_pretrained(str(folder))
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_attention_heads": 2,
            "num_hidden_layers": 1,
            "max_position_embeddings": 77,
            "bos_token_id": bos,
            "eos_token_id": eos,
            "pad_token_id": eos,
        },
        vision_config={
            "image_size": image_size,
            "patch_size": 8,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_attention_heads": 2,
            "num_hidden_layers": 1,
        },
        projection_dim=16,
        logit_scale_init_value=2.6592,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(str(folder))
    CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    ).save_pretrained(str(folder))
    return folder
