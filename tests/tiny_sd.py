"""A tiny Stable Diffusion pipeline with seeded random weights, in the diffusers folder format.

:func:`make_tiny_sd` writes ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
``scheduler/`` and ``model_index.json`` with ``save_pretrained``: the same layout as
``CompVis/stable-diffusion-v1-4``, so tests load it through the real loader
(:func:`baselines.sd.pipeline.load_components`). Sizes follow diffusers' own tests (REFERENCE
section 4): UNet block_out_channels (32, 64) so LoRA has width to adapt, sample_size 8.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tiny_rewards import _byte_vocab

CROSS_DIM = 32
# SDXL's added conditioning: 6 ids x addition_time_embed_dim + the pooled text embedding
XL_UNET = {
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 6 * 8 + CROSS_DIM,
}


def _seeded(seed: int):
    torch.manual_seed(seed)


def make_tiny_sd(
    folder: str | Path, *, seed: int = 0, sample_size: int = 8, xl: bool = False
) -> Path:
    """Save a tiny SD-1.x-shaped pipeline under ``folder`` and return it.

    ``xl=True``: SDXL-shaped instead: two text encoders (the second with a projection, whose
    pooled output and the 6 size/crop ids feed the UNet's ``text_time`` embedding) and
    cross-attention on both encoders' hidden states concatenated.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _seeded(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=2 * CROSS_DIM if xl else CROSS_DIM,
        attention_head_dim=8,
        norm_num_groups=8,
        **(XL_UNET if xl else {}),
    )
    unet.save_pretrained(folder / "unet")
    _seeded(seed + 1)
    vae = AutoencoderKL(
        block_out_channels=[8, 16],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=2,
        sample_size=sample_size * 2,
    )
    vae.save_pretrained(folder / "vae")
    vocab, merges = _byte_vocab()
    tok_dir = folder / "tokenizer"
    tok_dir.mkdir(exist_ok=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"))
    tokenizer.model_max_length = 77
    tokenizer.save_pretrained(tok_dir)
    text_config = CLIPTextConfig(
        hidden_size=CROSS_DIM,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=len(vocab),
        max_position_embeddings=77,
        projection_dim=CROSS_DIM,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    _seeded(seed + 2)
    CLIPTextModel(text_config).save_pretrained(folder / "text_encoder")
    if xl:
        from transformers import CLIPTextModelWithProjection

        _seeded(seed + 3)
        CLIPTextModelWithProjection(text_config).save_pretrained(folder / "text_encoder_2")
        tokenizer.save_pretrained(folder / "tokenizer_2")
    DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,  # as in SD v1.4's scheduler_config.json
    ).save_pretrained(folder / "scheduler")
    index = {
        "_class_name": "StableDiffusionXLPipeline" if xl else "StableDiffusionPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"],
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder
