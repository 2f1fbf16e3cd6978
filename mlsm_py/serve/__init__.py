"""`mlsm serve`: the JSON scoring API over the registry's live champions."""

from __future__ import annotations

import logging
import os

from mlsm_py.errors import MlsmError

# How a worker process (`--workers N`) finds the project: uvicorn starts workers from an
# import string, so the parent passes the project through the environment.
_PROJECT_ENV = "MLSM_SERVE_PROJECT"
_WAREHOUSE_ENV = "MLSM_SERVE_WAREHOUSE"
_TARGET_ENV = "MLSM_SERVE_TARGET"


def _watcher(s):
    from mlsm_py.serve.state import Watcher, reason_texts

    return Watcher(s.project.state, s.defs, texts=reason_texts(s.project.dbt_dir))


def worker_app():
    """The app of one worker process: its own state and manifest watcher."""
    from mlsm_py import project
    from mlsm_py.flow.session import Session
    from mlsm_py.serve.app import create_app

    p = project.load(
        os.environ[_PROJECT_ENV],
        os.environ.get(_WAREHOUSE_ENV) or None,
        os.environ.get(_TARGET_ENV) or None,
    )
    watcher = _watcher(Session(p, lambda _: None))
    watcher.start()
    return create_app(watcher)


def run(s, host: str, port: int, workers: int = 1) -> None:
    """Load the champions from the serving manifest and serve until interrupted. Server logs
    go to the project's log file unless --verbose. `workers` > 1 runs that many processes on
    one port (each with its own copy of the champions): throughput under concurrent requests
    on a machine with as many cores."""
    try:
        import uvicorn

        from mlsm_py.serve.app import create_app
    except ImportError as e:
        raise MlsmError(
            f"mlsm serve needs FastAPI and uvicorn ({e.name} is missing): pip install 'mlsm[serve]'"
        ) from None
    if workers < 1:
        raise MlsmError(f"--workers must be at least 1 (got {workers})")
    watcher = _watcher(s)  # loaded here too: a broken manifest fails before any worker starts
    st = watcher.state
    if not st.models:
        raise MlsmError("no live model has a champion yet; run `mlsm train` first")
    s.say(
        f"serving {len(st.models)} model(s), {len(st.fits)} champion fit(s) on "
        f"http://{host}:{port} (OpenAPI docs at /docs), {workers} worker(s); Ctrl-C stops"
    )
    if not s.verbose:
        s.say(f"      server log: {s.project.log_file}")
        s.project.logs_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(s.project.log_file)
        for name in ("uvicorn", "uvicorn.error", "mlsm.serve"):
            logging.getLogger(name).addHandler(handler)
    common = {
        "host": host,
        "port": port,
        "log_level": "info" if s.verbose else "warning",
        "access_log": s.verbose,
        "log_config": uvicorn.config.LOGGING_CONFIG if s.verbose else None,
    }
    if workers > 1:
        import socket

        from uvicorn.supervisors import Multiprocess

        os.environ[_PROJECT_ENV] = str(s.project.root)
        os.environ[_WAREHOUSE_ENV] = str(s.project.warehouse)
        os.environ[_TARGET_ENV] = s.project.dbt_target or ""
        config = uvicorn.Config("mlsm_py.serve:worker_app", factory=True, workers=workers, **common)
        sock = config.bind_socket()
        # Workers get the listening socket re-created from its descriptor, whose protocol
        # number asyncio does not recognise as TCP, so it leaves Nagle's algorithm on: with
        # delayed ACKs every response then waits ~40 ms (measured: 44 ms for /health).
        # Accepted connections inherit TCP_NODELAY from the listening socket on Linux.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        Multiprocess(config, sockets=[sock]).run()
        return
    watcher.start()
    try:
        uvicorn.Server(uvicorn.Config(create_app(watcher), **common)).run()
    finally:
        watcher.stop()
