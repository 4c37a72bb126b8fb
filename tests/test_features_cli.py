"""``rdbench cache info|clear`` on a cache filled through the real extraction."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from imagegen import make_plain_folder
from tiny_models import make_inception

from rdbench.cli import cli, main
from rdbench.features import load_extractor
from rdbench.features.extract import extract_features
from rdbench.imageset import ImageSet


@pytest.fixture
def filled(tmp_path):
    ext = load_extractor("inception", weights=str(make_inception(tmp_path / "w")), device="cpu")
    folder = make_plain_folder(tmp_path / "imgs", 3, size=(32, 32))
    extract_features(ImageSet.open(folder), ext, progress=False)
    return ext


def test_info_lists_namespace(filled):
    res = CliRunner().invoke(cli, ["cache", "info", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    [ns] = data["namespaces"]
    assert ns["extractor"] == "inception" and ns["entries"] == 3 and ns["dim"] == 2048
    assert ns["namespace"].startswith(filled.id)
    table = CliRunner().invoke(cli, ["cache", "info"])
    assert "inception" in table.output and "entries" in table.output


def test_clear_asks_and_filters(filled, capsys):
    runner = CliRunner()
    res = runner.invoke(cli, ["cache", "clear"], input="n\n")
    assert res.exit_code != 0
    assert json.loads(runner.invoke(cli, ["cache", "info", "--json"]).output)["namespaces"]
    with pytest.raises(SystemExit) as exit_info:  # through the entry point: one-line error
        main(["cache", "clear", "--extractor", "clip", "--yes"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert "rdbench: error: no cache namespace of 'clip'; cached: inception" in err
    assert json.loads(runner.invoke(cli, ["cache", "info", "--json"]).output)["namespaces"]
    res = runner.invoke(cli, ["cache", "clear", "--yes"])
    assert res.exit_code == 0 and "removed 1" in res.output
    assert json.loads(runner.invoke(cli, ["cache", "info", "--json"]).output)["namespaces"] == []
    assert "(empty)" in runner.invoke(cli, ["cache", "info"]).output


def test_help():
    res = CliRunner().invoke(cli, ["cache", "--help"])
    assert res.exit_code == 0 and "sha256" in res.output and "clear" in res.output
