"""`mlsm export`: the change feed as files a CRM sync job picks up, one per published run.

A file is named by the run's publication time and run id,
`<call list>__changes__<YYYYmmddTHHMMSSZ>__<run id>.<parquet|csv>`, so names sort in publication
order. It holds that run's rows of `history.<call list>__changes` (see `flow.changes`), ordered
by change and key. A run that changed nothing still gets a file, with no rows, so the sync job
can tell "nothing changed" from "not exported yet".

A run whose file is already in the directory is left as it is (`--overwrite` rewrites it), so
an export every 15 minutes writes only the runs published since the last one. Writes are
atomic: the file is written under a hidden temporary name in the same directory,
flushed to disk, then renamed over the final name, so a killed export leaves either no file or
the whole file under the final name. The same run exported again gives the same bytes: rows in a
fixed order, no timestamps of the export itself, Parquet written with fixed options by the
pinned pyarrow (its `created_by` names the pyarrow version, nothing else varies).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mlsm_py.errors import MlsmError
from mlsm_py.flow import changes
from mlsm_py.registry import store

FORMATS = ("parquet", "csv")


@dataclass(frozen=True)
class Exported:
    run_id: str
    path: Path
    rows: int
    counts: dict[str, int]
    written: bool = True  # False: the file was there already (same name, same bytes)


def feed_runs(con: Any, call_list: str) -> list[tuple[str, Any]]:
    """(run_id, published_at) of every publication that wrote the feed, oldest first."""
    q = (
        f"select change_run_id, published_at from {changes.HISTORY}."
        f"{changes.runs_name(call_list)} order by published_at, change_run_id"
    )
    return [(r, t) for r, t in con.execute(q).fetchall()]


def runs_after(con: Any, call_list: str, since: str | None) -> list[tuple[str, Any]]:
    """The feed's runs published after run `since` (any published build; None: all)."""
    runs = feed_runs(con, call_list)
    if since is None:
        return runs
    q = f"select finished_at from {store.SCHEMA}.builds where run_id = ? and status = 'published'"
    found = con.execute(q, [since]).fetchall()
    if not found:
        known = ", ".join(r for r, _ in runs[-3:]) or "none yet"
        raise MlsmError(f"--since {since}: no published run has that id (latest: {known})")
    return [(r, t) for r, t in runs if (t, r) > (found[0][0], since)]


def file_name(call_list: str, run_id: str, finished_at: Any, fmt: str) -> str:
    stamp = finished_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{changes.feed_name(call_list)}__{stamp}__{run_id}.{fmt}"


def run_table(con: Any, call_list: str, key: str, run_id: str) -> pa.Table:
    feed = f"{changes.HISTORY}.{changes.feed_name(call_list)}"
    k = changes._q(key)
    q = (
        f"select * from {feed} where change_run_id = ? "
        f"order by case change when 'new' then 0 when 'updated' then 1 else 2 end, {k}"
    )
    return con.execute(q, [run_id]).fetch_arrow_table().replace_schema_metadata(None)


def _bytes(table: pa.Table, fmt: str) -> bytes:
    if fmt == "parquet":
        sink = pa.BufferOutputStream()
        pq.write_table(
            table,
            sink,
            compression="zstd",
            compression_level=3,
            use_dictionary=True,
            write_statistics=True,
            data_page_version="1.0",
            store_schema=False,  # no Arrow schema blob: the Parquet schema says it
        )
        return sink.getvalue().to_pybytes()
    out = io.StringIO(newline="")
    w = csv.writer(out, lineterminator="\n")
    w.writerow(table.column_names)
    for row in zip(*(c.to_pylist() for c in table.columns), strict=True):
        w.writerow(["" if v is None else _csv_value(v) for v in row])
    return out.getvalue().encode()


def _csv_value(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)  # shortest text that reads back as the same double
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)


def export(
    con: Any,
    call_list: str,
    key: str,
    out_dir: Path,
    since: str | None,
    fmt: str,
    overwrite: bool = False,
) -> list[Exported]:
    """Write the files of the feed's runs after `since` into `out_dir`. A run whose file is
    already there is left as it is (its bytes would be the same) unless `overwrite`, so a
    15-minute job that exports without --since writes only the new runs."""
    if fmt not in FORMATS:
        raise MlsmError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if not store.table_exists(con, changes.HISTORY, changes.runs_name(call_list)):
        raise MlsmError(f"no change feed for {call_list} yet: run `mlsm build` first")
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for run_id, finished_at in runs_after(con, call_list, since):
        table = run_table(con, call_list, key, run_id)
        path = out_dir / file_name(call_list, run_id, finished_at, fmt)
        write = overwrite or not path.exists()
        if write:
            write_atomic(path, _bytes(table, fmt))
        counts: dict[str, int] = {}
        for c in table.column("change").to_pylist():
            counts[c] = counts.get(c, 0) + 1
        done.append(Exported(run_id, path, table.num_rows, counts, write))
    return done
