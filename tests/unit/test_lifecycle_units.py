"""Fast checks of the lifecycle's parts: project config, promotion rule, lock, registry
transactions, maturity split, deterministic rendering. No dbt."""

from __future__ import annotations

import math
from datetime import datetime

import duckdb
import numpy as np
import pytest

from mlsm_py import project
from mlsm_py.errors import ContractError, MlsmError, SpecError
from mlsm_py.flow import lock
from mlsm_py.registry import store
from mlsm_py.spec import Promotion, TimeSplit
from mlsm_py.train.promotion import judge
from mlsm_py.train.split import bounds


# -- project config ------------------------------------------------------------------------
def _config(tmp_path, text, name="pyproject.toml"):
    (tmp_path / "dbt").mkdir()
    (tmp_path / "dbt" / "dbt_project.yml").write_text("name: x\n")
    (tmp_path / name).write_text(text)


def test_project_paths_are_anchored_to_the_project(tmp_path, monkeypatch):
    _config(
        tmp_path,
        '[tool.mlsm]\ndefinitions = "d:P"\ndbt_project = "dbt"\nwarehouse = "wh/x.duckdb"\n',
    )
    monkeypatch.chdir("/")
    monkeypatch.delenv("MLSM_WAREHOUSE", raising=False)
    p = project.load(tmp_path)
    assert p.warehouse == tmp_path / "wh" / "x.duckdb"
    assert p.dbt_dir == tmp_path / "dbt" and p.artifacts_dir == tmp_path / "wh" / "artifacts"
    monkeypatch.setenv("MLSM_WAREHOUSE", "other/y.duckdb")
    assert project.load(tmp_path).warehouse == tmp_path / "other" / "y.duckdb"


def test_mlsm_toml_and_config_errors(tmp_path):
    _config(tmp_path, 'definitions = "d:P"\ndbt_project = "dbt"\n', "mlsm.toml")
    assert project.load(tmp_path).definitions_ref == "d:P"
    (tmp_path / "mlsm.toml").write_text('definitions = "no_colon"\ndbt_project = "dbt"\n')
    with pytest.raises(MlsmError, match="module:ATTRIBUTE"):
        project.load(tmp_path)
    (tmp_path / "mlsm.toml").write_text('definitions = "d:P"\ndbt_project = "dbt"\nwarhouse = 1\n')
    with pytest.raises(MlsmError, match="unknown mlsm settings \\['warhouse'\\]"):
        project.load(tmp_path)


def test_definitions_must_be_a_definitions_object(tmp_path):
    _config(tmp_path, '[tool.mlsm]\ndefinitions = "mydefs_x1:THING"\ndbt_project = "dbt"\n')
    (tmp_path / "mydefs_x1.py").write_text("THING = [1, 2]\n")
    with pytest.raises(SpecError, match="must be mlsm_py.Definitions"):
        _ = project.load(tmp_path).definitions
    _config_missing = tmp_path / "pyproject.toml"
    _config_missing.write_text('[tool.mlsm]\ndefinitions = "nope_mod_x2:P"\ndbt_project = "dbt"\n')
    with pytest.raises(MlsmError, match="cannot import 'nope_mod_x2'"):
        _ = project.load(tmp_path).definitions


def test_not_a_project(tmp_path):
    with pytest.raises(MlsmError, match="is not an mlsm project"):
        project.load(tmp_path)


# -- the promotion rule --------------------------------------------------------------------
def test_promotion_rule():
    rule = Promotion("roc_auc", min_gain=0.001, guards=(("top_decile_capture", 0.01),))
    champ = {"roc_auc": 0.80, "top_decile_capture": 0.40, "log_loss": 0.3}
    assert judge("m", rule, champ, {**champ, "roc_auc": 0.802}).promote
    v = judge("m", rule, champ, {**champ, "roc_auc": 0.8005})
    assert not v.promote and "not above the required gain 0.001" in v.reason
    v = judge("m", rule, champ, {**champ, "roc_auc": 0.81, "top_decile_capture": 0.385})
    assert not v.promote and "guard top_decile_capture broken" in v.reason
    # Direction: lower log loss is better.
    ll = Promotion("log_loss")
    assert judge("m", ll, champ, {**champ, "log_loss": 0.29}).promote
    assert not judge("m", ll, champ, {**champ, "log_loss": 0.31}).promote
    assert not judge("m", Promotion(), champ, champ).promote  # equal is not better
    v = judge("m", Promotion(), {"roc_auc": math.nan}, {"roc_auc": 0.9})
    assert not v.promote and "undefined" in v.reason
    with pytest.raises(SpecError, match="'rmse', which is not measured"):
        judge("m", Promotion("rmse"), champ, champ)


def test_promotion_definition_rules():
    with pytest.raises(SpecError, match="metric 'auc' is unknown"):
        Promotion("auc")
    with pytest.raises(SpecError, match="max_loss -0.01 must be >= 0"):
        Promotion(guards=(("top_decile_capture", -0.01),))
    assert "roc_auc gain > 0" in Promotion().describe()


