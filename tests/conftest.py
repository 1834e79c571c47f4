"""Shared fixtures: an isolated project home (runs/, mlruns/, reports/) per test, the same with an empty MLflow
store, and a headless browser. Shared helpers live in the `*_support.py` modules beside this file."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from store_support import seed_store

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


@pytest.fixture
def store(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`home` with an empty, migrated MLflow store in it (a copy: creating one runs ~6 s of migrations)."""
    seed_store(home, tmp_path_factory)
    return home


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium for the slow browser tests (`browser_support`)."""
    from browser_support import headless_chromium

    driver = headless_chromium()
    yield driver
    driver.quit()
