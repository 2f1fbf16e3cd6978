"""Moving a model's champion by hand (`mlsm promote`, `mlsm rollback`) and reading the
lifecycle back (`mlsm status`, `mlsm history`). A move is one transaction: the alias row and
its audit row; the next `mlsm build` scores with the new champion, no retraining."""

from __future__ import annotations

from typing import Any

import duckdb

from mlsm_py.dbt import writer
from mlsm_py.errors import MlsmError
from mlsm_py.flow.compiled import definition_hash
from mlsm_py.flow.lock import hold
from mlsm_py.flow.session import Session, ranked_fits, sync_files
from mlsm_py.registry import store


def _move(
    s: Session,
    con: duckdb.DuckDBPyConnection,
    model: str,
    to_fit: str,
    d: store.Decision,
    compared: dict | None,
) -> None:
    """Make `to_fit` the champion of `d.segment`. Call inside a transaction."""
    seg = d.segment
    current = store.aliases(con, model, seg)
    store.record_decision(con, d, compared)
    store.set_alias(con, model, store.CHAMPION, to_fit, s.actor, d.decision_id, seg)
    if current.get(store.CHALLENGER) == to_fit:
        store.set_alias(con, model, store.CHALLENGER, None, s.actor, d.decision_id, seg)


def _proposal(
    con: duckdb.DuckDBPyConnection, model: str, fit_id: str, segment: str | None
) -> dict | None:
    rows = [
        r
        for r in store.history(con, model, segment)
        if r["to_fit"] == fit_id and r["outcome"] in ("proposed", "kept", "challenger")
    ]
    return rows[0] if rows else None


def _segment(s: Session, con: duckdb.DuckDBPyConnection, model: str, segment: str | None):
    """Check `--segment` against the model: a segmented model's level with a fit."""
    m = s.defs.model(model)
    if segment is None:
        return m, ""
    if not m.segments:
        raise MlsmError(f"model {m.name!r} is not segmented; drop --segment")
    known = store.segment_aliases(con, m.name)
    if segment not in known:
        shown = ", ".join(sorted(known)[:10]) or "none"
        raise MlsmError(
            f"model {m.name!r} has no fit for segment {segment!r}; segments with fits: {shown}"
        )
    return m, f" segment {segment}"


def _plan(
    s: Session,
    con: duckdb.DuckDBPyConnection,
    m,
    where: str,
    segment: str | None,
    fit_id: str | None,
) -> tuple[str, store.Decision, dict | None, str | None]:
    """What promoting `fit_id` (default: the challenger) of one segment would record."""
    current = store.aliases(con, m.name, segment)
    target = fit_id or current.get(store.CHALLENGER)
    if target is None:
        raise MlsmError(f"model {m.name!r}{where} has no challenger to promote; pass --fit ID")
    row = store.get_fit(con, target)
    if row is None or row["model_name"] != m.name or row["segment"] != segment:
        raise MlsmError(
            f"fit {target!r} is not a registered fit of model {m.name!r}"
            + (where or " (its global fit)")
        )
    if not row["parity_passed"]:
        raise MlsmError(f"fit {target} failed its parity gate and cannot be promoted")
    if current.get(store.CHAMPION) == target:
        raise MlsmError(f"fit {target} is already the champion of {m.name!r}{where}")
    basis = _proposal(con, m.name, target, segment)
    forced = fit_id is not None and fit_id != current.get(store.CHALLENGER)
    compared = None
    if basis is not None:
        compared = {}
        for r in basis["compared"]:
            compared.setdefault(r["role"], {"fit_id": r["fit_id"]})[r["metric"]] = r["value"]
        reason = (
            f"applied by {s.actor}; as compared on {basis['decided_at']:%Y-%m-%d}: "
            + basis["reason"]
        )
    else:
        reason = f"forced by {s.actor}: no comparison on shared rows was recorded"
    d = store.Decision(
        m.name,
        "promote",
        s.actor,
        "forced" if forced else "promoted",
        reason,
        from_fit=current.get(store.CHAMPION),
        to_fit=target,
        rule="manual",
        eval_rows=basis["eval_rows"] if basis else None,
        eval_from=basis["eval_from"] if basis else None,
        eval_until=basis["eval_until"] if basis else None,
        segment=segment,
    )
    return target, d, compared, current.get(store.CHAMPION)


