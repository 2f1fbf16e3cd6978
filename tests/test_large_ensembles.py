"""Large ensembles: a 1,000-tree depth-6 model compiles, runs in DuckDB and matches the library;
and the layout rules that make it fit (docs/decisions/0013-large-ensemble-layout.md) change no
score: chunked sums, NULL routing by branch order, merged one-hot lookups.

Each rule is checked against the layout it replaced, executed in DuckDB on the same rows:
the results must be identical (bit for bit where the rule claims it) and match the library."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeRegressor

from mlsm_py import to_sql
from mlsm_py.compile import ast, layout
from mlsm_py.compile.assemblers import Assembled, assemble
from mlsm_py.compile.emitter import SqlEmitter
from mlsm_py.compile.layout import Layout
from mlsm_py.parity.gate import check_parity

# As in tests/test_compile_parity.py: the SQL repeats the library's float64 arithmetic; only
# the order of additions differs (a chunked sum of 1,000 trees: a few ulps of a margin of
# order 1). One misrouted node moves a score by a leaf value, far more than 1e-9.
PARITY_TOLERANCE = 1e-9
DUCKDB_MAX_EXPRESSION_DEPTH = 1000  # DuckDB's default, which a left-deep 1,000-term sum exceeds
SEED = 0

pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names:UserWarning")


def _frame(n: int, seed: int = SEED) -> tuple[pd.DataFrame, np.ndarray]:
    """Numbers with NaNs (x1, x4), exact zeros (x3) and a non-linear signal."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.uniform(-3, 3, size=n),
            "x3": rng.poisson(1.5, size=n).astype("float64"),
            "x4": rng.exponential(2.0, size=n),
        }
    )
    signal = np.sin(2 * x["x1"]) + 0.4 * x["x2"] ** 2 - 1 + 0.5 * x["x3"] * (x["x1"] > 0)
    y = (signal + rng.normal(size=n) > 0).astype(int).to_numpy()
    x.loc[rng.random(n) < 0.1, "x1"] = np.nan
    x.loc[rng.random(n) < 0.08, "x4"] = np.nan
    return x, y


def _tree_depth(node: dict) -> int:
    if "leaf_value" in node:
        return 0
    return 1 + max(_tree_depth(node["left_child"]), _tree_depth(node["right_child"]))


@pytest.fixture(scope="module")
def big_lgbm() -> tuple[LGBMClassifier, pd.DataFrame]:
    # Small data keeps the trees small (min_child_samples=100 on 2,000 rows: ~11 leaves each)
    # and the test fast; what matters is the count of trees, each still up to depth 6.
    x, y = _frame(2000)
    model = LGBMClassifier(
        n_estimators=1000,
        max_depth=6,
        num_leaves=64,
        min_child_samples=100,
        learning_rate=0.05,
        random_state=SEED,
        deterministic=True,
        force_row_wise=True,
        n_jobs=1,
        verbose=-1,
    ).fit(x, y)
    trees = model.booster_.dump_model()["tree_info"]
    assert len(trees) == 1000
    assert max(_tree_depth(t["tree_structure"]) for t in trees) == 6
    return model, x


def test_thousand_tree_lightgbm_compiles_runs_in_duckdb_and_matches(big_lgbm) -> None:
    model, x = big_lgbm
    sql = to_sql(model, "leads", key="lead_id")
    con = duckdb.connect()
    depth = con.execute("select current_setting('max_expression_depth')").fetchone()[0]
    assert int(depth) == DUCKDB_MAX_EXPRESSION_DEPTH
    holdout = x.iloc[:300]
    con.register("leads", holdout.assign(lead_id=range(len(holdout))))
    got = dict(con.execute(sql).fetchall())
    expected = model.predict_proba(holdout)[:, 1]
    assert max(abs(got[i] - e) for i, e in enumerate(expected)) <= PARITY_TOLERANCE
    # The gate: holdout plus NULL/NaN/+-inf/extreme rows and the neighbours of every threshold.
    report = check_parity(model, con, holdout)
    assert report.rows_checked > 1000
    assert report.max_abs_diff <= PARITY_TOLERANCE, report.worst_row


