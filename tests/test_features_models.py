"""clip and dinov2 extractors: tiny random-weight checkpoints through the real loaders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from imagegen import draw_image, make_plain_folder
from tiny_models import make_dinov2, make_open_clip

from rdbench.errors import RdbenchError
from rdbench.features import load_extractor
from rdbench.features.extract import extract_features
from rdbench.imageset import ImageSet


@pytest.fixture(scope="module")
def clip_ckpt(tmp_path_factory):
    return make_open_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def dinov2_dir(tmp_path_factory):
    return make_dinov2(tmp_path_factory.mktemp("dinov2"))


def test_clip_matches_open_clip_pipeline(clip_ckpt):
    import open_clip

    name, path = clip_ckpt
    ext = load_extractor("clip", model=name, pretrained="random", weights=str(path), device="cpu")
    assert (ext.dim, ext.input_size, ext.resize_mode) == (16, 32, "resize_center_crop")
    assert "vendi" in ext.default_metrics and ext.id.startswith(f"clip:{name}:random:")
    ref, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=str(path))
    images = [draw_image(i, i, size=(50 + 7 * i, 40)) for i in range(4)]
    pixels = torch.stack([ext.preprocess(im) for im in images])
    ref_pixels = torch.stack([preprocess(im) for im in images])
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close((pixels / 255 - mean) / std, ref_pixels, rtol=0, atol=1e-5)
    with torch.inference_mode():
        ours = ext.forward(pixels)
        theirs = ref.eval().encode_image(ref_pixels)
    torch.testing.assert_close(ours, theirs / theirs.norm(dim=-1, keepdim=True), atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.norm(dim=-1), torch.ones(4))


def test_clip_wrong_checkpoint_and_missing_download(clip_ckpt, tmp_path, dinov2_dir):
    name, _ = clip_ckpt
    bad = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"visual.proj": torch.zeros(2, 2)}, str(bad))
    with pytest.raises(RdbenchError, match="does not match"):
        load_extractor("clip", model=name, pretrained="random", weights=str(bad), device="cpu")
    with pytest.raises(RdbenchError, match="no known download"):
        load_extractor("clip", model=name, pretrained="random", device="cpu")
    with pytest.raises(RdbenchError, match="open_clip_pytorch_model.bin") as info:
        load_extractor("clip", device="cpu")  # ViT-B-32 / openai, offline
    assert "RDBENCH_FILE_CLIP_VIT_B_32_OPENAI" in str(info.value)
    with pytest.raises(RdbenchError, match="unknown open_clip model"):
        load_extractor("clip", model="ViT-Z-99", device="cpu")


def test_dinov2_matches_transformers_processor_and_model(dinov2_dir):
    from transformers import Dinov2Model
    from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil

    ext = load_extractor("dinov2", weights=str(dinov2_dir), device="cpu")
    assert (ext.dim, ext.input_size, ext.preprocessor.tag) == (
        32,
        224,
        "hf_resize_center_crop@224/256",
    )
    processor = BitImageProcessorPil(
        size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], do_convert_rgb=True,
    )  # fmt: skip
    images = [draw_image(i, i, size=(300, 260 + 20 * i)) for i in range(3)]
    ref_pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    pixels = torch.stack([ext.preprocess(im) for im in images])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close((pixels / 255 - mean) / std, ref_pixels, rtol=0, atol=1e-5)
    model = Dinov2Model.from_pretrained(str(dinov2_dir)).eval()
    with torch.inference_mode():
        ours = ext.forward(pixels)
        out = model(pixel_values=ref_pixels, output_hidden_states=True)
        cls = model.layernorm(out.hidden_states[-1][:, 0])  # final layer norm of the CLS token
    torch.testing.assert_close(ours, out.pooler_output, atol=1e-4, rtol=0)
    torch.testing.assert_close(ours, cls, atol=1e-4, rtol=0)


def test_dinov2_reads_processor_config_and_extracts(dinov2_dir, tmp_path, monkeypatch):
    cfg = {"size": {"shortest_edge": 64}, "crop_size": {"height": 56, "width": 56}}
    (dinov2_dir / "preprocessor_config.json").write_text(json.dumps(cfg))
    try:
        monkeypatch.setenv("RDBENCH_FILE_DINOV2_BASE", str(dinov2_dir))
        ext = load_extractor("dinov2", device="cpu")
        assert ext.preprocessor.tag == "hf_resize_center_crop@56/64"
        folder = make_plain_folder(tmp_path / "imgs", 5, size=(70, 90))
        a = extract_features(ImageSet.open(folder), ext, batch_size=2, progress=False)
        b = extract_features(ImageSet.open(folder), ext, batch_size=5, cache=False, progress=False)
        assert a.array.shape == (5, 32) and (a.n_computed, b.n_computed) == (5, 5)
        np.testing.assert_allclose(a.array, b.array, rtol=1e-5, atol=1e-5)
    finally:
        (dinov2_dir / "preprocessor_config.json").unlink()


def test_dinov2_id_covers_config_and_preprocessing(tmp_path):
    """Same weights, another config.json or mean/std: another extractor id, so the feature
    cache cannot serve the old model's rows."""
    ids = []
    for name, cfg_edit, pre in (("a", None, None), ("b", 4, None), ("c", None, [0.5] * 3)):
        folder = make_dinov2(tmp_path / name / "dino")
        if cfg_edit:
            cfg = json.loads((folder / "config.json").read_text())
            (folder / "config.json").write_text(json.dumps(cfg | {"num_attention_heads": cfg_edit}))
        if pre:
            proc = {"image_mean": pre, "image_std": pre}
            (folder / "preprocessor_config.json").write_text(json.dumps(proc))
        ids.append(load_extractor("dinov2", weights=str(folder), device="cpu").id)
    assert len(set(ids)) == 3 and all(i.startswith("dinov2:dino:") for i in ids)
    (tmp_path / "a" / "dino" / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(RdbenchError, match="not valid JSON"):
        load_extractor("dinov2", weights=str(tmp_path / "a" / "dino"), device="cpu")


def test_crop_resize_modes_refuse_extreme_aspect_ratios(dinov2_dir, tmp_path):
    """A 4000 x 1 image scaled to a 256 px shorter side took 1.2 GB; now a skippable error."""
    from PIL import Image

    ext = load_extractor("dinov2", weights=str(dinov2_dir), device="cpu")
    folder = make_plain_folder(tmp_path / "imgs", 2, size=(40, 40))
    Image.new("RGB", (4000, 1)).save(folder / "thin.png")
    with pytest.raises(RdbenchError, match="aspect ratio beyond 64:1"):
        extract_features(ImageSet.open(folder), ext, cache=False, progress=False)
    out = extract_features(ImageSet.open(folder), ext, cache=False, progress=False, on_error="skip")
    assert out.array.shape == (2, 32) and [k for k, _ in out.skipped] == ["thin.png"]


def test_dinov2_missing_offline():
    with pytest.raises(RdbenchError, match="facebook/dinov2-base") as info:
        load_extractor("dinov2", device="cpu")
    assert "RDBENCH_FILE_DINOV2_BASE" in str(info.value)
