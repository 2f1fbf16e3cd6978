"""Unit tests of the SQL emitter and the AST it renders, plus the compiler's refusals.

Everything here runs the emitted SQL in an in-memory DuckDB where a value is involved: the text
of a literal is only right if the engine reads it back as the same double.
"""

from __future__ import annotations

import math
import re

import duckdb
import numpy as np
import pandas as pd
import pytest
import sqlglot
from lightgbm import LGBMClassifier
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from sqlglot import exp

from mlsm_py import to_sql
from mlsm_py.compile import ast
from mlsm_py.compile.assemblers import Assembled
from mlsm_py.compile.assemblers.sklearn_trees import float32_split
from mlsm_py.compile.emitter import SqlEmitter
from mlsm_py.errors import UnsupportedError
from mlsm_py.parity.gate import check_parity

pytestmark = [
    # scikit-learn casts the parity gate's +-1e300 rows to float32 (and then refuses them).
    pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning"),
]

# Same bound as the parity suite: the SQL repeats the library's float64 arithmetic, so only
# summation order and the sigmoid's form differ (a few ulps); a misrouted row is off by far more.
TOLERANCE = 1e-9

# A numeric SQL literal: digits, optional fraction, optional exponent. Used to find literals in
# rendered SQL text (column names are quoted, so digits inside them are not matched on their own).
NUMBER_RE = re.compile(r"(?<![\w\"'.])(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)")


# -- helpers ---------------------------------------------------------------------------------


def _frame(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.uniform(-2, 2, size=n),
            "c": rng.choice(["red", "green", "blue"], size=n).astype(object),
        }
    )
    y = ((df["a"] * df["b"] > 0) ^ (df["c"] == "red")).astype(int)
    return df, y


def _pipeline(final, numeric=("a", "b"), categorical=("c",)) -> Pipeline:
    return Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", SimpleImputer(strategy="median"), list(numeric)),
                        (
                            "cat",
                            Pipeline(
                                [
                                    (
                                        "imp",
                                        SimpleImputer(strategy="constant", fill_value="missing"),
                                    ),
                                    (
                                        "ohe",
                                        OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                                    ),
                                ]
                            ),
                            list(categorical),
                        ),
                    ]
                ),
            ),
            ("model", final),
        ]
    )


def _render(score: ast.Expr, table: str = "one", key: str | None = "k") -> str:
    return SqlEmitter("duckdb").render(Assembled((), score, "regressor"), table, key)


def _one_row_con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE one AS SELECT 1 AS k")
    return con


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> float:
    rows = con.execute(sql).fetchall()
    assert len(rows) == 1
    return rows[0][-1]


def _statements(sql: str) -> list[exp.Expression]:
    return [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]


def _numeric_literals(sql: str) -> list[exp.Literal]:
    (tree,) = _statements(sql)
    return [lit for lit in tree.find_all(exp.Literal) if lit.is_number]


def _f32_steps(value: float, k: int) -> list[float]:
    """k float32 values on each side of `value` (and the float32 nearest to it)."""
    f = np.float32(value)
    out = [f]
    lo = hi = f
    for _ in range(k):
        lo = np.nextafter(lo, np.float32(-np.inf))
        hi = np.nextafter(hi, np.float32(np.inf))
        out += [lo, hi]
    return [float(v) for v in out if np.isfinite(v)]


def _f64_steps(value: float, k: int) -> list[float]:
    out = [value]
    lo = hi = value
    for _ in range(k):
        lo = float(np.nextafter(lo, -np.inf))
        hi = float(np.nextafter(hi, np.inf))
        out += [lo, hi]
    return out


# -- double literals -------------------------------------------------------------------------


def _random_doubles() -> list[float]:
    rng = np.random.default_rng(0)
    mags = 10.0 ** rng.uniform(-300, 300, size=200)
    vals = list(rng.normal(size=200)) + list(rng.normal(size=200) * mags)
    vals += [0.94, 0.1, 1 / 3, 2.0**53, 1e16, 1e22, 1e23, 123456789012345.0]
    vals += [5e-324, 1e-320, 2.2250738585072014e-308, 1.7976931348623157e308, 0.0, 1.0]
    return [float(v) for v in vals]


@pytest.mark.parametrize("value", [0.94, 0.1, 1.0, 3.0, 0.0, 123456789012345.0, 2.0**53])
def test_plain_decimal_gets_an_exponent(value: float) -> None:
    text = SqlEmitter().number(value).sql(dialect="duckdb")
    assert re.fullmatch(r"\d+\.\d+E0", text), text
    assert float(text) == value


