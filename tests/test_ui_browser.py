"""The UIs as a person uses them: `make mlflow-ui` and `make tensorboard` serve a grid's runs on 127.0.0.1, and a
headless Chromium (Debian's `chromium` + `chromium-driver`, driven by Selenium) finds them.

Slow (server start-up takes ~20-60 s here); run with `make test-slow` after `make ui-deps`. Screenshots are saved
in the test's temp folder. Each server runs in its own process group and is stopped by group (`browser_support`):
`mlflow server` leaves its worker processes behind otherwise.
"""

from __future__ import annotations

import io
import os

import pytest

from adaptive_lr.experiment import run_grid
from browser_support import free_port, group_alive, serve, stop

pytestmark = pytest.mark.slow
#: every text node of the page, shadow roots included (TensorBoard's HParams table lives in Polymer shadow DOM,
#: which `page_source` leaves out)
SHADOW_TEXT = ("const out = []; const walk = n => { if (n.nodeType === 3) { out.push(n.textContent); return; } "
               "if (n.shadowRoot) walk(n.shadowRoot); for (const c of n.childNodes) walk(c); }; "
               "walk(document.body); return out.join(' ');")
GRID = "name: uigrid\ntasks: [xor_clean]\nschedulers: [fixed, heuristic]\nseeds: [0]\n" \
       "overrides: [trainer.max_epochs=3, data.n_samples=80]\n"


def test_mlflow_ui_and_tensorboard_show_the_grid_runs(store, tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    (tmp_path / "uigrid.yaml").write_text(GRID)
    run_grid(str(tmp_path / "uigrid.yaml"), out=io.StringIO())
    names = ["xor_clean-fixed-s0", "xor_clean-heuristic-s0"]
    mlflow_port, tb_port = free_port(), free_port()
    env = {**os.environ, "ADAPTIVE_LR_HOME": str(store), "MLFLOW_PORT": str(mlflow_port), "TB_PORT": str(tb_port),
           "HOST": "127.0.0.1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    servers = []
    try:
        servers.append(serve("mlflow-ui", env, f"http://127.0.0.1:{mlflow_port}/health", tmp_path / "mlflow.log"))
        servers.append(serve("tensorboard", env, f"http://127.0.0.1:{tb_port}/", tmp_path / "tb.log"))

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
        WebDriverWait(browser, 90).until(lambda d: all(w in d.execute_script(SHADOW_TEXT)
                                                       for w in ("heuristic", "test/acc", "val/acc")))
        browser.save_screenshot(str(tmp_path / "tensorboard_hparams.png"))
    finally:
        for proc in servers:
            stop(proc)
    assert all(not group_alive(p.pid) for p in servers)  # no worker left behind
    assert all((tmp_path / f).stat().st_size > 10_000 for f in ("mlflow_runs.png", "tensorboard_scalars.png",
                                                                  "tensorboard_hparams.png"))
