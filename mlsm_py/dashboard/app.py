"""The `mlsm dashboard` page, run by `streamlit run` (see `mlsm_py.dashboard.run`): today's top
leads, the models side by side, and drift and scores per build, all from the readers' copy.

Arguments after streamlit's `--`: --readers FILE, --key COLUMN, and --call-list SUMMARY=TABLE
per summary model with a call list. Every render reads the copy afresh (data.py), so the page
shows the newest publication whenever it is rerun: on any filter change, or on reload."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from mlsm_py.dashboard import data

ALL = "all"
RATE = st.column_config.NumberColumn(format="%.4f")


def arguments(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="mlsm dashboard page")
    ap.add_argument("--readers", type=Path, required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--call-list", action="append", default=[], metavar="SUMMARY=TABLE")
    args = ap.parse_args(argv)
    args.call_lists = dict(item.split("=", 1) for item in args.call_list)
    return args


def sidebar(summaries: list[str], models: list[str], segments: list[str]) -> data.Filters:
    st.sidebar.header("Filters")
    summary = (
        st.sidebar.selectbox("Summary model", summaries) if len(summaries) > 1 else None
    ) or (summaries[0] if summaries else None)
    model = st.sidebar.selectbox("Model", [ALL, *models])
    segment = st.sidebar.selectbox("Segment", [ALL, *segments]) if segments else ALL
    rows = st.sidebar.number_input("Leads shown", min_value=10, max_value=1000, value=50, step=10)
    return data.Filters(
        summary=summary,
        model=None if model == ALL else model,
        segment=None if segment == ALL else segment,
        rows=int(rows),
    )


def naive(df: pd.DataFrame, *cols: str) -> pd.DataFrame:
    """Timestamps in UTC without their zone: Vega-Lite reads zone-aware strings unevenly."""
    out = df.copy()
    for c in cols:
        if c in out and isinstance(out[c].dtype, pd.DatetimeTZDtype):
            out[c] = out[c].dt.tz_convert("UTC").dt.tz_localize(None)
    return out


def line(
    df: pd.DataFrame, x: str, y: str, color: str, title: str, kind: str = "T", columns: int = 4
) -> None:
    """A line per `color` with its points marked; bars when every row has the same `x` (one
    build, one cohort), where lines would all collapse onto one point."""
    tooltip = [c for c in df.columns if c != "fit_id"]
    if df[x].nunique() == 1:
        chart = (
            alt.Chart(df, title=f"{title} ({df[x].iloc[0]:%Y-%m-%d})" if kind == "T" else title)
            .mark_bar()
            .encode(
                x=alt.X(f"{color}:N", title=None, axis=alt.Axis(labelAngle=-20, labelLimit=0)),
                y=alt.Y(f"{y}:Q", title=y),
                color=alt.Color(f"{color}:N", legend=None),
                tooltip=tooltip,
            )
        )
    else:
        axis = alt.Axis(format="%m-%d %H:%M", labelAngle=-30) if kind == "T" else alt.Axis()
        chart = (
            alt.Chart(df, title=title)
            .mark_line(point=True)
            .encode(
                x=alt.X(f"{x}:{kind}", title=None, axis=axis),
                y=alt.Y(f"{y}:Q", title=y),
                # Twenty colours and the whole legend: a model has more than ten inputs, and
                # the default ten colours would give two inputs one colour.
                color=alt.Color(
                    f"{color}:N",
                    title=None,
                    scale=alt.Scale(scheme="tableau20"),
                    legend=alt.Legend(
                        orient="bottom", columns=columns, symbolLimit=0, labelLimit=0
                    ),
                ),
                tooltip=tooltip,
            )
        )
    st.altair_chart(chart, width="stretch")


def only(df: pd.DataFrame, f: data.Filters) -> pd.DataFrame:
    """Rows of the chosen model, and of the chosen segment's fit or the fallback beside it."""
    if df.empty:
        return df
    if f.model is not None and "model" in df:
        df = df[df["model"] == f.model]
    if f.segment is not None and "segment" in df:
        df = df[df["segment"].isin(["", f.segment])]
    return df


