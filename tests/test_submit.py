"""``rdbench submit`` and rdbench.submissions: every refusal, canonical writes, the store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_results import as_dict, make_result

from rdbench.cli import main
from rdbench.errors import RdbenchError
from rdbench.results import Result
from rdbench.submissions import (
    MAX_DEPTH,
    check_store,
    identity,
    load_store,
    submit,
    target_path,
    validate_bytes,
)


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


@pytest.fixture
def store(tmp_path) -> Path:
    return tmp_path / "store"


def test_submit_writes_canonical_file_under_suite(tmp_path, store):
    r = make_result()
    src = write(tmp_path / "in.json", json.dumps(as_dict(r), indent=None))  # not canonical
    target = submit(src, store)
    assert target == store.resolve() / "toy-suite" / f"draft-{r.short_hash()}.json"
    assert target.read_text() == r.to_json()
    results, rejected = load_store(store)
    assert [res for _, res in results] == [r] and rejected == []


def test_check_writes_nothing(tmp_path, store):
    src = make_result().save(tmp_path / "in.json")
    target = submit(src, store, check=True)
    assert not target.exists() and not store.exists()


def test_refuses_duplicate_hash_and_identity(tmp_path, store):
    submit(make_result().save(tmp_path / "a.json"), store)
    with pytest.raises(RdbenchError, match="already in the store"):
        submit(make_result().save(tmp_path / "b.json"), store)
    # Same method, strength, setup and submitter with other numbers: same board point.
    with pytest.raises(RdbenchError, match="already holds this method"):
        submit(make_result(fid=3.0).save(tmp_path / "c.json"), store)
    # Another strength or another submitter is a new point.
    submit(make_result(strength=1.0).save(tmp_path / "d.json"), store)
    submit(make_result(submitter="other").save(tmp_path / "e.json"), store)
    assert len(load_store(store)[0]) == 3
    assert identity(make_result()) != identity(make_result(strength=2.0))


def test_identity_ignores_float_spelling(tmp_path, store):
    submit(make_result(strength=0.0).save(tmp_path / "a.json"), store)
    with pytest.raises(RdbenchError, match="already holds this method"):
        submit(make_result(strength=-0.0, fid=3.0).save(tmp_path / "b.json"), store)
    one, one_f = as_dict(make_result()), as_dict(make_result(fid=3.0))
    one["method"]["params"], one_f["method"]["params"] = {"lr": 1}, {"lr": 1.0}
    submit(write(tmp_path / "c.json", json.dumps(one)), store / "p")
    with pytest.raises(RdbenchError, match="already holds this method"):
        submit(write(tmp_path / "d.json", json.dumps(one_f)), store / "p")


def test_check_of_a_stored_file_and_the_store_self_check(tmp_path, store):
    first = submit(make_result().save(tmp_path / "a.json"), store)
    second = submit(make_result(strength=1.0).save(tmp_path / "b.json"), store)
    assert submit(first, store, check=True) == first  # not its own duplicate
    assert check_store(store) == []
    # an edited file no longer carries its own hash; a copy under a new name is a duplicate
    edited = as_dict(make_result(strength=1.0, fid=4.0))
    second.write_text(Result.from_dict(edited).to_json())
    (store.resolve() / "toy-suite" / "draft-copy.json").write_text(first.read_text())
    problems = check_store(store)
    assert len(problems) == 3, problems
    assert any(str(second) in p and "its own hash" in p for p in problems)
    assert any("draft-copy.json" in p and "the same point as" in p for p in problems)


def _edited(**changes) -> str:
    data = as_dict(make_result())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = data
        for key in parents:
            node = node[key]
        node[last] = value
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (_edited(schema_version="rdbench.result/0"), "unknown schema version"),
        (_edited(notes="x" * 5000), "at most 2000"),
        (_edited(provenance__submitter="<script>alert(1)</script>" * 20), "at most 200"),
        (_edited(setup__prompt_suite="../../etc"), "pattern"),
        (_edited(method__name="a/b"), "pattern"),
        ('{"a": 1, "a": 2}', "duplicate key"),
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "nested deeper"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "valid dictionary"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_refuses_bad_documents(tmp_path, store, text, match):
    src = write(tmp_path / "bad.json", text)
    with pytest.raises(RdbenchError, match=match):
        submit(src, store, check=True)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_refuses_non_finite_numbers(tmp_path, store, literal):
    text = _edited().replace('"value": 10.0', f'"value": {literal}')
    assert literal in text
    with pytest.raises(RdbenchError, match="non-finite|infinity"):
        submit(write(tmp_path / "nan.json", text), store, check=True)


@pytest.mark.parametrize(
    ("key", "value"),
    [("recall/raw", 1.01), ("fid/raw", -3.0), ("reward/toy-reward", 1e400)],
)
def test_refuses_values_out_of_range(tmp_path, store, key, value):
    data = as_dict(make_result())
    data["metrics"][key] = {"value": value}
    text = json.dumps(data).replace("Infinity", "1e400")
    with pytest.raises(RdbenchError, match="outside its range|infinity"):
        submit(write(tmp_path / "r.json", text), store, check=True)


def test_refuses_oversize_before_parsing(tmp_path, store):
    big = write(tmp_path / "big.json", b"{" + b" " * (9 * 1024 * 1024) + b"}")
    with pytest.raises(RdbenchError, match="the limit is"):
        submit(big, store, check=True)
    small = make_result().save(tmp_path / "small.json")
    with pytest.raises(RdbenchError, match="the limit is 100"):
        submit(small, store, max_bytes=100)
    with pytest.raises(RdbenchError, match="the limit is"):
        validate_bytes(b"{}" * 60, max_bytes=100)


def test_refuses_a_suite_folder_that_escapes_the_store(tmp_path, store):
    outside = tmp_path / "outside"
    outside.mkdir()
    store.mkdir()
    os.symlink(outside, store / "toy-suite")
    with pytest.raises(RdbenchError, match="outside the store"):
        submit(make_result().save(tmp_path / "a.json"), store)
    assert list(outside.iterdir()) == []


def test_target_path_refuses_unsafe_names(store):
    r = make_result()  # model_copy skips validation, as a tampered object would
    unsafe = r.model_copy(update={"setup": r.setup.model_copy(update={"prompt_suite": ".."})})
    with pytest.raises(RdbenchError, match="not a safe name"):
        target_path(unsafe, store)


def test_load_store_lists_rejected_files(tmp_path, store):
    submit(make_result().save(tmp_path / "ok.json"), store)
    write(store / "toy-suite" / "broken.json", "{")
    results, rejected = load_store(store)
    assert len(results) == 1
    assert [r.path.name for r in rejected] == ["broken.json"]
    assert "not valid JSON" in rejected[0].reason


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_cli_submit_and_check(tmp_path, store, capsys):
    src = make_result().save(tmp_path / "r.json")
    code, out, _ = run_cli(["submit", "--check", "--store", str(store), str(src)], capsys)
    assert code == 0 and out.startswith("ok:") and not store.exists()
    code, out, _ = run_cli(["submit", "--store", str(store), str(src)], capsys)
    assert code == 0 and out.startswith("wrote")
    assert Result.load(out.split()[-1]) == make_result()
    code, _, err = run_cli(["submit", "--store", str(store), str(src)], capsys)
    assert code == 2 and err.startswith("rdbench: error:") and "already" in err
    assert len(err.strip().splitlines()) == 1
