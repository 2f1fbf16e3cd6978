"""Shared test helpers: a throw-away copy of the dbt project and macro package."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def copy_project(dest: Path) -> Path:
    """Copy dbt_project/ and macros/ (the local package it points at) without build output."""
    ignore = shutil.ignore_patterns("target", "logs", "dbt_packages", "package-lock.yml")
    shutil.copytree(ROOT / "dbt_project", dest / "dbt_project", ignore=ignore)
    shutil.copytree(ROOT / "macros", dest / "macros", ignore=ignore)
    return dest / "dbt_project"