def header(page: data.Page, readers: Path) -> None:
    pub = page.publication
    if pub is None:
        st.caption(f"Reading {readers}: no published build recorded in it yet.")
        return
    as_of = f"{pub['as_of']:%Y-%m-%d %H:%M}" if pub["as_of"] else "-"
    st.markdown(
        f"Published run **{pub['run_id']}** at **{pub['finished_at']:%Y-%m-%d %H:%M} UTC**, "
        f"data as of **{as_of}**: **{pub['rows_scored'] or 0:,}** records scored "
        f"({pub['rows_new'] or 0:,} new), by {pub['actor']}."
    )
    st.caption(
        f"Reading {readers}, the readers' copy written after each publication (never the "
        "warehouse, so a build is never blocked). Rerun or reload to see a newer build."
    )


def leads_section(page: data.Page, f: data.Filters, call_list: str | None) -> None:
    st.header("Today's top leads")
    if page.leads.empty:
        st.info("No leads match: nothing published yet, or none for these filters.")
        return
    order = f"published.{call_list} in call order" if call_list else "by percentile, then score"
    st.caption(f"The first {len(page.leads):,} of {f.summary or 'the winners'}, {order}.")
    st.dataframe(
        page.leads,
        hide_index=True,
        key="top_leads",
        column_config={
            "score": RATE,
            "percentile": st.column_config.ProgressColumn(
                min_value=0.0, max_value=100.0, format="%.1f"
            ),
        },
    )


def models_section(page: data.Page, f: data.Filters) -> None:
    st.header("Models: champions and challengers")
    models = only(page.models, f)
    if models.empty:
        st.info("No model has a champion in this copy yet.")
    else:
        rates = {c: RATE for c in models.columns if c.startswith(("holdout_", "realised_"))}
        st.caption(
            "Holdout metrics are each fit's own test rows at training; realised metrics are "
            "its first published scores against the outcomes since, weighted by records over "
            "the scoring cohorts."
        )
        st.dataframe(models, hide_index=True, column_config=rates)
    realised = only(page.realised, f)
    if not realised.empty:
        seg = realised["segment"].where(realised["segment"] == "", " " + realised["segment"])
        shown = realised.assign(series=realised["model"] + seg + " " + realised["role"])
        line(naive(shown, "cohort"), "cohort", "roc_auc", "series", "Realised ROC AUC by cohort")
    st.subheader("Decisions")
    decisions = only(page.decisions, f)
    if decisions.empty:
        st.caption("No decision recorded.")
    else:
        st.dataframe(decisions, hide_index=True)


def drift_section(page: data.Page, f: data.Filters) -> None:
    st.header("Drift and scores per build")
    scores = only(page.scores_per_build, f)
    if not scores.empty:
        shown = naive(scores.assign(series=scores["model"] + " " + scores["role"]), "built_at")
        left, right = st.columns(2)
        with left:
            line(shown, "built_at", "mean_score", "series", "Mean score per build", columns=2)
        with right:
            line(shown, "built_at", "psi", "series", "Score PSI against the holdout", columns=2)
    drift = only(page.drift, f)
    if not drift.empty:
        names = sorted(drift["model"].unique())
        name = names[0] if len(names) == 1 else st.selectbox("Input drift of", names)
        mine = naive(drift[drift["model"] == name], "built_at")
        line(mine, "built_at", "psi", "input", f"Input PSI per build: {name}")
        latest = mine[mine["built_at"] == mine["built_at"].max()]
        st.dataframe(
            latest.sort_values("psi", ascending=False), hide_index=True, key="latest_drift"
        )
    histogram = only(page.histogram, f)
    if not histogram.empty:
        line(histogram, "score", "share", "model", "Champion scores now (share per bin)", "Q")
    if not page.builds.empty:
        st.subheader("Builds")
        st.dataframe(page.builds, hide_index=True, key="builds")


def main(argv: list[str]) -> None:
    args = arguments(argv)
    st.set_page_config(page_title="mlsm: leads", layout="wide")
    st.title("Lead scores")
    with data.reading(args.readers) as con:
        if con is None:
            st.info(f"No readers' copy at {args.readers} yet: `mlsm build` writes it.")
            return
        filters = sidebar(*data.options(con))
        call_list = args.call_lists.get(filters.summary or "")
        page = data.load(con, args.key, call_list, filters)
    # The copy is closed from here on: drawing takes no lock on anything.
    header(page, args.readers)
    if page.missing:
        st.caption("Not in this copy (written by an older mlsm?): " + ", ".join(page.missing))
    leads_section(page, filters, call_list)
    models_section(page, filters)
    drift_section(page, filters)


main(sys.argv[1:])
