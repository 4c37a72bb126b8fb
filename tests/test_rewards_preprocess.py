"""Differentiable preprocessing vs the official PIL path (sizes, offsets, values, gradients)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rdbench.errors import RdbenchError
from rdbench.rewards import preprocess as P


def _smooth_image(h: int, w: int, seed: int = 0) -> Image.Image:
    """A smooth random image (interpolation round-off stays small on smooth content)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(3, 4, 4)).astype(np.float32)
    big = torch.nn.functional.interpolate(
        torch.from_numpy(coarse)[None], size=(h, w), mode="bilinear", align_corners=True
    )[0]
    return Image.fromarray(big.permute(1, 2, 0).round().clamp(0, 255).byte().numpy())


def _as_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255.0


def test_output_sizes_follow_torchvision_and_hpsv2_rules():
    assert P.shortest_side_size(100, 300, 224) == (224, 672)
    assert P.shortest_side_size(301, 100, 224) == (674, 224)  # int(224 * 3.01) = 674
    assert P.longest_side_size(100, 300, 224) == (75, 224)  # round(74.67)
    assert P.longest_side_size(3, 5000, 224) == (1, 224)  # never a zero-size side
    assert P.crop_offsets(227, 224, 224) == (2, 0)  # torchvision: round(1.5) = 2
    assert P.crop_offsets(227, 224, 224, floor=True) == (1, 0)  # transformers: 3 // 2
    assert P.pad_amounts(75, 224, 224) == (0, 0, 74, 75)


@pytest.mark.parametrize("hw", [(64, 96), (97, 50), (32, 32), (20, 28), (600, 90)])
def test_center_crop_tensor_path_matches_pil_path(hw):
    image = _smooth_image(*hw)
    ref = P.pil_resize_center_crop(image, 32)
    out = P.tensor_resize_center_crop(_as_tensor(image), 32)[0]
    assert out.shape == ref.shape == (3, 32, 32)
    # PIL resizes 8-bit data; torch resizes floats: they differ by round-off only
    assert (out - ref).abs().max() < 3 / 255


@pytest.mark.parametrize("hw", [(64, 96), (97, 50), (20, 28), (600, 90)])
def test_longest_pad_equals_hpsv2_resize_max_size(hw):
    """hpsv2 1.2.0: ToTensor, torchvision tensor resize (bicubic), pad [l, t, r, b] with 0."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    x = _as_tensor(_smooth_image(*hw))[0]
    scale = 32 / float(max(hw))
    new = tuple(round(d * scale) for d in hw)
    ref = TF.resize(x, list(new), InterpolationMode.BICUBIC, antialias=True)
    pad_h, pad_w = 32 - new[0], 32 - new[1]
    ref = TF.pad(ref, [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)
    out = P.tensor_resize_longest_pad(x[None], 32)[0]
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_longest_pad_pads_with_zeros_centred():
    x = torch.ones(1, 3, 32, 64)  # w=64, h=32 -> 16 x 32, pad 8 + 8 rows
    out = P.tensor_resize_longest_pad(x, 32)[0]
    assert torch.all(out[:, :8] == 0) and torch.all(out[:, 24:] == 0)
    torch.testing.assert_close(out[:, 8:24], torch.ones(3, 16, 32))


def test_exact_size_is_identity_on_both_paths():
    image = _smooth_image(32, 32)
    x = _as_tensor(image)
    assert torch.equal(P.pil_resize_center_crop(image, 32), x[0])
    assert torch.equal(P.tensor_resize_center_crop(x, 32), x)


def test_gradients_reach_every_input_pixel():
    x = torch.rand(2, 3, 48, 40, dtype=torch.float64, requires_grad=True)
    for fn in (P.tensor_resize_center_crop, P.tensor_resize_longest_pad):
        y = P.normalize(fn(x, 32), P.OPENAI_CLIP_MEAN, P.OPENAI_CLIP_STD)
        (grad,) = torch.autograd.grad(y.square().sum(), x)
        assert torch.isfinite(grad).all()
        assert grad.abs().sum() > 0


def test_normalize_formula():
    x = torch.rand(1, 3, 4, 4)
    y = P.normalize(x, (0.5, 0.25, 0.0), (0.5, 0.5, 2.0))
    assert torch.allclose(y[0, 0], (x[0, 0] - 0.5) / 0.5)
    assert torch.allclose(y[0, 2], x[0, 2] / 2.0)


@pytest.mark.parametrize(
    "bad",
    [
        torch.rand(3, 8, 8),
        torch.rand(1, 4, 8, 8),
        torch.zeros(0, 3, 8, 8),
        torch.zeros(1, 3, 8, 8, dtype=torch.uint8),
    ],
)
def test_check_image_tensor_refuses_bad_shapes(bad):
    with pytest.raises(RdbenchError, match="B x 3 x H x W|floating"):
        P.check_image_tensor(bad)
