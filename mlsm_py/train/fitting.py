"""Fitting one estimator, with early stopping on the validation window where the final step
supports an evaluation set (LightGBM, XGBoost). The preprocessing steps are fitted on the
training rows first and then transform the validation rows, exactly as Pipeline.fit would
feed the final step; the final step then stops adding trees when the validation loss stops
improving. The compiled model keeps only the trees up to the best iteration (the assemblers
read best_iteration), so parity holds as for any fit."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.base import clone
from sklearn.pipeline import Pipeline


def _final(est: Any) -> Any:
    return est.steps[-1][1] if isinstance(est, Pipeline) else est


def uses_validation(est: Any) -> bool:
    module = type(_final(est)).__module__
    return module.startswith(("lightgbm", "xgboost"))


def fit(
    estimator: Any,
    X: pd.DataFrame,
    y: Any,
    X_val: pd.DataFrame | None = None,
    y_val: Any = None,
    rounds: int = 20,
) -> Any:
    """A fitted clone of `estimator`; early-stopped on (X_val, y_val) when it can be."""
    est = clone(estimator)
    if X_val is None or len(X_val) == 0 or not uses_validation(est):
        return est.fit(X, y)
    final = _final(est)
    if isinstance(est, Pipeline) and len(est.steps) > 1:
        head = Pipeline(est.steps[:-1])
        Xt = head.fit_transform(X, y)
        Xv = head.transform(X_val)
    else:
        head, Xt, Xv = None, X, X_val
    if type(final).__module__.startswith("lightgbm"):
        import lightgbm

        callback = lightgbm.early_stopping(rounds, first_metric_only=True, verbose=False)
        final.fit(Xt, y, eval_set=[(Xv, y_val)], callbacks=[callback])
    else:
        final.set_params(early_stopping_rounds=rounds)
        final.fit(Xt, y, eval_set=[(Xv, y_val)], verbose=False)
    if head is None:
        return final
    # The same pipeline object a plain fit would give: fitted head steps, then the final step.
    return Pipeline([*head.steps, (est.steps[-1][0], final)])
