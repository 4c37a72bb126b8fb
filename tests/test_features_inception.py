"""Inception extractor: parity with clean-fid (resizer and folder pipeline), determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from imagegen import make_plain_folder
from PIL import Image
from tiny_models import make_inception

from rdbench.errors import RdbenchError
from rdbench.features import load_extractor
from rdbench.features.extract import extract_features
from rdbench.imageset import ImageSet


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    return make_inception(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    make_plain_folder(root / "a", 6, size=(64, 48))
    make_plain_folder(root / "b", 5, size=(80, 80), style="noise", seed=3)
    return root


def test_resized_pixels_equal_clean_fid_resizer_bitwise(inception_file, folder):
    from cleanfid.resize import build_resizer

    ext = load_extractor("inception", weights=str(inception_file), device="cpu")
    theirs = build_resizer("clean")
    for path in sorted(folder.rglob("*.png")):
        arr = np.array(Image.open(path).convert("RGB"))
        ours = ext.preprocessor.resize(Image.open(path))
        assert ours.dtype == np.float32 and ours.shape == (299, 299, 3)
        np.testing.assert_array_equal(ours, theirs(arr))


@pytest.mark.parametrize("mode", ["clean", "legacy_pytorch"])
def test_features_equal_clean_fid_folder_pipeline(inception_file, folder, mode):
    from cleanfid.fid import get_folder_features
    from cleanfid.inception_torchscript import InceptionV3W

    model = InceptionV3W(str(inception_file.parent), download=False).eval()
    theirs = get_folder_features(
        str(folder), model=model, num_workers=0, batch_size=4, device=torch.device("cpu"),
        mode=mode, verbose=False,
    )  # fmt: skip
    ext = load_extractor("inception", weights=str(inception_file), device="cpu", resize_mode=mode)
    feats = extract_features(ImageSet.open(folder), ext, batch_size=3, cache=False, progress=False)
    # clean-fid orders files by their sorted absolute paths; map by key.
    order = sorted(folder.rglob("*.png"))
    ours = dict(zip(feats.keys, feats.array, strict=True))
    mine = np.stack([ours[p.relative_to(folder).as_posix()] for p in order])
    assert mine.shape == theirs.shape == (11, 2048)
    np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)


def test_legacy_tensorflow_resizes_inside_network(inception_file, folder):
    from cleanfid.resize import build_resizer

    ext = load_extractor(
        "inception", weights=str(inception_file), device="cpu", resize_mode="legacy_tensorflow"
    )
    path = next(iter(sorted((folder / "a").glob("*.png"))))
    x = ext.preprocess(Image.open(path))
    assert x.shape == (3, 48, 64)  # not resized outside the network
    np.testing.assert_array_equal(x.permute(1, 2, 0).numpy(), build_resizer("legacy_tensorflow")(
        np.array(Image.open(path).convert("RGB"))).astype(np.float32))  # fmt: skip
    mixed = ImageSet.open(folder)
    with pytest.raises(RdbenchError, match="different sizes"):
        extract_features(mixed, ext, batch_size=16, cache=False, progress=False)
    with pytest.raises(RdbenchError) as info:  # raised in the main process, not wrapped
        extract_features(mixed, ext, batch_size=16, num_workers=1, cache=False, progress=False)
    assert str(info.value).startswith("images of one batch") and "Traceback" not in str(info.value)
    one_by_one = extract_features(mixed, ext, batch_size=1, cache=False, progress=False)
    assert one_by_one.array.shape == (11, 2048)


def test_batch_size_and_workers_do_not_change_features(inception_file, folder):
    ext = load_extractor("inception", weights=str(inception_file), device="cpu")
    images = ImageSet.open(folder)
    a = extract_features(images, ext, batch_size=1, cache=False, progress=False)
    b = extract_features(images, ext, batch_size=7, num_workers=2, cache=False, progress=False)
    assert a.keys == b.keys == [it.key for it in images.items]
    np.testing.assert_allclose(a.array, b.array, rtol=1e-6, atol=1e-6)
    assert a.n_computed == 11 and a.n_cached == 0


def test_extractor_declares_its_contract(inception_file):
    ext = load_extractor("inception", weights=str(inception_file), device="cpu")
    assert (ext.name, ext.input_size, ext.resize_mode, ext.dim) == ("inception", 299, "clean", 2048)
    assert "fid" in ext.default_metrics and "kid" in ext.default_metrics
    assert ext.id.startswith("inception-2015-12-05:")
    other = make_inception(inception_file.parent / "other", seed=1)
    assert load_extractor("inception", weights=str(other), device="cpu").id != ext.id


def test_missing_weights_offline_names_file_and_place():
    with pytest.raises(RdbenchError) as info:
        load_extractor("inception", device="cpu")
    msg = str(info.value)
    assert "inception-2015-12-05.pt" in msg and "RDBENCH_FILE_INCEPTION_2015_12_05" in msg
    assert "github.com/GaParmar/clean-fid" in msg


def test_env_override_is_used(inception_file, monkeypatch):
    monkeypatch.setenv("RDBENCH_FILE_INCEPTION_2015_12_05", str(inception_file))
    assert load_extractor("inception", device="cpu").dim == 2048


def test_bad_options_and_files(inception_file, tmp_path):
    with pytest.raises(RdbenchError, match="resize_mode"):
        load_extractor("inception", weights=str(inception_file), resize_mode="nearest")
    with pytest.raises(RdbenchError, match="bad options"):
        load_extractor("inception", weights=str(inception_file), colour="blue")
    with pytest.raises(RdbenchError, match="unknown feature extractor"):
        load_extractor("vgg")
    junk = tmp_path / "inception-2015-12-05.pt"
    junk.write_bytes(b"not a torchscript archive")
    with pytest.raises(RdbenchError, match="cannot load TorchScript"):
        load_extractor("inception", weights=str(junk), device="cpu")