def test_thousand_tree_sum_nests_far_below_duckdbs_limit(big_lgbm) -> None:
    model, x = big_lgbm
    assembled = assemble(model)
    con = duckdb.connect()
    rows = x.iloc[:50]
    con.register("leads", rows.assign(lead_id=range(len(rows))))
    # The chunked layout runs with a tenth of DuckDB's default depth ...
    con.execute("SET max_expression_depth = 100")
    assert len(con.execute(SqlEmitter().render(assembled, "leads", "lead_id")).fetchall()) == 50
    # ... while the left-deep sum it replaced exceeds the default itself.
    con.execute(f"SET max_expression_depth = {DUCKDB_MAX_EXPRESSION_DEPTH}")
    left_deep = SqlEmitter(layout=Layout(sum_chunk=None)).render(assembled, "leads", "lead_id")
    with pytest.raises(duckdb.ParserException, match="[Mm]ax expression depth"):
        con.execute(left_deep)


# -- the sum layout --------------------------------------------------------------------------


def test_flatten_sum_keeps_left_to_right_order() -> None:
    terms = [ast.num(float(i)) for i in range(100)]
    assert layout.flatten_sum(ast.add_all(terms)) == terms


@pytest.mark.parametrize("n", [1, 2, 32, 33, 1000, 1025, 40_000])
def test_chunks_cover_every_term_once_in_order_with_bounded_runs(n: int) -> None:
    groups = layout.chunks(n, 32)

    def leaves(g):
        return [g] if isinstance(g, int) else [i for sub in g for i in leaves(sub)]

    def widest(g):
        return 0 if isinstance(g, int) else max(len(g), *(widest(s) for s in g))

    assert leaves(groups) == list(range(n))
    assert widest(groups) <= 32


def _score_sql(n_terms: int):
    x = ast.ColumnRef("x", "double")
    terms = [ast.BinNumExpr(x, ast.num(float(i)), ast.BinNumOpType.MUL) for i in range(n_terms)]
    tree = SqlEmitter().select(Assembled(("x",), ast.add_all(terms), "regressor"), "t", None)
    return tree.expressions[0].this  # the score, without its alias


def _add_depth(e) -> int:
    from sqlglot import exp

    if isinstance(e, exp.Paren):
        return _add_depth(e.this)
    if not isinstance(e, exp.Add):
        return 0
    return 1 + max(_add_depth(e.this), _add_depth(e.expression))


def test_short_sums_stay_one_left_deep_chain() -> None:
    # Up to SUM_CHUNK terms the text is what it always was (the golden SQL relies on it).
    from sqlglot import exp

    score = _score_sql(layout.SUM_CHUNK)
    assert not list(score.find_all(exp.Paren))
    assert _add_depth(score) == layout.SUM_CHUNK - 1


def test_long_sums_nest_in_chunks() -> None:
    assert _add_depth(_score_sql(1000)) <= 2 * layout.SUM_CHUNK
    assert _add_depth(_score_sql(1100)) <= 3 * layout.SUM_CHUNK  # chunks of chunks


def test_long_sum_value_matches_python_sum() -> None:
    rng = np.random.default_rng(SEED)
    weights = rng.normal(size=1500)
    x = ast.ColumnRef("x", "double")
    terms = [ast.BinNumExpr(x, ast.num(w), ast.BinNumOpType.MUL) for w in weights]
    sql = SqlEmitter().render(Assembled(("x",), ast.add_all(terms), "regressor"), "t", None)
    con = duckdb.connect()
    con.execute("create table t as select 1.5::double as x")
    got = con.execute(sql).fetchone()[0]
    assert abs(got - math.fsum(1.5 * w for w in weights)) <= 1e-12


