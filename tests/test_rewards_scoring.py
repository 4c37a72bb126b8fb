"""score_imageset (cache, errors, prompts) and the ``rdbench rewards`` / ``rdbench score`` CLI."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_rewards import TINY_ARCH, make_aesthetic_mlp, make_hpsv2, make_open_clip_file

import rdbench.rewards as R
from rdbench.cli import main
from rdbench.errors import RdbenchError
from rdbench.imageset import ImageSet
from rdbench.rewards.cache import ScoreCache

PROMPTS = {"p0": "the cat", "p1": "an apple"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_scoring")
    return {
        "hpsv2": make_hpsv2(root),
        "clip": make_open_clip_file(root, seed=1),
        "mlp": make_aesthetic_mlp(root),
    }


@pytest.fixture(scope="module")
def hps(files):
    return R.load("hpsv2", device="cpu", weights=files["hpsv2"], arch=TINY_ARCH)


def _write_set(root, *, manifest: bool = True, corrupt: bool = False):
    rng = np.random.default_rng(0)
    lines = []
    for pid in PROMPTS:
        for seed in range(3):
            (root / pid).mkdir(parents=True, exist_ok=True)
            size = (32 + 8 * seed, 40)
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(
                root / pid / f"{seed}.png"
            )
            lines.append(
                {
                    "path": f"{pid}/{seed}.png",
                    "prompt_id": pid,
                    "prompt": PROMPTS[pid],
                    "seed": seed,
                }
            )
    if corrupt:
        (root / "p1" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    if manifest:
        (root / "manifest.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return root


def test_scores_equal_direct_scoring_and_come_back_from_cache(tmp_path, hps):
    image_set = ImageSet.open(_write_set(tmp_path / "set"))
    first = R.score_imageset(image_set, hps, batch_size=4, progress=False)
    direct = hps.score(
        [image_set.load(it) for it in image_set.items], [it.prompt for it in image_set.items]
    )
    assert first.keys == [it.key for it in image_set.items]
    np.testing.assert_allclose(first.scores, direct, rtol=1e-6)
    assert first.cached == 0 and first.skipped == []
    again = R.score_imageset(image_set, hps, batch_size=2, progress=False)
    assert again.cached == len(image_set.items)
    np.testing.assert_array_equal(again.scores, first.scores)
    assert len(ScoreCache(hps.reward_id)) == len(image_set.items)


def test_cache_key_includes_prompt_and_reward(tmp_path, hps, files):
    root = _write_set(tmp_path / "set")
    first = R.score_imageset(ImageSet.open(root), hps, progress=False)
    text = (root / "manifest.jsonl").read_text().replace("the cat", "a dog")
    (root / "manifest.jsonl").write_text(text)
    changed = R.score_imageset(ImageSet.open(root), hps, progress=False)
    assert changed.cached == 3  # only the "an apple" images are reused
    assert not np.allclose(changed.scores[:3], first.scores[:3])
    v20 = R.load("hpsv2:v2.0", device="cpu", weights=files["hpsv2"], arch=TINY_ARCH)
    assert v20.reward_id != hps.reward_id
    assert R.score_imageset(ImageSet.open(root), v20, progress=False).cached == 0


def test_corrupt_cache_chunk_is_rebuilt(tmp_path, hps):
    image_set = ImageSet.open(_write_set(tmp_path / "set"))
    first = R.score_imageset(image_set, hps, progress=False)
    chunks = list(ScoreCache(hps.reward_id).folder.glob("chunk-*.npz"))
    assert len(chunks) == 1
    chunks[0].write_bytes(chunks[0].read_bytes()[:40])  # torn write
    with pytest.warns(UserWarning, match="corrupt"):
        again = R.score_imageset(image_set, hps, progress=False)
    assert again.cached == 0
    np.testing.assert_array_equal(again.scores, first.scores)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert R.score_imageset(image_set, hps, progress=False).cached == 6


def test_bad_images_raise_or_are_skipped(tmp_path, hps):
    image_set = ImageSet.open(_write_set(tmp_path / "set", corrupt=True))
    with pytest.raises(RdbenchError, match="p1/2.png"):
        R.score_imageset(image_set, hps, cache=False, progress=False)
    result = R.score_imageset(image_set, hps, cache=False, on_error="skip", progress=False)
    assert [k for k, _ in result.skipped] == ["p1/2.png"]
    assert len(result.keys) == 5 and "p1/2.png" not in result.keys


def test_set_without_prompts(tmp_path, hps, files):
    image_set = ImageSet.open(_write_set(tmp_path / "set", manifest=False))
    with pytest.raises(RdbenchError, match="no manifest.jsonl.*aesthetic"):
        R.score_imageset(image_set, hps, progress=False)
    aesthetic = R.load(
        "aesthetic", device="cpu", weights=files["mlp"], arch=TINY_ARCH, clip_weights=files["clip"]
    )
    result = R.score_imageset(image_set, aesthetic, progress=False)
    assert len(result.scores) == 6 and np.isfinite(result.scores).all()


def test_cli_rewards_list(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["rewards", "list"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("pickscore", "hpsv2", "imagereward", "clipscore", "aesthetic"):
        assert f"{name}:" in out
    assert "xswu/HPSv2" in out and "v2.1 (default)" in out and "NOT AVAILABLE" in out


def test_cli_score_writes_jsonl(tmp_path, files, hps, capsys, monkeypatch):
    # the CLI sets RDBENCH_FILE_<NAME> for --weights entries; let monkeypatch restore it
    monkeypatch.setenv("RDBENCH_FILE_CLIP_VIT_L_14_OPENAI", "unset-by-test")
    root = _write_set(tmp_path / "set")
    out = tmp_path / "scores.jsonl"
    args = [
        "score",
        str(root),
        "--reward",
        "hpsv2,aesthetic",
        "--out",
        str(out),
        "--weights",
        f"hpsv2={files['hpsv2']}",
        "--weights",
        f"aesthetic={files['mlp']}",
        "--weights",
        f"clip-vit-l-14-openai={files['clip']}",
        "--option",
        f"hpsv2.arch={TINY_ARCH}",
        "--option",
        f"aesthetic.arch={TINY_ARCH}",
        "--device",
        "cpu",
        "--batch-size",
        "4",
    ]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["prompt_id"], r["seed"]) for r in rows] == [
        (p, s) for p in PROMPTS for s in range(3)
    ]
    expected = R.score_imageset(ImageSet.open(root), hps, progress=False).scores
    np.testing.assert_allclose([r["hpsv2"] for r in rows], expected, rtol=1e-6)
    assert all(isinstance(r["aesthetic"], float) for r in rows)


def test_cli_score_errors_are_one_line(tmp_path, capsys):
    root = _write_set(tmp_path / "set", manifest=False)
    with pytest.raises(SystemExit) as exc:
        main(["score", str(root), "--reward", "hpsv2", "--weights", "nope=/x"])
    assert exc.value.code == 2
    assert "neither a requested reward" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["score", str(root), "--reward", "imagereward"])
    assert exc.value.code == 2
    assert "not available" in capsys.readouterr().err


def test_score_tensor_training_step_moves_the_reward(hps):
    """A few gradient-ascent steps on the pixels raise the differentiable HPSv2 score."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, 40, 40, requires_grad=True)
    start = hps.score_tensor(x, "the cat").item()
    opt = torch.optim.Adam([x], lr=0.02)
    for _ in range(5):
        opt.zero_grad()
        (-hps.score_tensor(x.clamp(0, 1), "the cat")).sum().backward()
        opt.step()
    assert hps.score_tensor(x.clamp(0, 1), "the cat").item() > start
