"""The leaderboard's data logic, kept free of Streamlit so it is testable and fast.

Results -> one table row per result (``to_rows``) -> filtered rows for one (reward axis,
diversity axis) view (``select``) -> a plotly figure (``figure``) and a per-method
hypervolume ranking (``ranking``), both built on ``rdbench.frontier``.

Every string that comes from a submission goes into the chart escaped (``html.escape``):
plotly renders a subset of HTML in names and hover text.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from rdbench.frontier import frontier_area, frontier_line, pareto_front, reference_point
from rdbench.results import METRICS, Result, split_key

# The diversity axes offered first (others present in the data follow).
DIVERSITY_AXES = ("fid", "recall", "prompt_vendi", "scd", "coverage")
REFERENCE_MARGIN = 0.05  # the shared hypervolume reference: nadir pushed 5% of the range out
PARETO_TRACE = "Pareto set (all methods)"
PALETTE = qualitative.D3


@dataclass(frozen=True)
class Entry:
    """A result on the board; ``source`` is its store path or ``upload: <name>``."""

    source: str
    result: Result
    uploaded: bool = False
    digest: str = ""  # the result's short hash, filled on creation (hashing is not free)

    def __post_init__(self) -> None:
        if not self.digest:
            object.__setattr__(self, "digest", self.result.short_hash())


def series_label(result: Result) -> str:
    """The line a point belongs to: one method (and regulariser) by one submitter."""
    return f"{result.method.label} ({result.provenance.submitter})"


def to_rows(entries: Iterable[Entry]) -> pd.DataFrame:
    """One row per result: descriptive columns, then ``<key>``, ``<key> low``, ``<key> high``
    and ``<key> confidence`` for every metric key, and ``resize/<extractor>`` (resize mode)."""
    rows = []
    for e in entries:
        r = e.result
        row = {
            "series": series_label(r),
            "method": r.method.name,
            "regularizer": r.method.regularizer or "",
            "strength": r.method.strength,
            "submitter": r.provenance.submitter,
            "suite": r.setup.prompt_suite,
            "split": r.setup.split,
            "base_model": r.setup.base_model,
            "reward_model": r.setup.reward_model,
            "extractors": ", ".join(f"{x.id} ({x.resize_mode})" for x in r.extractors),
            **{f"resize/{x.id}": x.resize_mode for x in r.extractors},
            "n_images": r.setup.n_images,
            "toy": r.toy,
            "uploaded": e.uploaded,
            "created": r.provenance.created,
            "paper": r.links.paper,
            "code": r.links.code,
            "weights": r.links.weights,
            "source": e.source,
            "hash": e.digest,
        }
        for key, m in r.metrics.items():
            row |= {key: m.value, f"{key} low": m.low, f"{key} high": m.high}
            row[f"{key} confidence"] = m.confidence
        rows.append(row)
    return pd.DataFrame(rows)


def metric_keys(df: pd.DataFrame) -> list[str]:
    """Metric columns with at least one value in ``df``."""
    keys = [c for c in df.columns if "/" in c and not c.endswith((" low", " high", " confidence"))]
    keys = [k for k in keys if not k.startswith("resize/")]
    return [k for k in keys if df[k].notna().any()]


def reward_axes(df: pd.DataFrame) -> list[str]:
    return sorted(k for k in metric_keys(df) if split_key(k)[0] == "reward")


def extractors(df: pd.DataFrame) -> list[str]:
    return sorted({split_key(k)[1] for k in metric_keys(df) if split_key(k)[0] != "reward"})


def diversity_axes(df: pd.DataFrame, extractor: str | None) -> list[str]:
    """Metric names available for ``extractor``: the preferred ones first."""
    present = {split_key(k)[0] for k in metric_keys(df) if split_key(k)[1] == extractor}
    present.discard("reward")
    return [m for m in DIVERSITY_AXES if m in present] + sorted(present - set(DIVERSITY_AXES))


def axis_title(key: str) -> str:
    spec = METRICS.get(split_key(key)[0])
    return f"{key} ({'higher' if spec.higher_is_better else 'lower'} is better)"


@dataclass(frozen=True)
class View:
    """The rows of one chart: ``x`` the reward key, ``y`` the diversity key."""

    rows: pd.DataFrame
    x: str
    y: str

    @property
    def maximize(self) -> tuple[bool, bool]:
        return (
            METRICS.get("reward").higher_is_better,
            METRICS.get(split_key(self.y)[0]).higher_is_better,
        )

    @property
    def points(self) -> np.ndarray:
        return self.rows[[self.x, self.y]].to_numpy(dtype=np.float64).reshape(-1, 2)

    def pareto(self) -> np.ndarray:
        """Row positions of the overall Pareto set, as ``rdbench.frontier.pareto_front``."""
        return pareto_front(self.points, self.maximize)


def filter_rows(df: pd.DataFrame, **equal: object) -> pd.DataFrame:
    """Rows whose columns equal the given values (``None`` means no filter)."""
    mask = pd.Series(True, index=df.index)
    for column, value in equal.items():
        if value is not None and column in df:
            mask &= df[column] == value
    return df[mask]


def select(df: pd.DataFrame, x: str, y: str) -> View:
    """Rows having both axes, with the Pareto flag added."""
    if x not in df or y not in df:
        return View(df.iloc[0:0].assign(pareto=pd.Series(dtype=bool)), x, y)
    rows = df[df[x].notna() & df[y].notna()].reset_index(drop=True)
    view = View(rows, x, y)
    flags = np.zeros(len(rows), dtype=bool)
    flags[view.pareto()] = True
    return View(rows.assign(pareto=flags), x, y)


def _errors(rows: pd.DataFrame, key: str) -> dict | None:
    if f"{key} low" not in rows or rows[f"{key} low"].isna().all():
        return None
    value = rows[key].to_numpy(dtype=np.float64)
    low = rows[f"{key} low"].to_numpy(dtype=np.float64)
    high = rows[f"{key} high"].to_numpy(dtype=np.float64)
    up = np.nan_to_num(np.clip(high - value, 0, None))
    down = np.nan_to_num(np.clip(value - low, 0, None))
    return {"type": "data", "symmetric": False, "array": up.tolist(), "arrayminus": down.tolist()}


def _hover(rows: pd.DataFrame, keys: tuple[str, str]) -> list[str]:
    """Escaped hover lines: series, the hyperparameter (named by the regulariser), the
    confidence of each axis' interval, file."""
    out = []
    for (_, row), series in zip(rows.iterrows(), rows["series"], strict=True):
        value = "n/a" if pd.isna(row["strength"]) else f"{row['strength']:g}"
        parts = [str(series), f"{row['regularizer'] or 'strength'} = {value}"]
        for key in keys:
            confidence = row.get(f"{key} confidence")
            if confidence is not None and not pd.isna(confidence):
                parts.append(f"{key}: {confidence:.0%} interval")
        parts.append(f"submission: {row['source']}")
        out.append("<br>".join(html.escape(p) for p in parts))
    return out