def test_point_nine_four_renders_as_double_not_decimal() -> None:
    text = SqlEmitter().number(0.94).sql(dialect="duckdb")
    assert text == "0.94E0"
    con = duckdb.connect()
    value, typ = con.execute(f"SELECT {text}, typeof({text})").fetchone()
    assert typ == "DOUBLE"
    assert value == 0.94
    # The bare text is what the exponent is there to avoid.
    assert con.execute("SELECT typeof(0.94)").fetchone()[0].startswith("DECIMAL")


def test_double_literals_round_trip_exactly_in_python_and_duckdb() -> None:
    emitter = SqlEmitter()
    values = _random_doubles()
    texts = [emitter.number(v).sql(dialect="duckdb") for v in values]
    for v, text in zip(values, texts, strict=True):
        # One literal (under a unary minus when negative) that carries an exponent.
        assert re.fullmatch(r"-?\d+(\.\d+)?[eE][+-]?\d+", text), text
        assert float(text) == v
    # DuckDB reads each one back as the same DOUBLE.
    got = (
        duckdb.connect()
        .execute("SELECT " + ", ".join(f"{t}, typeof({t})" for t in texts))
        .fetchone()
    )
    for i, v in enumerate(values):
        assert got[2 * i + 1] == "DOUBLE", texts[i]
        assert got[2 * i] == v, texts[i]


def test_negative_literals() -> None:
    emitter = SqlEmitter()
    con = duckdb.connect()
    values = [-0.94, -1.0, -5e-324, -1.7976931348623157e308, -1e-05, -123.456]
    values += [-v for v in _random_doubles() if v > 0][:100]
    for v in values:
        node = emitter.number(v)
        assert isinstance(node, exp.Neg)
        text = node.sql(dialect="duckdb")
        assert text.startswith("-")
        assert float(text) == v
        got, typ = con.execute(f"SELECT {text}, typeof({text})").fetchone()
        assert (got, typ) == (v, "DOUBLE")


def test_negative_zero_keeps_its_sign() -> None:
    text = SqlEmitter().number(-0.0).sql(dialect="duckdb")
    assert text == "-0.0E0"
    got = duckdb.connect().execute(f"SELECT {text}").fetchone()[0]
    assert got == 0.0 and math.copysign(1.0, got) == -1.0


def test_subtracting_a_negative_literal_is_not_a_comment() -> None:
    # x - (-1.5) must not render as "x --1.5", which would comment out the rest of the line.
    score = ast.BinNumExpr(ast.num(2.0), ast.num(-1.5), ast.BinNumOpType.SUB)
    sql = _render(score)
    assert "--" not in sql
    assert _scalar(_one_row_con(), sql) == 3.5


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (math.nan, "CAST('NaN' AS DOUBLE)"),
        (math.inf, "CAST('Infinity' AS DOUBLE)"),
        (-math.inf, "CAST('-Infinity' AS DOUBLE)"),
    ],
)
def test_non_finite_constants_render_as_casts(value: float, text: str) -> None:
    rendered = SqlEmitter().number(value).sql(dialect="duckdb")
    assert rendered == text
    got = duckdb.connect().execute(f"SELECT {rendered}").fetchone()[0]
    assert (math.isnan(got) and math.isnan(value)) or got == value


def test_compiled_model_has_only_exponent_literals_that_match_its_parameters() -> None:
    df, _ = _frame()
    y = 0.94 * df["a"] - 0.1 * df["b"] + 0.3
    model = LinearRegression().fit(df[["a", "b"]], y)
    sql = to_sql(model, "t")
    lits = _numeric_literals(sql)
    assert lits
    for lit in lits:
        assert re.search(r"[eE]", lit.this), f"literal without exponent: {lit.this}"
    # No bare decimal anywhere in the text either (it would be typed DECIMAL by DuckDB).
    for text in NUMBER_RE.findall(sql):
        assert re.search(r"[eE]", text), f"bare decimal in SQL: {text}"
    rendered = {float(lit.this) for lit in lits}
    # Coefficients may be negative: the literal is then the absolute value under a minus.
    for param in [model.intercept_, *model.coef_]:
        assert abs(float(param)) in rendered


# -- sigmoid ---------------------------------------------------------------------------------

SIGMOID_Z = [-1e6, -800, -40, -1, 0, 1, 40, 800, 1e6]


