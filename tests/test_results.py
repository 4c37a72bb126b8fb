"""The result schema: round trip, canonical form, refusals, and the committed JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from rdbench.errors import RdbenchError
from rdbench.results import (
    METRICS,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    Extractor,
    Method,
    MetricValue,
    Provenance,
    Result,
    Setup,
    export_schema,
    metric_spec,
)

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "leaderboard" / "schema.json"


def make_result(
    *,
    method: str = "draft",
    regularizer: str | None = "kl",
    strength: float | None = 0.5,
    suite: str = "toy-suite",
    reward: float = 1.0,
    fid: float = 10.0,
    recall: float = 0.5,
    submitter: str = "tester",
    base_model: str = "toy-base",
    reward_model: str = "toy-reward",
    extractor: str = "raw",
    **extra_metrics: float,
) -> Result:
    """A small, valid result for tests (numbers are arbitrary test inputs, never board data)."""
    metrics = {
        f"reward/{reward_model}": MetricValue(
            value=reward, low=reward - 0.1, high=reward + 0.1, confidence=0.95, n_resamples=100
        ),
        f"fid/{extractor}": MetricValue(value=fid, low=fid * 0.9, high=fid * 1.1),
        f"recall/{extractor}": MetricValue(value=recall),
    }
    metrics |= {k.replace("__", "/"): MetricValue(value=v) for k, v in extra_metrics.items()}
    return Result(
        toy=True,
        method=Method(name=method, regularizer=regularizer, strength=strength),
        setup=Setup(
            base_model=base_model,
            reward_model=reward_model,
            prompt_suite=suite,
            n_prompts=4,
            n_seeds=2,
            n_images=8,
        ),
        extractors=[Extractor(id=extractor, resize_mode="none")],
        metrics=metrics,
        manifest_sha256="ab" * 32,
        provenance=Provenance.collect(
            submitter=submitter, created="2024-05-01T12:00:00+00:00", git_commit="0" * 40
        ),
    )


def as_dict(result: Result) -> dict[str, Any]:
    return json.loads(result.to_json())


def test_round_trip_and_canonical_form_is_stable(tmp_path):
    r = make_result()
    text = r.to_json()
    assert text.endswith("}\n") and text.isascii()
    again = Result.from_dict(json.loads(text))
    assert again == r and again.to_json() == text
    # Key order and whitespace of the input do not matter; ints in float fields become floats.
    data = as_dict(r)
    data["metrics"]["fid/raw"]["value"] = 10
    shuffled = json.dumps(dict(reversed(list(data.items()))), indent=None)
    assert Result.from_dict(json.loads(shuffled)).to_json() == text
    assert r.save(tmp_path / "r.json").read_text() == text
    assert Result.load(tmp_path / "r.json").result_hash() == r.result_hash()


def test_hash_changes_with_any_value():
    a, b = make_result(), make_result(fid=10.000001)
    assert a.result_hash() != b.result_hash()
    assert len(a.short_hash()) == 12 and a.result_hash().startswith(a.short_hash())


def test_committed_schema_matches_export(tmp_path):
    assert SCHEMA_FILE.read_text() == export_schema(), "run rdbench.results.export_schema"
    written = tmp_path / "schema.json"
    export_schema(written)
    schema = json.loads(written.read_text())
    assert schema["properties"]["schema_version"]["enum"] == list(READABLE_VERSIONS)
    assert schema["$id"] == SCHEMA_VERSION == READABLE_VERSIONS[-1]
    assert "metrics" in schema["required"] and schema["additionalProperties"] is False


def test_metric_registry_ranges_and_directions():
    assert not metric_spec("fid/inception").higher_is_better
    assert metric_spec("recall/clip").higher_is_better
    assert metric_spec("vendi/x").low == 1 and metric_spec("prompt_diversity/x").high == 2
    assert {"fid", "kid", "scd", "coverage", "prompt_vendi", "mode_coverage"} <= set(METRICS)


def test_provenance_collect_fills_versions_and_date():
    p = Provenance.collect(submitter="me")
    assert p.versions["numpy"] and p.versions["python"] and p.submitter == "me"
    assert "+00:00" in p.created


def mutate(path: str, value: Any) -> dict[str, Any]:
    data = as_dict(make_result())
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        ("schema_version", "rdbench.result/3", "unknown schema version"),
        ("metrics.fid/raw.value", 2e12, "less than or equal to 1000000000000"),
        ("metrics.fid/raw.high", 1.7e308, "less than or equal to 1000000000000"),
        ("metrics.reward/toy-reward\n", {"value": 1.0}, "must look like"),
        ("paired", {"recall/raw": {"value": 1.5}}, r"paired: .*outside its range \[-1, 1\]"),
        ("paired", {"fid/clip": {"value": 1.0}}, "feature extractor listed"),
        ("skipped", [{"image_set": "mine", "key": "a.png", "reason": "x"}], "'generated'"),
        ("skipped", [{"image_set": "generated", "key": "", "reason": "x"}], "at least 1"),
        ("metrics.recall/raw.value", 1.5, "outside its range"),
        ("metrics.fid/raw.value", -0.1, "outside its range"),
        ("metrics.fid/raw.low", -1.0, "outside its range"),
        ("metrics.vendi/raw", {"value": 0.5}, "outside its range"),
        ("metrics.fid/raw.low", 100.0, "above high"),
        ("metrics.fid/raw.high", None, "both 'low' and 'high'"),
        ("metrics.sharpness/raw", {"value": 1.0}, "unknown metric"),
        ("metrics.fid/clip", {"value": 1.0}, "feature extractor listed"),
        ("metrics.fid", {"value": 1.0}, "feature extractor listed"),
        ("metrics.reward", {"value": 1.0}, "needs the reward model"),
        ("metrics.mode_coverage/raw", {"value": 1.0}, "takes no source"),
        ("metrics.FID/a b", {"value": 1.0}, "must look like"),
        ("metrics", {}, "at least 1"),
        ("surprise", 1, "Extra inputs"),
        ("provenance.submitter", "x" * 201, "at most 200"),
        ("notes", "x" * 2001, "at most 2000"),
        ("provenance.submitter", "a\x00b", "pattern"),
        ("links.paper", "javascript:alert(1)", "pattern"),
        ("links.code", "https://x.org/<script>", "pattern"),
        ("manifest_sha256", "zz", "pattern"),
        ("setup.prompt_suite", "../etc", "pattern"),
        ("method.name", "Draft Method", "pattern"),
        ("setup.n_images", True, "valid integer"),
        ("setup.n_images", "8", "valid integer"),
        ("setup.n_images", -1, "greater than or equal"),
        ("metrics.fid/raw.value", "10", "valid number"),
        ("provenance.created", "yesterday", "ISO 8601"),
        ("provenance.created", "2024-05-01T12:00:00", "timezone"),
    ],
)
def test_refusals(path, value, match):
    with pytest.raises(RdbenchError, match=match):
        Result.from_dict(mutate(path, value))


def test_non_finite_numbers_refused_from_python():
    with pytest.raises(ValidationError, match="finite"):
        MetricValue(value=float("nan"))
    with pytest.raises(ValidationError, match="finite"):
        Method(name="kl", strength=float("inf"))


def test_error_messages_escape_control_characters_in_keys():
    with pytest.raises(RdbenchError) as info:
        Result.from_dict(mutate("\x1b]0;PWNED\x07", 1))
    assert "\x1b" not in str(info.value) and "\\x1b]0;PWNED\\x07" in str(info.value)


def test_error_message_does_not_echo_huge_input():
    with pytest.raises(RdbenchError) as info:
        Result.from_dict(mutate("notes", "<script>" * 100_000))
    assert len(str(info.value)) < 1000 and "<script>" not in str(info.value)


def test_metric_value_of_clips_intervals_to_the_metric_range():
    from rdbench.metrics.bootstrap import Interval

    iv = Interval(estimate=0.2, low=-0.3, high=1.4, n_resamples=50, confidence=0.9)
    fid = MetricValue.of("fid/raw", 0.2, iv, n=10)
    assert (fid.low, fid.high, fid.n_resamples, fid.confidence, fid.n) == (0.0, 1.4, 50, 0.9, 10)
    recall = MetricValue.of("recall/raw", 0.2, iv)
    assert (recall.low, recall.high) == (0.0, 1.0)
    diff = MetricValue.of("recall/raw", 0.2, iv, difference=True)
    assert (diff.low, diff.high) == (-0.3, 1.0)
    assert MetricValue.of("fid/raw", 3.0) == MetricValue(value=3.0)


def test_paired_and_skipped_round_trip_and_version_1_still_reads():
    data = as_dict(make_result())
    data["paired"] = {
        "reward/toy-reward": {"value": -0.5, "low": -0.7, "high": -0.3, "n": 8},
        "recall/raw": {"value": -1.0},  # a difference may be negative where values may not
    }
    data["skipped"] = [{"image_set": "reference", "key": "p1/0.png", "reason": "truncated"}]
    r = Result.from_dict(data)
    assert Result.from_dict(json.loads(r.to_json())) == r
    assert r.paired["reward/toy-reward"].n == 8 and r.skipped[0].image_set == "reference"
    # a version-1 file (no paired or skipped) still loads; with them it is refused
    old = as_dict(make_result()) | {"schema_version": READABLE_VERSIONS[0]}
    del old["paired"], old["skipped"]
    assert Result.from_dict(old).schema_version == "rdbench.result/1"
    with pytest.raises(RdbenchError, match="need schema version"):
        Result.from_dict(data | {"schema_version": READABLE_VERSIONS[0]})


def test_per_category_and_per_image_round_trip_and_checks():
    data = as_dict(make_result())
    data["per_category"] = {
        "animals": {"fid/raw": {"value": 3.0}, "reward/toy-reward": {"value": 2.0}}
    }
    data["per_image"] = [{"key": "p0-s0", "prompt_id": "p0", "seed": 0, "rewards": {"toy": 1.5}}]
    r = Result.from_dict(data)
    assert Result.from_dict(json.loads(r.to_json())) == r
    assert r.per_image[0].rewards == {"toy": 1.5}
    data["per_category"]["animals"]["recall/raw"] = {"value": 2.0}
    with pytest.raises(RdbenchError, match=r"per_category\[animals\].*outside its range"):
        Result.from_dict(data)
    data["per_category"] = {"animals": {"fid/nope": {"value": 1.0}}}
    with pytest.raises(RdbenchError, match="feature extractor listed"):
        Result.from_dict(data)


def test_exported_json_schema_refuses_what_validation_refuses():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.validate(as_dict(make_result()), schema)
    bad_metric = mutate("metrics.FID Score", {"value": 1.0})
    bad_param = as_dict(make_result())
    bad_param["method"]["params"] = {"Bad Key": 1}
    bad_category = as_dict(make_result())
    bad_category["per_category"] = {"../x": {"fid/raw": {"value": 1.0}}}
    for doc in (bad_metric, bad_param, bad_category):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, schema)
        with pytest.raises(RdbenchError):
            Result.from_dict(doc)
