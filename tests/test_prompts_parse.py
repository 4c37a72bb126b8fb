"""Prompt ids, the duplicate policy and the user file parsers."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from rdbench.errors import RdbenchError
from rdbench.prompts.parse import (
    Record,
    build_prompts,
    duplicate_groups,
    loose_key,
    normalise_text,
    read_delimited,
    read_user_file,
)


def _records(*texts: str, category: str | None = None) -> list[Record]:
    return [Record(text=t, category=category, where=f"row {i}") for i, t in enumerate(texts)]


def test_id_is_suite_plus_sha256_of_normalised_text():
    [p] = build_prompts("demo", _records("A  red\tcar. "))
    expected = hashlib.sha256(b"A red car.").hexdigest()[:12]
    assert p.prompt_id == f"demo-{expected}"
    assert re.fullmatch(r"demo-[0-9a-f]{12}", p.prompt_id)
    assert p.text == "A  red\tcar."  # the text given to models is not rewritten inside


def test_ids_do_not_depend_on_row_order_or_on_added_rows():
    texts = [f"prompt number {i}" for i in range(20)]
    ids = {p.text: p.prompt_id for p in build_prompts("s", _records(*texts))}
    shuffled = texts[::-1][:10] + ["a new prompt"] + texts[::-1][10:]
    again = {p.text: p.prompt_id for p in build_prompts("s", _records(*shuffled))}
    assert all(again[t] == ids[t] for t in texts)
    assert build_prompts("s", _records(*shuffled))[10].index == 10


def test_ids_depend_on_suite_name():
    a = build_prompts("one", _records("x"))[0].prompt_id
    b = build_prompts("two", _records("x"))[0].prompt_id
    assert a.split("-", 1)[1] == b.split("-", 1)[1] and a != b


def test_duplicates_error_by_default_and_name_rows():
    with pytest.raises(RdbenchError, match=r"more than once.*row 0, row 2"):
        build_prompts("s", _records("a cat", "a dog", "a  cat"))


def test_duplicates_keep_gives_distinct_ids_and_warns():
    with pytest.warns(UserWarning, match="1 exact duplicate"):
        prompts = build_prompts("s", _records("a cat", "a dog", "a cat"), duplicates="keep")
    assert len({p.prompt_id for p in prompts}) == 3
    assert prompts[0].prompt_id == build_prompts("s", _records("a cat"))[0].prompt_id


def test_duplicates_drop_keeps_first_occurrence():
    prompts = build_prompts(
        "s", _records("a cat", "a dog", "a cat", category="x"), duplicates="drop"
    )
    assert [p.text for p in prompts] == ["a cat", "a dog"]
    assert [p.index for p in prompts] == [0, 1]


def test_bad_duplicate_policy_and_empty_suite():
    with pytest.raises(RdbenchError, match="duplicates="):
        build_prompts("s", _records("a"), duplicates="ignore")  # type: ignore[arg-type]
    with pytest.raises(RdbenchError, match="no prompts"):
        build_prompts("s", [])
    with pytest.raises(RdbenchError, match="empty prompt at row 1"):
        build_prompts("s", _records("a", " \n"))


def test_near_duplicates_ignore_case_and_punctuation():
    texts = ["A blue cow.", "a blue cow", "A  blue, cow!", "a red cow"]
    assert duplicate_groups(texts) == []
    assert duplicate_groups(texts, loose=True) == [[0, 1, 2]]
    assert loose_key("Ｆｕｌｌ width") == "full width"
    assert normalise_text("e\u0301") == "\u00e9"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("p.txt", "a cat\n\n  a dog  \n"),
        ("p.csv", 'prompt,category\na cat,animals\n"a dog, sitting",animals\n'),
        ("p.tsv", "Prompt\tCategory\na cat\tanimals\na dog\tanimals\n"),
        ("p.jsonl", '{"prompt": "a cat", "category": "animals"}\n\n{"caption": "a dog"}\n'),
        ("p.json", '["a cat", "a dog"]'),
    ],
)
def test_user_file_formats(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    records = read_user_file(path)
    assert len(records) == 2
    assert records[0].text == "a cat"
    assert records[1].text.startswith("a dog")
    if name in ("p.csv", "p.tsv"):
        assert {r.category for r in records} == {"animals"}


def test_extra_columns_go_to_meta_and_quotes_stay_in_tsv(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text('prompt\tsource\nthe word "PEACE" on a wall\tme\n', encoding="utf-8")
    [record] = read_user_file(path)
    assert record.text == 'the word "PEACE" on a wall'
    assert record.meta == {"source": "me"}
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "x", "meta": {"a": 1}, "b": 2}) + "\n")
    assert read_user_file(path)[0].meta == {"a": 1, "b": 2}


def test_malformed_tsv_row_names_the_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("Prompt\tCategory\na cat\tanimals\na dog\n", encoding="utf-8")
    with pytest.raises(
        RdbenchError, match=r"bad.tsv:3: malformed row with 1 field\(s\), expected 2"
    ):
        read_user_file(path)


def test_wrong_header_is_refused(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text("Text\tKind\na\tb\n")
    with pytest.raises(RdbenchError, match="header is"):
        read_delimited(path, "\t", expected_header=("Prompt", "Category"))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("e.csv", "prompt,category\n  ,animals\n", r"e.csv:2: empty prompt"),
        ("e.jsonl", '{"prompt": ""}\n', r"e.jsonl:1: empty prompt"),
        ("e.json", '["ok", " "]', r"e.json\[1\]: empty prompt"),
        ("e.jsonl", "{not json}\n", r"e.jsonl:1: not valid JSON"),
        ("e.jsonl", '["a"]\n', "expected a JSON object"),
        ("e.csv", "title,category\na,b\n", "no prompt column"),
        ("e.json", '{"a": 1}', "JSON list"),
        ("e.xlsx", "whatever", "unknown prompt file type '.xlsx'"),
        ("e.csv", "", "empty file"),
    ],
)
def test_bad_user_files_give_clear_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(RdbenchError, match=message):
        read_user_file(path)


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(RdbenchError, match="does not exist"):
        read_user_file(tmp_path / "nope.txt")
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(RdbenchError, match="not valid UTF-8"):
        read_user_file(path)
