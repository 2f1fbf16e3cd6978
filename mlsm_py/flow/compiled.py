"""One fit, compiled once: route, fit id, the SQL it computes, its artifact and its parity
report. The same value goes to the registry and, from there, to the dbt writer."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mlsm_py.compile.assemblers import Assembled, assemble
from mlsm_py.compile.emitter import SqlEmitter
from mlsm_py.compile.path import choose_path
from mlsm_py.errors import SpecError, UnsupportedError
from mlsm_py.flow.probe import measure
from mlsm_py.parity.gate import ParityReport, check_parity, gate, input_types
from mlsm_py.parity.python_route import check_parity_python
from mlsm_py.registry import artifacts
from mlsm_py.spec import Model
from mlsm_py.train.trainer import Fit

# Stand-ins the writer replaces: the relation scored, and the fit id (which is a hash of the
# SQL, so it cannot appear in what it hashes).
RELATION = "MLSM_SOURCE_RELATION_PLACEHOLDER"
FIT_ID = "MLSM_FIT_ID_PLACEHOLDER"


@dataclass
class Compiled:
    fit: Fit
    fit_id: str
    route: str  # "sql" or "python"
    route_reason: str
    assembled: Assembled | None
    template: str  # the dbt model body with RELATION left in; the fit id filled in
    scoring_sql: str | None  # plain SQL over the feature relation (None: SQL cannot express it)
    artifact: bytes
    artifact_sha256: str
    parity: ParityReport | None = None
    # Declared reason codes: {"k", "method", "means", "gate"}; None without them. Stored with
    # the fit, so the API rebuilds the same reason expressions from the artifact.
    reasons: dict | None = None
    dialect: str = "duckdb"  # what `template` and `scoring_sql` are rendered in
    # The automatic route choice's estimate and, for a close call, both routes measured on
    # the holdout (see compile.path.PathChoice.timing); None when the route was not chosen.
    route_timing: dict | None = None

    @property
    def outputs(self) -> list[dict]:
        role = {"classifier": "probability", "decision": "decision", "regressor": "prediction"}
        return [{"name": "score", "role": role[self.fit.task], "type": "double"}]


def jinja_inert(text: str) -> str:
    """Make text that dbt's Jinja would evaluate render literally: every brace becomes a Jinja
    expression printing that brace, so no `{{`, `{%` or `{#` survives."""
    return re.sub(r"[{}]", lambda m: "{{ '" + m.group(0) + "' }}", text)


def contract_finite(m: Model) -> frozenset[str]:
    """The inputs whose `fields` contract has the `finite` rule (every double field): a build
    scores none of their NaN or +-inf values, so the SQL need not turn NaN into NULL."""
    return frozenset(f.name for f in m.fields if f.type == "double")


def assemble_for(m: Model, estimator: Any) -> Assembled:
    """The estimator assembled as the model's contract lets it be read (`Assembled.finite`)."""
    assembled = assemble(estimator)
    return replace(assembled, finite=contract_finite(m) & frozenset(assembled.inputs))