# -- NULL routing by branch order ------------------------------------------------------------


def _grid(thresholds: list[float]) -> list[float | None]:
    values: list[float | None] = [None, math.nan, math.inf, -math.inf, 0.0, -0.0, 1e300, -1e300]
    for t in thresholds:
        f = np.float32(t)
        values += [
            t,
            float(np.nextafter(t, -np.inf)),
            float(np.nextafter(t, np.inf)),
            float(np.nextafter(f, np.float32(-np.inf))),
            float(f),
            float(np.nextafter(f, np.float32(np.inf))),
        ]
    return values


def _run_both(assembled: Assembled, values: list[float | None]) -> tuple[list, list]:
    con = duckdb.connect()
    con.execute("create table t (k integer, x1 double, x2 double, x3 double, x4 double)")
    rows = [(i, v, v, v, v) for i, v in enumerate(values)]
    con.executemany("insert into t values (?, ?, ?, ?, ?)", rows)
    out = []
    for routed in (True, False):
        sql = SqlEmitter(layout=Layout(null_routing=routed)).render(assembled, "t", "k")
        out.append([r[1] for r in sorted(con.execute(sql).fetchall())])
    return out[0], out[1]


def test_null_routing_gives_the_same_leaves_as_the_or_form_for_sklearn_trees() -> None:
    x, y = _frame(600)
    # Trained with NaNs: missing_go_to_left is learned per node, both ways.
    tree = DecisionTreeRegressor(max_depth=6, random_state=SEED).fit(x, x["x2"] + y)
    assert set(tree.tree_.missing_go_to_left[tree.tree_.children_left >= 0]) == {0, 1}
    assembled = assemble(tree)
    routed_sql = SqlEmitter().render(assembled, "t", "k")
    assert "IS NULL" not in routed_sql
    assert "IS NULL" in SqlEmitter(layout=Layout(null_routing=False)).render(assembled, "t", "k")
    routed, or_form = _run_both(assembled, _grid([float(t) for t in tree.tree_.threshold]))
    assert routed == or_form
    finite = x.iloc[:200]
    con = duckdb.connect()
    con.register("t", finite.assign(k=range(len(finite))))
    got = [r[1] for r in sorted(con.execute(routed_sql).fetchall())]
    assert got == list(tree.predict(finite))


@pytest.mark.parametrize("use_missing", [True, False], ids=["missing-nan", "missing-none"])
def test_null_routing_gives_the_same_leaves_as_the_or_form_for_lightgbm(use_missing) -> None:
    x, y = _frame(600)
    model = LGBMClassifier(
        n_estimators=20, num_leaves=8, use_missing=use_missing, random_state=SEED, verbose=-1
    ).fit(x, y)
    assembled = assemble(model)
    routed_sql = SqlEmitter().render(assembled, "t", "k")
    assert "IS NULL" not in routed_sql and "coalesce" not in routed_sql
    thresholds = [
        float(n["threshold"])
        for t in model.booster_.dump_model()["tree_info"]
        for n in _nodes(t["tree_structure"])
    ]
    routed, or_form = _run_both(assembled, _grid(thresholds))
    assert routed == or_form


def _nodes(node: dict):
    if "leaf_value" not in node:
        yield node
        yield from _nodes(node["left_child"])
        yield from _nodes(node["right_child"])


# -- one-hot lookups of linear sums ----------------------------------------------------------


def _leads(n: int = 400) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(SEED)
    df = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "channel": rng.choice(["web", "email", "ads"], size=n).astype(object),
            "country": rng.choice(["de", "fr", "us", "gb"], size=n).astype(object),
        }
    )
    df.loc[rng.random(n) < 0.1, "channel"] = np.nan
    y = (df["a"] + (df["channel"] == "ads") - (df["country"] == "fr") > 0).astype(int).to_numpy()
    return df, y


