"""`mlsm dashboard`: a Streamlit page for the business over the readers' copy of a warehouse
(docs/decisions/0020-dashboard.md). The page (app.py) runs under `streamlit run`, Streamlit's
supported entry point, in a child process; this module finds what the page needs, starts it,
says where it answers, and stops it on Ctrl-C or SIGTERM.

Nothing here imports streamlit: the extra is optional, and the check for it has to be able to
run without it."""

from __future__ import annotations

import importlib.util
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from mlsm_py.errors import MlsmError

APP = Path(__file__).with_name("app.py")
INSTALL = "pip install 'mlsm[dashboard]'"
STARTUP_SECONDS = 60  # Streamlit imports pandas, pyarrow and altair before it listens


class _Stop(Exception):
    """SIGTERM, turned into an exception so the child is stopped on the way out."""


def command(readers: Path, key: str, call_lists: dict[str, str], host: str, port: int) -> list[str]:
    """The `streamlit run` command line: headless, no usage statistics, no file watcher (the
    page is installed code, not a file being edited), the page's own arguments after `--`."""
    page_args = ["--readers", str(readers), "--key", key]
    for summary, table in sorted(call_lists.items()):
        page_args += ["--call-list", f"{summary}={table}"]
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.headless=true",
        f"--server.address={host}",
        f"--server.port={port}",
        "--browser.gatherUsageStats=false",
        "--server.fileWatcherType=none",
        "--server.runOnSave=false",
        "--global.developmentMode=false",
        "--client.toolbarMode=minimal",
        "--",
        *page_args,
    ]


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        # As the server binds: connections of a server just stopped (TIME_WAIT) do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}_stcore/health", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def run(
    project_dir: Path,
    warehouse: Path,
    host: str,
    port: int,
    verbose: bool,
    say: Callable[[str], None] = print,
) -> int:
    """Serve the page until stopped. Returns 0 when stopped by Ctrl-C or SIGTERM; a page
    that fails to start or exits by itself is an MlsmError naming the log."""
    if importlib.util.find_spec("streamlit") is None:
        raise MlsmError(f"`mlsm dashboard` needs streamlit, which is not installed: {INSTALL}")
    from mlsm_py import project
    from mlsm_py.flow.readers import readers_file

    p = project.load(project_dir, str(warehouse))
    readers = readers_file(p.warehouse)
    if not readers.is_file():
        raise MlsmError(
            f"no readers' copy at {readers}: `mlsm build` writes it after each publication"
        )
    if not _port_free(host, port):
        raise MlsmError(f"port {port} on {host} is in use; pass --port")
    defs = p.definitions
    lists = {s.name: s.call_list.name for s in defs.summaries if s.call_list is not None}
    cmd = command(readers, defs.models[0].key, lists, host, port)
    log = p.logs_dir / "dashboard.log"
    p.logs_dir.mkdir(parents=True, exist_ok=True)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def stop(*_):
        raise _Stop

    previous = signal.signal(signal.SIGTERM, stop)
    with open(log, "a") as out:
        child = subprocess.Popen(
            cmd,
            stdout=None if verbose else out,
            stderr=None if verbose else subprocess.STDOUT,
            cwd=p.root,
        )
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while not _healthy(url):
                if child.poll() is not None or time.monotonic() > deadline:
                    raise MlsmError(f"the dashboard did not start (details in {log})")
                time.sleep(0.3)
            say(f"dashboard: {url} (reads {readers}, never the warehouse; Ctrl-C stops it)")
            code = child.wait()
            raise MlsmError(f"the dashboard stopped by itself, exit {code} (details in {log})")
        except (KeyboardInterrupt, _Stop):
            say("dashboard stopped")
            return 0
        finally:
            signal.signal(signal.SIGTERM, previous)
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
