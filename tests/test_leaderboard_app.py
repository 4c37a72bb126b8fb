"""The Streamlit leaderboard under ``streamlit.testing.v1.AppTest`` on generated stores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_results import as_dict, make_result

from rdbench.frontier import frontier_area, pareto_front, reference_point
from rdbench.results import Result
from rdbench.submissions import submit

st = pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = Path(__file__).resolve().parents[1] / "leaderboard" / "app.py"
STRENGTHS = (0.1, 0.5, 1.0, 2.0)


def two_extractors(result: Result, scale: float) -> Result:
    """Add a second extractor ``vit`` with its own metrics (to test the extractor filter)."""
    data = as_dict(result)
    data["extractors"].append({"id": "vit", "resize_mode": "clean", "weights_sha256": None})
    fid = data["metrics"]["fid/raw"]["value"]
    data["metrics"]["fid/vit"] = {"value": fid * scale}
    data["metrics"]["coverage/vit"] = {"value": min(1.0, 0.2 * scale)}
    return Result.from_dict(data)


def build_store(root: Path) -> Path:
    """Two methods x four strengths on suite-a; a second suite, base model and reward model."""
    store = root / "store"
    results = []
    for i, s in enumerate(STRENGTHS):
        # draft+kl: reward up, diversity down with less regularisation (here: index i).
        results.append(
            make_result(strength=s, reward=1 + 0.3 * i, fid=5 + 3 * i, recall=0.9 - 0.2 * i)
        )
        results.append(
            make_result(
                method="aig",
                regularizer="power",
                strength=s,
                reward=1 + 0.25 * i,
                fid=4 + 2 * i,
                recall=0.95 - 0.15 * i,
            )
        )
    results = [two_extractors(r, 1 + k % 3) for k, r in enumerate(results)]
    results.append(make_result(suite="suite-b", reward=7.0, fid=1.0))
    results.append(make_result(base_model="other-base", reward=5.0, fid=2.0))
    results.append(make_result(reward_model="other-reward", reward=3.0, fid=3.0))
    # not comparable with the rest: another split, another resize mode of the extractor
    train = as_dict(make_result(strength=0.7, reward=9.0, fid=0.5))
    train["setup"]["split"] = "train"
    legacy = as_dict(make_result(strength=0.3, reward=8.0, fid=0.6))
    legacy["extractors"][0]["resize_mode"] = "legacy"
    results += [Result.from_dict(train), Result.from_dict(legacy)]
    for k, r in enumerate(results):
        submit(r.save(root / f"in{k}.json"), store)
    return store


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return build_store(tmp_path_factory.mktemp("board"))


@pytest.fixture
def app(store, monkeypatch) -> AppTest:
    monkeypatch.setenv("RDBENCH_LEADERBOARD_STORE", str(store))
    st.cache_data.clear()
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def spec(at: AppTest) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def results_table(at: AppTest):
    return at.dataframe[1].value  # [0] the ranking, [1] the results, [-1] the rejected files


def selectbox(at: AppTest, key: str):
    return at.selectbox(key=key)


def test_page_renders_chart_table_and_pareto_set(app):
    table = results_table(app)
    assert len(table) == 8 and set(table["method"]) == {"draft", "aig"}
    traces = {t["name"]: t for t in spec(app)["data"]}
    assert set(traces) == {"aig+power (tester)", "draft+kl (tester)", "Pareto set (all methods)"}
    # The chart's Pareto set is rdbench.frontier's on the same points (FID: lower is better).
    pts = table[["reward/toy-reward", "fid/raw"]].to_numpy(dtype=float)
    expected = pts[pareto_front(pts, (True, False))]
    pareto = traces["Pareto set (all methods)"]
    assert np.allclose(np.c_[pareto["x"], pareto["y"]], expected)
    assert sorted(table["pareto"]) == sorted(
        np.isin(np.arange(len(pts)), pareto_front(pts, (True, False)))
    )
    # Each method's line follows its strength.
    draft = traces["draft+kl (tester)"]
    assert draft["x"] == pytest.approx([1.0, 1.3, 1.6, 1.9])
    assert "kl = 0.1" in draft["text"][0]  # hover: the hyperparameter and the submission
    assert "submission: toy-suite/draft-" in draft["text"][0]


def test_ranking_is_frontier_area_against_shared_nadir(app):
    table = results_table(app)
    ranking = app.dataframe[0].value
    pts = table[["reward/toy-reward", "fid/raw"]].to_numpy(dtype=float)
    front = pts[pareto_front(pts, (True, False))]
    ref = reference_point(front, (True, False), margin=0.05)  # the Pareto set's nadir
    for _, row in ranking.iterrows():
        mine = table[table["series"] == row["series"]][["reward/toy-reward", "fid/raw"]]
        assert row["hypervolume"] == pytest.approx(frontier_area(mine, ref, (True, False)))
    assert list(ranking["rank"]) == [1, 2]
    assert ranking["hypervolume"].is_monotonic_decreasing


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("suite", "suite-b"),
        ("base_model", "other-base"),
        ("reward_model", "other-reward"),
        ("extractor", "vit"),
        ("diversity", "recall"),
        ("split", "train"),
        ("resize_mode", "legacy"),
    ],
)
def test_each_filter_changes_table_and_chart(app, key, value):
    before_table, before_spec = results_table(app), spec(app)
    assert value in selectbox(app, key).options
    selectbox(app, key).select(value).run()
    assert not app.exception
    after_table, after_spec = results_table(app), spec(app)
    assert not after_table.equals(before_table)
    assert after_spec["data"] != before_spec["data"]


def test_reward_axis_and_log_scale(store, monkeypatch, tmp_path):
    store = Path(shutil.copytree(store, tmp_path / "store"))
    monkeypatch.setenv("RDBENCH_LEADERBOARD_STORE", str(store))
    st.cache_data.clear()
    app = AppTest.from_file(str(APP), default_timeout=60).run()
    assert selectbox(app, "reward").options == ["reward/toy-reward"]
    app.checkbox(key="log_y").check().run()
    assert spec(app)["layout"]["yaxis"]["type"] == "log"
    # A second reward on the same results appears as another reward axis after a store change.
    data = as_dict(make_result(strength=9.0))
    data["metrics"]["reward/aesthetic"] = {"value": 4.0}
    submit(Result.from_dict(data).save(tmp_path / "r.json"), store)
    app.run()  # the store's fingerprint changed: the cache reloads
    assert selectbox(app, "reward").value == "reward/toy-reward"
    assert "reward/aesthetic" in selectbox(app, "reward").options
    selectbox(app, "reward").select("reward/aesthetic").run()
    table = results_table(app)
    assert len(table) == 1 and "reward/aesthetic" in table.columns
    assert spec(app)["layout"]["xaxis"]["title"]["text"].startswith("reward/aesthetic")


def test_sorting_and_downloads(app):
    app.selectbox(key="sort_by").select("fid/raw").run()
    app.checkbox(key="descending").uncheck().run()
    assert results_table(app)["fid/raw"].is_monotonic_increasing
    labels = [b.label for b in app.get("download_button")]
    assert labels == ["Download CSV", "Download JSON"]


def test_csv_download_defuses_spreadsheet_formulas():
    from leaderboard.board import csv_text

    table = pd.DataFrame(
        {"submitter": ['=HYPERLINK("http://x")', "@sum", "alice", "-2+3"], "fid": [1.0, -2.0, 3, 4]}
    )
    lines = csv_text(table).splitlines()
    assert lines[1].startswith("\"'=HYPERLINK(") and lines[2] == "'@sum,-2.0"
    assert lines[3] == "alice,3.0" and lines[4] == "'-2+3,4.0"  # numbers stay numbers


def test_a_dominated_point_cannot_reorder_the_ranking():
    from leaderboard.board import Entry, ranking, select, to_rows

    def rank(results: list[Result]) -> dict[str, float]:
        rows = to_rows([Entry(f"r{i}", r) for i, r in enumerate(results)])
        out = ranking(select(rows, "reward/toy-reward", "fid/raw"))
        return dict(zip(out["series"], out["hypervolume"], strict=True))

    alpha = [make_result(submitter="alpha", strength=s, reward=r, fid=f)
             for s, r, f in ((0.1, 1.0, 1.0), (1.0, 2.0, 3.0))]  # fmt: skip
    beta = [make_result(submitter="beta", strength=0.5, reward=1.9, fid=2.5)]
    junk = make_result(submitter="mallory", reward=-100.0, fid=4.9)  # dominated by beta
    before, after = rank(alpha + beta), rank([*alpha, *beta, junk])
    assert after.pop("draft+kl (mallory)") == 0.0
    assert after == pytest.approx(before)


def test_rejected_store_files_are_listed(store, monkeypatch, tmp_path):
    bad_store = tmp_path / "bad"
    (bad_store / "x").mkdir(parents=True)
    (bad_store / "x" / "nan.json").write_text('{"value": NaN}')
    monkeypatch.setenv("RDBENCH_LEADERBOARD_STORE", str(bad_store))
    st.cache_data.clear()
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    rejected = at.dataframe[-1].value
    assert list(rejected["file"]) == ["x/nan.json"]
    assert "non-finite" in rejected["reason"][0]


def hostile_uploads() -> list[tuple[str, bytes, str]]:
    nan = make_result().to_json().replace('"value": 10.0', '"value": NaN')
    script_key = as_dict(make_result())
    script_key["metrics"]["<script>alert(1)</script>"] = {"value": 1.0}
    huge = as_dict(make_result())
    huge["notes"] = "<img src=x onerror=alert(1)>" + "x" * 10_000_000
    return [
        ("nan.json", nan.encode(), "non-finite"),
        ("script.json", json.dumps(script_key).encode(), "<script>alert(1)</script>"),
        ("huge.json", json.dumps(huge).encode(), "the limit is"),
    ]


@pytest.mark.parametrize("upload", hostile_uploads(), ids=lambda u: u[0])
def test_hostile_upload_is_rejected_and_shown_escaped(app, upload):
    name, data, reason = upload
    app.file_uploader[0].set_value((name, data, "application/json")).run()
    assert not app.exception
    codes = [c.value for c in app.code]
    assert any(reason in c for c in codes), codes
    markdown = " ".join(m.value for m in app.markdown) + " ".join(e.value for e in app.error)
    assert "<script>" not in markdown and "onerror" not in markdown
    assert len(results_table(app)) == 8  # the board is unchanged


def test_valid_upload_joins_the_board_escaped(app):
    mine = make_result(method="mine", submitter="<b onmouseover=x>me</b>", reward=9.0, fid=1.0)
    app.file_uploader[0].set_value(("mine.json", mine.to_json().encode(), "application/json")).run()
    assert not app.exception and not app.code
    table = results_table(app)
    row = table[table["uploaded"]]
    assert list(row["submitter"]) == ["<b onmouseover=x>me</b>"]  # plain text in the table
    names = [t["name"] for t in spec(app)["data"]]
    assert "mine+kl (&lt;b onmouseover=x&gt;me&lt;/b&gt;)" in names
    assert not any("<b" in n for n in names)
    assert bool(row["pareto"].iloc[0])  # it dominates everything shown