@pytest.mark.parametrize("z", SIGMOID_Z)
def test_sigmoid_saturates_and_matches_expit(z: float) -> None:
    score = ast.SigmoidExpr(ast.IdExpr(ast.NumVal(float(z)), to_reuse=True))
    got = _scalar(_one_row_con(), _render(score))
    assert got is not None
    assert math.isfinite(got)
    assert 0.0 <= got <= 1.0
    assert abs(got - float(expit(z))) <= 1e-15


def test_sigmoid_over_all_points_in_one_query_has_no_inf_or_nan() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE zs (k INTEGER, z DOUBLE)")
    zs = [*SIGMOID_Z, -745.0, -710.0, -700.0, -699.0, 36.0, 37.0, 41.0, 709.0, 710.0]
    con.executemany("INSERT INTO zs VALUES (?, ?)", list(enumerate(zs)))
    score = ast.SigmoidExpr(ast.ColumnRef("z", "double"))
    rows = dict(con.execute(_render(score, "zs", "k")).fetchall())
    for i, z in enumerate(zs):
        assert rows[i] is not None and math.isfinite(rows[i])
        assert abs(rows[i] - float(expit(z))) <= 1e-15, z


def test_sigmoid_margin_becomes_a_shared_column() -> None:
    # The margin is read several times by the saturating CASE; it must be computed once.
    margin = ast.BinNumExpr(ast.ColumnRef("z", "double"), ast.num(2.0), ast.BinNumOpType.MUL)
    sql = _render(ast.SigmoidExpr(margin), "t", None)
    assert sql.count("* 2.0E0") == 1
    assert '"__mlsm_0"' in sql


# -- inputs: NaN is missing ------------------------------------------------------------------


def test_column_nan_is_routed_as_null() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (k INTEGER, x DOUBLE)")
    con.executemany(
        "INSERT INTO t VALUES (?, ?)",
        [(0, float("nan")), (1, None), (2, 1.5), (3, float("inf")), (4, -0.0)],
    )
    x = ast.ColumnRef("x", "double")
    score = ast.IfExpr(ast.IsNullExpr(x), ast.num(-1.0), x)
    got = dict(con.execute(_render(score, "t", "k")).fetchall())
    assert got[0] == -1.0  # NaN takes the NULL route
    assert got[1] == -1.0
    assert got[2] == 1.5
    assert got[3] == math.inf
    assert got[4] == 0.0
    # Coalesce (the imputer's form) sees NaN as missing too.
    imputed = ast.CoalesceExpr(x, ast.num(7.0))
    got = dict(con.execute(_render(imputed, "t", "k")).fetchall())
    assert got[0] == 7.0 and got[1] == 7.0 and got[2] == 1.5


def test_nan_comparison_is_not_true_so_missing_goes_to_else() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT 0 AS k, CAST('NaN' AS DOUBLE) AS x")
    x = ast.ColumnRef("x", "double")
    # In raw DuckDB NaN compares greater than everything; after NULLIF it must not.
    for op in (ast.CompOpType.GT, ast.CompOpType.LTE, ast.CompOpType.EQ):
        score = ast.IfExpr(ast.CompExpr(x, ast.num(0.0), op), ast.num(1.0), ast.num(2.0))
        assert _scalar(con, _render(score, "t", "k")) == 2.0


# -- float32 splits --------------------------------------------------------------------------


def _thresholds() -> list[float]:
    rng = np.random.default_rng(0)
    out: list[float] = []
    # Arbitrary doubles over a wide range of magnitudes and both signs.
    mags = 10.0 ** rng.uniform(-38, 38, size=300)
    out += list(rng.normal(size=300) * mags)
    out += list(rng.normal(size=300))
    # Exactly-float32 thresholds (both even and odd significands).
    out += [float(np.float32(v)) for v in rng.normal(size=100) * 100]
    # What scikit-learn stores: the midpoint of two float32 training values, in double.
    a = rng.normal(size=200).astype(np.float32)
    b = np.nextafter(a, np.float32(np.inf))
    out += [float(x) / 2.0 + float(y) / 2.0 for x, y in zip(a, b, strict=True)]
    c = (a + rng.uniform(0, 1, size=200).astype(np.float32)).astype(np.float32)
    out += [float(x) / 2.0 + float(y) / 2.0 for x, y in zip(a, c, strict=True)]
    # Edges: zero, signed zero, subnormal float32, near float32 max, integers.
    out += [0.0, -0.0, 1e-45, -1e-45, 1.5e-45, 1e-40, 3.0e38, -3.0e38, 1.0, -1.0, 2.0**24 + 1]
    return [float(t) for t in out]