def _route(
    m: Model, estimator: Any, target: Any = None, probe: Any = None
) -> tuple[str, str, Assembled | None, dict | None]:
    """(route, why, assembled, route_timing). `probe(assembled)` times both routes
    (`flow.probe.measure`); used only for a close call of the automatic choice."""
    python_ok = target is None or target.python_route
    try:
        assembled = assemble_for(m, estimator)
    except UnsupportedError as e:
        if not python_ok:
            raise SpecError(
                f"model {m.name!r}: SQL cannot express this estimator ({e}), and dbt target "
                f"{target.name!r} ({target.kind}) cannot run the Python route. Choose an "
                "estimator mlsm compiles to SQL, or score this model on a target with Python "
                "models (duckdb)"
            ) from None
        if m.reasons:
            raise SpecError(
                f"model {m.name!r}: reason codes are computed in SQL, and SQL cannot express "
                f"this estimator: {e}. Set reasons=0, or choose an estimator mlsm compiles"
            ) from None
        if m.scoring_path == "sql" or m.segments:
            if m.segments:
                raise SpecError(
                    f"model {m.name!r}: segment_by needs the SQL route (one scoring model "
                    f"routes every segment), and SQL cannot express this estimator: {e}. "
                    "Drop segment_by, or define one model per segment"
                ) from None
            raise
        return "python", f"SQL cannot express it: {e}", None, None
    if m.reasons and not m.segments:
        return "sql", "reason codes are computed in the scoring SQL", assembled, None
    if m.segments:
        if m.scoring_path == "python":
            raise SpecError(
                f"model {m.name!r}: segment_by needs the SQL route; scoring_path='python' "
                "cannot be segmented"
            )
        return "sql", "segmented: one SQL model routes every segment", assembled, None
    if m.scoring_path == "python" and not python_ok:
        raise SpecError(
            f"model {m.name!r} declares scoring_path='python', and dbt target {target.name!r} "
            f"({target.kind}) cannot run Python models. Use scoring_path='auto' or 'sql' "
            "there (this estimator compiles to SQL)"
        )
    if m.scoring_path != "auto":
        return m.scoring_path, "declared in the model definition", assembled, None
    if not python_ok:
        why = f"target {target.name!r} ({target.kind}) runs SQL models only"
        return "sql", why, assembled, None
    measure = (lambda: probe(assembled)) if probe is not None else None
    choice = choose_path(estimator, assembled, measure)
    return choice.path, choice.reason, assembled, choice.timing()


