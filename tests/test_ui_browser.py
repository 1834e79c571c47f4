"""The UIs as a person uses them: `make mlflow-ui` and `make tensorboard` serve a grid's runs on 127.0.0.1, and a
headless Chromium (Debian's `chromium` + `chromium-driver`, driven by Selenium) finds them.

Slow (server start-up takes ~20-60 s here); run with `make test-slow` after `make ui-deps`. Screenshots are saved
in the test's temp folder. Each server runs in its own process group and is stopped by group: `mlflow server`
leaves its worker processes behind otherwise.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from adaptive_lr.config import PROJECT_ROOT
from adaptive_lr.experiment import run_grid
from store_support import seed_store

pytestmark = pytest.mark.slow
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
GRID = "name: uigrid\ntasks: [xor_clean]\nschedulers: [fixed, heuristic]\nseeds: [0]\n" \
       "overrides: [trainer.max_epochs=3, data.n_samples=80]\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(target: str, env: dict[str, str], url: str, log: Path, timeout_s: float = 180) -> subprocess.Popen:
    """`make <target>` in a new session (its own process group); returns once `url` answers 200."""
    proc = subprocess.Popen(["make", "-C", str(PROJECT_ROOT), target], env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"make {target} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return proc
        except OSError:
            time.sleep(1)
    _stop(proc)
    pytest.fail(f"make {target} did not answer at {url} within {timeout_s:.0f} s: {log.read_text()[-2000:]}")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the whole group, SIGKILL after 15 s; afterwards no process of the group may be left."""
    pgid = proc.pid
    if _group_alive(pgid):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while _group_alive(pgid) and time.monotonic() < deadline:
        proc.poll()
        time.sleep(0.5)
    if _group_alive(pgid):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait(timeout=15)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not (CHROMIUM and DRIVER):
        pytest.fail("needs Debian's chromium and chromium-driver: run `make ui-deps`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,900"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def test_mlflow_ui_and_tensorboard_show_the_grid_runs(home, tmp_path, tmp_path_factory, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    seed_store(home, tmp_path_factory)
    (tmp_path / "uigrid.yaml").write_text(GRID)
    run_grid(str(tmp_path / "uigrid.yaml"), out=io.StringIO())
    names = ["xor_clean-fixed-s0", "xor_clean-heuristic-s0"]
    mlflow_port, tb_port = _free_port(), _free_port()
    env = {**os.environ, "ADAPTIVE_LR_HOME": str(home), "MLFLOW_PORT": str(mlflow_port), "TB_PORT": str(tb_port),
           "HOST": "127.0.0.1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    servers = []
    try:
        servers.append(_serve("mlflow-ui", env, f"http://127.0.0.1:{mlflow_port}/health", tmp_path / "mlflow.log"))
        servers.append(_serve("tensorboard", env, f"http://127.0.0.1:{tb_port}/", tmp_path / "tb.log"))

        # MLflow: the grid's parent run, expanded, lists every cell run
        from mlflow.tracking import MlflowClient

        exp = MlflowClient(f"http://127.0.0.1:{mlflow_port}").get_experiment_by_name("uigrid")
        browser.get(f"http://127.0.0.1:{mlflow_port}/#/experiments/{exp.experiment_id}/runs")
        WebDriverWait(browser, 90).until(lambda d: "grid:uigrid" in d.page_source)
        browser.find_element(By.CSS_SELECTOR, "button[data-component-id*='runnamecellrenderer']").click()
        WebDriverWait(browser, 30).until(lambda d: all(n in d.page_source for n in names))
        browser.save_screenshot(str(tmp_path / "mlflow_runs.png"))

        # TensorBoard: every run's scalars under its short name, and the HParams table with scheduler and the final
        # validation and test metrics
        tb_names = ["uigrid/xor_clean/fixed/seed0", "uigrid/xor_clean/heuristic/seed0"]
        browser.get(f"http://127.0.0.1:{tb_port}/#timeseries")
        WebDriverWait(browser, 90).until(lambda d: all(n in d.page_source for n in tb_names))
        browser.save_screenshot(str(tmp_path / "tensorboard_scalars.png"))
        browser.get(f"http://127.0.0.1:{tb_port}/#hparams")
        WebDriverWait(browser, 90).until(lambda d: "heuristic" in d.page_source and "test/acc" in d.page_source
                                         and "val/acc" in d.page_source)
        browser.save_screenshot(str(tmp_path / "tensorboard_hparams.png"))
    finally:
        for proc in servers:
            _stop(proc)
    assert all(not _group_alive(p.pid) for p in servers)  # no worker left behind
    assert all((tmp_path / f).stat().st_size > 10_000 for f in ("mlflow_runs.png", "tensorboard_scalars.png",
                                                                  "tensorboard_hparams.png"))
