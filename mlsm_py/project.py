"""A project: the directory whose `[tool.mlsm]` table (in pyproject.toml) or mlsm.toml says where
its definitions, dbt project and warehouse are. Paths are anchored to the project directory."""

from __future__ import annotations

import importlib
import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from mlsm_py.errors import MlsmError, SpecError
from mlsm_py.spec import Definitions
from mlsm_py.warehouse import targets
from mlsm_py.warehouse.targets import Target

KEYS = ("definitions", "dbt_project", "dbt_target", "warehouse")
DEFAULT_WAREHOUSE = "warehouse/mlsm.duckdb"
# The profile reads the same variable (mlsm sets it for every dbt run).
WAREHOUSE_ENV = "MLSM_WAREHOUSE"
TARGET_ENV = "MLSM_TARGET"


@dataclass
class Project:
    root: Path
    definitions_ref: str  # "module:ATTRIBUTE", imported from the project directory
    dbt_dir: Path
    warehouse: Path
    dbt_target: str | None = None
    _definitions: Definitions | None = field(default=None, repr=False)
    _target: Target | None = field(default=None, repr=False)

    @property
    def target(self) -> Target:
        """The warehouse: the dbt target `dbt_target` (default: the profile's own)."""
        if self._target is None:
            env = {WAREHOUSE_ENV: str(self.warehouse)}
            self._target = targets.resolve(self.dbt_dir, self.dbt_target, self.warehouse, env)
        return self._target

    @property
    def state(self) -> Path:
        """Where the run lock, the serving manifest and (beside it) the artifacts are: the
        DuckDB file itself, or warehouse/<target> for a server warehouse."""
        return self.target.state

    @property
    def artifacts_dir(self) -> Path:
        """Artifacts live next to the warehouse, named by their sha256 (content-addressed)."""
        return self.state.parent / "artifacts"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def log_file(self) -> Path:
        return self.logs_dir / "mlsm.log"

    @property
    def definitions(self) -> Definitions:
        if self._definitions is None:
            self._definitions = load_definitions(self.root, self.definitions_ref)
        return self._definitions


def _read_config(root: Path) -> tuple[dict, Path]:
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        with pyproject.open("rb") as f:
            table = tomllib.load(f).get("tool", {}).get("mlsm")
        if table is not None:
            return table, pyproject
    own = root / "mlsm.toml"
    if own.is_file():
        with own.open("rb") as f:
            return tomllib.load(f), own
    raise MlsmError(
        f"{root} is not an mlsm project: no [tool.mlsm] table in pyproject.toml and no "
        "mlsm.toml (run `mlsm init DIR` to create one, or pass --project DIR)"
    )


def load(
    directory: str | Path | None = None, warehouse: str | None = None, target: str | None = None
) -> Project:
    """The project in `directory` (default: the current directory). `warehouse` (a path from
    the command line) overrides the configured one and is read relative to the cwd; `target`
    (a dbt target of the project's profile) overrides `dbt_target` and $MLSM_TARGET."""
    root = Path(directory or Path.cwd()).resolve()
    config, source = _read_config(root)
    unknown = sorted(set(config) - set(KEYS))
    if unknown:
        raise MlsmError(f"{source}: unknown mlsm settings {unknown}; known: {', '.join(KEYS)}")
    ref = config.get("definitions")
    if not isinstance(ref, str) or ":" not in ref:
        raise MlsmError(
            f"{source}: `definitions` must name the object holding the models as "
            '"module:ATTRIBUTE", e.g. definitions = "models_py:PROJECT"'
        )
    dbt_dir = (root / config.get("dbt_project", "dbt_project")).resolve()
    if not (dbt_dir / "dbt_project.yml").is_file():
        raise MlsmError(f"{source}: dbt_project {dbt_dir} has no dbt_project.yml")
    if warehouse:
        path = Path(warehouse).expanduser().resolve()
    else:
        text = os.environ.get(WAREHOUSE_ENV) or config.get("warehouse", DEFAULT_WAREHOUSE)
        path = Path(text).expanduser()
        path = (path if path.is_absolute() else root / path).resolve()
    chosen = target or os.environ.get(TARGET_ENV) or config.get("dbt_target")
    return Project(root, ref, dbt_dir, path, chosen)


def load_definitions(root: Path, ref: str) -> Definitions:
    module_name, _, attr = ref.partition(":")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise MlsmError(
            f"definitions {ref!r}: cannot import {module_name!r} from {root} ({e})"
        ) from None
    obj = getattr(module, attr, None)
    if obj is None:
        raise MlsmError(f"definitions {ref!r}: module {module_name!r} has no {attr!r}")
    if not isinstance(obj, Definitions):
        raise SpecError(
            f"definitions {ref!r} is a {type(obj).__name__}; it must be "
            "mlsm_py.Definitions(models=[...], summaries=[...])"
        )
    return obj
