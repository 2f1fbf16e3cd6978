"""What the API scores with: the manifest's champions, each compiled once into the compiler's
Python target (compile.python_emitter) from its sha256-checked artifact, with its percentile
bands. A State is immutable; the Watcher swaps in a new one when the manifest changes, and a
request takes one State for its whole response, so it never mixes two champions."""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlsm_py.compile.assemblers import assemble
from mlsm_py.compile.python_emitter import PythonModel, compile_python
from mlsm_py.errors import MlsmError
from mlsm_py.flow import serving
from mlsm_py.registry import artifacts, store
from mlsm_py.segments import SEP
from mlsm_py.spec import Definitions, Field, Model, SummaryModel
from mlsm_py.train.summary import FLOOR_BAND, Bands

log = logging.getLogger("mlsm.serve")


@dataclass(frozen=True)
class FitScorer:
    fit_id: str
    model: str
    version: int
    segment: str | None
    trained_at: str
    py: PythonModel
    bands: Bands
    lower: tuple[float, ...]  # bands.lower as a list, for bisect
    reasons: int = 0
    texts: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def score(self, record: Mapping[str, Any]) -> dict[str, Any]:
        values = self.py.fn(*self.py.args(record))
        s = values[0]
        s = None if s is None or s != s else float(s)
        pct = self.percentile(s)
        # [] for a model that declares no reasons: every answer has the same shape.
        why = [self._reason(values[1 + 2 * i], values[2 + 2 * i]) for i in range(self.reasons)]
        return {"score": s, "percentile": pct, "decile": decile(pct), "reasons": why}

    def _reason(self, name: str | None, value: float) -> dict[str, Any]:
        v = None if value is None or value != value else float(value)
        direction = "up" if v is not None and v >= 0 else "down"
        return {
            "input": name,
            "contribution": v,
            "text": self.texts.get((name, direction), name) if name is not None else None,
        }

    def percentile(self, s: float | None) -> float | None:
        """`train.summary.place` for one score (the warehouse's `place_in_bands`)."""
        if s is None:
            return None
        i = bisect.bisect_right(self.lower, s) - 1
        band = int(self.bands.band[i])
        lower, upper = float(self.bands.lower[i]), float(self.bands.upper[i])
        if band == FLOOR_BAND:
            return 0.0
        if math.isnan(upper):
            return float(band)
        return band + (s - lower) / (upper - lower)


def decile(pct: float | None) -> int | None:
    """1..10 from a percentile, as the warehouse's `_decile_of`: [0, 10) is 1, [90, 100] 10."""
    if pct is None:
        return None
    return 10 if pct >= 90 else int(math.floor(pct / 10)) + 1


@dataclass(frozen=True)
class ModelServing:
    spec: Model
    champion: FitScorer | None  # the global fit (the fallback of a segmented model)
    by_segment: Mapping[str, FitScorer]

    def segment_of(self, record: Mapping[str, Any]) -> str | None:
        """The record's segment as `segments.labels` names it (None: a NULL part)."""
        parts = []
        for c, integer in self._segment_columns:
            v = record.get(c)
            if v is None:
                return None
            parts.append(str(int(v)) if integer else str(v))
        return SEP.join(parts) if parts else None

    @functools.cached_property
    def _segment_columns(self) -> tuple[tuple[str, bool], ...]:
        """(column, is an integer field) per segment column: once, not per record."""
        types = {f.name: f.type for f in self.spec.fields}
        return tuple((c, types[c] == "integer") for c in self.spec.segments)

    def score(self, record: Mapping[str, Any]) -> dict[str, Any] | None:
        seg = self.segment_of(record)
        fit = self.by_segment.get(seg) if seg is not None else None
        fallback = fit is None and bool(self.spec.segments)
        fit = fit or self.champion
        if fit is None:
            return None
        out = {
            "model": self.spec.name,
            "version": self.spec.version,
            "fit_id": fit.fit_id,
            "segment": seg,
            "fallback": fallback,
        }
        out.update(fit.score(record))
        return out


@dataclass(frozen=True)
class State:
    manifest_sha256: str
    loaded_at: float
    models: Mapping[str, ModelServing]
    summaries: Sequence[tuple[SummaryModel, list[str]]]
    fits: Mapping[str, FitScorer] = field(repr=False, default_factory=dict)

    def fields_by_model(self, names: Sequence[str]) -> list[tuple[str, Sequence[Field]]]:
        return [(self.models[n].spec.key, self.models[n].spec.fields) for n in names]


