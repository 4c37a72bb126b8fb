"""The rdbench leaderboard (Streamlit). Launch with ``rdbench leaderboard``.

The store (default: ``submissions/`` next to this file) is read from
``$RDBENCH_LEADERBOARD_STORE``. Submission strings are only ever shown through the chart
(escaped), dataframes and ``st.code``/``st.text`` -- never as Markdown or HTML.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import streamlit as st

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:  # `streamlit run leaderboard/app.py` from a source checkout
    sys.path.insert(0, _ROOT)

from leaderboard import board  # noqa: E402
from rdbench.defaults import EXTRACTOR  # noqa: E402
from rdbench.errors import RdbenchError  # noqa: E402
from rdbench.submissions import MAX_BYTES, load_store, validate_bytes  # noqa: E402

STORE_ENV = "RDBENCH_LEADERBOARD_STORE"
DEFAULT_STORE = Path(__file__).resolve().parent / "submissions"


@st.cache_data(show_spinner=False, max_entries=8)
def load(store: str, fingerprint: tuple) -> tuple[list[board.Entry], list[tuple[str, str]]]:
    """Parse and validate the store; re-run only when a file's mtime or size changes."""
    del fingerprint  # part of the cache key only
    results, rejected = load_store(store)
    root = Path(store)
    entries = [board.Entry(str(p.relative_to(root)), r) for p, r in results]
    return entries, [(str(x.path.relative_to(root)), x.reason) for x in rejected]


def uploads() -> tuple[list[board.Entry], list[tuple[str, str]]]:
    files = st.file_uploader(
        "Compare my results: add result files to the board (nothing is submitted)",
        type=["json"],
        accept_multiple_files=True,
        max_upload_size=max(1, MAX_BYTES // (1024 * 1024)),
    )
    entries, rejected = [], []
    for f in files or []:
        name = f"upload: {f.name[:100]}"
        try:
            entries.append(board.Entry(name, validate_bytes(f.getvalue()), uploaded=True))
        except RdbenchError as exc:
            rejected.append((name, str(exc)[:1000]))
    return entries, rejected


def choose(label: str, options: list, key: str, prefer: str | None = None):
    if not options:
        return None
    index = options.index(prefer) if prefer in options else 0
    return st.sidebar.selectbox(label, options, index=index, key=key)


def by_count(column) -> list[str]:
    """Distinct values, the most frequent first (the default view shows the most results)."""
    counts = column.value_counts()
    return sorted(counts.index, key=lambda v: (-counts[v], v))


def main() -> None:
    st.set_page_config(page_title="rdbench leaderboard", layout="wide")
    st.title("rdbench leaderboard: reward vs diversity")
    st.caption(
        "Each point is one evaluated model; lines join a method's points in order of its "
        "regularisation strength; ringed points form the Pareto set of everything shown."
    )
    store = os.environ.get(STORE_ENV) or str(DEFAULT_STORE)
    entries, rejected = load(store, board.store_fingerprint(Path(store)))
    mine, mine_rejected = uploads()
    for name, reason in mine_rejected:
        st.error("An uploaded file was rejected; the reason follows.")
        st.text(name)
        st.code(reason, language=None)
    entries = entries + mine
    rejected = rejected + mine_rejected

    df = board.to_rows(entries)
    if df.empty:
        st.info("No submissions yet. See leaderboard/README.md for how to submit.")
    else:
        show(df, entries)

    with st.expander(f"Rejected files ({len(rejected)})", expanded=bool(mine_rejected)):
        import pandas as pd

        st.dataframe(pd.DataFrame(rejected, columns=["file", "reason"]), hide_index=True)


def show(df, entries: list[board.Entry]) -> None:
    side = st.sidebar
    side.header("Filters")
    suite = choose("Prompt suite", by_count(df["suite"]), "suite")
    df = board.filter_rows(df, suite=suite)
    base = choose("Base model", by_count(df["base_model"]), "base_model")
    df = board.filter_rows(df, base_model=base)
    reward_model = choose("Reward model", by_count(df["reward_model"]), "reward_model")
    df = board.filter_rows(df, reward_model=reward_model)
    split = choose("Split", by_count(df["split"]), "split", "test")
    df = board.filter_rows(df, split=split)
    extractor = choose("Feature extractor", board.extractors(df), "extractor", EXTRACTOR)
    if extractor is not None and f"resize/{extractor}" in df:
        modes = by_count(df[f"resize/{extractor}"].dropna())
        mode = choose("Resize mode (of that extractor)", modes, "resize_mode")
        df = df[df[f"resize/{extractor}"].isna() | (df[f"resize/{extractor}"] == mode)]
    diversity = choose("Diversity axis", board.diversity_axes(df, extractor), "diversity")
    reward = choose("Reward axis", board.reward_axes(df), "reward", f"reward/{reward_model}")
    log_y = side.checkbox("Log scale for the diversity axis", key="log_y")
    toy = side.checkbox("Include toy results", value=True, key="toy")
    if not toy:
        df = df[~df["toy"]]
    if diversity is None or reward is None:
        st.warning("No results with both a reward and a diversity metric for these filters.")
        return
    view = board.select(df, reward, f"{diversity}/{extractor}")
    if view.rows["toy"].any():
        st.caption("Results marked toy=True come from rdbench's toy testbed, not from images.")
    st.plotly_chart(board.figure(view, log_y=log_y), key="chart")

    st.subheader("Hypervolume ranking")
    st.caption(
        "Area each method's points dominate, against the nadir of the ringed Pareto set "
        f"(pushed out by {board.REFERENCE_MARGIN:.0%} of its range); larger is better."
    )
    try:
        st.dataframe(board.ranking(view), hide_index=True, key="ranking")
    except RdbenchError as exc:
        st.warning("No ranking for this view; the reason follows.")
        st.code(str(exc)[:1000], language=None)

    st.subheader("Results")
    table = board.table(view)
    sort_by = st.selectbox("Sort by", list(table.columns), index=4, key="sort_by")
    descending = st.checkbox("Descending", value=True, key="descending")
    table = table.sort_values(sort_by, ascending=not descending, kind="stable")
    links = {c: st.column_config.LinkColumn(c) for c in ("paper", "code", "weights")}
    st.dataframe(table, hide_index=True, column_config=links, key="results")
    left, right = st.columns(2)
    left.download_button("Download CSV", board.csv_text(table), "rdbench-results.csv", "text/csv")
    right.download_button(
        "Download JSON",
        board.results_json(entries, set(table["hash"])),
        "rdbench-results.json",
        "application/json",
    )


main()
