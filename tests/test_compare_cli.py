"""`rdbench compare`, `rdbench demo`, the set-metric dispatcher and feature file I/O."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from rdbench.cli import cli
from rdbench.errors import RdbenchError
from rdbench.features_io import load_features, save_features
from rdbench.metrics.fid import fid_from_features
from rdbench.metrics.manifold import precision_recall
from rdbench.metrics.sets import MetricOptions, compute_set_metrics, parse_metric_names
from rdbench.synthetic import demo_sets


@pytest.fixture(scope="module")
def sets():
    return demo_sets(n=300, dim=16, seed=3)


def test_dispatcher_equals_the_metric_functions(sets):
    ref, gen = sets["reference"], sets["partial"]
    out = compute_set_metrics(ref, gen, "recall,fid,precision", MetricOptions(pr_k=4))
    assert list(out) == ["fid", "precision", "recall"]  # canonical order
    assert out["fid"] == fid_from_features(ref, gen)
    assert (out["precision"], out["recall"]) == precision_recall(ref, gen, k=4)


def test_synthetic_sets_order_as_designed(sets):
    rows = {
        n: compute_set_metrics(sets["reference"], sets[n], "fid,recall,vendi")
        for n in ("fresh", "partial", "collapsed")
    }
    assert rows["fresh"]["fid"] < rows["partial"]["fid"] < rows["collapsed"]["fid"]
    assert rows["fresh"]["recall"] > rows["partial"]["recall"] >= rows["collapsed"]["recall"]
    assert rows["fresh"]["vendi"] > rows["partial"]["vendi"] > rows["collapsed"]["vendi"]


@pytest.mark.parametrize("names", ["", "fid,bogus", ["nope"]])
def test_unknown_metric_names(names):
    with pytest.raises(RdbenchError, match="choose from"):
        parse_metric_names(names)


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_feature_files_round_trip(tmp_path, suffix):
    x = np.random.default_rng(0).standard_normal((5, 3))
    save_features(tmp_path / f"f{suffix}", x)
    assert np.array_equal(load_features(tmp_path / f"f{suffix}"), x)


def test_feature_file_errors(tmp_path):
    with pytest.raises(RdbenchError, match="does not exist"):
        load_features(tmp_path / "none.npy")
    (tmp_path / "junk.npy").write_bytes(b"garbage")
    with pytest.raises(RdbenchError, match="not a readable"):
        load_features(tmp_path / "junk.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(RdbenchError, match="obj.npy"):
        load_features(tmp_path / "obj.npy")
    np.savez(tmp_path / "two.npz", a=np.ones((3, 2)), b=np.ones((3, 2)))
    with pytest.raises(RdbenchError, match="name the feature array 'features'"):
        load_features(tmp_path / "two.npz")
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(RdbenchError, match="NaN"):
        load_features(tmp_path / "nan.npy")
    np.save(tmp_path / "flat.npy", np.ones(4))
    with pytest.raises(RdbenchError, match="2-D"):
        load_features(tmp_path / "flat.npy")


def test_compare_cli_json_and_table(tmp_path, sets):
    np.save(tmp_path / "ref.npy", sets["reference"])
    np.savez(tmp_path / "gen.npz", features=sets["collapsed"])
    runner = CliRunner()
    args = [
        "compare",
        str(tmp_path / "ref.npy"),
        str(tmp_path / "gen.npz"),
        "--metrics",
        "fid,recall,scd",
    ]
    res = runner.invoke(cli, [*args, "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output)
    expected = compute_set_metrics(sets["reference"], sets["collapsed"], "fid,recall,scd")
    assert payload["metrics"] == pytest.approx(expected, rel=1e-12)
    table = runner.invoke(cli, args)
    assert table.exit_code == 0 and "fid" in table.output and "scd" in table.output


def test_compare_cli_bad_input_is_one_line_no_traceback(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((10, 3)))
    np.save(tmp_path / "b.npy", np.ones((10, 4)))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rdbench",
            "compare",
            str(tmp_path / "a.npy"),
            str(tmp_path / "b.npy"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "feature dimensions differ" in proc.stderr


def test_demo_json_is_deterministic():
    runner = CliRunner()
    args = ["demo", "--n", "200", "--dim", "8", "--json"]
    first, second = runner.invoke(cli, args), runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert first.output == second.output
    rows = {r["set"]: r for r in json.loads(first.output)["rows"]}
    assert rows["collapsed"]["recall"] < rows["fresh"]["recall"]


def test_corrupt_npz_is_a_one_line_error(tmp_path):
    save_features(tmp_path / "f.npz", np.random.default_rng(0).normal(size=(20, 4)))
    raw = bytearray((tmp_path / "f.npz").read_bytes())
    start = raw.find(b"features.npy") + len("features.npy") + 100
    raw[start : start + 8] = b"\xff" * 8  # inside the stored array: a CRC mismatch
    (tmp_path / "bad.npz").write_bytes(bytes(raw))
    with pytest.raises(RdbenchError, match="bad.npz.*unreadable"):
        load_features(tmp_path / "bad.npz")
