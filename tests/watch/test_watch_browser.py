"""`make watch` as a person uses it: a RescaledSGD run training in another process, an SGD run that has finished
beside it, the page in headless Chromium on 127.0.0.1; the curves grow, the slider holds the run's LR, release
hands it back, and a control on the finished run is refused.

Slow (two `adaptive-lr train` processes and the server start in ~30-90 s here); run with `make test-slow` after
`make ui-deps`. Screenshots land in the test's temp folder. The server and the runs each run in their own process
group and are stopped by group (`browser_support`).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adaptive_lr.schedulers.base import ACTIONS
from browser_support import free_port, group_alive, serve, stop
from store_support import tracking_uri

pytestmark = pytest.mark.slow
START_LR = 0.05
RUN = ["task=digits", "scheduler=fixed", f"lr={START_LR}", "logger.log_every_n_steps=5",
       "viz=[params]", "viz.params.every_n_steps=10", "viz.params.panel_every_n_steps=0", "viz.params.histograms=false"]
LONG = [*RUN, "optimizer=rescaled_sgd", "trainer.max_epochs=5000", "seed=0"]  # stopped by the test
SHORT = [*RUN, "optimizer=sgd", "trainer.max_epochs=2", "seed=1"]
COUNT = ("if (!window.Bokeh || !Bokeh.documents || !Bokeh.documents.length) return -1;"
         "const m = Bokeh.documents[0].get_model_by_name(arguments[0]); return m ? m.data[arguments[1]].length : -1;")
MODEL = "return Bokeh.documents[0].get_model_by_name(arguments[0])"
VIEW = "return Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name(arguments[0]))"
THROTTLED = ("const s = Bokeh.documents[0].get_model_by_name(arguments[0]);"
             "return s.properties.value_throttled.is_unset ? null : s.value_throttled;")  # set by a drag's end


def _train(home: Path, overrides: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "ADAPTIVE_LR_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([str(Path(sys.executable).with_name("adaptive-lr")), "train", *overrides], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _until(what: str, check: Callable[[], Any], timeout_s: float, procs: tuple[subprocess.Popen, ...] = ()) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in procs:
            assert proc.poll() is None, f"a process ended with {proc.returncode} while waiting for {what}"
        value = check()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"no {what} within {timeout_s:.0f} s")


def _run_of(client: Any, seed: int, status: str | None = None) -> Any:
    exp = client.get_experiment_by_name("adhoc")
    if exp is None:
        return None
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("seed") == str(seed)]
    return runs[0] if runs and (status is None or runs[0].info.status == status) and "lr" in runs[0].data.metrics \
        else None


def _human_decisions(client: Any, run_id: str) -> int:
    return sum(m.value == ACTIONS["human"] for m in client.get_metric_history(run_id, "controller_action"))


def _click(driver: Any, name: str) -> None:
    button = driver.execute_script(VIEW + ".button_el", name)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()


def test_watch_follows_a_run_and_steers_its_lr(store, tmp_path, browser):
    from mlflow.tracking import MlflowClient
    from selenium.webdriver.common.action_chains import ActionChains

    client = MlflowClient(tracking_uri(store))
    runs = [_train(store, LONG, tmp_path / "long.log"), _train(store, SHORT, tmp_path / "short.log")]
    server = None
    try:
        long_run = _until("RUNNING RescaledSGD run with an LR", lambda: _run_of(client, 0, "RUNNING"), 300,
                          (runs[0],))
        short_run = _until("FINISHED SGD run", lambda: _run_of(client, 1, "FINISHED"), 300)
        port = free_port()
        env = {**os.environ, "ADAPTIVE_LR_HOME": str(store), "HOST": "127.0.0.1", "WATCH_PORT": str(port),
               "RUN": long_run.data.tags["run_dir"], "RUN2": short_run.info.run_id}  # a folder, an ID
        env.pop("MLFLOW_TRACKING_URI", None)
        server = serve("watch", env, f"http://127.0.0.1:{port}/", tmp_path / "watch.log")
        browser.set_window_size(1400, 1900)
        browser.get(f"http://127.0.0.1:{port}/")

        # 1) the curves grow while the run trains (points streamed into the page's sources)
        first = _until("LR and loss points on the page",
                       lambda: min(browser.execute_script(COUNT, "a:lr", "step"),
                                   browser.execute_script(COUNT, "a:train_loss", "step")) > 0 and
                       (browser.execute_script(COUNT, "a:lr", "step"),
                        browser.execute_script(COUNT, "a:train_loss", "step")), 90, (runs[0],))
        _until("more LR and loss points", lambda: browser.execute_script(COUNT, "a:lr", "step") > first[0] and
               browser.execute_script(COUNT, "a:train_loss", "step") > first[1], 90, (runs[0],))
        _until("the parameter view's bars", lambda: browser.execute_script(COUNT, "a:bars", "index") > 0, 90)
        assert browser.execute_script(COUNT, "b:val_loss", "step") == 2  # the finished run, beside it
        browser.save_screenshot(str(tmp_path / "watch_live.png"))

        # 2) drag the slider: the run holds the LR it names, logged as a human decision, at its next poll
        handle = browser.execute_script(VIEW + ".shadow_el.querySelector('.noUi-handle')", "a:lr_slider")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", handle)
        before = browser.execute_script(THROTTLED, "a:lr_slider")
        ActionChains(browser).drag_and_drop_by_offset(handle, -150, 0).perform()
        position = _until("the slider moved", lambda: browser.execute_script(THROTTLED, "a:lr_slider") != before
                          and browser.execute_script(THROTTLED, "a:lr_slider"), 30)
        target = 10.0 ** position
        assert not math.isclose(target, START_LR, rel_tol=0.1)
        _until("command 1 on the page", lambda: "command 1: LR held at" in
               browser.execute_script(MODEL + ".text", "a:status"), 30)
        _until("the held LR in the store", lambda: _human_decisions(client, long_run.info.run_id) == 1 and
               math.isclose(client.get_run(long_run.info.run_id).data.metrics["lr"], target, rel_tol=1e-6),
               90, (runs[0],))
        _until("the held LR on the page", lambda: math.isclose(
            browser.execute_script(MODEL + ".data.value.at(-1)", "a:lr"), target, rel_tol=1e-6), 30)
        assert "human" in browser.execute_script(MODEL + ".data.action", "a:decisions")
        browser.save_screenshot(str(tmp_path / "watch_held.png"))

        # 3) release: the schedule's LR is back
        _click(browser, "a:release")
        _until("command 2 on the page", lambda: "command 2: LR released" in
               browser.execute_script(MODEL + ".text", "a:status"), 30)
        _until("the schedule's LR in the store", lambda: _human_decisions(client, long_run.info.run_id) == 2 and
               client.get_run(long_run.info.run_id).data.metrics["lr"] == START_LR, 90, (runs[0],))
        _until("the schedule's LR on the page",
               lambda: browser.execute_script(MODEL + ".data.value.at(-1)", "a:lr") == START_LR, 30)
        browser.save_screenshot(str(tmp_path / "watch_released.png"))

        # 4) a control on the finished run: one error line on the page, nothing written
        _click(browser, "b:x2")
        _until("the refusal", lambda: "FINISHED, not RUNNING" in browser.execute_script(MODEL + ".text", "b:status"),
               30)
        assert "error: run" in browser.execute_script(MODEL + ".text", "b:status")
        assert not (Path(short_run.data.tags["run_dir"]) / "control.json").exists()
    finally:
        for proc in [*runs, *([server] if server else [])]:
            stop(proc)
    assert not group_alive(server.pid)  # make, adaptive-lr watch and anything they started are gone
    assert all((tmp_path / f).stat().st_size > 20_000 for f in ("watch_live.png", "watch_held.png",
                                                                "watch_released.png"))
