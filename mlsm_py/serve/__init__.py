"""`mlsm serve`: the JSON scoring API over the registry's live champions."""

from __future__ import annotations

import logging

from mlsm_py.errors import MlsmError


def run(s, host: str, port: int) -> None:
    """Load the champions from the serving manifest and serve until interrupted. Server logs
    go to the project's log file unless --verbose."""
    try:
        import uvicorn

        from mlsm_py.serve.app import create_app
    except ImportError as e:
        raise MlsmError(
            f"mlsm serve needs FastAPI and uvicorn ({e.name} is missing): pip install 'mlsm[serve]'"
        ) from None
    from mlsm_py.serve.state import Watcher

    watcher = Watcher(s.project.warehouse, s.defs)
    st = watcher.state
    if not st.models:
        raise MlsmError("no live model has a champion yet; run `mlsm train` first")
    watcher.start()
    s.say(
        f"serving {len(st.models)} model(s), {len(st.fits)} champion fit(s) on "
        f"http://{host}:{port} (OpenAPI docs at /docs); Ctrl-C stops"
    )
    if not s.verbose:
        s.say(f"      server log: {s.project.log_file}")
    level = "info" if s.verbose else "warning"
    config = uvicorn.Config(
        create_app(watcher),
        host=host,
        port=port,
        log_level=level,
        access_log=s.verbose,
        log_config=None if not s.verbose else uvicorn.config.LOGGING_CONFIG,
    )
    if not s.verbose:
        handler = logging.FileHandler(s.project.log_file)
        for name in ("uvicorn", "uvicorn.error", "mlsm.serve"):
            logging.getLogger(name).addHandler(handler)
    try:
        uvicorn.Server(config).run()
    finally:
        watcher.stop()
