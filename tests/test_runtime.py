"""The process environment: telemetry off and library caches under the project's cache folder, so a run
writes nothing outside its home and cache folders (checked on a real `adaptive-lr train` with a throwaway
$HOME)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from adaptive_lr.runtime import (
    CACHE_VARS,
    TELEMETRY_OFF,
    configure_environment,
    configure_runtime,
    default_cache_dir,
)

ENTRY_POINT = Path(sys.executable).with_name("adaptive-lr")
# MLflow turns its telemetry off by itself under these (tests, CI): the subprocess must not have them
CI_MARKERS = ("PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "BUILDKITE",
              "TF_BUILD")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (*TELEMETRY_OFF, *CACHE_VARS, "ADAPTIVE_LR_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_telemetry_off_and_caches_under_the_cache_folder(clean_env, tmp_path):
    configure_environment(tmp_path / "cache")

    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true" and os.environ["HF_HUB_DISABLE_TELEMETRY"] == "1"
    assert os.environ["MPLCONFIGDIR"] == str(tmp_path / "cache" / "matplotlib")
    assert os.environ["HF_HOME"] == str(tmp_path / "cache" / "huggingface")


def test_a_users_own_settings_are_kept(clean_env, tmp_path):
    clean_env.setenv("MPLCONFIGDIR", str(tmp_path / "mine"))
    clean_env.setenv("MLFLOW_DISABLE_TELEMETRY", "false")

    configure_environment(tmp_path / "cache")

    assert os.environ["MPLCONFIGDIR"] == str(tmp_path / "mine")
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "false"


def test_the_default_cache_folder_follows_the_home_and_the_cache_variable(clean_env, tmp_path):
    clean_env.setenv("ADAPTIVE_LR_HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "adaptive-lr"
    clean_env.setenv("ADAPTIVE_LR_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere"


def test_a_training_run_writes_nothing_outside_its_home_and_cache(tmp_path):
    fake_home, project, cwd = tmp_path / "user", tmp_path / "project", tmp_path / "cwd"
    for folder in (fake_home, project, cwd):
        folder.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in (*CI_MARKERS, *TELEMETRY_OFF, *CACHE_VARS, "DO_NOT_TRACK", "MLFLOW_TRACKING_URI",
                        "ADAPTIVE_LR_CACHE_DIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env |= {"HOME": str(fake_home), "ADAPTIVE_LR_HOME": str(project), "OMP_NUM_THREADS": "1"}

    argv = ["train", "task=xor_clean", "trainer.max_epochs=1", "data.n_samples=80", "viz=[boundary]"]
    proc = subprocess.run([str(ENTRY_POINT), *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(fake_home.rglob("*")) == []  # no ~/.config/mlflow/telemetry.json, no ~/.cache/matplotlib
    assert sorted(cwd.rglob("*")) == []
    assert (project / "runs").is_dir() and (project / "mlruns" / "mlflow.db").is_file()


def test_the_runtime_flushes_denormal_floats_to_zero():
    """Denormals cost a slow path per operation (a saturated LSTM ran ~6x slower: runtime.configure_runtime);
    torch has no getter, so the flag is read off a denormal's fate (torch's own documented example)."""
    import torch

    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals (no SSE3)")
    assert torch.tensor([1e-323], dtype=torch.float64).item() != 0.0  # off: the denormal survives
    configure_runtime()
    assert torch.tensor([1e-323], dtype=torch.float64).item() == 0.0
    assert (torch.tensor([1e-30]) * torch.tensor([1e-10])).item() == 0.0  # float32 results too
