"""The watch page's Bokeh document, driven by a scripted feed (no server, no store): what each poll streams, the
decision markers, the slider following the run's LR, the bar view, and two runs side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bokeh.document import Document

from adaptive_lr.schedulers.base import ACTIONS
from adaptive_lr.watch.layer_file import LAYER_FILE, WATCH_FILE, watched, write_layer
from adaptive_lr.watch.page import RunPanel, build_document
from adaptive_lr.watch.runs import Progress, WatchedRun

TAGS = {"task": "digits", "scheduler": "heuristic", "seed": "0", "metric": "acc", "steps_per_epoch": "10",
        "max_epochs": "20", "lr_bounds": "[start x 0.0001, start x 100]", "experiment": "adhoc"}
CONFIG = {"lr": 0.01, "optimizer": {"_target_": "adaptive_lr.optim.rescaled_sgd.RescaledSGD", "lr": 0.01},
          "live_control": {"enabled": True, "min_lr": 1e-7, "max_lr": 10.0}}


class ScriptedFeed:
    """Returns the histories of a run that has logged `epochs` epochs (10 steps each, LR every 5 steps)."""

    def __init__(self, status: str = "RUNNING") -> None:
        self.epochs, self.status = 1, status

    def poll(self) -> Progress:
        steps = range(0, 10 * self.epochs + 1, 5)
        h = {"lr": [(s, 0.01) for s in steps], "lr/pg1": [(s, 0.001) for s in steps],
             "train_loss": [(e, 1.0 / e) for e in range(1, self.epochs + 1)],
             "val_loss": [(e, 1.1 / e) for e in range(1, self.epochs + 1)],
             "val_acc": [(e, 0.1 * e) for e in range(1, self.epochs + 1)],
             "controller_action": [(10 * e, float(ACTIONS["hold"])) for e in range(1, self.epochs + 1)],
             "controller_factor": [(10 * e, 1.0) for e in range(1, self.epochs + 1)]}
        return Progress(self.status, h)


def run_at(run_dir: Path | None, name: str = "digits-heuristic-s0") -> WatchedRun:
    return WatchedRun("r" * 32, "sqlite:///unused", run_dir, name, dict(TAGS), dict(CONFIG))


def data(panel: RunPanel, key: str) -> dict[str, list]:
    return {k: list(v) for k, v in panel.sources[key].data.items()}


def test_each_poll_streams_the_new_points_on_the_global_step(tmp_path):
    feed = ScriptedFeed()
    panel = RunPanel(run_at(tmp_path), "a", 600, feed=feed)
    Document().add_root(panel.layout)  # streaming needs a document
    panel.update()
    assert watched(tmp_path)  # the page's heartbeat: the run's parameter view writes its bars meanwhile
    assert data(panel, "lr") == {"step": [0, 5, 10], "value": [0.01] * 3}
    assert data(panel, "train_loss") == {"step": [10], "value": [1.0]}  # epoch 1 ends at step 10
    feed.epochs = 3
    panel.update()
    assert data(panel, "lr")["step"] == [0, 5, 10, 15, 20, 25, 30]
    assert data(panel, "lr/pg1")["value"] == [0.001] * 7
    assert data(panel, "val_acc") == {"step": [10, 20, 30], "value": [0.1, 0.2, 0.30000000000000004]}
    assert panel.decisions.data["action"] == ["hold"] * 3 and panel.decisions.data["lr"] == [0.01] * 3
    assert len([r for r in panel.lr_fig.renderers if r.data_source.name in ("a:lr", "a:lr/pg1")]) == 2
    assert "RUNNING · epoch 3/20 · step 30 · LR 0.01 · set by its scheduler" in panel.header.text


def test_epoch_metrics_already_on_the_global_step_stay_there():
    class OnSteps(ScriptedFeed):
        def poll(self) -> Progress:
            return Progress("RUNNING", {"lr": [(0, 0.01)], "train_loss": [(17, 1.0), (34, 0.5)]},
                            epochs_on_steps=True)

    panel = RunPanel(run_at(None), "a", 600, feed=OnSteps())
    panel.update()
    assert data(panel, "train_loss") == {"step": [17, 34], "value": [1.0, 0.5]}


def test_slider_spans_the_bounds_and_follows_the_run_lr():
    panel = RunPanel(run_at(None), "a", 600, feed=ScriptedFeed())
    assert (panel.slider.start, panel.slider.end) == (-6.0, 0.0)  # 0.01 x [1e-4, 100], in decades
    panel.update()
    assert panel.slider.value == -2.0


def test_bars_show_the_views_latest_snapshot(tmp_path):
    folder = tmp_path / "viz" / "params" / "001"
    folder.mkdir(parents=True)
    write_layer(folder / LAYER_FILE, 20, "model.head.weight", np.arange(4.0).reshape(2, 2), np.full(4, -0.1),
                np.array([0.01, 0.02, 0.03, 0.04]))
    panel = RunPanel(run_at(tmp_path), "a", 600, feed=ScriptedFeed())
    panel.update()
    assert panel.bars.data["value"] == [0.0, 1.0, 2.0, 3.0]
    assert panel.bars.data["lr"] == pytest.approx([0.01, 0.02, 0.03, 0.04])  # float32, as written
    assert "model.head.weight (2, 2) at step 20" in panel.bar_title.text


def test_a_run_without_the_parameter_view_says_how_to_get_it(tmp_path):
    panel = RunPanel(run_at(tmp_path), "a", 600, feed=ScriptedFeed())
    panel.update()
    assert panel.bars.data["index"] == [] and "viz=[params]" in panel.bar_title.text


def test_a_finished_run_gets_no_heartbeat(tmp_path):
    panel = RunPanel(run_at(tmp_path), "a", 600, feed=ScriptedFeed("FINISHED"))
    panel.update()
    assert not (tmp_path / WATCH_FILE).exists() and "FINISHED · epoch 1/20" in panel.header.text
    assert "only while a page watches the running run" in panel.bar_title.text


def test_a_control_on_a_run_without_a_folder_here_is_an_error_line():
    panel = RunPanel(run_at(None), "a", 600, feed=ScriptedFeed())
    panel._press("scale", 2.0)
    assert "error: run rrrr" in panel.status.text and "no run folder on this machine" in panel.status.text


def test_two_runs_side_by_side(monkeypatch):
    import adaptive_lr.watch.page as page

    monkeypatch.setattr(page, "MlflowFeed", lambda run: ScriptedFeed())  # no store in this test
    doc = Document()
    runs = [run_at(None, "digits-heuristic-s0"), run_at(None, "digits-fixed-s0")]
    panels = build_document(doc, runs, poll_ms=500)
    (root,) = doc.roots
    assert [p.slot for p in panels] == ["a", "b"] and len(root.children) == 2
    for slot in "ab":
        for name in ("lr", "train_loss", "val_loss", "val_acc", "decisions", "bars", "lr_slider", "x0.5", "x2",
                     "hold", "release", "status"):
            assert doc.get_model_by_name(f"{slot}:{name}") is not None, (slot, name)
    assert doc.title == "adaptive-lr watch: digits-heuristic-s0 vs digits-fixed-s0"
    assert len(doc.session_callbacks) == 1 and doc.session_callbacks[0].period == 500
    assert panels[0].sources["lr"].data["step"] == [0, 5, 10]  # polled once before the page is shown
