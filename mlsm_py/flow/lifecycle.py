"""Training and the factory run: `mlsm train` registers fits; `mlsm retrain` trains a
challenger per live model, judges it against the champion on the same newest matured rows,
and promotes, keeps or proposes -- all of it taking effect only if the build publishes."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb

from mlsm_py import segments
from mlsm_py.errors import MlsmError, ParityError
from mlsm_py.estimator import score_vector
from mlsm_py.flow import build as build_flow
from mlsm_py.flow import evaluate as summary_eval
from mlsm_py.flow.compiled import Compiled, compile_fit
from mlsm_py.flow.lock import hold
from mlsm_py.flow.session import Session, register, sync_files
from mlsm_py.registry import artifacts, store
from mlsm_py.spec import Model
from mlsm_py.train.metrics import evaluate
from mlsm_py.train.promotion import judge
from mlsm_py.train.segmented import train_all
from mlsm_py.train.trainer import Fit


@dataclass
class Gated:
    """One definition trained and gated in this run: its compiled fits (the global fit first)
    and, for a segmented model, the levels left to the fallback and the levels that failed."""

    model: Model
    compiled: list[Compiled]
    fallback: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def _fit_and_compile(s: Session, con: duckdb.DuckDBPyConnection, m: Model) -> Gated:
    t = train_all(con, m)
    fit = t.fits[0]
    s.say(
        f"  {m.name} v{m.version}: {fit.train_rows:,} train / {len(fit.holdout.X):,} holdout "
        f"rows ({fit.immature_rows:,} newest without a matured label left out); "
        + _metrics_text(fit.metrics)
        + (" (global fit)" if m.segments else "")
    )
    # the global fit failing parity stops the run, as it did
    c = compile_fit(fit, con, s.project.target)
    s.say(
        f"  {m.name}: fit {c.fit_id}, {c.route} route; parity over {c.parity.rows_checked:,} "
        f"rows, max |diff| {c.parity.max_abs_diff:.2e}" + _legs(c)
    )
    out = Gated(m, [c], t.fallback, t.failed)
    if not m.segments:
        return out
    for f in t.segment_fits:
        try:
            out.compiled.append(compile_fit(f, con, s.project.target))
        except ParityError as e:  # one segment's failure must not stop the others
            out.failed[str(f.segment)] = (str(e).splitlines() or ["parity failed"])[0][:300]
    # A level that had a fit and now falls below the minimum keeps that fit as champion.
    have = store.segment_aliases(con, m.name)
    for level in [v for v in out.fallback if store.CHAMPION in have.get(v, {})]:
        out.failed[level] = out.fallback.pop(level) + " (its champion stays)"
    segs = out.compiled[1:]
    worst = max((x.parity.max_abs_diff for x in segs), default=0.0)
    rows = sum(x.parity.rows_checked for x in segs)
    s.say(
        f"  {m.name}: {len(segs)} segment fits by {segments.describe(m)} (parity over "
        f"{rows:,} rows, max |diff| {worst:.2e}); {len(out.fallback)} level(s) to the "
        f"fallback{_levels(out.fallback)}; {len(out.failed)} failed{_levels(out.failed)}"
    )
    return out


def _levels(reasons: dict[str, str], most: int = 3) -> str:
    """A few levels and why, for one line of output; the rest counted."""
    if not reasons:
        return ""
    items = sorted(reasons.items())
    text = "; ".join(f"{k}: {v}" for k, v in items[:most])
    return f" ({text}{f'; and {len(items) - most} more' if len(items) > most else ''})"


def _metrics_text(metrics: dict) -> str:
    if "roc_auc" in metrics:
        return (
            f"ROC AUC {metrics['roc_auc']:.4f}, top-10% capture {metrics['top_decile_capture']:.1%}"
        )
    return f"RMSE {metrics['rmse']:.4g}, MAE {metrics['mae']:.4g}"


def _models(s: Session, names: Sequence[str]) -> list[Model]:
    return [s.defs.model(n) for n in names] if names else list(s.defs.models)


def run_train(s: Session, names: Sequence[str] = ()) -> list[str]:
    """Fit, gate and register; the first fit of a model becomes its champion, later fits its
    challenger. Writes the generated dbt files; scores nothing (`mlsm build` does)."""
    models = _models(s, names)
    with hold(s.project.state, "train", s.project.target):
        with s.registry() as con:
            sync_files(s, con)
        s.say("[1/3] dbt build: staging -> features -> input checks")
        build_flow.build_features(s)
        s.say(f"[2/3] training {len(models)} model(s) on matured labels; parity gate")
        with s.registry() as con:
            trained = [_fit_and_compile(s, con, m) for m in models]
            lines = []
            with store.transaction(con):
                for t in trained:
                    done = [_register_trained(s, con, c) for c in t.compiled]
                    lines.append(done[0] + _segment_summary(done[1:]))
            for t in trained:
                for level, why in sorted(t.failed.items()):
                    _refuse(s, con, t.model.name, f"segment skipped: {why}", None, segment=level)
            s.say("[3/3] registered:")
            for line in lines:
                s.say(f"      {line}")
            changed = sync_files(s, con)
            if changed:
                names = ", ".join(ln.rsplit("/", 1)[-1] for ln in changed)
                s.say(f"      dbt files ({len(changed)} changed): {names}")
            if s.defs.summaries:
                s.say("summary models on the holdout, next to their members:")
                summary_eval.report(s, con)
    return lines


def _segment_summary(done: list[str]) -> str:
    """`; 21 segment fits: 20 champion (first fit), 1 challenger` from their outcomes."""
    if not done:
        return ""
    counts = Counter(done)  # in first-seen order
    return f"; {len(done)} segment fits: " + ", ".join(f"{n} {d}" for d, n in counts.items())


def _register_trained(s: Session, con: duckdb.DuckDBPyConnection, c: Compiled) -> str:
    """Register a trained fit; its line for the global fit, an outcome word for a segment's."""
    m, seg = c.fit.model, c.fit.segment
    current = store.aliases(con, m.name, seg)
    if c.fit_id in current.values():
        which = [a for a, f in current.items() if f == c.fit_id][0]
        if seg is not None:
            return f"already {which}"
        return f"{m.name}: fit {c.fit_id} is already the {which} (same data, same definition)"
    register(s, con, c)
    if store.CHAMPION not in current:
        d = store.Decision(
            m.name,
            "first_fit",
            s.actor,
            "promoted",
            "first fit of the model" + (f" for segment {seg}" if seg is not None else ""),
            to_fit=c.fit_id,
            rule="the first fit of a model becomes its champion",
            eval_rows=len(c.fit.holdout.X),
            eval_from=c.fit.holdout.bounds.holdout_from,
            eval_until=c.fit.holdout.bounds.matured_until,
            segment=seg,
        )
        store.record_decision(con, d, {"challenger": {"fit_id": c.fit_id, **c.fit.metrics}})
        store.set_alias(con, m.name, store.CHAMPION, c.fit_id, s.actor, d.decision_id, seg)
        if seg is not None:
            return "champion (first fit)"
        return f"{m.name}: fit {c.fit_id} is the champion (first fit)"
    d = store.Decision(
        m.name,
        "train",
        s.actor,
        "challenger",
        "registered as challenger; `mlsm retrain` or `mlsm promote` decides",
        from_fit=current[store.CHAMPION],
        to_fit=c.fit_id,
        segment=seg,
    )
    store.record_decision(con, d, {"challenger": {"fit_id": c.fit_id, **c.fit.metrics}})
    store.set_alias(con, m.name, store.CHALLENGER, c.fit_id, s.actor, d.decision_id, seg)
    if seg is not None:
        return "challenger"
    return f"{m.name}: fit {c.fit_id} is the challenger (champion {current[store.CHAMPION]})"