def load_fit(
    warehouse: Path, entry: Mapping[str, Any], m: Model, texts: Mapping | None = None
) -> FitScorer:
    """The fit compiled to the Python target: its score, and the reason codes its SQL
    publishes (the same expressions, rebuilt from the artifact and the stored means)."""
    path = artifacts.resolve(warehouse, entry["artifact"])
    estimator = artifacts.load(path, entry["artifact_sha256"])
    outputs = assemble(estimator).outputs()
    why = entry.get("reasons")
    if why:
        from mlsm_py.compile import reasons as rc

        c = rc.contributions(estimator, method=why["method"], means=why["means"])
        outputs = [*outputs, *rc.top_reasons(c, why["k"])]
    py = compile_python(outputs, name="score")
    bands = Bands.of(entry["breakpoints"])
    return FitScorer(
        entry["fit_id"],
        m.name,
        m.version,
        entry["segment"],
        entry["trained_at"],
        py,
        bands,
        tuple(float(x) for x in bands.lower),
        why["k"] if why else 0,
        dict(texts or {}),
    )


def reason_texts(dbt_dir: Path) -> dict[tuple[str, str], str]:
    """The project's reason_texts seed: (input column, up|down) -> text."""
    import csv

    path = dbt_dir / "seeds" / "reason_texts.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        return {(r["input_column"], r["direction"]): r["text"] for r in csv.DictReader(f)}


def load_state(
    warehouse: Path,
    defs: Definitions,
    cache: Mapping[str, FitScorer],
    texts: Mapping[tuple[str, str], str] | None = None,
) -> State:
    """A State from the manifest; fits already compiled (`cache`, by fit id) are reused."""
    path = serving.manifest_file(warehouse)
    if not path.is_file():
        raise MlsmError(f"no serving manifest at {path}; `mlsm train` or `mlsm build` writes it")
    data = path.read_bytes()
    doc = json.loads(data)
    fits: dict[str, FitScorer] = {}
    models: dict[str, ModelServing] = {}
    for entry in doc["models"]:
        try:
            m = defs.model(entry["model"])
        except MlsmError:
            continue  # served once, since removed from the definitions
        if m.status != "live":
            continue
        champion, by_segment = None, {}
        for f in entry["fits"]:
            if f["role"] != store.CHAMPION:
                continue
            scorer = cache.get(f["fit_id"]) or load_fit(warehouse, f, m, texts)
            fits[scorer.fit_id] = scorer
            if f["segment"] is None:
                champion = scorer
            else:
                by_segment[f["segment"]] = scorer
        models[m.name] = ModelServing(m, champion, by_segment)
    summaries = []
    for s in doc["summaries"]:
        spec = next((x for x in defs.summaries if x.name == s["summary"]), None)
        if spec is not None:
            summaries.append((spec, [c for c in s["candidates"] if c in models]))
    sha = hashlib.sha256(data).hexdigest()
    return State(sha, time.time(), models, summaries, fits)


class Watcher:
    """Holds the current State and reloads it in the background when the manifest file is
    replaced (a promotion, a rollback, a publication). A failed reload keeps the old State and
    is reported by /health."""

    def __init__(
        self,
        warehouse: Path,
        defs: Definitions,
        interval: float = 0.25,
        texts: Mapping[tuple[str, str], str] | None = None,
    ):
        self.warehouse = warehouse
        self.defs = defs
        self.texts = texts
        self.interval = interval
        self.error: str | None = None
        self._stamp = self._stat()
        self.state = load_state(warehouse, defs, {}, texts)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(serving.manifest_file(self.warehouse))
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def poll(self) -> bool:
        """Reload if the manifest changed; True if a new State is in place."""
        stamp = self._stat()
        if stamp is None or stamp == self._stamp:
            return False
        try:
            new = load_state(self.warehouse, self.defs, self.state.fits, self.texts)
        except Exception as e:  # keep serving the old champions, say why on /health
            self.error = f"reload failed, serving the previous champions: {e}"
            log.exception("manifest reload failed")
            self._stamp = stamp
            return False
        self._stamp, self.state, self.error = stamp, new, None
        log.info("serving manifest %s loaded", new.manifest_sha256[:12])
        return True

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.interval):
                self.poll()

        self._thread = threading.Thread(target=loop, name="mlsm-manifest-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
