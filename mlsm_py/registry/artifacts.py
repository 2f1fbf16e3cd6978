"""Model artifacts in a safe format (skops: no pickle), sha256-checked before any load."""

from __future__ import annotations

import hashlib
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
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


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
