"""``python -m baselines demo --quick``: runs end to end and writes valid rdbench results."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from baselines.cli import cli
from rdbench.results import Result

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    (out / "results").mkdir()
    (out / "results" / "draft+kl-99-from-an-older-run.json").write_text("{}")  # must not stay
    result = CliRunner().invoke(cli, ["demo", "--quick", "--out", str(out), "--no-progress"])
    return out, result


def test_quick_demo_writes_its_outputs(demo_run):
    out, run = demo_run
    assert run.exit_code == 0, run.output
    assert "method" in run.output and "draft+aig" in run.output and "hypervolume" in run.output
    for png in ("frontier.png", "lemma1.png", "ring.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lemma1"][0]["step"] == 0
    # Lemma 1 in the quick run: coverage falls from every mode to (nearly) one
    assert summary["lemma1"][0]["mode_coverage"] == 1.0
    assert summary["lemma1"][-1]["mode_coverage"] <= 0.25
    assert summary["lemma1"][-1]["cov_trace"] < 0.2 * summary["lemma1"][0]["cov_trace"]
    assert set(summary["dominance"]) == {"recall/raw", "mode_entropy", "fid/raw"}


def test_result_files_validate_against_the_schema(demo_run):
    out, run = demo_run
    files = sorted((out / "results").glob("*.json"))
    summary = json.loads((out / "summary.json").read_text())
    assert len(files) == len(summary["points"]) >= 7
    labels = set()
    for path in files:
        res = Result.load(path)  # the submission validator: schema, ranges, canonical JSON
        assert res.toy and res.setup.prompt_suite == "toy"
        assert {"reward/toy-peak", "recall/raw", "fid/raw", "mode_entropy"} <= set(res.metrics)
        for value in res.metrics.values():
            assert value.low is not None and value.low <= value.high
        labels.add(res.method.label)
    assert {"base", "draft", "draft+kl", "draft+lora-scale", "draft+aig", "draft-lv"} == labels
    base = Result.load(out / "results" / "base.json")
    assert base.metrics["fid/raw"].value == pytest.approx(0.0, abs=1e-9)  # base vs itself
    assert base.metrics["recall/raw"].value == 1.0


def test_demo_refuses_bad_options(tmp_path):
    run = CliRunner().invoke(cli, ["demo", "--seed", "x", "--out", str(tmp_path)])
    assert run.exit_code == 2
