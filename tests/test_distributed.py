"""rdbench.distributed: sharding in-process; collectives and evaluate with 2 gloo processes.

Multi-process cases start ``python -m torch.distributed.run --standalone --nproc_per_node 2``
in a subprocess: either this file's ``__main__`` worker (collectives) or ``-m rdbench
evaluate`` (the real command line).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rdbench import distributed
from rdbench.errors import RdbenchError
from rdbench.metrics.stats import FeatureStats

TIMEOUT_S = 240


# ------------------------------------------------------------------------------ in-process


@pytest.mark.parametrize("n", [0, 1, 2, 7, 10, 11])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("block", [1, 3])
def test_shard_disjoint_complete_unpadded(n: int, world: int, block: int) -> None:
    items = [f"img{i}" for i in range(n)]
    parts = [distributed.shard(items, r, world, block) for r in range(world)]
    flat = [x for p in parts for x in p]
    assert sorted(flat) == sorted(items)  # complete
    assert len(flat) == len(set(flat)) == n  # disjoint, no padding or duplicates
    assert max(map(len, parts)) - min(map(len, parts)) <= block  # balanced to one block
    for r, part in enumerate(parts):  # item i goes to rank (i // block) mod world, in order
        indices = [items.index(x) for x in part]
        assert indices == sorted(indices)
        assert all((i // block) % world == r for i in indices)


def test_shard_rank_strided_example() -> None:
    assert distributed.shard(list(range(7)), 1, 3) == [1, 4]
    assert distributed.shard_positions(11, 1, 2, block=3) == [3, 4, 5, 9, 10]


@pytest.mark.parametrize(
    ("rank", "world", "block"), [(2, 2, 1), (-1, 2, 1), (0, 0, 1), (True, 2, 1), (0, 2, 0)]
)
def test_shard_rejects_bad_arguments(rank: int, world: int, block: int) -> None:
    with pytest.raises(RdbenchError, match="shard"):
        distributed.shard([1, 2, 3], rank, world, block)


def test_single_process_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(distributed, "_CONTEXT", None)
    ctx = distributed.context()
    assert (ctx.active, ctx.is_main, ctx.rank, ctx.world_size) == (False, True, 0, 1)
    assert distributed.share({"a": 1}) == {"a": 1}
    distributed.agree(None)
    with pytest.raises(RdbenchError, match="broken.png"):
        distributed.agree("broken.png is corrupt")
    pos, rows = distributed.gather_rows_to_rank0(np.arange(6.0).reshape(3, 2), [5, 1, 3])
    assert pos.tolist() == [1, 3, 5] and rows[:, 0].tolist() == [2.0, 4.0, 0.0]
    stats = FeatureStats(2).update(np.eye(2))
    assert distributed.all_reduce_stats(stats).count == 2


def test_bad_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "_CONTEXT", None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(RdbenchError, match="RANK < WORLD_SIZE"):
        distributed.context()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(RdbenchError, match="RANK='x'"):
        distributed.context()


def test_device_per_local_rank() -> None:
    ctx = distributed.DistContext(rank=3, world_size=4, local_rank=1, backend="gloo")
    assert ctx.device("cuda") == "cuda:1"
    assert ctx.device("cpu") == "cpu"
    assert ctx.device("cuda:0") == "cuda:0"  # an explicit index is the user's choice
    assert distributed.DistContext().device(None) is None


# ------------------------------------------------------------------------------ processes


def _launch(args: list[str], env_extra: dict[str, str], timeout: int = TIMEOUT_S):
    env = dict(os.environ, OMP_NUM_THREADS="1", **env_extra)
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    return subprocess.run(
        cmd + args, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _features_data(tmp_path: Path) -> tuple[Path, Path]:
    from imagegen import make_image_set
    from tiny_models import make_inception

    images = make_image_set(tmp_path / "set", n_prompts=3, seeds=range(3), size=(40, 40))
    return images, make_inception(tmp_path / "w")


def test_collectives_two_processes(tmp_path: Path) -> None:
    """gather (uneven, with a gap), float64 stats all-reduce, agree, share, extraction."""
    images, weights = _features_data(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    proc = _launch(
        [__file__, str(out)], {"RDBENCH_TEST_IMAGES": str(images), "RDBENCH_TEST_W": str(weights)}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # gather: rows in global order, position 4 (dropped on its rank) absent
    got = np.load(out / "gather.npz")
    expected_pos = [p for p in range(11) if p != 4]
    assert got["positions"].tolist() == expected_pos
    assert np.array_equal(got["rows"], _rows_for(np.array(expected_pos)))
    # float64 all-reduce of statistics equals the one-process statistics on every rank
    x = _stats_data()
    single = FeatureStats(x.shape[1]).update(x)
    for rank in range(2):
        merged = FeatureStats.from_arrays(dict(np.load(out / f"stats{rank}.npz")))
        assert merged.count == single.count
        np.testing.assert_allclose(merged.mean, single.mean, rtol=1e-12, atol=0)
        np.testing.assert_allclose(merged.covariance(), single.covariance(), rtol=1e-12, atol=0)
    # failures: the same error on both ranks, naming the rank and the file
    report = [json.loads((out / f"report{r}.json").read_text()) for r in range(2)]
    for r in range(2):
        assert report[r]["agree"] == "rank 1 of 2 failed: cannot read 'x/bad.png'"
        assert report[r]["share"] == {"from": 0}
    assert report[0]["shared_failure"] == "metrics broke"  # its own error, re-raised
    assert report[1]["shared_failure"] == "rank 0 of 2 failed: metrics broke"
    for r in range(2):
        assert report[r]["share"] == {"from": 0}
    # distributed extraction equals single-process extraction, in set order
    from rdbench.features import load_extractor
    from rdbench.features.extract import extract_features
    from rdbench.imageset import ImageSet

    ext = load_extractor("inception", weights=str(weights), device="cpu")
    one = extract_features(ImageSet.open(images), ext, batch_size=2, cache=False, progress=False)
    two = np.load(out / "features.npz")
    assert two["keys"].tolist() == one.keys
    assert np.array_equal(two["array"], one.array)  # same rows, same order, same bits
    assert int(two["n_computed"]) == len(one.keys)


# ------------------------------------------------------------------------------ evaluate


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """15 images per set (shards of 8 and 7), tiny Inception and DINOv2 models and a tiny
    aesthetic reward. Set metrics run on DINOv2 (d = 32): FID at Inception's d = 2048 costs
    seconds per eigendecomposition on a small CPU; the bad-image tests use Inception."""
    from imagegen import make_image_set
    from tiny_models import make_dinov2, make_inception
    from tiny_rewards import TINY_ARCH, make_aesthetic_mlp, make_open_clip_file

    root = tmp_path_factory.mktemp("dist")
    gen = make_image_set(root / "gen", 3, range(5), size=(40, 40))
    ref = make_image_set(root / "ref", 3, range(5), size=(40, 40), seed=1)
    w = root / "w"
    make_inception(w)
    args = [
        "evaluate", str(gen), "--reference", str(ref), "--extractor", "dinov2",
        "--weights", f"dinov2={make_dinov2(w / 'dinov2')}", "--reward", "aesthetic",
        "--weights", f"aesthetic={make_aesthetic_mlp(w / 'aesthetic')}",
        "--reward-option", f"aesthetic.arch={TINY_ARCH}",
        "--reward-option", f"aesthetic.clip_weights={make_open_clip_file(w, seed=1)}",
        "--batch-size", "2", "--bootstrap", "10", "--mean-resamples", "50", "--quiet",
    ]  # fmt: skip
    return SimpleNamespace(root=root, gen=gen, ref=ref, weights=w, args=args)


def _result_json(path: Path) -> dict:
    data = json.loads(path.read_text())
    data["provenance"].pop("created")  # the only field allowed to differ (a timestamp)
    return data


def test_evaluate_two_processes_equals_one(study, tmp_path: Path) -> None:
    from click.testing import CliRunner
    from tiny_rewards import register_tiny_arch

    from rdbench.cli import cli

    register_tiny_arch(study.weights)
    one = tmp_path / "one.json"
    run = CliRunner().invoke(cli, [*study.args, "--out", str(one)], catch_exceptions=False)
    assert run.exit_code == 0, run.output
    two = tmp_path / "two.json"
    home = tmp_path / "home2"  # own cache: the two processes compute every row themselves
    proc = _launch(
        [__file__, "cli", str(study.weights), *study.args, "--out", str(two)],
        {"RDBENCH_HOME": str(home)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == run.stdout  # the same report, printed once (by rank 0 only)
    a, b = _result_json(one), _result_json(two)
    assert a == b  # identical metrics, intervals, per-image rewards and counts
    assert a["setup"]["n_images"] == 15 and "fid/dinov2" in a["metrics"]
    assert any(k.startswith("reward/") for k in a["metrics"])
    assert len(list(home.glob("features/*/chunk-*.npz"))) >= 4  # each rank wrote its chunks


def test_bad_image_stops_every_rank_and_rerun_resumes(
    study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from rdbench.features import load_extractor
    from rdbench.features.extract import extract_features
    from rdbench.imageset import ImageSet

    images = Path(shutil.copytree(study.gen, tmp_path / "set"))
    bad = "p0002/4.png"  # position 14 of 15: rank 1's last item (blocks of 2), after 6 good
    good_bytes = (images / bad).read_bytes()
    (images / bad).write_bytes(b"this is not a png")
    home = tmp_path / "home"
    weights = f"inception={study.weights / 'inception-2015-12-05.pt'}"
    args = ["-m", "rdbench", "evaluate", str(images), "--extractor", "inception"]
    args += ["--weights", weights, "--batch-size", "2", "--metrics", "vendi", "--bootstrap", "0"]
    proc = _launch(args, {"RDBENCH_HOME": str(home)})
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("rdbench: error:")]
    # one line per rank that got to print before torchrun stopped the others; no traceback
    assert 1 <= len(errors) <= 2, proc.stderr[-3000:]
    for line in errors:
        assert "rank 1 of 2 failed" in line and bad in line
    # the other rank's rows and the failing rank's finished batches stay cached
    ext = load_extractor("inception", weights=weights.partition("=")[2], device="cpu")
    (images / bad).write_bytes(good_bytes)
    monkeypatch.setenv("RDBENCH_HOME", str(home))
    resumed = extract_features(ImageSet.open(images), ext, batch_size=2, progress=False)
    assert (resumed.n_cached, resumed.n_computed) == (14, 1)


def test_skip_bad_image_lists_it_once(study, tmp_path: Path) -> None:
    import shutil

    images = Path(shutil.copytree(study.gen, tmp_path / "set"))
    bad = "p0001/1.png"  # position 6: rank 1 (blocks of --batch-size 2)
    (images / bad).write_bytes(b"\x89PNG broken")
    out = tmp_path / "two.json"
    weights = f"inception={study.weights / 'inception-2015-12-05.pt'}"
    args = ["-m", "rdbench", "evaluate", str(images), "--extractor", "inception", "--quiet"]
    args += [
        "--batch-size", "2", "--weights", weights, "--on-error", "skip", "--metrics", "vendi",
        "--bootstrap", "0",
    ]  # fmt: skip
    args += ["--out", str(out)]
    proc = _launch(args, {"RDBENCH_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["setup"]["n_images"] == 14
    assert [(f["image_set"], f["key"]) for f in result["skipped"]] == [("generated", bad)]


def _rows_for(positions: np.ndarray) -> np.ndarray:
    return np.stack([positions * 1.5, -positions.astype(float), positions**2], axis=1)


def _stats_data() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.normal(size=(101, 6)) * rng.uniform(0.5, 3.0, size=6) + 40.0


def _worker(out: Path) -> None:  # runs on each rank under torchrun
    from rdbench.features import load_extractor
    from rdbench.imageset import ImageSet

    ctx = distributed.context()
    assert ctx.active and ctx.world_size == 2 and ctx.backend == "gloo"
    mine = np.array([p for p in distributed.shard(range(11), ctx.rank, 2) if p != 4])
    gathered = distributed.gather_rows_to_rank0(_rows_for(mine), mine)
    if ctx.is_main:
        np.savez(out / "gather.npz", positions=gathered[0], rows=gathered[1])
    else:
        assert gathered is None
    x = _stats_data()
    part = FeatureStats(x.shape[1]).update(x[distributed.shard(range(len(x)), ctx.rank, 2)])
    np.savez(out / f"stats{ctx.rank}.npz", **distributed.all_reduce_stats(part).to_arrays())
    report: dict[str, object] = {}
    try:
        distributed.agree("cannot read 'x/bad.png'" if ctx.rank == 1 else None)
    except distributed.DistributedError as exc:
        report["agree"] = str(exc)
    try:  # rank 0 fails outside a collective while rank 1 waits for its result
        if ctx.is_main:
            with distributed.failures_shared():
                raise RdbenchError("metrics broke")
        distributed.share(None)
    except RdbenchError as exc:
        report["shared_failure"] = str(exc)
    report["share"] = distributed.share({"from": ctx.rank})
    (out / f"report{ctx.rank}.json").write_text(json.dumps(report))
    ext = load_extractor("inception", weights=os.environ["RDBENCH_TEST_W"], device="cpu")
    images = ImageSet.open(os.environ["RDBENCH_TEST_IMAGES"])
    feats = distributed.distributed_extract(images, ext, batch_size=2, cache=False, progress=False)
    if ctx.is_main:
        np.savez(
            out / "features.npz",
            keys=np.array(feats.keys),
            array=feats.array,
            n_computed=feats.n_computed,
        )


def _cli(weights: Path, argv: list[str]) -> None:  # the real CLI, with the tiny arch known
    from tiny_rewards import register_tiny_arch

    from rdbench.cli import main

    register_tiny_arch(weights)
    main(argv)


if __name__ == "__main__":
    if sys.argv[1] == "cli":
        _cli(Path(sys.argv[2]), sys.argv[3:])
    else:
        _worker(Path(sys.argv[1]))
