"""Shared fixtures: an isolated project home (runs/, mlruns/, reports/) per test, and tiny configs."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", ".*log_every_n_steps.*")
warnings.filterwarnings("ignore", ".*LeafSpec.*")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ADAPTIVE_LR_HOME, so runs, the MLflow store and reports of one test never meet another's."""
    monkeypatch.setenv("ADAPTIVE_LR_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def tracking_uri(home: Path) -> str:
    return f"sqlite:///{home.resolve()}/mlruns/mlflow.db"
