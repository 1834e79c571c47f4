"""The watch page's readers: pure functions from what a run writes to what the page plots."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from adaptive_lr.schedulers.base import ACTIONS
from adaptive_lr.watch import controls, readers
from adaptive_lr.watch.layer_file import (
    LAYER_FILE,
    WATCH_FILE,
    heartbeat,
    latest_layer_file,
    read_layer,
    watched,
    write_layer,
)


def test_lr_keys_are_the_groups_in_order():
    keys = ["val_loss", "lr/pg10", "lr", "lr/pg2", "lr_bounds", "controller_action", "lr/pgx"]
    assert readers.lr_keys(keys) == ["lr", "lr/pg2", "lr/pg10"]
    assert [readers.group_label(k) for k in ("lr", "lr/pg2")] == ["group 0", "group 2"]


def test_epoch_metrics_go_on_the_step_that_ended_their_epoch():
    points = [(1, 0.9), (2, 0.5), (3, 0.4)]
    assert readers.on_global_steps(points, 23, epochs_on_steps=False) == [(23, 0.9), (46, 0.5), (69, 0.4)]
    # a run that logs `epoch` as a metric already puts epoch metrics on the global step
    assert readers.on_global_steps(points, 23, epochs_on_steps=True) == points


def test_ordered_sorts_by_step_and_keeps_logging_order_on_ties():
    assert readers.ordered([(5, 1.0), (0, 2.0), (5, 3.0)]) == [(0, 2.0), (5, 1.0), (5, 3.0)]


def test_columns_turn_non_finite_values_into_gaps():
    data = readers.columns([(0, 1.0), (1, math.inf), (2, 0.5)])
    assert data["step"] == [0, 1, 2] and math.isnan(data["value"][1]) and data["value"][2] == 0.5


def test_tail_streams_only_new_rows_and_asks_for_a_replace_otherwise():
    shown = {"step": [0, 5], "value": [1.0, 0.5]}
    assert readers.tail(shown, {"step": [0, 5, 10], "value": [1.0, 0.5, 0.4]}) == {"step": [10], "value": [0.4]}
    assert readers.tail(shown, {"step": [0, 5], "value": [1.0, 0.5]}) == {"step": [], "value": []}
    assert readers.tail({"step": [], "value": []}, {"step": [0], "value": [1.0]}) == {"step": [0], "value": [1.0]}
    assert readers.tail(shown, {"step": [0], "value": [1.0]}) is None  # fewer rows
    assert readers.tail(shown, {"step": [0, 6, 10], "value": [1.0, 0.5, 0.4]}) is None  # a changed row
    nan_shown = {"step": [0], "value": [float("nan")]}
    assert readers.tail(nan_shown, {"step": [0, 1], "value": [float("nan"), 2.0]}) == {"step": [1], "value": [2.0]}


def test_decision_markers_name_each_action_at_the_lr_it_left():
    names = readers.action_names(ACTIONS)
    lrs = [(0, 0.1), (23, 0.1), (46, 0.05), (69, 0.05)]
    actions = [(23, ACTIONS["hold"]), (46, ACTIONS["cut_plateau"]), (50, ACTIONS["human"])]
    factors = [(23, 1.0), (46, 0.5), (50, 2.0)]
    markers = readers.decision_markers(actions, factors, lrs, [(50, 0.1)], names)
    assert markers == {"step": [23, 46, 50], "lr": [0.1, 0.05, 0.1], "action": ["hold", "cut_plateau", "human"],
                       "factor": [1.0, 0.5, 2.0]}
    assert readers.lr_at([], 3) != readers.lr_at([], 3)  # NaN without any LR
    assert readers.lr_at(lrs, -1) == 0.1  # before the first logged LR: the first


@pytest.mark.parametrize(("tag", "expected"), [
    ("[1e-06, 1]", (1e-06, 1.0)),
    ("[start x 0.0001, start x 100]", (0.05 * 1e-4, 5.0)),
    ("[1e-05, start x 100]", (1e-05, 5.0)),
    ("", None), ("[1, 0.1]", None), ("[fast, 1]", None), ("1e-6, 1", None),
])
def test_parse_bounds_reads_the_lr_bounds_tag(tag, expected):
    result = readers.parse_bounds(tag, 0.05)
    assert result == (pytest.approx(expected) if expected else None)


def test_slider_spans_the_policy_bounds_within_the_live_control_clamp():
    assert readers.slider_bounds("[start x 0.0001, start x 100]", 0.01, 1e-7, 10.0) == pytest.approx((1e-6, 1.0))
    assert readers.slider_bounds("[1e-09, 100]", 0.01, 1e-7, 10.0) == (1e-7, 10.0)  # clamped to live_control
    assert readers.slider_bounds("", 0.01, 1e-7, 10.0) == (1e-7, 10.0)  # a fixed schedule: no policy bounds


def test_slider_positions_are_log10_of_the_lr_inside_the_range():
    assert controls.slider_to_lr(-2.0) == pytest.approx(0.01)
    assert controls.lr_to_slider(0.01, 1e-6, 1.0) == pytest.approx(-2.0)
    assert controls.lr_to_slider(100.0, 1e-6, 1.0) == 0.0  # outside: at the end
    assert controls.lr_to_slider(float("nan"), 1e-6, 1.0) == pytest.approx(-3.0)  # unknown: the middle
    assert [(c.label, c.op, c.value) for c in controls.BUTTONS] == [
        ("x0.5", "scale", 0.5), ("x2", "scale", 2.0), ("hold", "scale", 1.0), ("release", "release", None)]


def test_layer_file_round_trip_and_bars(tmp_path):
    values = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    write_layer(tmp_path / LAYER_FILE, 40, "model.head.weight", values, -values / 10, torch.full((2, 3), 0.01))
    snap = read_layer(tmp_path / LAYER_FILE)
    assert (snap.step, snap.name, snap.shape) == (40, "model.head.weight", (2, 3))
    np.testing.assert_array_equal(snap.values, np.arange(6, dtype=np.float32))
    np.testing.assert_allclose(snap.update, -np.arange(6) / 10)
    bars = readers.bar_columns(snap, max_bars=4)
    assert bars["index"] == [0, 1, 2, 3] and bars["value"] == [0.0, 1.0, 2.0, 3.0]
    assert bars["lr"] == pytest.approx([0.01] * 4) and bars["lr_base"] == pytest.approx([0.005] * 4)
    assert readers.bar_title(snap, 4) == "model.head.weight (2, 3) at step 40, first 4 of 6 elements"
    assert [p.name for p in tmp_path.iterdir()] == [LAYER_FILE]  # the temporary file was renamed


def test_layer_without_effective_lr_and_unreadable_files(tmp_path):
    write_layer(tmp_path / LAYER_FILE, 0, "b", np.ones(3), np.zeros(3), None)
    snap = read_layer(tmp_path / LAYER_FILE)
    assert snap.effective_lr is None and all(math.isnan(v) for v in readers.bar_columns(snap, 10)["lr"])
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    assert read_layer(tmp_path / "broken.npz") is None
    assert read_layer(tmp_path / "missing.npz") is None


def test_latest_layer_file_is_the_latest_fits(tmp_path):
    assert latest_layer_file(tmp_path) is None
    for n in ("001", "002", "010"):
        folder = tmp_path / "viz" / "params" / n
        folder.mkdir(parents=True)
        if n != "010":  # a fit that has not written a snapshot yet
            write_layer(folder / LAYER_FILE, int(n), "w", np.ones(2), np.ones(2), None)
    assert latest_layer_file(tmp_path) == tmp_path / "viz" / "params" / "002" / LAYER_FILE


def test_a_heartbeat_counts_for_its_ttl(tmp_path):
    assert not watched(tmp_path)
    heartbeat(tmp_path)
    assert watched(tmp_path)
    old = (tmp_path / WATCH_FILE).stat().st_mtime - 60
    os.utime(tmp_path / WATCH_FILE, (old, old))
    assert not watched(tmp_path) and watched(tmp_path, ttl_s=120)


def test_last_step_is_the_furthest_lr_point():
    assert readers.last_step({"lr": [(0, 0.1), (50, 0.1)], "lr/pg1": [(60, 0.2)], "val_loss": [(99, 1.0)]}) == 60
    assert readers.last_step({"val_loss": [(1, 1.0)]}) is None


def test_param_view_writes_the_layer_snapshot(tmp_path):
    """The view's hook: while a page is watching, at each logging step the panel layer's values before the
    update, the update and its effective LR replace layer.npz (RescaledSGD, whose per-element LRs differ, on the
    2-2-1 XOR net); unwatched, nothing is written."""
    import functools

    import lightning as L

    from adaptive_lr.callbacks.views import ParamView
    from adaptive_lr.data.xor import XORDataModule
    from adaptive_lr.models.mlp import MLP
    from adaptive_lr.optim.rescaled_sgd import RescaledSGD
    from adaptive_lr.tasks import ClassificationTask

    L.seed_everything(0, verbose=False)
    view = ParamView(every_n_steps=2, panel_every_n_steps=0, histograms=False)
    module = ClassificationTask(MLP(2, [2], 1, activation="tanh"), functools.partial(RescaledSGD, lr=0.1),
                                torch.nn.BCEWithLogitsLoss())
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, callbacks=[view],
                        default_root_dir=str(tmp_path), enable_progress_bar=False, enable_checkpointing=False,
                        num_sanity_val_steps=0, enable_model_summary=False)
    datamodule = XORDataModule(variant="clean", n_samples=200, batch_size=32)  # 4 steps an epoch
    trainer.fit(module, datamodule)
    assert set(os.listdir(tmp_path / "viz" / "params" / "001")) == {"summary.csv"}  # no page watching: no file
    heartbeat(tmp_path)  # a watch page is open on the run
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, callbacks=[view],
                        default_root_dir=str(tmp_path), enable_progress_bar=False, enable_checkpointing=False,
                        num_sanity_val_steps=0, enable_model_summary=False)
    trainer.fit(module, datamodule)
    weight = dict(module.named_parameters())[view.layer]
    snap = read_layer(latest_layer_file(tmp_path))
    assert snap.step == 6 and snap.name == view.layer and snap.shape == tuple(weight.shape)
    # 8 updates (0-7): step 6 was the last logging step
    assert snap.effective_lr is not None and np.all(snap.effective_lr > 0) and np.ptp(snap.effective_lr) > 0
    assert latest_layer_file(tmp_path).parent.name == "002"  # the second fit's folder


def test_the_server_takes_loopback_pages_only_unless_asked_for_another_interface():
    from adaptive_lr.watch.server import allowed_origins, check_port, is_loopback

    assert allowed_origins("127.0.0.1", 5006) == ["127.0.0.1:5006", "localhost:5006"]
    assert allowed_origins("0.0.0.0", 5006) == ["*:5006"]
    assert is_loopback("localhost") and is_loopback("::1") and not is_loopback("0.0.0.0")
    assert check_port(5006) == 5006
    for bad in (0, 65536, "5006"):
        with pytest.raises(ValueError, match="--port must be an integer in 1..65535"):
            check_port(bad)
