"""The report's plots, drawn with matplotlib and returned as inline SVG text. Fixed sizes,
no timestamps and a fixed id salt, so the same data draws the same bytes."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np

_READY = False


def _plt():
    global _READY
    import matplotlib

    if not _READY:
        matplotlib.use("Agg")
        matplotlib.rcParams.update(
            {"svg.hashsalt": "mlsm", "svg.fonttype": "none", "font.size": 9, "axes.grid": True}
        )
        _READY = True
    import matplotlib.pyplot as plt

    return plt


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    _plt().close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog: the SVG is inline


def roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]]) -> str:
    fig, ax = _plt().subplots(figsize=(4, 3.4))
    for label, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{label} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        title="ROC curve (newest matured rows)",
    )
    ax.legend(loc="lower right")
    return _svg(fig)


def capture(curves: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> str:
    fig, ax = _plt().subplots(figsize=(4, 3.4))
    for label, (share, captured) in curves.items():
        ax.plot(share * 100, captured * 100, label=label)
    ax.plot([0, 100], [0, 100], "k:", linewidth=0.8)
    ax.set(
        xlabel="% of records called, best first",
        ylabel="% of conversions found",
        title="Capture (newest matured rows)",
    )
    ax.legend(loc="lower right")
    return _svg(fig)


def calibration(tables: Mapping[str, Sequence[Mapping]]) -> str:
    fig, ax = _plt().subplots(figsize=(4, 3.4))
    for label, rows in tables.items():
        rows = [r for r in rows if r["rows"]]
        ax.plot(
            [r["mean_score"] for r in rows], [r["observed_rate"] for r in rows], "o-", label=label
        )
    ax.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    ax.set(xlabel="mean predicted", ylabel="observed rate", title="Calibration (holdout)")
    ax.legend(loc="upper left")
    return _svg(fig)


def over_time(
    runs: Sequence[str], series: Mapping[str, Sequence[float]], title: str, ylabel: str
) -> str:
    fig, ax = _plt().subplots(figsize=(4, 3.4))
    x = np.arange(len(runs))
    for label, values in series.items():
        ax.plot(x, values, "o-", label=label)
    ax.set_xticks(x, [r[:8] for r in runs], rotation=45, ha="right")
    ax.set(xlabel="build (run id)", ylabel=ylabel, title=title)
    ax.legend(loc="best")
    return _svg(fig)


def heat_map(columns: Sequence[str], runs: Sequence[str], psi: np.ndarray) -> str:
    fig, ax = _plt().subplots(figsize=(max(4, 0.5 * len(runs) + 2.5), 0.3 * len(columns) + 1.5))
    image = ax.imshow(
        np.nan_to_num(psi, nan=0.0),
        aspect="auto",
        cmap="Reds",
        vmin=0,
        vmax=max(0.3, float(np.nanmax(psi)) if psi.size else 0.3),
    )
    ax.set_yticks(range(len(columns)), columns)
    ax.set_xticks(range(len(runs)), [r[:8] for r in runs], rotation=45, ha="right")
    ax.grid(False)
    for i in range(len(columns)):
        for j in range(len(runs)):
            if not np.isnan(psi[i, j]):
                ax.text(j, i, f"{psi[i, j]:.2f}", ha="center", va="center", fontsize=7)
    ax.set_title("Input drift (PSI) per build")
    fig.colorbar(image, ax=ax, label="PSI")
    return _svg(fig)


def bars(labels: Sequence[str], groups: Mapping[str, Sequence[float]], title: str) -> str:
    fig, ax = _plt().subplots(figsize=(4, 3.4))
    x = np.arange(len(labels))
    width = 0.8 / max(len(groups), 1)
    for i, (name, values) in enumerate(groups.items()):
        ax.bar(x + i * width, values, width, label=name)
    ax.set_xticks(x + width * (len(groups) - 1) / 2, labels)
    ax.set(title=title)
    ax.legend(loc="lower right")
    return _svg(fig)
