"""Generation plans: pairing by (prompt_id, seed), the manifest round trip, bad plan lines."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from rdbench.errors import RdbenchError
from rdbench.imageset import MANIFEST_NAME, ImageSet, pair, parse_manifest
from rdbench.prompts.parse import Record, build_prompts
from rdbench.prompts.plan import PLAN_FIELDS, make_plan, read_plan, write_plan


@pytest.fixture
def prompts():
    records = [
        Record(text="a red bus", category="vehicles", challenge="Basic", note="n"),
        Record(text='the word "HI"', category=None, meta={"source": "me"}),
        Record(text="ein Straßencafé", category="places"),
    ]
    return build_prompts("demo", records)


def test_plan_lines_fields_and_seeds(prompts):
    lines = make_plan(prompts, images_per_prompt=3, seed=10)
    assert len(lines) == 9
    assert [line["seed"] for line in lines] == [10, 11, 12] * 3
    for line in lines:
        assert list(line) == [k for k in PLAN_FIELDS if k in line]
        assert line["path"] == f"{line['prompt_id']}/{line['seed']}.png"
    first, second = lines[0], lines[3]
    assert first["category"] == "vehicles" and "category" not in second
    assert first["meta"] == {"suite": "demo", "index": 0, "challenge": "Basic", "note": "n"}
    assert second["meta"] == {"suite": "demo", "index": 1, "source": "me"}
    assert len({(line["prompt_id"], line["seed"]) for line in lines}) == 9


def test_plan_is_deterministic_and_pairs_methods(prompts):
    a = make_plan(prompts, images_per_prompt=2, seed=0)
    b = make_plan(list(prompts), images_per_prompt=2, seed=0)
    assert a == b
    fewer = make_plan(prompts[:2], images_per_prompt=2, seed=0)
    assert fewer == a[:4]  # a prompt's lines don't depend on the other prompts


def test_write_read_round_trip(tmp_path, prompts):
    lines = make_plan(prompts, images_per_prompt=2, seed=5)
    path = tmp_path / "plan.jsonl"
    write_plan(lines, path)
    assert read_plan(path) == lines
    buffer = io.StringIO()
    write_plan(lines, buffer)
    assert buffer.getvalue() == path.read_text(encoding="utf-8")
    assert "Straßencafé" in buffer.getvalue()  # UTF-8, not \\u escapes


def test_plan_is_a_valid_image_set_manifest(tmp_path, prompts):
    """A folder filled from the plan, with the plan as manifest, opens as a paired set."""
    lines = make_plan(prompts, images_per_prompt=2, seed=0)
    items = parse_manifest("".join(json.dumps(x) + "\n" for x in lines).encode(), "plan")
    assert [(i.key, i.prompt_id, i.prompt, i.seed) for i in items] == [
        (x["path"], x["prompt_id"], x["prompt"], x["seed"]) for x in lines
    ]
    sets = []
    for method in ("base", "finetuned"):
        root = tmp_path / method
        for line in lines:
            (root / line["path"]).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (line["seed"] * 40, 0, 0)).save(root / line["path"])
        write_plan(lines, root / MANIFEST_NAME)
        sets.append(ImageSet.open(root))
    assert len(sets[0].items) == len(lines)
    pairing = pair(sets[0], sets[1])
    assert pairing.n_matched == len(lines) and not pairing.only_a and not pairing.only_b


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"path": "a/0.png", "prompt_id": "a", "prompt": "x"}', r"missing field\(s\) seed"),
        (
            '{"path": "a/0.png", "prompt_id": "a", "prompt": "x", "seed": true}',
            "'seed' must be int",
        ),
        ('{"path": "/a/0.png", "prompt_id": "a", "prompt": "x", "seed": 0}', "must be relative"),
        ('{"path": "../0.png", "prompt_id": "a", "prompt": "x", "seed": 0}', "points outside"),
        ('{"path": "a/0.png", "prompt_id": "a", "prompt": "", "seed": 0}', "non-empty"),
        ('{"path": "a/0.png", "prompt_id": "a", "prompt": "x", "seed": 0, "x": 1}', "unknown"),
        (
            '{"path": "a/0.png", "prompt_id": "a", "prompt": "x", "seed": 0, "meta": 1}',
            "'meta' must be dict",
        ),
        ("[1]", "JSON object"),
        ("{oops", "invalid JSON"),
    ],
)
def test_read_plan_rejects_bad_lines(tmp_path, line, message):
    path = tmp_path / "plan.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(RdbenchError, match=message):
        read_plan(path)


def test_read_plan_rejects_duplicate_pairs_and_missing_file(tmp_path):
    line = '{"path": "a/0.png", "prompt_id": "a", "prompt": "x", "seed": 0}\n'
    path = tmp_path / "plan.jsonl"
    path.write_text(line + line.replace("a/0.png", "b/0.png"))
    with pytest.raises(
        RdbenchError, match=r"prompt_id 'a', seed 0; \(prompt_id, seed\) must be unique"
    ):
        read_plan(path)
    with pytest.raises(RdbenchError, match="does not exist"):
        read_plan(tmp_path / "none.jsonl")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"images_per_prompt": 0}, ">= 1"),
        ({"images_per_prompt": 2.0}, "integer"),
        ({"images_per_prompt": 1, "seed": -1}, "non-negative"),
    ],
)
def test_make_plan_bad_arguments(prompts, kwargs, message):
    with pytest.raises(RdbenchError, match=message):
        make_plan(prompts, **kwargs)


def test_make_plan_refuses_empty_selection():
    with pytest.raises(RdbenchError, match="empty"):
        make_plan([], images_per_prompt=1)
