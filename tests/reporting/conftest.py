"""The session's synthetic MLflow store (contents: fake_store.py)."""

from __future__ import annotations

import pytest
from fake_store import build

from store_support import seed_store


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """(tracking_uri, {"failed", "running", "tune_finished", "tune_failed": run_id}) of the fake store."""
    root = tmp_path_factory.mktemp("reporting_home")
    seed_store(root, tmp_path_factory)  # a copy of the session's migrated empty store: no migrations here
    return build(root / "mlruns")
