"""Suite loaders: the real files' published counts, checksums, overrides and offline errors."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from rdbench import hub
from rdbench.errors import RdbenchError
from rdbench.prompts import SUITES, load_suite
from rdbench.prompts.parse import duplicate_groups
from rdbench.prompts.splits import apportion
from rdbench.prompts.suites import DRAWBENCH_FILE, PARTI_FILE

HPSV2_FIXTURE = Path(__file__).parent / "fixtures" / "hpsv2"

# Published counts (../shared/data/README.md; the PartiPrompts and DrawBench papers).
PARTI_CATEGORIES = {
    "Animals": 314, "Artifacts": 287, "World Knowledge": 214, "People": 177,
    "Outdoor Scenes": 131, "Illustrations": 124, "Vehicles": 104, "Food & Beverage": 74,
    "Arts": 66, "Abstract": 51, "Produce & Plants": 50, "Indoor Scenes": 40,
}  # fmt: skip
PARTI_CHALLENGES = {
    "Fine-grained Detail": 312, "Basic": 272, "Simple Detail": 232, "Style & Format": 206,
    "Imagination": 150, "Complex": 113, "Writing & Symbols": 91, "Quantity": 90,
    "Perspective": 70, "Linguistic Structures": 61, "Properties & Positioning": 35,
}  # fmt: skip
DRAWBENCH_CATEGORIES = {
    "Reddit": 38, "Colors": 25, "Text": 21, "DALL-E": 20, "Descriptions": 20,
    "Positional": 20, "Counting": 19, "Conflicting": 10, "Gary Marcus et al.": 10,
    "Misspellings": 10, "Rare Words": 7,
}  # fmt: skip


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()[1:]


@pytest.fixture
def parti(shared_data):
    return shared_data / "PartiPrompts.tsv"


@pytest.fixture
def drawbench(shared_data):
    return shared_data / "DrawBench.csv"


def test_partiprompts_published_counts(parti):
    suite = load_suite("partiprompts", path=parti)
    assert len(suite) == 1632
    assert suite.category_counts() == PARTI_CATEGORIES
    assert suite.challenge_counts() == PARTI_CHALLENGES
    assert len({p.prompt_id for p in suite}) == 1632
    assert suite.sources[0].sha256 == PARTI_FILE.sha256 and suite.sources[0].verified
    # quotes inside prompts survive (the TSV is read with quoting off)
    raw_lines = parti.read_text(encoding="utf-8").splitlines()[1:]
    assert sum('"' in p.text for p in suite) == sum(
        '"' in line.split("\t")[0] for line in raw_lines
    )
    assert sum(p.note is not None for p in suite) == sum(
        bool(line.split("\t")[3]) for line in raw_lines
    )


def test_drawbench_published_counts(drawbench):
    suite = load_suite("drawbench", path=drawbench)
    assert len(suite) == 200
    assert suite.category_counts() == DRAWBENCH_CATEGORIES
    assert suite.challenge_counts() == {}
    assert not suite[0].text.startswith("\ufeff")
    assert suite.sources[0].sha256 == DRAWBENCH_FILE.sha256 and suite.sources[0].verified


def test_real_files_duplicate_figures_in_data_cards(parti, drawbench):
    """The counts stated in data_cards/*.md: no exact duplicates, one near-duplicate pair."""
    parti_texts = [p.text for p in load_suite("partiprompts", path=parti)]
    draw_texts = [p.text for p in load_suite("drawbench", path=drawbench)]
    assert duplicate_groups(parti_texts) == [] and duplicate_groups(draw_texts) == []
    [pair] = duplicate_groups(parti_texts, loose=True)
    assert parti_texts[pair[0]].rstrip(".") == parti_texts[pair[1]].rstrip(".")
    assert duplicate_groups(draw_texts, loose=True) == []
    groups = duplicate_groups(parti_texts + draw_texts, loose=True)
    [cross] = [g for g in groups if g[-1] >= len(parti_texts)]
    assert len(groups) == 2 and cross[0] < len(parti_texts) <= cross[1]
    assert duplicate_groups(parti_texts + draw_texts) == []
    words = sorted(len(t.split()) for t in parti_texts)
    assert (words[0], words[len(words) // 2], words[-1]) == (1, 8, 67)
    words = sorted(len(t.split()) for t in draw_texts)
    assert (words[0], words[len(words) // 2], words[-1]) == (1, 9, 51)
    assert sum(p != p.strip() for p in (line.split("\t")[0] for line in _lines(parti))) == 10


def test_ids_stable_across_reloads_sources_and_row_order(parti, drawbench, tmp_path, monkeypatch):
    first = {p.text: p.prompt_id for p in load_suite("partiprompts", path=parti)}
    load_suite("drawbench", path=drawbench)  # another suite in between changes nothing
    monkeypatch.setenv(PARTI_FILE.env_var, str(parti))
    again = {p.text: p.prompt_id for p in load_suite("partiprompts")}
    assert again == first
    lines = parti.read_text(encoding="utf-8").splitlines()
    reordered = tmp_path / "reordered.tsv"
    reordered.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n", encoding="utf-8")
    with pytest.warns(UserWarning, match="not the published"):
        shuffled = load_suite("partiprompts", path=reordered)
    assert not shuffled.sources[0].verified
    assert {p.text: p.prompt_id for p in shuffled} == first


def test_cached_file_is_used_and_a_wrong_checksum_is_refused(parti):
    cached = hub.cache_path(PARTI_FILE)
    cached.parent.mkdir(parents=True)
    shutil.copy(parti, cached)
    suite = load_suite("partiprompts")
    assert suite.sources[0].location == str(cached) and len(suite) == 1632
    cached.write_bytes(parti.read_bytes().replace(b"bond", b"bone", 1))
    with pytest.raises(RdbenchError, match=f"expected {PARTI_FILE.sha256}"):
        load_suite("partiprompts")
    assert not cached.exists()


def test_offline_without_cache_says_what_to_download_and_where():
    with pytest.raises(RdbenchError) as info:
        load_suite("drawbench")
    message = str(info.value)
    assert DRAWBENCH_FILE.url in message
    assert str(hub.cache_path(DRAWBENCH_FILE)) in message
    assert "--path" in message and DRAWBENCH_FILE.env_var in message


def test_hpsv2_fixture_folder():
    with pytest.warns(UserWarning, match="1 exact duplicate"):
        suite = load_suite("hpsv2", path=HPSV2_FIXTURE)
    expected = {
        style: len(json.loads((HPSV2_FIXTURE / f"{style}.json").read_text()))
        for style in ("anime", "concept-art", "paintings", "photo")
    }
    assert Counter(p.category for p in suite) == expected
    assert len({p.prompt_id for p in suite}) == len(suite)
    assert [s.location for s in suite.sources] == [
        str(HPSV2_FIXTURE / f"{s}.json") for s in ("anime", "concept-art", "paintings", "photo")
    ]
    assert not any(s.verified for s in suite.sources)  # no published sha256 for HPSv2 files
    with pytest.warns(UserWarning):
        assert load_suite("hpsv2", path=HPSV2_FIXTURE, split="test").prompts == suite.prompts


def test_hpsv2_path_must_be_a_folder_and_files_are_named():
    with pytest.raises(RdbenchError, match="must be a folder holding anime.json"):
        load_suite("hpsv2", path=HPSV2_FIXTURE / "anime.json")
    with pytest.raises(RdbenchError, match="hpsv2-anime"):
        load_suite("hpsv2")


def test_pickapic_offline_error_is_clear():
    with pytest.raises(RdbenchError, match="pickapic_v1_no_images.*not available") as info:
        load_suite("pickapic")
    assert "--path" in str(info.value)


def test_pickapic_local_captions_are_deduplicated_and_split(tmp_path):
    path = tmp_path / "captions.jsonl"
    captions = [f"caption {i % 40}" for i in range(100)]
    path.write_text("".join(json.dumps({"caption": c}) + "\n" for c in captions))
    suite = load_suite("pickapic", path=path)
    assert len(suite) == 40
    parts = [load_suite("pickapic", path=path, split=s, seed=4) for s in ("train", "val", "test")]
    assert [len(p) for p in parts] == apportion(40, (0.8, 0.1, 0.1))
    assert set().union(*({q.prompt_id for q in p} for p in parts)) == {p.prompt_id for p in suite}


def test_user_file_suite(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("prompt,category\na cat,a\na dog,a\na car,b\n")
    suite = load_suite("file", path=path, categories=["b"])
    assert [p.text for p in suite] == ["a car"]
    assert suite[0].prompt_id.startswith("file-")
    path.write_text("prompt\na cat\na cat\n")
    with pytest.raises(RdbenchError, match="more than once"):
        load_suite("file", path=path)
    assert len(load_suite("file", path=path, duplicates="drop")) == 1
    with pytest.raises(RdbenchError, match="suite 'file' needs a prompt file"):
        load_suite("file")


def test_unknown_suite_and_wrong_split(drawbench):
    with pytest.raises(RdbenchError, match="unknown prompt suite 'parti'; available: drawbench"):
        load_suite("parti")
    with pytest.raises(RdbenchError, match="its only split is 'test'"):
        load_suite("drawbench", path=drawbench, split="train")
    assert set(SUITES.names()) >= {"partiprompts", "hpsv2", "drawbench", "pickapic", "file"}


def test_limit_on_real_suite_is_stratified(parti):
    suite = load_suite("partiprompts", path=parti, split="test", limit=100, seed=7)
    names = sorted(PARTI_CATEGORIES)
    quotas = apportion(100, [PARTI_CATEGORIES[n] for n in names])
    assert suite.category_counts() == dict(zip(names, quotas, strict=True))
    assert load_suite("partiprompts", path=parti, limit=100, seed=7).prompts == suite.prompts