def _one_hot_pipeline(final) -> Pipeline:
    cats = Pipeline(
        [
            ("imp", SimpleImputer(strategy="constant", fill_value="missing")),
            ("ohe", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    prep = ColumnTransformer(
        [("num", SimpleImputer(), ["a"]), ("cat", cats, ["channel", "country"])]
    )
    return Pipeline([("prep", prep), ("model", final)])


@pytest.mark.parametrize("final", [LogisticRegression(), LinearRegression()], ids=["logit", "ols"])
def test_merged_lookups_are_bit_identical_to_the_one_hot_sum(final) -> None:
    df, y = _leads()
    model = _one_hot_pipeline(final).fit(df, y)
    assembled = assemble(model)
    merged_sql = SqlEmitter().render(assembled, "t", "k")
    plain_sql = SqlEmitter(layout=Layout(merge_lookups=False)).render(assembled, "t", "k")
    # One CASE per categorical input instead of a 0/1 column per level.
    assert merged_sql.count('AS "__mlsm_') < plain_sql.count('AS "__mlsm_') - 4
    rows = pd.concat(
        [
            df,
            pd.DataFrame(
                {
                    "a": [np.nan, 1.0, -2.0],
                    "channel": [None, "unseen", "ads"],
                    "country": ["xx", None, "de"],
                }
            ),
        ],
        ignore_index=True,
    )
    con = duckdb.connect()
    con.register("t", rows.assign(k=range(len(rows))))
    merged = [r[1] for r in sorted(con.execute(merged_sql).fetchall())]
    plain = [r[1] for r in sorted(con.execute(plain_sql).fetchall())]
    assert merged == plain
    frame = rows.astype({"channel": object, "country": object})
    frame = frame.where(frame.notna(), np.nan)
    expected = (
        model.predict_proba(frame)[:, 1]
        if hasattr(model, "predict_proba")
        else model.predict(frame)
    )
    assert np.max(np.abs(np.array(merged) - expected)) <= PARITY_TOLERANCE


def _indicator(x: ast.Expr, *levels: str) -> ast.Expr:
    test: ast.Expr = ast.StrEqExpr(x, levels[0])
    for level in levels[1:]:
        test = ast.OrExpr(test, ast.StrEqExpr(x, level))
    return ast.IdExpr(ast.IfExpr(test, ast.num(1.0), ast.num(0.0)), True)


def test_lookups_sharing_a_level_or_with_a_nonzero_else_are_not_merged() -> None:
    x = ast.ColumnRef("c", "string")
    mul = ast.BinNumOpType.MUL
    overlapping = [
        ast.BinNumExpr(_indicator(x, "a"), ast.num(2.0), mul),
        ast.BinNumExpr(_indicator(x, "a", "b"), ast.num(3.0), mul),  # 'a' again: both add
        ast.BinNumExpr(
            ast.IdExpr(ast.IfExpr(ast.StrEqExpr(x, "z"), ast.num(0.0), ast.num(1.0)), True),
            ast.num(5.0),
            mul,
        ),  # ELSE is 5, not 0: it adds for every other level
        ast.BinNumExpr(_indicator(x, "b"), ast.num(7.0), mul),
    ]
    found = [layout.lookup_term(t) for t in overlapping]
    assert all(f is not None for f in found)
    assert not layout.mergeable([found[0]], found[1])
    assert not layout.mergeable([found[1]], found[2])
    sql = SqlEmitter().render(Assembled(("c",), ast.add_all(overlapping), "regressor"), "t", None)
    con = duckdb.connect()
    con.execute("create table t as select * from (values ('a'), ('b'), ('z'), ('q'), (NULL)) v(c)")
    got = [r[0] for r in con.execute(sql).fetchall()]
    # a: 2 + 3 + 5; b: 3 + 5 + 7; z: 0; q: 5; NULL: 5 (NULL = 'z' is not true).
    assert got == [10.0, 15.0, 0.0, 5.0, 5.0]