@dataclass
class Outcome:
    model: str
    outcome: str  # promoted | kept | proposed | refused | first
    reason: str
    champion_fit: str | None
    challenger_fit: str | None
    metric: str = ""
    old: float = math.nan
    new: float = math.nan
    compared: dict = field(default_factory=dict)
    segment: str | None = None  # a segment fit's level; None: the global fit


def champion_metrics(
    s: Session, con: duckdb.DuckDBPyConnection, fit: Fit, champion_id: str
) -> dict[str, float]:
    """The champion re-scored on the challenger's holdout rows, never its own old numbers."""
    row = store.get_fit(con, champion_id)
    assert row is not None
    est = artifacts.load(
        artifacts.resolve(s.project.state, row["artifact_path"]), row["artifact_sha256"]
    )
    return evaluate(fit.holdout.y, score_vector(est, fit.holdout.X), fit.task)


def _decide(s: Session, con: duckdb.DuckDBPyConnection, c: Compiled, propose: bool) -> Outcome:
    m, seg = c.fit.model, c.fit.segment
    current = store.aliases(con, m.name, seg)
    champ = current.get(store.CHAMPION)
    rule = m.promotion
    if champ is None:
        return Outcome(
            m.name,
            "first",
            "first fit of the model" + (f" for segment {seg}" if seg is not None else ""),
            None,
            c.fit_id,
            compared={"challenger": {"fit_id": c.fit_id, **c.fit.metrics}},
            segment=seg,
        )
    if champ == c.fit_id:
        return Outcome(
            m.name,
            "kept",
            "the new fit is identical to the champion (same data, same definition)",
            champ,
            None,
            segment=seg,
        )
    old = champion_metrics(s, con, c.fit, champ)
    verdict = judge(m.name, rule, old, c.fit.metrics)
    outcome = ("proposed" if propose else "promoted") if verdict.promote else "kept"
    return Outcome(
        m.name,
        outcome,
        verdict.reason,
        champ,
        c.fit_id,
        rule.metric,
        old[rule.metric],
        c.fit.metrics[rule.metric],
        {"champion": {"fit_id": champ, **old}, "challenger": {"fit_id": c.fit_id, **c.fit.metrics}},
        segment=seg,
    )