def promote(s: Session, model: str, fit_id: str | None = None, segment: str | None = None) -> str:
    s.require_warehouse()
    with hold(s.project.state, "promote", s.project.target), s.registry() as con:
        m, where = _segment(s, con, model, segment)
        target, d, compared, was = _plan(s, con, m, where, segment, fit_id)
        with store.transaction(con):
            _move(s, con, m.name, target, d, compared)
        sync_files(s, con)
    return f"{m.name}{where}: fit {target} is the champion (was {was})"


def promote_proposed(s: Session, model: str) -> str:
    """Apply every open proposal of a model at once (its global fit's and each segment's,
    from `mlsm retrain --propose`), in one transaction: a proposal is open while the
    segment's last decision proposed its current challenger."""
    s.require_warehouse()
    with hold(s.project.state, "promote", s.project.target), s.registry() as con:
        m = s.defs.model(model)
        levels = [None, *sorted(store.segment_aliases(con, m.name))] if m.segments else [None]
        moves = []
        for seg in levels:
            chall = store.aliases(con, m.name, seg).get(store.CHALLENGER)
            last = store.last_decision(con, m.name, seg)
            if chall and last and last["outcome"] == "proposed" and last["to_fit"] == chall:
                where = f" segment {seg}" if seg is not None else ""
                moves.append(_plan(s, con, m, where, seg, None))
        if not moves:
            raise MlsmError(f"model {m.name!r} has no open proposal (`mlsm retrain --propose`)")
        with store.transaction(con):
            for target, d, compared, _ in moves:
                _move(s, con, m.name, target, d, compared)
        sync_files(s, con)
    segs = sum(1 for _, d, _, _ in moves if d.segment is not None)
    parts = (["the global fit"] if segs < len(moves) else []) + (
        [f"{segs} segment(s)"] if segs else []
    )
    return f"{m.name}: {len(moves)} proposal(s) applied ({', '.join(parts)})"


def rollback(s: Session, model: str, segment: str | None = None) -> str:
    """Back to the champion before the current one: the `from_fit` of the decision that
    installed the current champion (of one segment, with `segment`)."""
    s.require_warehouse()
    with hold(s.project.state, "rollback", s.project.target), s.registry() as con:
        m, where = _segment(s, con, model, segment)
        current = store.aliases(con, m.name, segment).get(store.CHAMPION)
        installed = store.installing_decision(con, m.name, segment)
        previous = installed["from_fit"] if installed else None
        if current is None or previous is None:
            raise MlsmError(f"model {m.name!r}{where} has no previous champion to roll back to")
        d = store.Decision(
            m.name,
            "rollback",
            s.actor,
            "rolled_back",
            f"rolled back by {s.actor} to the champion before {current}",
            from_fit=current,
            to_fit=previous,
            rule="manual",
            segment=segment,
        )
        with store.transaction(con):
            _move(s, con, m.name, previous, d, None)
        sync_files(s, con)
    return f"{m.name}{where}: fit {previous} is the champion again (was {current})"


