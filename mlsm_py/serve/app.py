"""The JSON API: POST /score, GET /models, GET /models/{name}, GET /health; OpenAPI at /docs.

Requests are answered from the Watcher's current State only: no warehouse connection, so a
running server never blocks `dbt build`, and a promotion or rollback shows on the next request
after the manifest is replaced (the watcher polls it)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from mlsm_py import __version__
from mlsm_py.serve.scoring import score_records
from mlsm_py.serve.state import State, Watcher
from mlsm_py.serve.validate import check_records

MAX_RECORDS = 10_000


class ScoreRequest(BaseModel):
    records: list[dict[str, Any]] = Field(
        ...,
        description="Records to score: each a JSON object with the model inputs by name and "
        "the key. null is a missing value, as a warehouse NULL.",
        max_length=MAX_RECORDS,
    )
    models: list[str] | None = Field(
        None, description="Score with these live models only (default: every live model)."
    )


def _model_doc(state: State, name: str) -> dict:
    ms = state.models[name]
    fits = [ms.champion] if ms.champion else []
    fits += [ms.by_segment[k] for k in sorted(ms.by_segment)]
    return {
        "model": name,
        "version": ms.spec.version,
        "key": ms.spec.key,
        "segment_by": list(ms.spec.segments),
        "champions": [
            {"segment": f.segment, "fit_id": f.fit_id, "trained_at": f.trained_at} for f in fits
        ],
        "fields": [
            {
                "name": f.name,
                "type": f.type,
                "nullable": f.nullable,
                "min": f.min,
                "max": f.max,
                "levels": list(f.levels) if f.levels is not None else None,
            }
            for f in ms.spec.fields
        ],
    }


def create_app(watcher: Watcher) -> FastAPI:
    app = FastAPI(
        title="mlsm scoring API",
        version=__version__,
        description="Scores records with the registry's live champions, in-process, with the "
        "same compiled model the warehouse runs (proven equal by the parity gate).",
    )

    @app.get("/health")
    def health() -> dict:
        st = watcher.state
        return {
            "status": "degraded" if watcher.error else "ok",
            "error": watcher.error,
            "manifest_sha256": st.manifest_sha256,
            "loaded_at": st.loaded_at,
            "models": len(st.models),
            "fits": len(st.fits),
        }

    @app.get("/models")
    def models() -> dict:
        st = watcher.state
        return {
            "manifest_sha256": st.manifest_sha256,
            "models": [_model_doc(st, n) for n in st.models],
            "summaries": [
                {"summary": s.name, "rule": s.rule, "candidates": order}
                for s, order in st.summaries
            ],
        }

    @app.get("/models/{name}")
    def model(name: str) -> dict:
        st = watcher.state
        if name not in st.models:
            raise HTTPException(404, f"no live model {name!r}; live: {', '.join(st.models)}")
        return _model_doc(st, name)

    # async: the scoring is pure CPU on in-memory state; the event loop runs it directly
    # instead of hopping to a worker thread, which costs more than scoring one record.
    @app.post("/score")
    async def score(req: ScoreRequest) -> Any:
        st = watcher.state  # one State for the whole response
        names = list(st.models) if req.models is None else req.models
        unknown = [n for n in names if n not in st.models]
        if unknown:
            raise HTTPException(404, f"no live model {unknown[0]!r}; live: {', '.join(st.models)}")
        problems = check_records(req.records, st.fields_by_model(names))
        if problems:
            return JSONResponse(
                status_code=422, content={"detail": [p.to_dict() for p in problems]}
            )
        # A plain JSONResponse: FastAPI's encoder would walk every value a second time.
        return JSONResponse(
            {
                "manifest_sha256": st.manifest_sha256,
                "results": score_records(st, req.records, names),
            }
        )

    return app
