"""``rdbench prompts list|show|stats`` and ``rdbench plan``."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from rdbench.cli import cli, main
from rdbench.prompts import load_suite, make_plan, read_plan

HPSV2_FIXTURE = Path(__file__).parent / "fixtures" / "hpsv2"


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "mine.tsv"
    rows = [f"prompt {i}\t{'ab'[i % 2]}" for i in range(20)]
    path.write_text("prompt\tcategory\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_list_names_every_suite():
    rows = json.loads(_run("prompts", "list", "--json"))
    assert {r["suite"] for r in rows} >= {"partiprompts", "hpsv2", "drawbench", "pickapic", "file"}
    assert next(r for r in rows if r["suite"] == "partiprompts")["license"] == "Apache-2.0"
    assert "partiprompts" in _run("prompts", "list")


def test_show_matches_the_python_api(user_file):
    out = _run("prompts", "show", "file", "--path", str(user_file), "--split", "val", "--json")
    shown = [json.loads(line) for line in out.splitlines()]
    expected = load_suite("file", path=user_file, split="val")
    assert [s["prompt_id"] for s in shown] == [p.prompt_id for p in expected]
    text = _run("prompts", "show", "file", "--path", str(user_file), "--category", "a")
    assert len(text.splitlines()) == 10 and all("\ta\t" in line for line in text.splitlines())


def test_stats_counts(user_file):
    with pytest.warns(UserWarning):
        out = _run("prompts", "stats", "hpsv2", "--path", str(HPSV2_FIXTURE), "--json")
    stats = json.loads(out)
    assert stats["categories"] == {"paintings": 5, "anime": 4, "concept-art": 3, "photo": 3}
    assert len(stats["near_duplicate_groups"]) == 1 and len(stats["sources"]) == 4
    table = _run("prompts", "stats", "file", "--path", str(user_file), "--limit", "6")
    assert "6 prompts" in table and "near-duplicate groups" in table


def test_plan_command_equals_make_plan(user_file, tmp_path):
    out = tmp_path / "plan.jsonl"
    args = ["plan", "--suite", "file", "--path", str(user_file), "--images-per-prompt", "4"]
    _run(*args, "--seed", "3", "--limit", "5", "--out", str(out))
    expected = make_plan(load_suite("file", path=user_file, limit=5), images_per_prompt=4, seed=3)
    assert read_plan(out) == expected
    stdout = _run(*args, "--seed", "3", "--limit", "5")
    assert [json.loads(line) for line in stdout.splitlines()] == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prompts", "show", "nosuch"], "unknown prompt suite 'nosuch'"),
        (["prompts", "show", "drawbench"], "RDBENCH_FILE_DRAWBENCH"),
        (["plan", "--suite", "file", "--images-per-prompt", "2"], "needs a prompt file"),
        (["prompts", "stats", "pickapic"], "pickapic_v1_no_images"),
    ],
)
def test_errors_are_one_clean_message_and_exit_2(capsys, args, message):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("rdbench: error:") and message in err and "Traceback" not in err


def test_every_option_has_help():
    prompts = cli.commands["prompts"]
    for command in (cli.commands["plan"], *prompts.commands.values()):
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.help, f"{command.name} {param.opts} has no help text"