# -- maturity ------------------------------------------------------------------------------
def test_split_bounds_leave_immature_rows_out():
    b = bounds(
        datetime(2025, 12, 31),
        TimeSplit("t", holdout_days=60, gap_days=14, label_ready_after_days=30),
    )
    assert b.matured_until == datetime(2025, 12, 1)
    assert b.holdout_from == datetime(2025, 10, 2)
    assert b.train_before == datetime(2025, 9, 18)


def test_training_with_unlabeled_newest_rows():
    from sklearn.linear_model import LogisticRegression

    from mlsm_py.spec import Field, Model
    from mlsm_py.train.trainer import train

    rng = np.random.default_rng(0)
    n = 2000
    con = duckdb.connect()
    days = np.sort(rng.integers(0, 365, n))
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * x))).astype(float)
    y[days > 330] = np.nan  # the newest leads have no outcome yet
    con.execute(
        "create table feats as select * from (select unnest(?) as id, "
        "timestamp '2025-01-01' + to_days(unnest(?)::integer) as t, unnest(?) as x, "
        "unnest(?) as y)",
        [list(range(n)), days.tolist(), x.tolist(), y.tolist()],
    )

    def model(ready: int) -> Model:
        return Model(
            "m",
            1,
            "live",
            "feats",
            "id",
            "y",
            (Field("x", "double"),),
            LogisticRegression(),
            TimeSplit("t", 60, 7, label_ready_after_days=ready),
        )

    fit = train(con, model(40))
    assert fit.immature_rows == int((days > 324).sum()) and not np.isnan(fit.holdout.y).any()
    assert fit.metrics["roc_auc"] > 0.7
    with pytest.raises(ContractError, match=r"feats\.y: \d+ matured rows have no label"):
        train(con, model(0))


# -- lock and registry ---------------------------------------------------------------------
def test_lock_refuses_a_second_holder(tmp_path):
    wh = tmp_path / "w.duckdb"
    with (
        lock.hold(wh, "retrain"),
        pytest.raises(lock.LockedError, match="`mlsm retrain`, pid"),
        lock.hold(wh, "build"),
    ):
        pass
    with lock.hold(wh, "build"):  # released on exit
        pass


def test_registry_transaction_is_all_or_nothing(tmp_path):
    con = store.connect(tmp_path / "w.duckdb")
    with store.transaction(con):
        store.set_alias(con, "m", store.CHAMPION, "a", "t", None)
    with pytest.raises(RuntimeError), store.transaction(con):
        store.set_alias(con, "m", store.CHAMPION, "b", "t", None)
        raise RuntimeError("killed half way")
    assert store.aliases(con, "m") == {store.CHAMPION: "a"}
    # Pending aliases take effect only when applied, and exactly once.
    with store.transaction(con):
        store.add_pending(con, "run1", "m", store.CHAMPION, "b", "d1")
    assert store.aliases(con, "m") == {store.CHAMPION: "a"}
    with store.transaction(con):
        store.apply_pending(con, "run1", "t")
    assert store.aliases(con, "m") == {store.CHAMPION: "b"}
    assert store.pending(con, "run1") == []
    con.close()


def test_population_condition_rules():
    from mlsm_py.spec import check_condition

    assert check_condition("p", "converted is null") == "converted is null"
    for bad, why in (
        ("select 1", "a query"),
        ("a = 1; drop table x", "not allowed"),
        ("{{ x }}", "not allowed"),
        ("a ==", "not a SQL condition"),
    ):
        with pytest.raises(SpecError, match=why):
            check_condition("p", bad)


def test_applied_decisions_keep_their_metrics_discarded_ones_lose_them(tmp_path):
    con = store.connect(tmp_path / "w.duckdb")
    for run, fit in (("kept_run", "a"), ("dropped_run", "b")):
        d = store.Decision("m", "retrain", "factory", "promoted", "r", to_fit=fit, run_id=run)
        with store.transaction(con):
            store.record_decision(
                con, d, {"challenger": {"fit_id": fit, "roc_auc": 0.8}}, pending=True
            )
            store.add_pending(con, run, "m", store.CHAMPION, fit, d.decision_id)
    with store.transaction(con):
        store.apply_pending(con, "kept_run", "factory")
        store.discard_pending(con, "dropped_run")
    history = store.history(con, "m")
    assert [h["to_fit"] for h in history] == ["a"]
    assert history[0]["compared"] == [
        {"role": "challenger", "fit_id": "a", "metric": "roc_auc", "value": 0.8}
    ]
    (orphans,) = con.execute(
        "select count(*) from mlsm_registry.decision_metrics where fit_id = 'b'"
    ).fetchone()
    assert orphans == 0 and store.aliases(con, "m") == {store.CHAMPION: "a"}
    con.close()