def test_float32_split_is_exact_around_every_threshold() -> None:
    checked = 0
    for t in _thresholds():
        boundary, inclusive = float32_split(t)
        xs: set[float] = set()
        for centre in (t, boundary):
            xs.update(_f32_steps(centre, 3))
            xs.update(_f64_steps(centre, 3))
            # And the doubles right next to each nearby float32 (the rounding edges).
            for f in _f32_steps(centre, 2):
                xs.update(_f64_steps(f, 1))
                up = float(np.nextafter(np.float32(f), np.float32(np.inf)))
                if math.isfinite(up):
                    xs.update(_f64_steps((f + up) / 2.0, 2))
        for x in xs:
            # scikit-learn widens the float32 input back to double to compare (a bare
            # np.float32 <= float would compare in float32 under NumPy 2's promotion rules).
            expected = bool(np.float64(np.float32(x)) <= t)
            got = x <= boundary if inclusive else x < boundary
            assert got == expected, (t, boundary, inclusive, x)
            checked += 1
    assert checked > 10_000


def test_float32_split_on_a_float32_value_is_the_midpoint_to_the_next() -> None:
    t = 4.0
    boundary, inclusive = float32_split(t)
    up = float(np.nextafter(np.float32(4.0), np.float32(np.inf)))
    assert boundary == (4.0 + up) / 2.0
    assert inclusive  # 4.0 has an even significand, so the midpoint rounds down to it


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: SVC(), "SVC"),
        (lambda: KNeighborsClassifier(n_neighbors=3), "KNeighborsClassifier"),
        (lambda: Pipeline([("sc", StandardScaler()), ("m", SVC())]), "SVC"),
        (
            lambda: Pipeline([("pf", PolynomialFeatures()), ("m", LogisticRegression())]),
            "PolynomialFeatures",
        ),
    ],
    ids=["svc", "knn", "pipeline-svc", "pipeline-polynomial"],
)
def test_unsupported_estimator_is_refused_with_the_supported_list(make, name: str) -> None:
    df, y = _frame()
    model = make().fit(df[["a", "b"]], y)
    with pytest.raises(UnsupportedError) as info:
        to_sql(model, "t")
    msg = str(info.value)
    assert name in msg
    assert "supported:" in msg
    for listed in ("LogisticRegression", "RandomForestClassifier", "LGBMClassifier"):
        assert listed in msg


def test_one_hot_encoder_handle_unknown_error_is_refused() -> None:
    df, y = _frame()
    model = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", "passthrough", ["a", "b"]),
                        ("cat", OneHotEncoder(handle_unknown="error"), ["c"]),
                    ]
                ),
            ),
            ("m", LogisticRegression()),
        ]
    ).fit(df, y)
    with pytest.raises(UnsupportedError, match="handle_unknown"):
        to_sql(model, "t")


@pytest.mark.parametrize(
    "make",
    [
        lambda: LogisticRegression(),
        lambda: DecisionTreeClassifier(max_depth=2),
        lambda: Pipeline([("sc", StandardScaler()), ("m", LogisticRegression())]),
    ],
    ids=["logistic", "tree", "pipeline"],
)
def test_estimator_fitted_on_numpy_is_refused(make) -> None:
    df, y = _frame()
    model = make().fit(df[["a", "b"]].to_numpy(), y.to_numpy())
    with pytest.raises(UnsupportedError, match="feature_names_in_"):
        to_sql(model, "t")


def test_unknown_dialect_is_refused() -> None:
    with pytest.raises(UnsupportedError, match="supported:"):
        SqlEmitter("oracle")


# -- determinism -----------------------------------------------------------------------------


DETERMINISTIC = [
    lambda: _pipeline(LogisticRegression()),
    lambda: _pipeline(RandomForestClassifier(n_estimators=5, max_depth=4, random_state=7)),
    lambda: _pipeline(
        LGBMClassifier(n_estimators=5, num_leaves=7, random_state=7, verbose=-1, n_jobs=1)
    ),
]


