"""LightGBM boosters: numerical and categorical splits, every missing-value type, binary,
multiclass (softmax and one-vs-all) and regression objectives, random-forest averaging.

The SQL repeats LightGBM 4.6's own prediction path for a pandas / numpy row:

1. Input (c_api.cpp, RowPairFunctionFromDenseMatric): a dense row keeps only values with
   |x| > kZeroThreshold (the float literal 1e-35f) or NaN; every other value is read as 0.0.
   This holds for every feature, whatever its missing type.
2. Numerical split (tree.h, NumericalDecision), compared in float64:
   - missing type None: NaN is read as 0.0 and compared like any value;
   - missing type Zero: NaN and |x| <= kZeroThreshold take the default side;
   - missing type NaN: NaN takes the default side.
3. Categorical split (tree.h, CategoricalDecision): the value is truncated toward zero to an
   int (-0.5 and 2.7 are categories 0 and 2), and goes left when that int is in the split's
   category set. Ints below 0 go right; so do values outside the int range and NaN, which
   the x86-64 conversion turns into INT_MIN (measured on this build for missing types None
   and NaN alike; the parity gate is what would catch a build that differs).
4. pandas `category` columns reach LightGBM as their codes in the training categories
   (`pandas_categorical`); an unseen level or a missing value is code NaN. Such a column is
   read here as a string column and each split becomes a test on the levels whose code goes
   left.

The trees used are the ones `predict` / `predict_proba` use by default: the first
`best_iteration` iterations after early stopping, all of them otherwise.
"""

from __future__ import annotations

import re
from itertools import combinations
from typing import Any

import numpy as np

from mlsm_py.compile import ast
from mlsm_py.errors import UnsupportedError

# LightGBM's kZeroThreshold is the float literal 1e-35f, widened to double when compared.
ZERO_THRESHOLD = float(np.float32(1e-35))

IDENTITY_OBJECTIVES = ("regression", "regression_l1", "huber", "fair", "quantile", "mape")
EXP_OBJECTIVES = ("poisson", "gamma", "tweedie")
SIGMOID_OBJECTIVES = ("cross_entropy",)
CLASSIFIER_OBJECTIVES = ("binary", "cross_entropy", "multiclass", "multiclassova")


# -- reading the booster ---------------------------------------------------------------------


def _dump(model: Any) -> dict:
    """The trees `predict` uses by default, as LightGBM's JSON dump, after refusing what the
    SQL does not reproduce."""
    if callable(getattr(model, "objective", None)):
        raise UnsupportedError(
            f"not supported: {type(model).__name__} with a custom objective function "
            "(LightGBM returns raw scores for it)"
        )
    params = model.get_params()
    if params.get("pred_early_stop"):
        raise UnsupportedError(
            f"not supported: {type(model).__name__}(pred_early_stop=True); prediction-time "
            "early stopping skips trees row by row"
        )
    booster = model.booster_
    # Booster.predict(num_iteration=None) scores with best_iteration (0: every iteration).
    dump = booster.dump_model(num_iteration=booster.best_iteration)
    if "objective" not in dump:
        raise UnsupportedError(
            f"not supported: {type(model).__name__} trained with a custom objective"
        )
    for info in dump["tree_info"]:
        if _is_linear(info["tree_structure"]):
            raise UnsupportedError(
                f"not supported: {type(model).__name__}(linear_tree=True); only constant "
                "leaves are compiled"
            )
    _restore_clamped_thresholds(booster, dump)
    return dump


# The JSON dump writes thresholds through Common::AvoidInf, which clamps |t| >= 1e300 to
# +-1e300; the booster compares with the real value (+inf for "every non-missing value goes
# left"), which the model string keeps. +inf <= inf is true, +inf <= 1e300 is not.
CLAMPED = 1e300


def _numerical_nodes(node: dict):
    if "leaf_value" in node:
        return
    if node["decision_type"] == "<=":
        yield node
    yield from _numerical_nodes(node["left_child"])
    yield from _numerical_nodes(node["right_child"])


def _restore_clamped_thresholds(booster: Any, dump: dict) -> None:
    clamped = [
        (info["tree_index"], node)
        for info in dump["tree_info"]
        for node in _numerical_nodes(info["tree_structure"])
        if abs(float(node["threshold"])) >= CLAMPED
    ]
    if not clamped:
        return
    exact = _model_string_thresholds(booster.model_to_string(num_iteration=booster.best_iteration))
    for tree_index, node in clamped:
        node["threshold"] = exact[tree_index][node["split_index"]]


