"""Reason codes run in DuckDB: contributions and top reasons compiled to one SELECT, checked on
holdout rows plus the gate's adversarial rows (NULL, NaN, extremes, float32/float64 neighbours of
every split threshold) against the library's margin and against references computed here
independently of mlsm_py.compile.reasons."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
import xgboost
from lightgbm import LGBMClassifier, LGBMRegressor
from scipy import sparse
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits
from xgboost import XGBClassifier, XGBRegressor

from mlsm_py.compile import assemble
from mlsm_py.compile.emitter import SqlEmitter
from mlsm_py.compile.reasons import (
    Contributions,
    as_assembled,
    contribution_columns,
    contributions,
    linear_means,
    top_reasons,
)
from mlsm_py.frames import arrow_rows, python_rows
from mlsm_py.parity.gate import adversarial_rows, input_types

# float64 throughout; what differs from the library is only the order of additions (the
# per-leaf constants are sums of differences), a few ulps. XGBoost's margin and its own
# contributions are float32 sums: one float32 ulp of a margin near 1 is 1.2e-7, and a few tens
# of rounded additions stay under 1e-6 on these small models.
TOL = 1e-9
TOL_XGB = 1e-6
K = 3
KEY = "__row"
SEED = 3
NUMERIC = ["x1", "x2", "x3", "x4"]
CHANNELS = ["web", "email", "ads", "referral"]

pytestmark = [
    pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:X does not have valid feature names:UserWarning"),
]


# -- data and running ----------------------------------------------------------------------------


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.uniform(-3, 3, size=n),
            "x3": rng.poisson(1.5, size=n).astype("float64"),
            "x4": rng.exponential(2.0, size=n),
            "channel": rng.choice(CHANNELS, size=n).astype(object),
        }
    )
    effect = df["channel"].map({"web": 0.0, "email": 0.8, "ads": -0.6, "referral": 1.5})
    signal = np.sin(2 * df.x1) + 0.4 * df.x2**2 - 1 + effect + 0.5 * df.x3 * (df.x1 > 0)
    y_reg = (signal + rng.normal(scale=0.3, size=n)).to_numpy()
    y_bin = (signal + rng.logistic(scale=0.5, size=n) > np.median(signal)).astype(int).to_numpy()
    for col, share in [("x1", 0.1), ("x2", 0.06), ("x4", 0.08), ("channel", 0.07)]:
        df.loc[rng.uniform(size=n) < share, col] = np.nan
    return df, y_reg, y_bin


@pytest.fixture(scope="module")
def data():
    df, y_reg, y_bin = _frame(1500, SEED)
    return {
        "train": df.iloc[:1200],
        "holdout": df.iloc[1200:],
        "reg": y_reg[:1200],
        "clf": y_bin[:1200],
    }


def _prep(scale: bool) -> ColumnTransformer:
    numeric = (
        Pipeline([("imp", SimpleImputer(strategy="median")), ("sc", StandardScaler())])
        if scale
        else "passthrough"
    )
    categorical = Pipeline(
        [
            ("imp", SimpleImputer(strategy="constant", fill_value="missing")),
            ("ohe", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    return ColumnTransformer([("num", numeric, NUMERIC), ("cat", categorical, ["channel"])])


def _rows(model, holdout: pd.DataFrame) -> tuple[list[dict], dict[str, str]]:
    """Holdout rows plus the gate's adversarial rows for the model's own splits."""
    assembled = assemble(model)
    types = input_types(assembled, holdout)
    base = [
        {k: (None if pd.isna(v) else v) for k, v in r.items()} for r in holdout.to_dict("records")
    ]
    rows = base + adversarial_rows(assembled, base[:5], types)
    for i, r in enumerate(rows):
        r[KEY] = i
    return rows, types


def _accepted(rows: list[dict], limit: float) -> list[dict]:
    """Rows whose numbers the library accepts: scikit-learn and XGBoost refuse +-inf and values
    beyond float32 (they cast to float32 first)."""

    def ok(v) -> bool:
        return not isinstance(v, float) or np.isnan(v) or abs(v) < limit

    out = [r for r in rows if all(ok(r.get(n)) for n in NUMERIC)]
    for i, r in enumerate(out):
        r[KEY] = i
    return out


def _run(c: Contributions, rows: list[dict], types: dict[str, str]) -> pd.DataFrame:
    cols = contribution_columns(c) + top_reasons(c, K)
    sql = SqlEmitter("duckdb").render(as_assembled(c.inputs, cols), "t", KEY)
    con = duckdb.connect()
    con.register("t", arrow_rows(rows, types, KEY))
    out = con.execute(sql).df().sort_values(KEY).reset_index(drop=True)
    assert len(out) == len(rows)
    return out


def _terms(out: pd.DataFrame, c: Contributions) -> np.ndarray:
    return out[[f"contribution_{n}" for n in c.inputs]].to_numpy(dtype="float64")


def _scaled(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))))


def _check_identity(out: pd.DataFrame, c: Contributions, library_margin: np.ndarray, tol: float):
    terms = _terms(out, c)
    assert np.all(np.isfinite(terms))
    assert _scaled(out["margin"].to_numpy(), library_margin) <= tol
    assert _scaled(c.expected + terms.sum(axis=1), library_margin) <= tol


def _check_ranking(out: pd.DataFrame, c: Contributions) -> None:
    """(e): names and values as a stable argsort by -|c| ranks them (ties: earlier input)."""
    terms = _terms(out, c)
    order = np.argsort(-np.abs(terms), axis=1, kind="stable")
    names = np.asarray(c.inputs, dtype=object)
    for r in range(K):
        pick = order[:, r]
        assert (out[f"reason_{r + 1}"].to_numpy() == names[pick]).all()
        want = terms[np.arange(len(terms)), pick]
        assert np.array_equal(out[f"reason_{r + 1}_contribution"].to_numpy(), want)


def _sources(ct: ColumnTransformer) -> list[str]:
    """The input each transformed column comes from, from the fitted ColumnTransformer's own
    bookkeeping (not from the AST)."""
    out: list[str] = []
    for name, trans, cols in ct.transformers_:
        if isinstance(trans, str) and trans == "drop":
            continue
        width = ct.output_indices_[name].stop - ct.output_indices_[name].start
        out += [cols[0]] * width if len(cols) == 1 else list(cols)
    return out


def _by_input(per_feature: np.ndarray, sources: list[str], inputs: tuple[str, ...]) -> np.ndarray:
    out = np.zeros((per_feature.shape[0], len(inputs)))
    for f, src in enumerate(sources):
        out[:, inputs.index(src)] += per_feature[:, f]
    return out


def _library_x(model, rows: list[dict], types: dict[str, str]) -> tuple[pd.DataFrame, np.ndarray]:
    frame = python_rows(rows, types)
    xt = model[:-1].transform(frame) if isinstance(model, Pipeline) else frame[NUMERIC].to_numpy()
    xt = xt.toarray() if sparse.issparse(xt) else np.asarray(xt, dtype="float64")
    return frame, xt


# -- linear --------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["clf", "reg"])
def test_linear_contributions_are_exact(data, task: str) -> None:
    est = LogisticRegression(max_iter=1000) if task == "clf" else Ridge(alpha=1.0)
    model = Pipeline([("prep", _prep(scale=True)), ("model", est)]).fit(data["train"], data[task])
    means = linear_means(model, data["train"])
    c = contributions(model, means=means)
    assert c.method == "linear"
    rows, types = _rows(model, data["holdout"])
    rows = _accepted(rows, 1e6)
    out = _run(c, rows, types)
    frame, xt = _library_x(model, rows, types)
    margin = model.decision_function(frame) if task == "clf" else model.predict(frame)
    _check_identity(out, c, margin, TOL)
    # (d) coef * (x - training mean), straight from the fitted pipeline.
    coef = np.ravel(model[-1].coef_)
    train_mean = np.asarray(model[:-1].transform(data["train"]), dtype="float64").mean(axis=0)
    want = _by_input(coef * (xt - train_mean), _sources(model[0]), c.inputs)
    assert _scaled(_terms(out, c), want) <= TOL
    _check_ranking(out, c)


# -- scikit-learn trees --------------------------------------------------------------------------


def _decision_path_reference(model, xt: np.ndarray) -> np.ndarray:
    """treeinterpreter: per row, along the path to its leaf, value(child) - value(parent) added
    to the parent's feature; trees averaged as predict_proba averages them.

    The leaf comes from `apply`, the path from the parent links: scikit-learn 1.7.2's
    `decision_path` ignores `missing_go_to_left` (a NaN row's path can end at another leaf than
    `apply` and `predict` use), so it cannot be the reference on rows with missing values."""
    final = model[-1] if isinstance(model, Pipeline) else model
    trees = getattr(final, "estimators_", [final])
    out = np.zeros((len(xt), final.n_features_in_))
    for est in trees:
        t = est.tree_
        vals = t.value[:, 0, 1] if hasattr(final, "classes_") else t.value[:, 0, 0]
        parent = np.full(t.node_count, -1)
        for side in (t.children_left, t.children_right):
            inner = side != -1
            parent[side[inner]] = np.flatnonzero(inner)
        table = np.zeros((t.node_count, out.shape[1]))
        for leaf in np.flatnonzero(t.children_left == -1):
            node = leaf
            while parent[node] >= 0:
                table[leaf, t.feature[parent[node]]] += vals[node] - vals[parent[node]]
                node = parent[node]
        out += table[est.apply(xt.astype(np.float32))]
    return out / len(trees)


FOREST = {"n_estimators": 8, "max_depth": 6, "random_state": SEED}
SK_TREES = [
    ("tree-clf", "clf", lambda: DecisionTreeClassifier(max_depth=7, random_state=SEED), False),
    ("forest-clf", "clf", lambda: RandomForestClassifier(**FOREST), False),
    ("forest-clf-ohe", "clf", lambda: RandomForestClassifier(**FOREST), True),
    ("forest-reg", "reg", lambda: RandomForestRegressor(**FOREST), False),
    ("extra-reg-ohe", "reg", lambda: ExtraTreesRegressor(**FOREST), True),
]


@pytest.mark.parametrize(
    ("task", "make", "ohe"), [pytest.param(t, m, o, id=i) for i, t, m, o in SK_TREES]
)
def test_sklearn_tree_contributions_match_treeinterpreter(data, task, make, ohe) -> None:
    if ohe:
        model = Pipeline([("prep", _prep(scale=False)), ("model", make())])
        model.fit(data["train"], data[task])
    else:
        # Trained on NaN: missing values are routed per node, both ways.
        model = make().fit(data["train"][NUMERIC], data[task])
    holdout = data["holdout"] if ohe else data["holdout"][NUMERIC]
    c = contributions(model)
    rows, types = _rows(model, holdout)
    rows = _accepted(rows, 3.0e38)
    out = _run(c, rows, types)
    frame, xt = _library_x(model, rows, types)
    margin = model.predict_proba(frame)[:, 1] if task == "clf" else model.predict(frame)
    _check_identity(out, c, margin, TOL)
    ref = _decision_path_reference(model, xt)
    sources = _sources(model[0]) if ohe else NUMERIC
    assert _scaled(_terms(out, c), _by_input(ref, sources, c.inputs)) <= TOL
    _check_ranking(out, c)


# -- LightGBM ------------------------------------------------------------------------------------


def _lgbm_reference(booster, xt: np.ndarray) -> np.ndarray:
    """Per tree, the library's own leaf (pred_leaf) and that leaf's path in dump_model()."""
    dump = booster.dump_model()
    leaves = booster.predict(xt, pred_leaf=True).reshape(len(xt), -1)
    out = np.zeros((len(xt), booster.num_feature()))
    for t, info in enumerate(dump["tree_info"]):
        table: dict[int, np.ndarray] = {}

        def walk(node, acc, table=table):
            if "leaf_index" in node or "split_feature" not in node:
                table[node.get("leaf_index", 0)] = acc
                return
            for side in ("left_child", "right_child"):
                kid = node[side]
                v = kid["leaf_value"] if "leaf_value" in kid else kid["internal_value"]
                step = acc.copy()
                step[node["split_feature"]] += v - node["internal_value"]
                walk(kid, step)

        walk(info["tree_structure"], np.zeros(out.shape[1]))
        out += np.stack([table[int(leaf)] for leaf in leaves[:, t]])
    return out


LGBM_KW = {"n_estimators": 25, "num_leaves": 15, "learning_rate": 0.2, "verbose": -1, "n_jobs": 1}


@pytest.mark.parametrize("task", ["clf", "reg"])
def test_lightgbm_contributions_match_dump_walk(data, task: str) -> None:
    est = LGBMClassifier(**LGBM_KW) if task == "clf" else LGBMRegressor(**LGBM_KW)
    model = Pipeline([("prep", _prep(scale=False)), ("model", est)]).fit(data["train"], data[task])
    c = contributions(model)
    rows, types = _rows(model, data["holdout"])
    out = _run(c, rows, types)
    _, xt = _library_x(model, rows, types)
    booster = model[-1].booster_
    _check_identity(out, c, booster.predict(xt, raw_score=True), TOL)
    ref = _by_input(_lgbm_reference(booster, xt), _sources(model[0]), c.inputs)
    assert _scaled(_terms(out, c), ref) <= TOL
    _check_ranking(out, c)


# -- XGBoost -------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["clf", "reg"])
def test_xgboost_contributions_match_approx_contribs(data, task: str) -> None:
    kw = {"n_estimators": 20, "max_depth": 4, "learning_rate": 0.3, "n_jobs": 1}
    est = XGBClassifier(**kw) if task == "clf" else XGBRegressor(**kw)
    model = Pipeline([("prep", _prep(scale=False)), ("model", est)]).fit(data["train"], data[task])
    c = contributions(model)
    assert c.tolerance == TOL_XGB
    rows, types = _rows(model, data["holdout"])
    rows = _accepted(rows, 3.0e38)  # XGBoost refuses inf, and values beyond float32
    out = _run(c, rows, types)
    _, xt = _library_x(model, rows, types)
    dm = xgboost.DMatrix(xt)
    booster = model[-1].get_booster()
    _check_identity(out, c, booster.predict(dm, output_margin=True), TOL_XGB)
    approx = booster.predict(dm, pred_contribs=True, approx_contribs=True)
    ref = _by_input(approx[:, :-1], _sources(model[0]), c.inputs)
    assert _scaled(_terms(out, c), ref) <= TOL_XGB
    assert abs(c.expected - float(approx[0, -1])) <= TOL_XGB
    _check_ranking(out, c)


# -- scikit-learn boosting -----------------------------------------------------------------------


@pytest.mark.parametrize("task", ["clf", "reg"])
def test_hist_gradient_boosting_identity(data, task: str) -> None:
    kw = {"max_iter": 20, "max_leaf_nodes": 15, "random_state": SEED}
    est = (
        HistGradientBoostingClassifier(**kw)
        if task == "clf"
        else HistGradientBoostingRegressor(**kw)
    )
    # One OpenMP thread: on a loaded 2-core machine HistGradientBoosting's thread pool spins
    # (1.4 s became 27 s per test).
    with threadpool_limits(limits=1):
        model = est.fit(data["train"][NUMERIC], data[task])
        c = contributions(model)
        rows, types = _rows(model, data["holdout"][NUMERIC])
        frame = python_rows(rows, types)
        margin = model.decision_function(frame) if task == "clf" else model.predict(frame)
    out = _run(c, rows, types)
    _check_identity(out, c, margin, TOL)
    _check_ranking(out, c)


def test_gradient_boosting_identity_and_null_rows(data) -> None:
    model = Pipeline(
        [
            ("prep", _prep(scale=True)),
            ("model", GradientBoostingClassifier(n_estimators=15, max_depth=3, random_state=SEED)),
        ]
    ).fit(data["train"], data["clf"])
    c = contributions(model)
    rows, types = _rows(model, data["holdout"])
    rows = _accepted(rows, 1e6)
    out = _run(c, rows, types)
    frame = python_rows(rows, types)
    _check_identity(out, c, model.decision_function(frame), TOL)
    _check_ranking(out, c)


def test_bare_gradient_boosting_has_null_contributions_where_it_scores_null(data) -> None:
    complete = data["train"][NUMERIC].notna().all(axis=1).to_numpy()
    model = GradientBoostingClassifier(n_estimators=5, max_depth=2, random_state=SEED)
    model.fit(data["train"][NUMERIC][complete], data["clf"][complete])
    c = contributions(model)
    rows = [{"x1": None, "x2": 0.5, "x3": 1.0, "x4": 2.0, KEY: 0}]
    cols = contribution_columns(c)
    sql = SqlEmitter().render(as_assembled(c.inputs, cols), "t", KEY)
    con = duckdb.connect()
    con.register("t", arrow_rows(rows, dict.fromkeys(NUMERIC, "double"), KEY))
    got = con.execute(sql).df().iloc[0]
    assert pd.isna(got["margin"])
    assert all(pd.isna(got[f"contribution_{n}"]) or got[f"contribution_{n}"] == 0 for n in NUMERIC)


# -- the in-process interpreter computes the same values ----------------------------------------


def test_python_emitter_agrees_with_sql(data) -> None:
    python_emitter = pytest.importorskip("mlsm_py.compile.python_emitter")
    for model in [
        Pipeline([("prep", _prep(scale=False)), ("model", LGBMClassifier(**LGBM_KW))]),
        Pipeline([("prep", _prep(scale=True)), ("model", LogisticRegression(max_iter=1000))]),
        RandomForestClassifier(**FOREST),
    ]:
        bare = not isinstance(model, Pipeline)
        train = data["train"][NUMERIC] if bare else data["train"]
        model.fit(train, data["clf"])
        c = contributions(model, data["train"])
        rows, types = _rows(model, data["holdout"][NUMERIC] if bare else data["holdout"])
        out = _run(c, rows, types)
        cols = contribution_columns(c) + top_reasons(c, K)
        fn = python_emitter.compile_python(cols)
        got = pd.DataFrame(fn.score_many(rows), columns=[n for n, _ in cols])
        for name, _ in cols:
            want = out[name].to_numpy()
            if name.startswith("reason_") and not name.endswith("_contribution"):
                assert (got[name].to_numpy() == want).all(), name
            else:
                np.testing.assert_array_equal(got[name].to_numpy(dtype="float64"), want, name)


def test_top_reasons_ties_zeros_and_signs() -> None:
    # Contributions given directly as columns, so ties, exact zeros, -0.0 and signs are chosen
    # by hand: |c| descending, equal |c| to the earlier input, zeros still ranked.
    names = ("a", "b", "c", "d")
    from mlsm_py.compile import ast

    c = Contributions(
        names, tuple(ast.ColumnRef(n, "double") for n in names), 0.0, ast.num(0.0), "test"
    )
    values = np.array(
        [
            [0.0, 0.0, 0.0, 0.0],
            [-0.0, 0.0, -1.0, 1.0],
            [0.5, -0.5, 0.5, -0.25],
            [1e-300, -2.0, 2.0, 3.0],
            [-7.0, 0.0, 6.999999999999999, 7.0],
        ]
    )
    rows = [{**dict(zip(names, map(float, v), strict=True)), KEY: i} for i, v in enumerate(values)]
    cols = top_reasons(c, 4)
    sql = SqlEmitter().render(as_assembled(names, cols), "t", KEY)
    con = duckdb.connect()
    con.register("t", arrow_rows(rows, dict.fromkeys(names, "double"), KEY))
    out = con.execute(sql).df().sort_values(KEY)
    order = np.argsort(-np.abs(values), axis=1, kind="stable")
    for r in range(4):
        assert list(out[f"reason_{r + 1}"]) == [names[i] for i in order[:, r]]
        assert np.array_equal(
            out[f"reason_{r + 1}_contribution"], values[np.arange(5), order[:, r]]
        )
    assert list(out["reason_1"]) == ["a", "c", "a", "d", "a"]


def test_chain_and_search_lookups_agree(data, monkeypatch) -> None:
    from mlsm_py.compile import reasons

    model = RandomForestClassifier(**FOREST).fit(data["train"][NUMERIC], data["clf"])
    rows, types = _rows(model, data["holdout"][NUMERIC])
    rows = _accepted(rows, 3.0e38)
    searched = _run(contributions(model), rows, types)
    monkeypatch.setattr(reasons, "LOOKUP", "chain")
    chained = _run(contributions(model), rows, types)
    pd.testing.assert_frame_equal(searched, chained)