def _trace(rows: pd.DataFrame, view: View, name: str, **style: object) -> dict:
    return {
        "type": "scatter",
        "x": rows[view.x].tolist(),
        "y": rows[view.y].tolist(),
        "mode": "lines+markers",
        "name": html.escape(name),
        "text": _hover(rows, (view.x, view.y)),
        **style,
    }


def figure(view: View, *, log_y: bool = False) -> go.Figure:
    """A scatter per series, connected in order of strength, with error bars; the overall
    Pareto set drawn on top as its own trace named ``PARETO_TRACE``.

    Built from plain dicts without plotly's per-property validation (Streamlit validates
    the whole figure once when it serialises it).
    """
    rows, traces = view.rows, []
    for k, (series, group) in enumerate(rows.groupby("series", sort=True)):
        color = PALETTE[k % len(PALETTE)]
        order = frontier_line(group[[view.x, view.y]], list(group["strength"].map(_opt)))
        group = group.iloc[order]
        trace = _trace(
            group,
            view,
            str(series),
            hovertemplate="%{text}<br>x=%{x:.4g}<br>y=%{y:.4g}<extra></extra>",
            line={"color": color},
            marker={
                "color": color,
                "symbol": np.where(group["uploaded"], "star", "circle").tolist(),
            },
        )
        for axis, key in (("error_x", view.x), ("error_y", view.y)):
            if (bars := _errors(group, key)) is not None:
                trace[axis] = bars
        traces.append(trace)
    traces.append(
        _trace(
            rows.iloc[view.pareto()],
            view,
            PARETO_TRACE,
            hovertemplate="%{text}<extra>Pareto</extra>",
            line={"dash": "dot", "color": "black"},
            marker={"size": 16, "symbol": "circle-open", "color": "black"},
        )
    )
    layout = {
        "xaxis": {"title": {"text": axis_title(view.x)}},
        "yaxis": {"title": {"text": axis_title(view.y)}, "type": "log" if log_y else "linear"},
        "legend": {"title": {"text": "method (submitter)"}},
        "margin": {"l": 10, "r": 10, "t": 30, "b": 10},
    }
    return go.Figure(data=traces, layout=layout, _validate=False)