def _decision(s: Session, c: Compiled, o: Outcome, run_id: str) -> store.Decision:
    m = c.fit.model
    first = o.outcome == "first"
    b = c.fit.holdout.bounds
    return store.Decision(
        m.name,
        "first_fit" if first else "retrain",
        s.actor,
        "promoted" if first else o.outcome,
        o.reason,
        from_fit=o.champion_fit,
        to_fit=c.fit_id,
        rule="the first fit of a model becomes its champion" if first else m.promotion.describe(),
        eval_rows=len(c.fit.holdout.X),
        eval_from=b.holdout_from,
        eval_until=b.matured_until,
        run_id=run_id,
        segment=o.segment,
    )


def run_retrain(s: Session, propose: bool = False, names: Sequence[str] = ()) -> list[Outcome]:
    """The factory run, all-or-nothing: a failing input check, parity gate, dbt build or a
    kill leaves aliases and published tables as they were (and the generated files are
    rewritten from the registry by the next mlsm command if a kill left them behind)."""
    s.require_warehouse()
    live = [m for m in _models(s, names) if m.status == "live"]
    if not live:
        raise MlsmError("no live model to retrain (drafts are trained with `mlsm train`)")
    run_id = store.new_id()
    with hold(s.project.state, "retrain", s.project.target):
        with s.registry() as con:
            store.discard_pending(con)  # a killed run's leftovers; the lock says none runs
            for line in sync_files(s, con):
                s.say(f"      {line} (rewritten from the registry)")
        s.say("[1/5] input checks: dbt build staging -> features -> checks")
        build_flow.build_features(s)
        s.say(f"[2/5] training {len(live)} challenger(s) on matured labels; parity gate")
        with s.registry() as con:
            trained = []
            for m in live:
                try:
                    trained.append(_fit_and_compile(s, con, m))
                except ParityError as e:
                    _refuse(s, con, m.name, str(e), run_id)
                    raise
            for t in trained:  # reported and skipped: each keeps its champion
                for level, why in sorted(t.failed.items()):
                    _refuse(s, con, t.model.name, f"segment skipped: {why}", run_id, segment=level)
            compiled = [c for t in trained for c in t.compiled]
            s.say("[3/5] champion vs challenger on the same newest matured rows")
            outcomes = [_decide(s, con, c, propose) for c in compiled]
            for line in outcome_lines(outcomes, trained):
                s.say(line)
            overlay = _stage(s, con, compiled, outcomes, run_id, propose)
            if s.defs.summaries:
                s.say("      summary models with these champions, on the holdout:")
                summary_eval.report(s, con, None if propose else overlay, run_id)
        if propose:
            s.say("[4/5] proposals written (nothing promoted):")
            with s.registry() as con:
                for line in sync_files(s, con):
                    s.say(f"      {line}")
            s.say("[5/5] review the diff, then `mlsm promote MODEL` applies a proposal")
            return outcomes
        s.say("[4/5] generated dbt files for the new champions and challengers")
        with s.registry() as con:
            for line in sync_files(s, con, overlay):
                s.say(f"      {line}")
        s.say("[5/5] dbt build: scores -> winners -> score checks -> publish")
        try:
            row = build_flow.build(s, run_id, "retrain")
        except BaseException as e:
            with s.registry() as con:
                with store.transaction(con):
                    store.discard_pending(con, run_id)
                for c, o in zip(compiled, outcomes, strict=True):
                    if o.challenger_fit is not None:
                        _refuse(
                            s,
                            con,
                            o.model,
                            f"build failed: {(str(e).splitlines() or [type(e).__name__])[0]}",
                            run_id,
                            o.champion_fit,
                            c.fit_id,
                            o.segment,
                        )
                sync_files(s, con)
            raise
        s.say(
            f"      dbt: {row['dbt_summary']}; published run {run_id}: "
            f"{row['rows_scored']:,} records scored"
        )
        for line in build_flow.fallback_lines(row):
            s.say(line)
        for w in row["warnings"]:
            s.say(f"      warning: {w}")
    return outcomes


