"""The reward id (= score cache namespace) covers every weights file, the dtype and every
score-changing option; the PickScore folder fingerprint covers whole files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from imagegen import make_image_set
from tiny_models import register_open_clip_config
from tiny_rewards import (
    TINY_ARCH,
    TINY_CONFIG,
    make_aesthetic_mlp,
    make_open_clip_file,
    make_pickscore,
)

import rdbench.rewards as R
from rdbench.imageset import ImageSet
from rdbench.rewards.base import folder_fingerprint

QUICK = TINY_ARCH + "-quickgelu"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_reward_id")
    register_open_clip_config(root, QUICK, dict(TINY_CONFIG, quick_gelu=True))
    return {
        "clip1": make_open_clip_file(root, seed=1),
        "clip2": make_open_clip_file(root, seed=2),
        "mlp": make_aesthetic_mlp(root),
    }


@pytest.fixture(scope="module")
def image_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("reward_id_set") / "set"
    return ImageSet.open(make_image_set(root, 3, [0], size=(48, 40)))


def _aesthetic(files, clip="clip1", arch=TINY_ARCH, dtype=None):
    return R.load(
        "aesthetic",
        device="cpu",
        dtype=dtype,
        weights=files["mlp"],
        arch=arch,
        clip_weights=files[clip],
    )


@pytest.mark.parametrize(
    "change",
    [{"clip": "clip2"}, {"arch": QUICK}, {"dtype": "bfloat16"}],
    ids=["other-clip", "other-arch", "other-dtype"],
)
def test_cached_scores_follow_weights_arch_and_dtype(files, image_set, change):
    """Scoring with another CLIP, architecture or dtype never returns the first setting's
    cached scores: the cached result equals an uncached run of the same reward."""
    first = _aesthetic(files)
    R.score_imageset(image_set, first, progress=False)  # fills the cache
    other = _aesthetic(files, **change)
    assert other.reward_id != first.reward_id
    fresh = R.score_imageset(image_set, other, cache=False, progress=False).scores
    assert not np.array_equal(fresh, R.score_imageset(image_set, first, progress=False).scores)
    cached = R.score_imageset(image_set, other, progress=False)
    assert cached.cached == 0 and cached.reward_id == other.reward_id
    np.testing.assert_array_equal(cached.scores, fresh)


def test_reward_id_digest_covers_every_weights_file(files):
    from rdbench.hub import sha256_file
    from rdbench.rewards.base import combine_digests

    reward = _aesthetic(files)
    expected = combine_digests(sha256_file(files["mlp"]), sha256_file(files["clip1"]))
    assert reward.weights_sha256 == expected
    name, _, rest = reward.reward_id.partition("@")
    assert name == "aesthetic:v1" and rest.split(";")[0] == expected[:12]
    assert f";arch={TINY_ARCH}" in reward.reward_id and ";dtype=float32" in reward.reward_id


def test_clipscore_prefix_in_reward_id(files):
    def load(**kw):
        return R.load("clipscore", device="cpu", weights=files["clip1"], arch=TINY_ARCH, **kw)

    ids = {load().reward_id, load(prefix="").reward_id, load(prefix="A photo of ").reward_id}
    assert len(ids) == 3
    assert all(";prefix=sha256:" in i for i in ids)  # arbitrary text is hashed, not pasted


def test_folder_fingerprint_hashes_whole_files(tmp_path):
    size = 5 << 20
    for name, middle in (("a", 0), ("b", 1)):
        data = bytearray(b"\x07" * size)
        data[size // 2] = middle  # the head and tail MiB are identical
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(bytes(data))
    assert folder_fingerprint(tmp_path / "a") != folder_fingerprint(tmp_path / "b")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "other.safetensors").write_bytes(
        (tmp_path / "a" / "model.safetensors").read_bytes()
    )
    assert folder_fingerprint(tmp_path / "a") != folder_fingerprint(tmp_path / "c")  # names count


def test_pickscore_id_covers_separate_processor_folder(tmp_path):
    model = make_pickscore(tmp_path / "model")
    proc_a = make_pickscore(tmp_path / "proc_a")
    proc_b = make_pickscore(tmp_path / "proc_b", seed=1)  # other (unused) model weights
    cfg = json.loads((proc_b / "preprocessor_config.json").read_text())
    cfg["image_mean"] = [0.5, 0.5, 0.5]
    (proc_b / "preprocessor_config.json").write_text(json.dumps(cfg))
    (model / "preprocessor_config.json").unlink()  # the model folder needs a processor

    def load(proc):
        return R.load("pickscore", device="cpu", weights=model, processor=str(proc))

    a, b = load(proc_a), load(proc_b)
    assert a.mean != b.mean and a.reward_id != b.reward_id
    assert load(proc_a).reward_id == a.reward_id