def _model_string_thresholds(text: str) -> dict[int, list[float]]:
    """Tree index -> its `threshold=` array, as written in the model string."""
    out: dict[int, list[float]] = {}
    tree = None
    for line in text.splitlines():
        if line.startswith("Tree="):
            tree = int(line[len("Tree=") :])
        elif line.startswith("threshold=") and tree is not None:
            out[tree] = [float(v) for v in line[len("threshold=") :].split()]
    return out


def _is_linear(node: dict) -> bool:
    if "leaf_value" in node:
        return "leaf_coeff" in node or "leaf_const" in node
    return _is_linear(node["left_child"]) or _is_linear(node["right_child"])


def _categorical_features(booster: Any, dump: dict) -> list[int]:
    """Indices of the features LightGBM treats as categorical."""
    text = booster.model_to_string(num_iteration=booster.best_iteration)
    found = re.search(r"^\[categorical_feature: ([^\]]*)\]$", text, re.MULTILINE)
    if found is not None:
        items = [s for s in found.group(1).split(",") if s.strip()]
        if all(s.strip().isdigit() for s in items):
            return sorted(int(s) for s in items)
    # Without the parameter block, categorical features are those listed with their values.
    names = dump["feature_names"]
    return [i for i, n in enumerate(names) if dump["feature_infos"].get(n, {}).get("values")]


def _string_features(booster: Any, dump: dict) -> dict[int, list[str]]:
    """Feature index -> training levels, for the columns fitted as pandas `category` dtype.

    LightGBM records the levels of each category column in column order but not which
    columns they were; they are the categorical features whose observed codes fit the level
    lists, and the assignment has to be unique.
    """
    levels_by_column = booster.pandas_categorical or []
    if not levels_by_column:
        return {}
    for levels in levels_by_column:
        if not all(isinstance(v, str) for v in levels):
            raise UnsupportedError(
                f"not supported: a LightGBM pandas category column with non-string levels "
                f"{list(levels)[:5]!r}; only string levels can be read from a SQL column"
            )
    names = dump["feature_names"]
    candidates = _categorical_features(booster, dump)

    def fits(feature: int, levels: list[str]) -> bool:
        seen = dump["feature_infos"].get(names[feature], {}).get("values") or []
        return all(int(v) < len(levels) for v in seen)

    matches = [
        pick
        for pick in combinations(candidates, len(levels_by_column))
        if all(fits(f, lv) for f, lv in zip(pick, levels_by_column, strict=True))
    ]
    if len(matches) != 1:
        raise UnsupportedError(
            f"not supported: LightGBM model fitted on {len(levels_by_column)} pandas category "
            f"column(s) that cannot be matched to its categorical features "
            f"{[names[i] for i in candidates]} ({len(matches)} possible assignments); "
            "compile models whose category columns are all (and only) unordered "
            "categorical_feature='auto' columns, or encode them as integers"
        )
    return dict(zip(matches[0], (list(lv) for lv in levels_by_column), strict=True))


def pandas_categories(model: Any) -> dict[str, list[str]]:
    """Input column -> training levels, for each column a LightGBM model was fitted on as a
    pandas `category` (read as a string column by the SQL). The library must be given these
    columns as `pd.Categorical(values, categories=levels)`: it refuses plain strings."""
    booster = model.booster_
    if not getattr(booster, "pandas_categorical", None):
        return {}  # fitted without pandas categories: no need to dump the model (0.16 s)
    dump = booster.dump_model(num_iteration=booster.best_iteration)
    names = dump["feature_names"]
    return {names[i]: levels for i, levels in _string_features(booster, dump).items()}


# -- splits ----------------------------------------------------------------------------------


def _at_most(x: ast.Expr, threshold: float) -> ast.BoolExpr:
    """x' <= threshold, where x' is x as LightGBM reads it (0.0 when |x| <= kZeroThreshold).

    Only a threshold inside the zero band tells x' from x; there the test becomes a bound
    at the band's edge. NULL stays not-true (the right branch)."""
    if 0.0 <= threshold < ZERO_THRESHOLD:
        # Band values read as 0.0 <= threshold: everything up to the band's top goes left.
        return ast.CompExpr(x, ast.num(ZERO_THRESHOLD), ast.CompOpType.LTE)
    if -ZERO_THRESHOLD <= threshold < 0.0:
        # Band values read as 0.0 > threshold: only values below the band go left.
        return ast.CompExpr(x, ast.num(-ZERO_THRESHOLD), ast.CompOpType.LT)
    return ast.CompExpr(x, ast.num(threshold), ast.CompOpType.LTE)