def _legs(c) -> str:
    """The gate's other checks in a few words: the API's evaluator, and the reason codes."""
    ev = c.parity.evaluator_max_abs_diff
    out = f" (API evaluator {ev:.2e})" if ev is not None else " (not servable: library only)"
    if c.reasons:
        out += f"; {c.reasons['k']} reasons gated"
    return out


def outcome_lines(outcomes: list[Outcome], trained: list[Gated]) -> list[str]:
    """A line per model: the global fit's outcome, and a segmented model's counts."""
    lines = []
    for t in trained:
        mine = [o for o in outcomes if o.model == t.model.name]
        glob = [o for o in mine if o.segment is None]
        for o in glob:
            lines.append(f"  {o.model}: {o.outcome}: {o.reason}")
        segs = [o for o in mine if o.segment is not None]
        if t.model.segments:
            counts = Counter(o.outcome for o in segs)
            text = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none trained"
            skipped = f"; {len(t.failed)} skipped{_levels(t.failed)}" if t.failed else ""
            lines.append(f"  {t.model.name}: {len(segs)} segment fits: {text}{skipped}")
    return lines


def _refuse(
    s: Session,
    con: duckdb.DuckDBPyConnection,
    model: str,
    reason: str,
    run_id: str | None,
    champion: str | None = None,
    challenger: str | None = None,
    segment: str | None = None,
) -> None:
    champion = champion or store.aliases(con, model, segment).get(store.CHAMPION)
    d = store.Decision(
        model,
        "retrain",
        s.actor,
        "refused",
        reason[:2000],
        from_fit=champion,
        to_fit=challenger,
        run_id=run_id,
        segment=segment,
    )
    with store.transaction(con):
        store.record_decision(con, d)


def _stage(
    s: Session,
    con: duckdb.DuckDBPyConnection,
    compiled: list[Compiled],
    outcomes: list[Outcome],
    run_id: str,
    propose: bool,
) -> dict:
    """Register the fits and stage the aliases and decisions: pending until the build
    publishes, or at once for proposals (which promote nothing)."""
    overlay: dict = {}
    with store.transaction(con):
        for c, o in zip(compiled, outcomes, strict=True):
            if o.challenger_fit is None:
                continue
            register(s, con, c)
            d = _decision(s, c, o, run_id)
            promote = o.outcome in ("first", "promoted")
            changes = (
                {store.CHAMPION: c.fit_id, store.CHALLENGER: None}
                if promote
                else {store.CHALLENGER: c.fit_id}
            )
            seg = o.segment
            if propose:
                store.record_decision(con, d, o.compared)
                for alias, fit_id in changes.items():
                    store.set_alias(con, o.model, alias, fit_id, s.actor, d.decision_id, seg)
                continue
            store.record_decision(con, d, o.compared, pending=True)
            for alias, fit_id in changes.items():
                store.add_pending(con, run_id, o.model, alias, fit_id, d.decision_id, seg)
                overlay[(o.model, seg, alias)] = fit_id
    return overlay
