"""MLflow store helpers shared by the tests (a module, not conftest: tests/reporting has its own conftest)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def tracking_uri(home: Path) -> str:
    """The store a run under ADAPTIVE_LR_HOME=home uses by default."""
    return f"sqlite:///{home.resolve()}/mlruns/mlflow.db"


def seed_store(home: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Copy an empty, migrated MLflow SQLite store into `home` (creating one runs ~6 s of schema migrations)."""
    template = tmp_path_factory.getbasetemp() / "mlflow-template" / "mlflow.db"
    if not template.exists():
        from mlflow.tracking import MlflowClient

        template.parent.mkdir(exist_ok=True)
        MlflowClient(f"sqlite:///{template}").search_experiments()
    (home / "mlruns").mkdir(exist_ok=True)
    shutil.copy(template, home / "mlruns" / "mlflow.db")
