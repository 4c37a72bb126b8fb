"""The committed leaderboard store: every file validates and is a marked toy result."""

from pathlib import Path

from rdbench.submissions import check_store, load_store

STORE = Path(__file__).resolve().parents[1] / "leaderboard" / "submissions"


def test_committed_submissions_are_valid_canonical_toy_results():
    results, rejected = load_store(STORE)
    assert rejected == []
    assert results, "the store is seeded with the toy demo's results"
    for path, result in results:
        assert result.toy, f"{path.name}: only toy results are committed (no invented SD numbers)"
        assert path.read_text(encoding="utf-8") == result.to_json(), f"{path.name} not canonical"
        assert path.parent.name == result.setup.prompt_suite
    assert check_store(STORE) == []  # named by their own hash, no point twice