def canonical(value: Any) -> Any:
    """Estimator parameters as plain JSON values, for hashing what a definition asks for."""
    if hasattr(value, "get_params"):
        params = value.get_params(deep=False)
        cls = f"{type(value).__module__}.{type(value).__qualname__}"
        return {"class": cls, **{k: canonical(v) for k, v in sorted(params.items())}}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def definition_hash(m: Model) -> str:
    """What training depends on: a change here makes the champion stale. Status, population
    and the promotion rule act at build or decision time and are not part of it."""
    doc = {
        "name": m.name,
        "version": m.version,
        "features": m.features,
        "key": m.key,
        "target": m.target,
        "fields": [f.__dict__ for f in m.fields],
        "split": m.split.__dict__,
        "estimator": canonical(m.estimator),
        "scoring_path": m.scoring_path,
    }
    if m.segments:  # only then: unsegmented definitions keep the hashes they had
        doc["segments"] = [list(m.segments), m.segment_min_rows, m.segment_min_positives]
    if m.reasons:  # the reasons are part of the fit's SQL: declaring them makes it stale
        doc["reasons"] = m.reasons
    text = json.dumps(doc, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def compile_fit(fit: Fit, con: Any, target: Any = None) -> Compiled:
    """Route, compile and parity-gate one fit on `con`, a connection to the warehouse of
    `target` (None: DuckDB): the SQL is rendered in the target's dialect and the gate runs
    there. Raises ParityError naming the model when the compiled model disagrees with the
    library."""
    m = fit.model
    python_ok = target is None or target.python_route

    def probe(assembled: Assembled) -> Any:
        return measure(fit.estimator, assembled, con, fit.holdout.X, input_types(assembled))

    route, reason, assembled, timing = _route(
        m, fit.estimator, target, probe if python_ok and len(fit.holdout.X) else None
    )
    dialect = "duckdb" if target is None else target.dialect
    engine = con if target is None else target.engine(con)
    data, sha = artifacts.dumps(fit.estimator)
    scoring_sql = None
    explained, contrib = _with_reasons(fit, assembled)
    reasons = None
    if assembled is not None:
        body = SqlEmitter(dialect).render(
            explained,
            RELATION,
            m.key,
            {"fit_id": FIT_ID, "model_name": m.name, "model_version": m.version},
        )
        # The fit id names the fit, not its rendering: it hashes the DuckDB text on every
        # target, so one fit has one id (and the same published rows) on every warehouse.
        canon = (
            body
            if dialect == "duckdb"
            else SqlEmitter("duckdb").render(
                explained,
                RELATION,
                m.key,
                {"fit_id": FIT_ID, "model_name": m.name, "model_version": m.version},
            )
        )
        fit_id = _digest(m, "sql", canon, fit.segment)
        if contrib is not None:
            reasons = _gate_reasons(fit, contrib, body, assembled, engine)
        scoring_sql = body.replace(FIT_ID, fit_id).replace(RELATION, m.features)
        report = (
            check_parity(fit.estimator, engine, fit.holdout.X, assembled=assembled)
            if route == "sql"
            else check_parity_python(fit.estimator, con, fit.holdout.X)
        )
    else:
        # No SQL to hash: the fit is what the definition asked for, fitted on these rows.
        text = json.dumps(canonical(fit.estimator.get_params(deep=False)), sort_keys=True)
        fit_id = _digest(m, "python", f"{text}\n{fit.data_hash}", fit.segment)
        report = check_parity_python(fit.estimator, con, fit.holdout.X)
    gate(m.name if fit.segment is None else f"{m.name}[{fit.segment}]", m.version, report)
    if route == "sql":
        assert scoring_sql is not None
        template = jinja_inert(body.replace(FIT_ID, fit_id))
        if template.count(RELATION) != 1:
            raise SpecError(
                f"model {m.name!r}: a column name or category level contains the reserved "
                f"text {RELATION!r}"
            )
    else:
        template = python_model_source(m, fit_id)
    return Compiled(
        fit,
        fit_id,
        route,
        reason,
        assembled,
        template,
        scoring_sql,
        data,
        sha,
        report,
        reasons,
        dialect,
        timing,
    )


def _with_reasons(fit: Fit, assembled: Assembled | None) -> tuple[Any, Any]:
    """The outputs the scoring SQL selects: the score, and the declared reason codes; with
    their contributions (None without reasons)."""
    m = fit.model
    if not m.reasons or assembled is None:
        return assembled, None
    from mlsm_py.compile import reasons as rc

    means = list(fit.reason_means) if fit.reason_means is not None else None
    try:
        c = rc.contributions(fit.estimator, means=means)
        top = rc.top_reasons(c, m.reasons)
    except UnsupportedError as e:
        raise SpecError(f"model {m.name!r}: reasons={m.reasons}: {e}") from None
    columns = rc.as_assembled(assembled.inputs, [*assembled.outputs(), *top])
    return replace(columns, finite=assembled.finite), c


def _gate_reasons(fit: Fit, c: Any, body: str, assembled: Assembled, con: Any) -> dict:
    """Gate the reason codes of the scoring SQL `body` (see parity.reasons_gate) and say what
    the registry keeps of them."""
    from mlsm_py.parity import reasons_gate
    from mlsm_py.parity.gate import PARITY_TABLE

    m = fit.model
    sql = body.replace(RELATION, PARITY_TABLE)
    report = reasons_gate.check_reasons(c, m.reasons, con, fit.holdout.X, assembled, sql, m.key)
    where = m.name if fit.segment is None else f"{m.name}[{fit.segment}]"
    reasons_gate.gate(where, m.version, report)
    means = list(fit.reason_means) if fit.reason_means is not None else None
    return {"k": m.reasons, "method": c.method, "means": means, "gate": report.to_dict()}


def _digest(m: Model, kind: str, text: str, segment: str | None) -> str:
    seg = "" if segment is None else f"segment {segment}\n"  # the global fit: as before
    return hashlib.sha256(f"{m.name}\n{m.version}\n{seg}{kind}\n{text}".encode()).hexdigest()[:16]


def python_model_source(m: Model, fit_id: str) -> str:
    """A dbt Python model scoring the relation with the registered artifact. dbt does not
    render Python models with Jinja; every value is written with repr(). The artifact's path
    and sha256 come from the registry at build time, so this file depends on the fit only."""
    return "\n".join(
        [
            "from mlsm_py.dbt.python_model import score_model",
            "",
            f"FIT_ID = {fit_id!r}",
            "",
            "",
            "def model(dbt, session):",
            '    dbt.config(materialized="table")',
            f"    relation = {RELATION}",
            "    return score_model(",
            "        session,",
            "        relation,",
            "        fit_id=FIT_ID,",
            f"        key={m.key!r},",
            f"        constants={{'fit_id': FIT_ID, 'model_name': {m.name!r}, "
            f"'model_version': {m.version!r}}},",
            "    )",
        ]
    )
