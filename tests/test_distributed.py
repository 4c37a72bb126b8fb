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

import numpy as np
import pytest

from rdbench import distributed
from rdbench.errors import RdbenchError
from rdbench.metrics.stats import FeatureStats

TIMEOUT_S = 240


# ------------------------------------------------------------------------------ in-process


@pytest.mark.parametrize("n", [0, 1, 2, 7, 10, 11])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shard_disjoint_complete_unpadded(n: int, world: int) -> None:
    items = [f"img{i}" for i in range(n)]
    parts = [distributed.shard(items, r, world) for r in range(world)]
    flat = [x for p in parts for x in p]
    assert sorted(flat) == sorted(items)  # complete
    assert len(flat) == len(set(flat)) == n  # disjoint, no padding or duplicates
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
    for r, part in enumerate(parts):  # rank-strided: item i goes to rank i mod world
        assert all(items.index(x) % world == r for x in part)


@pytest.mark.parametrize(("rank", "world"), [(2, 2), (-1, 2), (0, 0), (True, 2)])
def test_shard_rejects_bad_rank(rank: int, world: int) -> None:
    with pytest.raises(RdbenchError, match="shard"):
        distributed.shard([1, 2, 3], rank, world)


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


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
