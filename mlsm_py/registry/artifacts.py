"""Model artifacts in a safe format (skops: no pickle), sha256-checked before any load."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import skops.io as sio

from mlsm_py.errors import ArtifactError

# Types an artifact may hold beyond skops' defaults: only the libraries we compile.
TRUSTED_PREFIXES = (
    "sklearn.",
    "lightgbm.",
    "xgboost.",
    "numpy.",
    "collections.OrderedDict",
)


def dumps(estimator: Any) -> tuple[bytes, str]:
    """The artifact's bytes and their sha256."""
    data = sio.dumps(estimator)
    return data, hashlib.sha256(data).hexdigest()


def save(estimator: Any, path: Path) -> str:
    """Write the artifact and return its sha256."""
    data, sha = dumps(estimator)
    write(data, path)
    return sha


def write(data: bytes, path: Path) -> None:
    """Write atomically: a killed process leaves no half-written artifact under the name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def root_of(warehouse: Path) -> Path:
    """Artifacts live next to the warehouse file."""
    return warehouse.parent / "artifacts"


def store(data: bytes, sha256: str, warehouse: Path) -> str:
    """Content-addressed: the artifact is `<sha256>.skops` under the root; returns that
    relative path, which the registry records."""
    rel = f"{sha256}.skops"
    path = root_of(warehouse) / rel
    if not path.is_file():
        write(data, path)
    return rel


def resolve(warehouse: Path, rel: str) -> Path:
    return root_of(warehouse) / rel


def load(path: Path, sha256: str) -> Any:
    """Load an artifact only if its bytes hash to `sha256` and it holds trusted types only."""
    if not path.is_file():
        raise ArtifactError(f"artifact {path} is missing")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ArtifactError(
            f"artifact {path} was altered: sha256 is {actual}, the registry recorded {sha256}; "
            "refusing to load it"
        )
    untrusted = sio.get_untrusted_types(data=data)
    unknown = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if unknown:
        raise ArtifactError(f"artifact {path} holds types mlsm does not trust: {unknown}")
    return sio.loads(data, trusted=untrusted)