def _numerical_test(x: ast.Expr, node: dict) -> ast.BoolExpr:
    threshold = float(node["threshold"])
    missing = node["missing_type"]
    default_left = bool(node["default_left"])
    if missing == "None":
        return _at_most(ast.CoalesceExpr(x, ast.num(0.0)), threshold)
    if missing == "NaN":
        le = _at_most(x, threshold)
        return ast.OrExpr(ast.IsNullExpr(x), le) if default_left else le
    if missing == "Zero":
        # The zero band is "missing" here, so values outside it are compared as they are.
        le = ast.CompExpr(x, ast.num(threshold), ast.CompOpType.LTE)
        is_zero = ast.CompExpr(ast.AbsExpr(x), ast.num(ZERO_THRESHOLD), ast.CompOpType.LTE)
        if default_left:
            return ast.OrExpr(ast.OrExpr(ast.IsNullExpr(x), is_zero), le)
        return ast.AndExpr(le, ast.NotExpr(is_zero))
    raise UnsupportedError(f"not supported: LightGBM missing type {missing!r}")


def _category_set(node: dict) -> list[int]:
    cats = sorted({int(c) for c in str(node["threshold"]).split("||")})
    if cats and cats[0] < 0:
        raise UnsupportedError(f"LightGBM categorical split on negative categories {cats}")
    return cats


def _runs(values: list[int]) -> list[tuple[int, int]]:
    """Sorted ints as maximal runs of consecutive values (first, last)."""
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _categorical_test(x: ast.Expr, cats: list[int]) -> ast.BoolExpr:
    """int(x) in cats, with C's truncation toward zero; NULL is not-true (right)."""
    test: ast.BoolExpr | None = None
    for first, last in _runs(cats):
        # int(x) in [first, last] <=> first <= x < last + 1, except that (-1, 0) also
        # truncates to 0.
        low = (
            ast.CompExpr(x, ast.num(-1.0), ast.CompOpType.GT)
            if first == 0
            else ast.CompExpr(x, ast.num(first), ast.CompOpType.GTE)
        )
        run = ast.AndExpr(low, ast.CompExpr(x, ast.num(last + 1), ast.CompOpType.LT))
        test = run if test is None else ast.OrExpr(test, run)
    assert test is not None
    return test


def _level_test(x: ast.Expr, levels: list[str]) -> ast.BoolExpr:
    test: ast.BoolExpr = ast.StrEqExpr(x, levels[0])
    for level in levels[1:]:
        test = ast.OrExpr(test, ast.StrEqExpr(x, level))
    return test


def _tree(node: dict, xs: list[ast.Expr], levels: dict[int, list[str]]) -> ast.Expr:
    if "leaf_value" in node:
        return ast.num(float(node["leaf_value"]))
    feature = node["split_feature"]
    x = xs[feature]
    kind = node["decision_type"]
    left, right = node["left_child"], node["right_child"]
    if kind == "<=":
        if feature in levels:
            raise UnsupportedError(
                "not supported: a numerical LightGBM split on a pandas category column"
            )
        test = _numerical_test(x, node)
    elif kind == "==":
        cats = _category_set(node)
        if feature in levels:
            # A level goes left when its code does; unseen levels and NULL are code NaN,
            # which goes right.
            names = levels[feature]
            chosen = [names[c] for c in cats if c < len(names)]
            if not chosen:
                return _tree(right, xs, levels)
            test = _level_test(x, chosen)
        else:
            test = _categorical_test(x, cats)
    else:
        raise UnsupportedError(f"not supported: LightGBM split with decision type {kind!r}")
    return ast.IfExpr(test, _tree(left, xs, levels), _tree(right, xs, levels))


# -- scores ----------------------------------------------------------------------------------