@pytest.mark.parametrize("make", DETERMINISTIC, ids=["logistic", "forest", "lightgbm"])
def test_same_fit_gives_byte_identical_sql(make) -> None:
    df, y = _frame()
    model = make().fit(df, y)
    first = to_sql(model, "t", key="id")
    assert to_sql(model, "t", key="id") == first
    # An independent fit with the same seed compiles to the same bytes.
    again = make().fit(df.copy(), y.copy())
    assert to_sql(again, "t", key="id").encode() == first.encode()


# -- hostile names ---------------------------------------------------------------------------

HOSTILE_LEVELS = [
    "it's",
    "x'; DROP TABLE t; --",
    'dq"uote',
    "semi;colon",
    "-- comment",
    "/* block */",
    "line\nbreak",
    "tab\tbed",
    "{{ env_var('HOME') }}",
    "{% raw %}x{% endraw %}",
    "Zürich ✓",
    "日本語",
    "back\\slash",
    "\\'",
    " padded ",
]

HOSTILE_NAMES = {
    "quotes": ('it\'s "num"', 'cat\'s "level"'),
    "sql": ("x; DROP TABLE t; --", "-- c */ /* d"),
    "jinja": ("{{ num }}", "{% if cat %}{% endif %}"),
    "unicode": ("Größe ✓", "カテゴリ"),
    "newline": ("num\nvalue", "cat\r\nlevel"),
}


def _hostile_data(num: str, cat: str, n: int = 600) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(3)
    df = pd.DataFrame(
        {
            num: rng.normal(size=n),
            cat: rng.choice(HOSTILE_LEVELS, size=n).astype(object),
        }
    )
    df.loc[rng.uniform(size=n) < 0.1, num] = np.nan
    # Missing categories are NaN, as mlsm_py.frames.model_frame hands them to the model.
    df.loc[rng.uniform(size=n) < 0.1, cat] = np.nan
    idx = df[cat].map({lv: i for i, lv in enumerate(HOSTILE_LEVELS)}).fillna(-1)
    y = (df[num].fillna(0) + (idx % 3) - 1 > 0).astype(int)
    return df, y


@pytest.mark.parametrize(
    "kind",
    [
        "quotes",
        "sql",
        "jinja",
        "unicode",
        "newline",
    ],
)
@pytest.mark.parametrize("final", ["logistic", "tree"])
def test_hostile_names_and_levels_give_one_statement_that_matches(kind: str, final: str) -> None:
    num, cat = HOSTILE_NAMES[kind]
    df, y = _hostile_data(num, cat)
    est = (
        LogisticRegression()
        if final == "logistic"
        else DecisionTreeClassifier(max_depth=6, random_state=0)
    )
    model = _pipeline(est, numeric=[num], categorical=[cat]).fit(df, y)
    sql = to_sql(model, "t", key="id")
    assert len(_statements(sql)) == 1

    con = duckdb.connect()
    scored = df.assign(id=np.arange(len(df)))
    con.register("t", scored)
    got = dict(con.execute(sql).fetchall())
    # The table is still there: nothing in the levels escaped its literal.
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == len(df)
    expected = model.predict_proba(df)[:, 1]
    diffs = [abs(got[i] - expected[i]) for i in range(len(df))]
    assert max(diffs) <= TOLERANCE
    # Every level a logistic model weighs appears in the SQL as a literal that reads back as
    # itself (a tree only names the levels it splits on).
    for level in HOSTILE_LEVELS if final == "logistic" else []:
        lit = exp.Literal.string(level).sql(dialect="duckdb")
        assert lit in sql
        assert con.execute(f"SELECT {lit}").fetchone()[0] == level

    report = check_parity(model, duckdb.connect(), df)
    assert report.passed, report.worst_row


@pytest.mark.parametrize(
    "names",
    [
        pytest.param(("A", "a"), id="case-only-difference"),
        pytest.param(("__MLSM_0", "x"), id="reserved-prefix-other-case"),
    ],
)
def test_column_names_colliding_case_insensitively_are_refused_or_correct(names) -> None:
    rng = np.random.default_rng(1)
    df = pd.DataFrame(rng.normal(size=(200, 2)), columns=list(names))
    y = 3 * df.iloc[:, 0] - df.iloc[:, 1]
    # A forest, so the SQL has generated __mlsm_<n> columns for an input name to collide with.
    model = RandomForestClassifier(n_estimators=3, max_depth=4, random_state=0)
    model.fit(df, (y > 0).astype(int))
    try:
        to_sql(model, "t")
    except UnsupportedError:
        return  # refusing is a correct answer
    report = check_parity(model, duckdb.connect(), df)
    assert report.passed, report.worst_row
