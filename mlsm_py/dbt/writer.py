"""Renders the generated part of the dbt project from the registry: one scoring model per
champion and challenger fit, the long `scores` table, `winners`, the feature contracts, the
checks, and the registry as a dbt source. Rendering is a pure function of the definitions and
the registry rows, so the same state always gives the same bytes, and `write` touches only
files whose bytes change. Every generated file says so in its first line; only such files are
ever removed."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from mlsm_py.dbt import (
    checks_sql,
    contracts_yml,
    exposures_yml,
    incremental_sql,
    monitoring_sql,
    quarantine,
    reasons_sql,
    scores_yml,
    unit_tests,
)
from mlsm_py.dbt.common import MARK, RUN_ID, Scored
from mlsm_py.dbt.common import as_yaml as _yaml
from mlsm_py.dbt.common import header as _header
from mlsm_py.dbt.segments_sql import routing_model, routing_name, segmented_model
from mlsm_py.dbt.summaries_sql import call_list, candidates, score_bands, winners
from mlsm_py.errors import SpecError
from mlsm_py.flow.compiled import RELATION
from mlsm_py.spec import Definitions, Model

SCORES_DIR = Path("models") / "scores"
FEATURES_DIR = Path("models") / "features"
MONITORING_DIR = Path("models") / "monitoring"
GENERATED_DIRS = (SCORES_DIR, FEATURES_DIR, Path("models") / "marts", MONITORING_DIR)


def source_relation(s: Scored, held: frozenset[str] = frozenset()) -> str:
    """The relation a score model reads: the feature relation (without its quarantined rows
    where a relation in `held` has a quarantine rule), filtered to the population and to the
    rows this build scores (new and changed ones, or all: incremental_sql). A Python model
    reads them through its SQL view (`rows_view`)."""
    if s.fit["route"] == "python":
        return f"dbt.ref({rows_view_name(s)!r})"
    return f"(\n{_rows_select(s, held)}\n) as population"


def rows_view_name(s: Scored) -> str:
    return f"{s.dbt_name}__rows"


def _rows_select(s: Scored, held: frozenset[str]) -> str:
    m = s.model
    name = quarantine.scorable_name(m.features) if m.features in held else m.features
    where = f"({m.population})\n        and " if m.population else ""
    return (
        f"    select * from {{{{ ref('{name}') }}}}\n"
        f"    where {where}{incremental_sql.delta_condition(s, '        ')}"
    )


def rows_view(s: Scored, held: frozenset[str] = frozenset()) -> str:
    """What a Python-route score model scores, as a view its dbt.ref() reads."""
    about = [f"the rows {s.dbt_name} scores this build (Python route): population, then changes"]
    return (
        _header(about, "--")
        + "\n{{ config(materialized='view') }}\n\n"
        + _rows_select(s, held)
        + "\n"
    )


def score_model(s: Scored, held: frozenset[str] = frozenset()) -> str:
    m, fit = s.model, s.fit
    reason = f" ({fit['route_reason']})" if fit["route_reason"] else ""
    lines = [
        f"model: {m.name} v{m.version} ({m.status}), {s.alias}; reads {m.features}; key {m.key}"
        + (f"; population: {m.population}" if m.population else ""),
        # What the fit is, never when or where it was registered: the same fit gives the same
        # bytes in every warehouse.
        f"fit: {fit['fit_id']}, trained on {fit['train_rows']:,} rows before "
        f"{fit['train_before']:%Y-%m-%d}; estimator: {fit['estimator']}",
        f"route: {fit['route']}{reason}"
        + ("" if fit["route"] == "python" else f"; {fit.get('dialect') or 'duckdb'} dialect"),
        f"fit body sha256: {fit['dbt_sql_sha256']}",
    ]
    header = _header(lines, "#" if fit["route"] == "python" else "--")
    body = fit["dbt_sql"].replace(RELATION, source_relation(s, held))
    if fit["route"] != "python":  # a Python model reads no rows for nothing: no planning
        body = incremental_sql.unless_idle(s, body)
    return header + "\n" + body + "\n"


def groups(scored: Sequence[Scored]) -> dict[str, list[Scored]]:
    """The fits of each score model: one for a model's role, or a segmented model's global
    fit (first) and segment fits."""
    out: dict[str, list[Scored]] = {}
    for s in sorted(scored, key=lambda s: (s.dbt_name, s.segment is not None, s.segment or "")):
        out.setdefault(s.dbt_name, []).append(s)
    return out


def scores_union(scored: Sequence[Scored], key: str) -> str:
    by_name = {n: g[0] for n, g in groups(scored).items()}
    names = sorted(by_name)
    imports = ",\n\n".join(
        f"{n} as (\n\n    select * from {{{{ ref('{n}') }}}}\n\n)" for n in names
    )
    upto = reasons_sql.most(scored)
    k = {n: max(reasons_sql.k_of(f) for f in g) for n, g in groups(scored).items()}
    columns = [
        f'"{key}"',
        "model_name",
        "model_version",
        "fit_id",
        "role",
        "model_status",
        "score",
        "segment",
        "fallback",
        *(c for i in range(1, upto + 1) for c in (f"reason_{i}", f"reason_{i}_contribution")),
        "percentile",
        "decile",
    ]
    union = "\n    union all\n".join(
        f"    select {key}, model_name, model_version, fit_id, '{by_name[n].alias}' as role, "
        f"'{by_name[n].model.status}' as model_status, score, "
        + ("segment, fallback" if by_name[n].model.segments else _UNSEGMENTED)
        + "".join(f", {c}" for c in reasons_sql.select_list(k[n], upto))
        + f" from {n}"
        for n in names
    )
    return (
        _header(
            [
                "every record scored by every champion and challenger, long format, with the "
                "score's percentile and decile on its fit's stored bands: the records scored "
                "this build (fresh) and the last published rows of the others (kept)"
            ],
            "--",
        )
        + "\nwith\n\n"
        + imports
        + ",\n\nbands as (\n\n    select * from {{ ref('score_bands') }}\n\n)"
        + ",\n\nunioned as (\n\n"
        + union
        + "\n\n),\n\n"
        "fresh as (\n\n    {{ mlsm.place_in_bands('unioned', 'bands') | indent(4) }}\n\n),\n\n"
        + incremental_sql.kept_cte(scored, key, columns)
        + ",\n\nfinal as (\n\n"
        f"    select fresh.*, {RUN_ID} as run_id from fresh\n"
        "    union all\n"
        "    select * from kept\n\n)\n\nselect * from final\n"
    )


# An unsegmented model's rows: no segment, never a fallback.
_UNSEGMENTED = "cast(null as varchar) as segment, false as fallback"


def published_tables(defs: Definitions) -> list[str]:
    """The audited tables a build publishes, in the order they are written."""
    extra = [s.call_list.name for s in defs.summaries if s.call_list is not None]
    held = [quarantine.quarantine_name(r) for r in quarantine.relations(defs.models)]
    return ["scores", "winners", *extra, *held]


def _call_list_doc(summary, first: Model, reasons: int) -> dict:
    """The call list's yml, its reason columns after the winner's (where the SQL puts them)."""
    doc = scores_yml.call_list_yml(summary, first)
    at = [c["name"] for c in doc["columns"]].index("winning_fit_id") + 1
    doc["columns"][at:at] = reasons_sql.columns_yml(reasons, text=True)
    return doc


def published_docs(defs: Definitions) -> dict[str, tuple[str, dict[str, str]]]:
    """Descriptions of every published table and column (the yml's), for warehouse comments."""
    key = defs.models[0].key
    by_name = {m.name: m for m in defs.models}
    # Reason columns as declared: a comment is only written on a column the table has.
    scores_doc = scores_yml.scores_yml(key)
    scores_doc["columns"] += reasons_sql.columns_yml(max(m.reasons for m in defs.models))
    docs = {
        "scores": scores_yml.docs_of(scores_doc),
        "winners": scores_yml.docs_of(scores_yml.winners_yml(key)),
    }
    for s in defs.summaries:
        if s.call_list is not None:
            k = max(by_name[n].reasons for n in s.models if n in by_name)
            doc = _call_list_doc(s, by_name[s.models[0]], k)
            docs[s.call_list.name] = scores_yml.docs_of(doc)
    for rel, (k, fields) in quarantine.relations(defs.models).items():
        doc = quarantine.yml(rel, k, fields)[0]
        docs[doc["name"]] = scores_yml.docs_of(doc)
    return docs


def render(defs: Definitions, scored: Sequence[Scored]) -> dict[Path, str]:
    """Every generated file, by path relative to the dbt project, as text."""
    files: dict[Path, str] = {}
    for relation, (users, doc) in contracts_yml.contracts(defs.models).items():
        files[FEATURES_DIR / f"_{relation}__contracts.yml"] = _yaml(
            _header([f"field contracts of: {users}"], "#"), doc
        )
    files[SCORES_DIR / "_mlsm_registry__sources.yml"] = _yaml(
        _header(["the registry tables mlsm keeps in the warehouse"], "#"),
        scores_yml.registry_sources(),
    )
    held = quarantine.relations(defs.models)
    for rel, (k, fields) in held.items():
        about = ["rows of " + rel + " a quarantine rule holds back from scoring"]
        files[SCORES_DIR / f"{quarantine.quarantine_name(rel)}.sql"] = quarantine.quarantine_sql(
            rel, k, fields, _header(about, "--"), RUN_ID
        )
        files[SCORES_DIR / f"{quarantine.scorable_name(rel)}.sql"] = quarantine.scorable_sql(
            rel, k, _header([f"{rel} without its quarantined rows: what the models score"], "--")
        )
    if not scored:
        if held:
            doc = {
                "version": 2,
                "models": [y for r, (k, f) in held.items() for y in quarantine.yml(r, k, f)],
            }
            files[SCORES_DIR / "_scores.yml"] = _yaml(_header(["quarantine checks"], "#"), doc)
        return files
    keys = {s.model.key for s in scored}
    if len(keys) != 1:
        raise SpecError(f"all models must share one key to be scored together; got {sorted(keys)}")
    key = keys.pop()
    ymls = []
    scorers: dict[tuple[str, str], str] = {}
    for name, group in sorted(groups(scored).items()):
        s = group[0]
        texts = []
        if s.model.segments:
            route = SCORES_DIR / f"{routing_name(s.model)}.sql"
            files[route] = routing_model(s.model, frozenset(held))
            texts += [segmented_model(group), files[route]]
        else:
            texts.append(score_model(s, frozenset(held)))
            if s.fit["route"] == "python":
                texts.append(rows_view(s, frozenset(held)))
                files[SCORES_DIR / f"{rows_view_name(s)}.sql"] = texts[-1]
        files[SCORES_DIR / f"{name}{s.suffix}"] = texts[0]
        scorers[(s.model.name, s.alias)] = incremental_sql.scorer_sha(texts)
        ymls.append(scores_yml.score_model_yml(name, s.model, s.alias, s.fit))
    relations = sorted({s.model.features for s in scored})
    for rel in relations:
        files[SCORES_DIR / f"{incremental_sql.changes_name(rel)}.sql"] = (
            incremental_sql.changes_model(rel, key)
        )
    files[SCORES_DIR / f"{incremental_sql.PLAN}.sql"] = incremental_sql.plan_model(scorers)
    files[SCORES_DIR / f"_{incremental_sql.STATE}__sources.yml"] = _yaml(
        _header(["what the last published build scored (incremental scoring)"], "#"),
        incremental_sql.state_sources(relations),
    )
    files[SCORES_DIR / "scores.sql"] = scores_union(scored, key)
    files[SCORES_DIR / "score_checks.sql"] = checks_sql.score_checks(scored)
    drift = checks_sql.input_drift(scored)
    if drift is not None:
        files[SCORES_DIR / "input_drift.sql"] = drift
    scores_doc = scores_yml.scores_yml(key)
    scores_doc["columns"] += reasons_sql.columns_yml(reasons_sql.most(scored))
    docs: list[dict] = [*ymls, scores_doc, checks_sql.score_checks_yml()]
    if drift is not None:
        docs.append(checks_sql.input_drift_yml())
    for rel, (k, fields) in held.items():
        docs.extend(quarantine.yml(rel, k, fields))
    names = sorted(groups(scored))
    doc: dict = {
        "version": 2,
        "models": docs,
        "unit_tests": [
            unit_tests.bands_unit_test(
                names,
                key,
                [incremental_sql.PLAN, *(incremental_sql.changes_name(r) for r in relations)],
            )
        ],
    }
    chosen = candidates(defs, scored)
    files[SCORES_DIR / "score_bands.sql"] = score_bands()
    if chosen:
        files[SCORES_DIR / "winners.sql"] = winners(chosen, key)
        live_members = [n for _, cands in chosen for n, _ in cands]
        docs.append(scores_yml.winners_yml(key, [s for s, _ in chosen], live_members))
        # The unit test's live models are the candidates the SQL ranks (live models without a
        # champion are neither live nor draft there); drafts as defined.
        live = {n for _, cands in chosen for n, _ in cands}
        status = {
            m.name: "live" if m.name in live else "draft" if m.status == "draft" else "untrained"
            for m in defs.models
        }
        doc["unit_tests"].append(unit_tests.winner_unit_test(chosen, status, key))
        by_name = {m.name: m for m in defs.models}
        for summary, _ in chosen:
            if summary.call_list is not None:
                first = by_name[summary.models[0]]
                k = reasons_sql.most(
                    [s for s in scored if s.model.name in summary.models and s.alias == "champion"]
                )
                files[SCORES_DIR / f"{summary.call_list.name}.sql"] = call_list(summary, first, k)
                docs.append(_call_list_doc(summary, first, k))
    files[SCORES_DIR / "_scores.yml"] = _yaml(
        _header(["checks on every score (data checker 2)"], "#"), doc
    )
    for name, text in monitoring_sql.views(defs).items():
        files[MONITORING_DIR / f"{name}.sql"] = text
    files[MONITORING_DIR / "_history__sources.yml"] = _yaml(
        _header(["the history mlsm keeps after each build"], "#"), monitoring_sql.sources_yml()
    )
    files[MONITORING_DIR / "_monitoring.yml"] = _yaml(
        _header(["the monitoring views: current whenever read"], "#"),
        {"version": 2, "models": monitoring_sql.views_yml()},
    )
    if chosen:  # the exposure names `winners`, which exists only then
        lists = [s.call_list.name for s, _ in chosen if s.call_list is not None]
        files[Path("models") / "marts" / "_dashboard__exposures.yml"] = _yaml(
            _header(["what `mlsm dashboard` reads (docs/decisions/0020-dashboard.md)"], "#"),
            exposures_yml.dashboard(lists),
        )
    return files


def is_generated(path: Path) -> bool:
    try:
        with path.open() as f:
            return MARK in f.readline()
    except (OSError, UnicodeDecodeError):
        return False


def existing(dbt_dir: Path) -> dict[Path, str]:
    out = {}
    for folder in GENERATED_DIRS:
        for path in sorted((dbt_dir / folder).glob("*")):
            if path.suffix in (".sql", ".yml", ".py") and is_generated(path):
                out[path.relative_to(dbt_dir)] = path.read_text()
    return out


def write(dbt_dir: Path, files: Mapping[Path, str]) -> list[str]:
    """Make the generated files exactly `files`: write what differs (each file replaced
    atomically), remove generated files no longer rendered. Returns what changed."""
    current = existing(dbt_dir)
    changed = []
    for rel, text in sorted(files.items()):
        path = dbt_dir / rel
        if path.exists() and not is_generated(path):
            raise SpecError(
                f"{path} exists and was not generated by mlsm; rename it, mlsm will not "
                "overwrite it"
            )
        if current.get(rel) == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        changed.append(f"{'updated' if rel in current else 'wrote'} {rel}")
    for rel in sorted(set(current) - set(files)):
        (dbt_dir / rel).unlink()
        changed.append(f"removed {rel}")
    return changed


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def file_checksum(text: str) -> str:
    """The checksum dbt keeps for a model file (`node.checksum`): sha256 of the stripped text."""
    return sha256(text.strip())


def score_files(files: Mapping[Path, str], scored: Sequence[Scored]) -> dict[str, tuple[str, str]]:
    """{path: (dbt checksum, fit id)} of the score models among `files`."""
    out = {}
    for name, group in groups(scored).items():
        rel = SCORES_DIR / f"{name}{group[0].suffix}"
        out[rel.as_posix()] = (file_checksum(files[rel]), group[0].fit["fit_id"])
    return out
