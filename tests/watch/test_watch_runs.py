"""Watching runs in a real MLflow store: resolving a run folder or ID, polling its histories, the controls
writing the run's control file (read back by the run's own `LiveOverride`), refusals, and the CLI's errors."""

from __future__ import annotations

import json
import os
import platform
import socket
from pathlib import Path

import pytest
from bokeh.document import Document

from adaptive_lr.cli import main
from adaptive_lr.config import ConfigError
from adaptive_lr.live_control import CONTROL_FILE, LiveOverride
from adaptive_lr.schedulers.base import ACTIONS
from adaptive_lr.tracking.run import IDENTITY_FILE, PARENT_TAG
from adaptive_lr.watch import controls
from adaptive_lr.watch.page import RunPanel
from adaptive_lr.watch.runs import MlflowFeed, resolve
from store_support import seed_store, tracking_uri

CONFIG = {"lr": 0.05, "optimizer": {"_target_": "torch.optim.SGD", "lr": 0.05},
          "live_control": {"enabled": True, "every_n_steps": 10, "min_lr": 1e-7, "max_lr": 10.0}}


@pytest.fixture
def running(home, tmp_path_factory):
    """A run RUNNING in this process, as `TrackedRun` leaves it: tags, run folder with its identity and config,
    and a grid's parent run beside it; returns (client, run ID, folder, parent ID)."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    seed_store(home, tmp_path_factory)
    uri = tracking_uri(home)
    client = MlflowClient(uri)
    exp = client.create_experiment("demo")
    folder = home / "runs" / "demo" / "digits-heuristic-s0-x"
    folder.mkdir(parents=True)
    tags = {"host": platform.node(), "pid": str(os.getpid()), "run_dir": str(folder), "task": "digits",
            "scheduler": "heuristic", "seed": "0", "metric": "acc", "steps_per_epoch": "10", "max_epochs": "5",
            "lr_bounds": "[start x 0.0001, start x 100]", "experiment": "demo"}
    run_id = client.create_run(exp, tags=tags, run_name="digits-heuristic-s0").info.run_id
    parent = client.create_run(exp, tags={PARENT_TAG: "1", "experiment": "demo"}).info.run_id
    (folder / IDENTITY_FILE).write_text(json.dumps({"run_id": run_id, "tracking_uri": uri}))
    (folder / "config.json").write_text(json.dumps(CONFIG))
    client.log_batch(run_id, metrics=[Metric("lr", 0.05, 0, 0), Metric("lr", 0.05, 0, 5), Metric("lr", 0.05, 0, 10),
                                      Metric("train_loss", 1.0, 0, 1), Metric("val_loss", 1.2, 0, 1),
                                      Metric("val_acc", 0.4, 0, 1), Metric("epoch_time_s", 0.3, 0, 1),
                                      Metric("controller_action", ACTIONS["raise"], 0, 10),
                                      Metric("controller_factor", 1.1, 0, 10)])
    return client, run_id, folder, parent


def test_a_run_is_found_by_folder_or_id(running):
    client, run_id, folder, _ = running
    by_folder = resolve(str(folder), lambda: pytest.fail("a folder knows its store"))
    by_id = resolve(run_id, lambda: by_folder.tracking_uri)
    assert by_folder == by_id
    assert by_id.run_dir == folder and by_id.name == "digits-heuristic-s0"
    assert by_id.label == "digits · heuristic · SGD · seed 0 · grid demo"
    assert by_id.lr_range() == pytest.approx((5e-6, 5.0))


def test_unknown_runs_and_grid_parents_are_refused(running):
    client, _, folder, parent = running
    uri = resolve(str(folder), lambda: "").tracking_uri
    with pytest.raises(ConfigError, match="'0123abcd' is neither a run folder nor a run ID"):
        resolve("0123abcd", lambda: uri)
    with pytest.raises(ConfigError, match="parent run of grid 'demo': watch one of its cells"):
        resolve(parent, lambda: uri)


def test_the_feed_reads_histories_again_only_after_the_run_wrote(running):
    from mlflow.entities import Metric

    client, run_id, folder, _ = running
    feed = MlflowFeed(resolve(str(folder), lambda: ""))
    first = feed.poll()
    assert first.status == "RUNNING" and first.alive and first.changed and not first.epochs_on_steps
    assert first.histories["lr"] == [(0, 0.05), (5, 0.05), (10, 0.05)]
    assert first.histories["controller_action"] == [(10, float(ACTIONS["raise"]))]
    assert "epoch_time_s" not in first.histories  # not plotted
    assert not feed.poll().changed
    client.log_batch(run_id, metrics=[Metric("lr", 0.05, 0, 15), Metric("epoch_time_s", 0.6, 0, 2)])
    again = feed.poll()
    assert again.changed and again.histories["lr"][-1] == (15, 0.05) and not again.epochs_on_steps
    client.log_batch(run_id, metrics=[Metric("epoch", 2.0, 0, 20)])  # a run that puts epochs on the global step
    assert feed.poll().epochs_on_steps


def test_controls_write_the_control_file_the_run_applies(running):
    client, run_id, folder, _ = running
    run = resolve(str(folder), lambda: "")
    live = LiveOverride(folder / CONTROL_FILE, 1e-7, 10.0)  # the run's side

    ok, message = controls.outcome(run.run_dir, run_id, "set", 0.02)
    assert ok and message == "command 1: LR held at 0.02 (applied at the run's next poll)"
    live.poll(0.05)
    assert live.lr == 0.02
    assert controls.outcome(run.run_dir, run_id, "scale", 0.5)[0]
    live.poll(0.02)
    assert live.lr == pytest.approx(0.01)
    assert controls.outcome(run.run_dir, run_id, "release")[1].endswith("released to its scheduler "
                                                                       "(applied at the run's next poll)")
    live.poll(0.01)
    assert live.lr is None and live.applied_seq == 3


def test_the_page_buttons_and_slider_go_through_the_control_file(running):
    client, run_id, folder, _ = running
    panel = RunPanel(resolve(str(folder), lambda: ""), "a", 600)
    Document().add_root(panel.layout)
    panel.update()
    assert panel.sources["lr"].data["step"] == [0, 5, 10]
    assert panel.decisions.data["action"] == ["raise"]
    panel._on_slider("value_throttled", None, -2.0)  # what a drag that ends at 10^-2 sends
    assert json.loads((folder / CONTROL_FILE).read_text()) == {"seq": 1, "op": "set", "value": 0.01}
    assert "command 1: LR held at 0.01" in panel.status.text
    for button in panel.buttons:  # x0.5, x2, hold, release, as a click sends them
        button._trigger_event(_click(button))
    assert json.loads((folder / CONTROL_FILE).read_text()) == {"seq": 5, "op": "release", "value": None}
    panel.update()
    assert "set by its scheduler (released by command 5)" in panel.header.text


def _click(button):
    from bokeh.events import ButtonClick

    return ButtonClick(button)


def test_a_control_on_a_run_that_is_not_running_is_one_error_line(running):
    client, run_id, folder, _ = running
    run = resolve(str(folder), lambda: "")
    client.set_terminated(run_id, "FINISHED")
    ok, message = controls.outcome(run.run_dir, run_id, "scale", 2.0)
    assert not ok and message == (f"error: run {run_id} is FINISHED, not RUNNING: LR commands apply only to a "
                                  "running run")
    assert not (folder / CONTROL_FILE).exists()


def test_watch_on_a_port_in_use_is_one_error_line(running, capsys):
    _, run_id, folder, _ = running
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        capsys.readouterr()
        assert main(["watch", str(folder), "--port", str(port)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot listen on 127.0.0.1:{port}:"), lines


def test_watch_needs_one_or_two_runs(running, capsys):
    _, _, folder, _ = running
    assert main(["watch", str(folder), str(folder), str(folder)]) == 2
    assert capsys.readouterr().err.strip() == "error: watch takes one or two runs (side by side), got 3"


def test_watch_port_must_be_a_port(capsys):
    assert main(["watch", "anything", "--port", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --port must be an integer in 1..65535, got 0"


def test_watch_resolves_an_id_in_the_configured_store(running, monkeypatch):
    """A run ID is looked up in the store the config points at (overrides such as paths.root=... included)."""
    import adaptive_lr.watch.server as server

    _, run_id, folder, _ = running
    served = []
    monkeypatch.setattr(server, "serve", lambda runs, host, port: served.append((runs, host, port)))
    assert main(["watch", run_id, f"paths.root={Path(folder).parents[2]}", "--port", "5099"]) == 0
    ((runs, host, port),) = served
    assert [r.run_id for r in runs] == [run_id] and (host, port) == ("127.0.0.1", 5099)