def _opt(x: object) -> float | None:
    return None if x is None or pd.isna(x) else float(x)


def ranking(view: View) -> pd.DataFrame:
    """Per series: its points' hypervolume against one shared reference point, ranked.

    The reference is the nadir of the overall Pareto set of the view, pushed out by
    ``REFERENCE_MARGIN`` of its range: a dominated point (anyone's upload) cannot move it
    and so cannot reorder the ranking. Points beyond it add nothing."""
    columns = ["rank", "series", "points", "hypervolume"]
    if view.rows.empty:
        return pd.DataFrame(columns=columns)
    front = view.points[view.pareto()]
    ref = reference_point(front, view.maximize, margin=REFERENCE_MARGIN)
    table = [
        {
            "series": series,
            "points": len(group),
            "hypervolume": frontier_area(group[[view.x, view.y]], ref, view.maximize),
        }
        for series, group in view.rows.groupby("series", sort=True)
    ]
    out = pd.DataFrame(table).sort_values(["hypervolume", "series"], ascending=[False, True])
    out["rank"] = np.arange(1, len(out) + 1)
    return out[columns].reset_index(drop=True)


def table(view: View) -> pd.DataFrame:
    """The visible table: plain values, one row per point."""
    cols = [
        "series",
        "method",
        "regularizer",
        "strength",
        view.x,
        f"{view.x} low",
        f"{view.x} high",
    ]
    cols += [view.y, f"{view.y} low", f"{view.y} high", "pareto", "submitter", "toy", "uploaded"]
    cols += ["n_images", "extractors", "created", "paper", "code", "weights", "source", "hash"]
    rows = view.rows
    return rows[[c for c in cols if c in rows]]


def results_json(entries: Iterable[Entry], hashes: set[str]) -> str:
    """The canonical documents of the entries whose short hash is in ``hashes``, as a list."""
    docs = [e.result.model_dump(mode="json") for e in entries if e.digest in hashes]
    return json.dumps(docs, sort_keys=True, allow_nan=False) + "\n"


def store_fingerprint(store: Path) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime_ns, size) of every store file: the cache key of the parsed store."""
    if not store.is_dir():
        return ()
    out = []
    for p in sorted(store.rglob("*.json")):
        st = p.stat()
        out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(table: pd.DataFrame) -> str:
    """The table as CSV, with text cells that a spreadsheet would run as a formula (``=``,
    ``+``, ``-``, ``@``, tab, CR first) prefixed by ``'`` (OWASP CSV injection)."""

    def safe(v: object) -> object:
        return "'" + v if isinstance(v, str) and v.startswith(_FORMULA_START) else v

    text_cols = table.select_dtypes(include=["object", "string"]).columns
    return table.assign(**{c: table[c].map(safe) for c in text_cols}).to_csv(index=False)
