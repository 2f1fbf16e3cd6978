"""One mlsm run at a time per warehouse: an exclusive lock on a file beside it.

flock is released by the kernel when the process dies, SIGKILL included, so a killed run never
leaves a stale lock behind; the file keeps who holds it, for the refusal message."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlsm_py.errors import MlsmError


class LockedError(MlsmError):
    """Another mlsm run holds the warehouse."""


def lock_path(warehouse: Path) -> Path:
    return warehouse.with_name(warehouse.name + ".mlsm-lock")


@contextlib.contextmanager
def hold(warehouse: Path, command: str, target: Any = None) -> Iterator[None]:
    """The run lock on `warehouse` (the DuckDB file, or a server target's local state), and on
    a server warehouse also its own lock, which a run on another machine sees too."""
    with _file_lock(warehouse, command), _warehouse_lock(target, command):
        yield


@contextlib.contextmanager
def _warehouse_lock(target: Any, command: str) -> Iterator[None]:
    hold_there = getattr(target, "advisory_lock", None)
    if hold_there is None:
        yield
        return
    with hold_there(command):
        yield


@contextlib.contextmanager
def _file_lock(warehouse: Path, command: str) -> Iterator[None]:
    path = lock_path(warehouse)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            raise LockedError(
                f"another mlsm run holds {warehouse} ({holder}); nothing was changed. Try "
                "again when it has finished"
            ) from None
        os.ftruncate(fd, 0)
        info = {
            "pid": os.getpid(),
            "command": command,
            "since": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        }
        os.write(fd, json.dumps(info).encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "holder unknown"
    command, pid, since = (info.get(k, "?") for k in ("command", "pid", "since"))
    return f"`mlsm {command}`, pid {pid}, since {since}"