def _raw_scores(model: Any, inputs: list[ast.Expr]) -> tuple[list[ast.Expr], list[str]]:
    """One raw score per tree-per-iteration (one per class for multiclass), and the
    objective's words, e.g. ["binary", "sigmoid:1"]."""
    dump = _dump(model)
    n_features = dump["max_feature_idx"] + 1
    if len(inputs) != n_features:
        raise UnsupportedError(f"LightGBM model expects {n_features} inputs, got {len(inputs)}")
    levels = _string_features(model.booster_, dump)
    xs = [ast.as_string(x) if i in levels else ast.as_double(x) for i, x in enumerate(inputs)]
    per_iteration = int(dump.get("num_tree_per_iteration", 1))
    trees = dump["tree_info"]
    if not trees or len(trees) % per_iteration:
        raise UnsupportedError(
            f"LightGBM model has {len(trees)} trees for {per_iteration} trees per iteration"
        )
    # Trees are stored iteration by iteration: tree i adds to output i % per_iteration.
    groups: list[list[ast.Expr]] = [[] for _ in range(per_iteration)]
    for i, info in enumerate(trees):
        groups[i % per_iteration].append(
            ast.IdExpr(_tree(info["tree_structure"], xs, levels), to_reuse=True)
        )
    totals = [ast.add_all(g) for g in groups]
    if dump.get("average_output"):
        # Random-forest mode: LightGBM divides each output by the number of iterations used.
        n_iter = ast.num(len(trees) // per_iteration)
        totals = [ast.BinNumExpr(t, n_iter, ast.BinNumOpType.DIV) for t in totals]
    return totals, str(dump["objective"]).split()


def _parameter(words: list[str], name: str, default: float) -> float:
    for w in words[1:]:
        if w.startswith(f"{name}:"):
            return float(w.split(":", 1)[1])
    return default


def _sigmoid(total: ast.Expr, scale: float) -> ast.Expr:
    # LightGBM: 1 / (1 + exp(-sigmoid * raw)); a scale of 1 is left out (exactly the same).
    margin = total if scale == 1.0 else ast.BinNumExpr(total, ast.num(scale), ast.BinNumOpType.MUL)
    return ast.SigmoidExpr(ast.IdExpr(margin, to_reuse=True))


def classifier(model: Any, inputs: list[ast.Expr]) -> ast.Expr | list[ast.Expr]:
    """Positive-class probability (binary), or one probability per class."""
    totals, words = _raw_scores(model, inputs)
    name, n_classes = words[0], len(model.classes_)
    if name in ("binary", "cross_entropy") and n_classes == 2 and len(totals) == 1:
        scale = _parameter(words, "sigmoid", 1.0) if name == "binary" else 1.0
        return _sigmoid(totals[0], scale)
    if name == "multiclass" and len(totals) == n_classes > 2:
        return ast.softmax([ast.IdExpr(t, to_reuse=True) for t in totals])
    if name == "multiclassova" and len(totals) == n_classes > 2:
        # One-vs-all: each class's own sigmoid; predict_proba does not normalise the rows.
        scale = _parameter(words, "sigmoid", 1.0)
        return [_sigmoid(t, scale) for t in totals]
    raise UnsupportedError(
        f"not supported: LGBMClassifier with objective {' '.join(words)!r} and "
        f"{n_classes} classes; supported: {', '.join(CLASSIFIER_OBJECTIVES)}"
    )


def regressor(model: Any, inputs: list[ast.Expr]) -> ast.Expr:
    totals, words = _raw_scores(model, inputs)
    name = words[0]
    if len(totals) != 1:
        raise UnsupportedError(f"not supported: LGBMRegressor with {len(totals)} outputs")
    (total,) = totals
    if name in IDENTITY_OBJECTIVES:
        if "sqrt" in words[1:]:
            # reg_sqrt: trained on sign(y) * sqrt(|y|); LightGBM returns sign(r) * r * r.
            shared = ast.IdExpr(total, to_reuse=True)
            return ast.BinNumExpr(shared, ast.AbsExpr(shared), ast.BinNumOpType.MUL)
        return total
    if name in EXP_OBJECTIVES:
        return ast.ExpExpr(total)
    if name in SIGMOID_OBJECTIVES:
        return _sigmoid(total, 1.0)
    supported = (*IDENTITY_OBJECTIVES, *EXP_OBJECTIVES, *SIGMOID_OBJECTIVES)
    raise UnsupportedError(
        f"not supported: LGBMRegressor objective {name!r}; supported: "
        f"{', '.join(sorted(supported))}"
    )
