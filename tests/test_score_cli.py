"""``rdbench score --option REWARD.KEY=`` (empty value) and the reward id on stderr."""

from __future__ import annotations

import json

import numpy as np
import pytest
from imagegen import make_image_set
from tiny_rewards import TINY_ARCH, make_open_clip_file

import rdbench.rewards as R
from rdbench.cli import main
from rdbench.imageset import ImageSet


def test_empty_option_value_turns_the_clipscore_prefix_off(tmp_path, capsys):
    clip = make_open_clip_file(tmp_path, seed=1)
    root = make_image_set(tmp_path / "set", 2, [0], size=(40, 40))
    out = tmp_path / "scores.jsonl"
    args = ["score", str(root), "--reward", "clipscore", "--out", str(out), "--device", "cpu"]
    args += ["--weights", f"clipscore={clip}", "--option", f"clipscore.arch={TINY_ARCH}"]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--option", "clipscore.prefix="])
    err = capsys.readouterr().err
    assert exc.value.code == 0, err
    bare = R.load("clipscore", device="cpu", weights=clip, arch=TINY_ARCH, prefix="")
    expected = R.score_imageset(ImageSet.open(root), bare, cache=False, progress=False).scores
    got = [json.loads(line)["clipscore"] for line in out.read_text().splitlines()]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert bare.reward_id in err

    with pytest.raises(SystemExit) as exc:  # an empty NAME is still refused
        main([*args, "--option", "=x"])
    assert exc.value.code == 2 and "NAME=VALUE" in capsys.readouterr().err