def _published_status(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    if not store.table_exists(con, "published", "scores"):
        return {}
    return dict(
        con.execute("select distinct model_name, model_status from published.scores").fetchall()
    )


def stale(s: Session, con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Per model, what the definitions say that the registry or the last publication does
    not reflect yet: an untrained or changed definition, a status edited since the last build."""
    published = _published_status(con)
    out: dict[str, list[str]] = {}
    for m in s.defs.models:
        al = store.aliases(con, m.name)
        champ = store.get_fit(con, al[store.CHAMPION]) if store.CHAMPION in al else None
        lines = []
        if champ is None:
            lines.append(f"not trained: run `mlsm train {m.name}`")
        elif champ["model_version"] != m.version:
            lines.append(
                f"the champion is v{champ['model_version']}, the definition "
                f"v{m.version}: train it (`mlsm train {m.name}`)"
            )
        elif champ["definition_hash"] != definition_hash(m):
            lines.append(
                f"definition changed since champion {champ['fit_id']} was trained; "
                f"it still scores until `mlsm train {m.name}` or `mlsm retrain`"
            )
        if m.name in published and published[m.name] != m.status:
            lines.append(
                f"status is {m.status} in the definitions, {published[m.name]} in the "
                "published scores: the next `mlsm build` applies it"
            )
        out[m.name] = lines
    return out


def status(s: Session) -> list[dict[str, Any]]:
    """One row per defined model: what scores it in production and whether that is stale."""
    s.require_warehouse()
    with s.registry() as con:
        out = []
        files = writer.render(s.defs, ranked_fits(s, con))
        on_disk = writer.existing(s.project.dbt_dir)
        differ = sorted(str(p) for p in set(files) | set(on_disk) if files.get(p) != on_disk.get(p))
        notes = stale(s, con)
        for m in s.defs.models:
            al = store.aliases(con, m.name)
            champ = store.get_fit(con, al[store.CHAMPION]) if store.CHAMPION in al else None
            last = store.last_decision(con, m.name)
            out.append(
                {
                    "model": m.name,
                    "version": m.version,
                    "status": m.status,
                    "champion": al.get(store.CHAMPION),
                    "challengers": [al[store.CHALLENGER]] if store.CHALLENGER in al else [],
                    "trained_at": champ["trained_at"].isoformat() if champ else None,
                    "route": champ["route"] if champ else None,
                    "parity_max_abs_diff": champ["parity_max_abs_diff"] if champ else None,
                    "metrics": store.fit_metrics(con, champ["fit_id"]) if champ else {},
                    "last_decision": (
                        f"{last['outcome']} ({last['action']}, {last['decided_at']:%Y-%m-%d %H:%M}"
                        f" by {last['actor']})"
                        if last
                        else None
                    ),
                    "stale": notes[m.name],
                    "generated_files_out_of_date": differ,
                    "segments": _segments_status(con, m) if m.segments else None,
                }
            )
    return out


def _segments_status(con: duckdb.DuckDBPyConnection, m) -> dict[str, Any]:
    """A segmented model's fits, grouped: counts, the spread of their metric, and per
    segment its champion, challenger and holdout metrics (`mlsm status --segments`)."""
    per = store.segment_aliases(con, m.name)
    rows = []
    for seg, al in sorted(per.items()):
        champ = al.get(store.CHAMPION)
        metrics = store.fit_metrics(con, champ) if champ else {}
        last = store.last_decision(con, m.name, seg)
        rows.append(
            {
                "segment": seg,
                "champion": champ,
                "challenger": al.get(store.CHALLENGER),
                "roc_auc": metrics.get("roc_auc"),
                "top_decile_capture": metrics.get("top_decile_capture"),
                "holdout_rows": (store.get_fit(con, champ) or {}).get("holdout_rows"),
                "last_decision": f"{last['outcome']} ({last['action']})" if last else None,
            }
        )
    aucs = [r["roc_auc"] for r in rows if r["roc_auc"] is not None]
    return {
        "by": list(m.segments),
        "fits": sum(1 for r in rows if r["champion"]),
        "challengers": sum(1 for r in rows if r["challenger"]),
        "roc_auc_min": min(aucs) if aucs else None,
        "roc_auc_max": max(aucs) if aucs else None,
        "skipped_last_run": sorted(
            r["segment"] for r in rows if (r["last_decision"] or "").startswith("refused")
        ),
        "rows": rows,
    }


def history(s: Session, model: str, segment: str | None = None) -> list[dict[str, Any]]:
    """A model's decisions, newest first: every segment's, or one segment's."""
    m = s.defs.model(model)
    s.require_warehouse()
    with s.registry() as con:
        return store.history(con, m.name, store.ANY if segment is None else segment)
