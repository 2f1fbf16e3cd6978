"""A failed dbt node as one line a person can act on: where, how many rows, the rule in words,
and a few of the offending values."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

SAMPLE = 5
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # dbt colours some messages (unit test diffs)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "+inf" if v > 0 else "-inf"
        return repr(v)
    return "NULL" if v is None else repr(v) if isinstance(v, str) else str(v)


def rule_words(name: str, column: str | None, kwargs: dict) -> str:
    col = column or "the rows"
    if name == "not_null":
        return f"{col} must not be NULL"
    if name == "unique":
        return f"{col} must be unique"
    if name == "accepted_values":
        values = ", ".join(str(v) for v in kwargs.get("values", []))
        return f"{col} must be one of: {values}"
    if name == "accepted_range":
        parts = []
        if kwargs.get("min_value") is not None:
            parts.append(f">= {kwargs['min_value']}")
        if kwargs.get("max_value") is not None:
            parts.append(f"<= {kwargs['max_value']}")
        return f"{col} must be a number {' and '.join(parts)} (not NaN)"
    if name == "castable":
        return f"{col} must be readable as {kwargs.get('type')} (text in a number column?)"
    if name == "finite":
        return f"{col} must be a finite number (not NaN, +inf or -inf)"
    if name == "winner_coverage":
        return f"every record with a valid live score has a winner in {kwargs.get('summary_model')}"
    if name == "quarantine_share":
        return (
            f"at most {float(kwargs.get('max_share', 0)):.1%} of the rows may be quarantined for "
            f"{kwargs.get('column')}"
        )
    if name == "unique_combination_of_columns":
        cols = ", ".join(kwargs.get("combination_of_columns", []))
        return f"one row per ({cols})"
    if name == "registered_fit":
        return (
            f"scores must come from the registered {kwargs.get('role')} fit of "
            f"{kwargs.get('model_name')}, from the file mlsm wrote (`mlsm build` rewrites it)"
        )
    args = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    return f"{name}({args})"


# Checks whose failing rows are the offending values of the column: the keys holding those
# values are the rows to fix.
VALUE_CHECKS = ("not_null", "accepted_range", "accepted_values", "finite")


def _query(warehouse: Any, sql: str) -> list[dict]:
    """The rows of `sql` (in the warehouse's own dialect, as dbt compiled it) as dicts; [] on
    any error. `warehouse`: a DuckDB file or a `warehouse.targets.Target`."""
    if warehouse is None:
        return []
    try:
        if isinstance(warehouse, Path):
            if not warehouse.is_file():
                return []
            import duckdb

            con = duckdb.connect(str(warehouse))
        else:
            con = warehouse.connect(read_only=True)
        try:
            run = getattr(con, "execute_native", con.execute)
            cur = run(sql)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        finally:
            con.close()
    except Exception:  # noqa: BLE001 - a sample is a courtesy; the count is the finding
        return []


def sample(node: Any, warehouse: Any) -> list[str]:
    """A few rows the failing test returned, read from a DuckDB warehouse; [] elsewhere."""
    sql = getattr(node, "compiled_code", None)
    if not sql:
        return []
    rows = _query(warehouse, f"select * from (\n{sql}\n) as failing limit {SAMPLE}")
    # The first column is the offending value in every check mlsm writes (accepted_values
    # adds a count beside it).
    return [_fmt(next(iter(r.values()))) for r in rows]


def sample_keys(
    node: Any, check: str, relation: str, column: str, key: str, warehouse: Any
) -> list[str]:
    """Keys of a few rows holding the offending values (the rows a person goes and fixes)."""
    sql = getattr(node, "compiled_code", None)
    if not sql or check not in VALUE_CHECKS:
        return []
    if check == "not_null":
        where = f'"{column}" is null'
    else:  # the first column of the check's rows is the offending value
        first = _first_column(warehouse, sql)
        if first is None:
            return []
        where = f'"{column}" in (select "{first}" from (\n{sql}\n) as failing)'
    rows = _query(
        warehouse, f'select "{key}" from {relation} where {where} order by 1 limit {SAMPLE}'
    )
    return [_fmt(r[key]) for r in rows]


def _first_column(warehouse: Any, sql: str) -> str | None:
    rows = _query(warehouse, f"select * from (\n{sql}\n) as failing limit 1")
    return next(iter(rows[0])) if rows else None


def _rows(node: Any, warehouse: Any) -> list[dict]:
    sql = getattr(node, "compiled_code", None)
    return _query(warehouse, f"select * from (\n{sql}\n) as failing limit 20") if sql else []


def findings(name: str, model: str, rows: list[dict]) -> str:
    """The rows of a check whose rows are findings, in words."""
    if name == "flagged" and model == "input_drift":
        # One entry per input: champions trained on the same data share the same PSI.
        by_input: dict[tuple, list[str]] = {}
        for r in rows:
            unseen = f", {r['unseen_share']:.1%} unseen levels" if r.get("unseen_share") else ""
            what = (
                r["column_name"],
                f"PSI {r['psi']:.3f}{unseen} (warn at {r['warn_at']:g}, error at "
                f"{r['error_at']:g})",
            )
            by_input.setdefault(what, []).append(r["model_name"])
        parts = [
            f"{col} {text} for {', '.join(sorted(models))}"
            for (col, text), models in sorted(by_input.items())
        ]
        return "input drift against the champions' training data: " + "; ".join(parts)
    if name == "flagged" and model == "score_checks":
        parts = []
        for r in rows:
            what = f"{r['model_name']} ({r['role']}): score deciles PSI "
            what += "n/a" if r["psi"] is None else f"{r['psi']:.3f}"
            what += f" (warn at {r['warn_at']:g}, error at {r['error_at']:g}), mean score "
            what += "n/a" if r["mean_score"] is None else f"{r['mean_score']:.4f}"
            if r.get("mean_low") is not None:
                what += f" (band {r['mean_low']:g} to {r['mean_high']:g})"
            parts.append(what)
        return "scores against the holdout: " + "; ".join(parts)
    if name == "volume_change" and rows:
        r = rows[0]
        return f"{r['rows_now']:,} rows against {r['rows_before']:,} in the last published build"
    if name == "freshness" and rows:
        r = max(rows, key=lambda r: float(r["hours"]))
        if r["newest"] is None:
            return "no rows: nothing is fresh"
        return (
            f"the newest row is {r['age_hours']:,} hours old ({r['newest']}); "
            f"{r['level']} at {float(r['hours']):g} hours"
        )
    return ""


def describe(result: Any, warehouse: Any = None, keys: dict[str, str] | None = None) -> str:
    node = result.node
    meta = getattr(node, "test_metadata", None)
    if meta is not None and str(result.status) == "error":  # the check's SQL did not run
        text = ANSI.sub("", str(result.message or "")).strip()
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "no message")
        return f"check {node.name} ({meta.name}) could not run: {first[:300]}"
    if meta is not None and meta.name in ("flagged", "volume_change", "freshness"):
        attached = getattr(node, "attached_node", None) or ""
        model = attached.rsplit(".", 1)[-1] if attached else ""
        text = findings(meta.name, model, _rows(node, warehouse))
        return f"{model}: {text or f'{result.failures or 0} findings'} (check {node.name})"
    if meta is not None:
        column = getattr(node, "column_name", None)
        attached = getattr(node, "attached_node", None) or ""
        model = attached.rsplit(".", 1)[-1] if attached else ""
        sources = getattr(node, "sources", None) or []
        if not model and sources:  # a check on a source: name it as the warehouse does
            model = ".".join(sources[0])
        kwargs = {k: v for k, v in (meta.kwargs or {}).items() if k not in ("model", "column_name")}
        where = f"{model}.{column}" if column else model
        values = sample(node, warehouse)
        tail = f"; e.g. {', '.join(values)}" if values else ""
        key = (keys or {}).get(model)
        if key and column and not sources:
            found = sample_keys(node, meta.name, model, column, key, warehouse)
            if found:
                tail += f" ({key} {', '.join(found)})"
        return (
            f"{where}: {result.failures or 0} rows break the rule "
            f'"{rule_words(meta.name, column, kwargs)}" (check {node.name}, {meta.name}){tail}'
        )
    text = ANSI.sub("", str(result.message or ""))
    # A Python model's error carries its traceback: the last line is the error itself.
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    message = lines[-1] if "Traceback" in text and lines else " ".join(text.split())
    return f"{node.resource_type} {node.name}: {result.status}: {message[:500]}"
