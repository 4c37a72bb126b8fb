"""Each reward from tiny random weights in the official checkpoint format, loaded through the
real loader: known answers computed by hand from the same model, and interface properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_rewards import (
    TINY_ARCH,
    make_aesthetic_mlp,
    make_hpsv2,
    make_open_clip_file,
    make_pickscore,
)

import rdbench.rewards as R
from rdbench.errors import RdbenchError

OPENAI_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
OPENAI_STD = np.array([0.26862954, 0.26130258, 0.27577711])
PROMPTS = ["the cat on a mat", "an apple", "the red bus at night"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_rewards")
    return {
        "pickscore": make_pickscore(root / "pickscore"),
        "hpsv2": make_hpsv2(root),
        "clip": make_open_clip_file(root, seed=1),
        "mlp": make_aesthetic_mlp(root),
    }


def _load(name: str, files, **kwargs) -> R.Reward:
    if name == "pickscore":
        return R.load("pickscore", device="cpu", weights=files["pickscore"], **kwargs)
    if name == "hpsv2":
        return R.load("hpsv2", device="cpu", weights=files["hpsv2"], arch=TINY_ARCH, **kwargs)
    if name == "clipscore":
        return R.load("clipscore", device="cpu", weights=files["clip"], arch=TINY_ARCH, **kwargs)
    return R.load(
        "aesthetic",
        device="cpu",
        weights=files["mlp"],
        arch=TINY_ARCH,
        clip_weights=files["clip"],
        **kwargs,
    )


@pytest.fixture(scope="module")
def rewards(files):
    return {name: _load(name, files) for name in ("pickscore", "hpsv2", "clipscore", "aesthetic")}


def _images(n: int = 3, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    sizes = [(40, 56), (64, 32), (32, 32), (75, 90)]
    out = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        coarse = rng.uniform(0, 255, size=(1, 3, 5, 5)).astype(np.float32)
        big = torch.nn.functional.interpolate(
            torch.from_numpy(coarse), size=(h, w), mode="bicubic", align_corners=True
        )
        out.append(Image.fromarray(big[0].permute(1, 2, 0).clamp(0, 255).byte().numpy()))
    return out


def _to_tensor(images: list[Image.Image]) -> torch.Tensor:
    return torch.from_numpy(np.array(images[0])).permute(2, 0, 1)[None].float() / 255.0


def _open_clip_model(path, arch=TINY_ARCH):
    import open_clip

    model = open_clip.create_model(arch, pretrained=None)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state.get("state_dict", state))
    return model.eval(), open_clip.get_tokenizer(arch)


def _normalised(pil: Image.Image) -> torch.Tensor:
    arr = (np.asarray(pil, dtype=np.float64) / 255.0 - OPENAI_MEAN) / OPENAI_STD
    return torch.from_numpy(arr).permute(2, 0, 1).float()


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a / a.norm(dim=-1, keepdim=True) * (b / b.norm(dim=-1, keepdim=True))).sum(-1)


# --- known answers --------------------------------------------------------------------------


def test_hpsv2_equals_official_definition(files, rewards):
    """HPSv2 (hpsv2 1.2.0 ``ResizeMaxSize`` after ``ToTensor``): resize longest side of the
    float tensor (torchvision bicubic), zero-pad centred, OpenAI mean/std, cosine of the
    open_clip embeddings, no logit scale, no x100."""
    from torchvision.transforms import InterpolationMode, ToTensor
    from torchvision.transforms import functional as TF

    model, tokenizer = _open_clip_model(files["hpsv2"])
    images = _images()
    pixels = []
    for im in images:
        x = ToTensor()(im)
        scale = 32 / float(max(im.size))
        h, w = round(im.height * scale), round(im.width * scale)
        x = TF.resize(x, [h, w], InterpolationMode.BICUBIC, antialias=True)
        x = TF.pad(
            x, [(32 - w) // 2, (32 - h) // 2, 32 - w - (32 - w) // 2, 32 - h - (32 - h) // 2]
        )
        pixels.append(TF.normalize(x, OPENAI_MEAN.tolist(), OPENAI_STD.tolist()))
    with torch.no_grad():
        expected = _cos(
            model.encode_image(torch.stack(pixels)), model.encode_text(tokenizer(PROMPTS))
        )
    got = rewards["hpsv2"].score(images, PROMPTS)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(got) <= 1)


def test_pickscore_equals_official_definition(files, rewards):
    """PickScore README: CLIPProcessor + exp(logit_scale) * cos of the CLIPModel embeddings."""
    from transformers import AutoTokenizer, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    folder = files["pickscore"]
    model = CLIPModel.from_pretrained(str(folder)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    processor = CLIPImageProcessorPil.from_pretrained(str(folder))
    images = _images()
    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"]
    text = tokenizer(PROMPTS, padding=True, truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        img = model.get_image_features(pixel_values=pixel_values)
        txt = model.get_text_features(**text)
        img = getattr(img, "pooler_output", img)
        txt = getattr(txt, "pooler_output", txt)
        expected = model.logit_scale.exp() * _cos(img, txt)
    got = rewards["pickscore"].score(images, PROMPTS)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-4)


def test_clipscore_is_clamped_scaled_cosine_with_prefix(files, rewards):
    model, tokenizer = _open_clip_model(files["clip"])
    images = _images(4)
    pixels = torch.stack([_normalised(_center_crop(im)) for im in images])
    prompts = ["the cat", "an apple", "a dog", "the sea"]
    with torch.no_grad():
        cos = _cos(
            model.encode_image(pixels),
            model.encode_text(tokenizer(["A photo depicts " + p for p in prompts])),
        )
    got = rewards["clipscore"].score(images, prompts)
    np.testing.assert_allclose(got, 2.5 * np.maximum(cos.numpy(), 0), rtol=1e-5, atol=1e-6)
    bare = _load("clipscore", files, prefix="").score(images, prompts)
    assert not np.allclose(bare, got)
    assert rewards["clipscore"].reward_id != _load("clipscore", files, prefix="").reward_id


def _center_crop(im: Image.Image, size: int = 32) -> Image.Image:
    """torchvision Resize(size) + CenterCrop(size) on a PIL image, written out."""
    if im.width <= im.height:
        w, h = size, int(size * im.height / im.width)
    else:
        w, h = int(size * im.width / im.height), size
    im = im.resize((w, h), Image.BICUBIC)
    top, left = int(round((h - size) / 2)), int(round((w - size) / 2))
    return im.crop((left, top, left + size, top + size))


def test_aesthetic_is_linear_mlp_on_normalised_embedding(files, rewards):
    model, _ = _open_clip_model(files["clip"])
    layers = torch.load(files["mlp"], weights_only=True)
    images = _images(3)
    pixels = torch.stack([_normalised(_center_crop(im)) for im in images])
    with torch.no_grad():
        x = model.encode_image(pixels)
        x = x / x.norm(dim=-1, keepdim=True)
        for i in (0, 2, 4, 6, 7):  # no activations, dropout is identity in eval
            x = x @ layers[f"layers.{i}.weight"].T + layers[f"layers.{i}.bias"]
    got = rewards["aesthetic"].score(images)  # no prompts needed
    np.testing.assert_allclose(got, x[:, 0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rewards["aesthetic"].score(images, PROMPTS), got)


# --- interface properties ---------------------------------------------------------------


NAMES = ("pickscore", "hpsv2", "clipscore", "aesthetic")


@pytest.mark.parametrize("name", NAMES)
def test_score_tensor_agrees_and_is_differentiable(name, rewards):
    reward = rewards[name]
    # CLIPScore is max(cos, 0): take the (image, prompt) pair with the largest score so that
    # the gradient is live
    pool, candidates = _images(4), ["the cat", "an apple", "a dog", "the sea", "night"]
    pairs = [(im, p) for im in pool for p in candidates]
    best = int(np.argmax(reward.score([im for im, _ in pairs], [p for _, p in pairs])))
    images, prompt = [pairs[best][0]], pairs[best][1]
    x = _to_tensor(images).requires_grad_(True)
    out = reward.score_tensor(x, [prompt])
    ref = reward.score(images, [prompt])
    scale = max(1.0, float(np.abs(ref).max()))
    assert out.shape == (1,)
    assert abs(out.item() - ref[0]) < 0.02 * scale
    if name == "hpsv2":  # same ops on both paths
        assert abs(out.item() - ref[0]) < reward.score_tensor_atol
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_batch_size_invariance_and_determinism(name, rewards):
    images = _images(3)
    a = rewards[name].score(images, PROMPTS, batch_size=1)
    b = rewards[name].score(images, PROMPTS, batch_size=3)
    c = rewards[name].score(images, PROMPTS, batch_size=2)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(b, rewards[name].score(images, PROMPTS, batch_size=3))
    assert a.dtype == np.float64 and a.shape == (3,)


def test_loading_twice_gives_same_scores(files, rewards):
    images = _images(2)
    again = _load("hpsv2", files)
    np.testing.assert_array_equal(
        again.score(images, PROMPTS[:2]), rewards["hpsv2"].score(images, PROMPTS[:2])
    )
    assert again.reward_id == rewards["hpsv2"].reward_id


@pytest.mark.parametrize("name", ("pickscore", "hpsv2", "clipscore"))
def test_long_prompts_are_truncated_to_77_tokens(name, rewards):
    long = " ".join(["the cat"] * 60)  # far over 77 tokens
    images = _images(1)
    a = rewards[name].score(images, long)
    b = rewards[name].score(images, long + " and a completely different ending")
    np.testing.assert_array_equal(a, b)
    with torch.no_grad():  # the text embedding itself (CLIPScore's clamp may hide it)
        emb = rewards[name].text_embeddings([long, long + " and more", "the cat the cat"])
    torch.testing.assert_close(emb[0], emb[1])
    assert not torch.allclose(emb[0], emb[2])


@pytest.mark.parametrize("name", ("pickscore", "hpsv2"))
def test_prompt_errors(name, rewards):
    reward = rewards[name]
    images = _images(2)
    with pytest.raises(RdbenchError, match="2 images but 3 prompts"):
        reward.score(images, PROMPTS)
    with pytest.raises(RdbenchError, match="prompt 1 is empty"):
        reward.score(images, ["a cat", "  "])
    with pytest.raises(RdbenchError, match="one prompt per image"):
        reward.score(images)
    with pytest.raises(RdbenchError, match="1 images but 3 prompts"):
        reward.score_tensor(_to_tensor(images), PROMPTS)
    single = reward.score(images, "the cat")  # one string for every image
    np.testing.assert_allclose(single, reward.score(images, ["the cat", "the cat"]))


def test_non_rgb_images_and_any_size(rewards):
    reward = rewards["hpsv2"]
    rgb = _images(1)[0]
    gray = rgb.convert("L")
    np.testing.assert_allclose(reward.score(gray, "a"), reward.score(gray.convert("RGB"), "a"))
    rgba = rgb.convert("RGBA")
    assert np.isfinite(reward.score([rgba, rgb.convert("P"), rgb.convert("CMYK")], "a")).all()
    wide = Image.new("RGB", (2000, 3), (10, 200, 30))
    tiny = Image.new("RGB", (1, 1), (255, 0, 0))
    for r in rewards.values():
        assert np.isfinite(r.score([wide, tiny], "the cat")).all()


def test_paths_are_decoded(tmp_path, rewards):
    image = _images(1)[0]
    image.save(tmp_path / "a.png")
    reward = rewards["hpsv2"]
    np.testing.assert_array_equal(reward.score(tmp_path / "a.png", "x"), reward.score(image, "x"))
    with pytest.raises(RdbenchError, match="does not exist"):
        reward.score(tmp_path / "missing.png", "x")
    with pytest.raises(RdbenchError, match="PIL images or file paths"):
        reward.score([np.zeros((4, 4, 3))], "x")


# --- loading ------------------------------------------------------------------------------


def test_registry_and_names():
    assert R.REWARDS.names() == ["aesthetic", "clipscore", "hpsv2", "imagereward", "pickscore"]
    assert R.parse_name("hpsv2")[1] == "v2.1"
    assert R.parse_name("hpsv2:v2.0")[1] == "v2.0"
    with pytest.raises(RdbenchError, match="no version 'v3'"):
        R.parse_name("hpsv2:v3")
    with pytest.raises(RdbenchError, match="unknown reward 'hps'"):
        R.load("hps")
    with pytest.raises(RdbenchError, match="no option"):
        R.load("pickscore", arch="x")


def test_imagereward_is_marked_unavailable():
    assert "NOT AVAILABLE" in R.info("imagereward").summary
    with pytest.raises(RdbenchError, match="not available.*transformers"):
        R.load("imagereward")


def test_missing_weights_offline_names_the_file():
    with pytest.raises(RdbenchError, match=r"HPS_v2_compressed\.pt.*\n.*huggingface"):
        R.load("hpsv2:v2.0", device="cpu")
    with pytest.raises(RdbenchError, match="yuvalkirstain/PickScore_v1"):
        R.load("pickscore", device="cpu")


def test_env_override_and_wrong_architecture(files, monkeypatch):
    monkeypatch.setenv("RDBENCH_FILE_HPSV2_1", str(files["hpsv2"]))
    reward = R.load("hpsv2", device="cpu", arch=TINY_ARCH)
    assert reward.weights_sha256 == __import__("rdbench.hub").hub.sha256_file(files["hpsv2"])
    with pytest.raises(RdbenchError, match="does not match open_clip architecture 'ViT-B-32'"):
        R.load("hpsv2", device="cpu", arch="ViT-B-32")
    with pytest.raises(RdbenchError, match="not an aesthetic MLP"):
        R.load(
            "aesthetic",
            device="cpu",
            weights=files["hpsv2"],
            arch=TINY_ARCH,
            clip_weights=files["clip"],
        )


def test_dtype_and_frozen_parameters(files):
    reward = _load("hpsv2", files, dtype="bfloat16")
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in reward.parameters())
    images = _images(1)
    assert np.isfinite(reward.score(images, "a cat")).all()
    out = reward.score_tensor(_to_tensor(images).requires_grad_(True), "a cat")
    assert out.dtype == torch.float32 and out.requires_grad
    with pytest.raises(RdbenchError, match="unknown dtype"):
        R.load("hpsv2", dtype="float8")


@pytest.mark.parametrize("name", ("pickscore", "clipscore"))
def test_repeated_prompts_are_encoded_once_with_same_result(name, rewards):
    images = _images(3)
    prompts = ["the cat", "an apple", "the cat"]
    together = rewards[name].score(images, prompts, batch_size=3)  # "the cat" encoded once
    alone = rewards[name].score(images, prompts, batch_size=1)
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)
