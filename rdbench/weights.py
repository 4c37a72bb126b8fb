"""Every model file rdbench can load, listed in one place.

Each entry is a :class:`rdbench.hub.RemoteFile` (one file, sha256 checked) or a
:class:`rdbench.hub.RemoteFolder` (a Hugging Face repository pinned by revision). Resolve an
entry with ``rdbench.hub.resolve`` / ``rdbench.hub.resolve_folder``; override any of them
with ``RDBENCH_FILE_<NAME>=/local/path`` (see ``rdbench weights``-style listings in the docs).

``sha256=None`` means the digest has not been verified by the rdbench maintainers yet: the
file is still cached atomically and its digest recorded (in the extractor or reward id) in
every result that uses it.
"""

from __future__ import annotations

from rdbench.hub import RemoteFile, RemoteFolder
from rdbench.registry import Registry

WEIGHTS: Registry[RemoteFile | RemoteFolder] = Registry("weights file")


def _add(entry: RemoteFile | RemoteFolder) -> RemoteFile | RemoteFolder:
    WEIGHTS.register(entry.name, entry)
    return entry


# --- feature extractors -------------------------------------------------------------------
INCEPTION = _add(
    RemoteFile(
        name="inception-2015-12-05",
        filename="inception-2015-12-05.pt",
        url="https://github.com/GaParmar/clean-fid/releases/download/v0.1.10/inception-2015-12-05.pt",
        sha256=None,
        description="clean-fid's TorchScript port of TF Inception-v3 (FID features, 2048-d)",
    )
)

DINOV2_BASE = _add(
    RemoteFolder(
        name="dinov2-base",
        repo_id="facebook/dinov2-base",
        allow_patterns=("*.json", "*.safetensors"),
        description="DINOv2 ViT-B/14 (transformers) for the `dinov2` feature extractor",
    )
)

# --- reward models ------------------------------------------------------------------------
PICKSCORE = _add(
    RemoteFolder(
        name="pickscore-v1",
        repo_id="yuvalkirstain/PickScore_v1",
        description="PickScore v1 (CLIP ViT-H/14 finetuned on Pick-a-Pic)",
    )
)
PICKSCORE_PROCESSOR = _add(
    RemoteFolder(
        name="clip-vit-h-14-laion2b-processor",
        repo_id="laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
        allow_patterns=("*.json", "*.txt"),
        description="CLIP ViT-H/14 processor (tokenizer + image preprocessing) for PickScore",
    )
)
HPSV2_0 = _add(
    RemoteFile(
        name="hpsv2.0",
        filename="HPS_v2_compressed.pt",
        url="https://huggingface.co/xswu/HPSv2/resolve/main/HPS_v2_compressed.pt",
        sha256=None,
        description="HPSv2.0 checkpoint (open_clip ViT-H-14 state_dict)",
    )
)
HPSV2_1 = _add(
    RemoteFile(
        name="hpsv2.1",
        filename="HPS_v2.1_compressed.pt",
        url="https://huggingface.co/xswu/HPSv2/resolve/main/HPS_v2.1_compressed.pt",
        sha256=None,
        description="HPSv2.1 checkpoint (open_clip ViT-H-14 state_dict)",
    )
)
CLIP_VIT_B_32 = _add(
    RemoteFile(
        name="clip-vit-b-32-openai",
        filename="open_clip_pytorch_model.bin",
        url="https://huggingface.co/timm/vit_base_patch32_clip_224.openai/resolve/main/open_clip_pytorch_model.bin",
        sha256=None,
        description="OpenAI CLIP ViT-B/32 in open_clip format (CLIPScore)",
    )
)
CLIP_VIT_L_14 = _add(
    RemoteFile(
        name="clip-vit-l-14-openai",
        filename="open_clip_pytorch_model.bin",
        url="https://huggingface.co/timm/vit_large_patch14_clip_224.openai/resolve/main/open_clip_pytorch_model.bin",
        sha256=None,
        description="OpenAI CLIP ViT-L/14 in open_clip format (LAION aesthetic predictor)",
    )
)
AESTHETIC_MLP = _add(
    RemoteFile(
        name="aesthetic-mlp-v2",
        filename="sac+logos+ava1-l14-linearMSE.pth",
        url="https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/sac%2Blogos%2Bava1-l14-linearMSE.pth",
        sha256=None,
        description="LAION aesthetic predictor v2 MLP head (for CLIP ViT-L/14 embeddings)",
    )
)

# --- diffusion models (baselines) -----------------------------------------------------------
_SD_FILES = (
    "*.json",
    "*.txt",
    "unet/*.safetensors",
    "vae/*.safetensors",
    "text_encoder*/*.safetensors",
)
SD_V1_4 = _add(
    RemoteFolder(
        name="sd-v1-4",
        repo_id="CompVis/stable-diffusion-v1-4",
        allow_patterns=_SD_FILES,
        description="Stable Diffusion v1.4 (diffusers folder) for the SD baselines",
    )
)
SDXL_BASE = _add(
    RemoteFolder(
        name="sdxl-base-1.0",
        repo_id="stabilityai/stable-diffusion-xl-base-1.0",
        allow_patterns=_SD_FILES,
        description="Stable Diffusion XL base 1.0 (diffusers folder) for the SD baselines",
    )
)
