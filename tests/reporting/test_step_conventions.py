"""Epoch metrics in both step conventions read the same: runs logged since issue 17 put them on the global step with
the epoch number as the metric `epoch`; older stores (a study started before, imported bundles) use step = epoch.
A run resumed across the change holds both. Reports, bundles and `import_bundle` see epoch numbers either way."""

from __future__ import annotations

import pandas as pd
import pytest

from adaptive_lr.reporting.bundle import import_bundle, read_bundle, write_bundle
from adaptive_lr.reporting.collect import by_epoch, epoch_of_step, load_runs
from store_support import seed_store

SPE = 4  # optimizer steps per epoch
VAL = [0.5, 0.7, 0.8, 0.85, 0.9]
TAGS = {"task": "digits", "scheduler": "fixed", "seed": "0", "metric": "acc", "metric_mode": "max",
        "threshold": "0.8", "max_epochs": "5", "steps_per_epoch": str(SPE), "adaptive": "false",
        "config_hash": "abc", "phase": "final"}


def _log(client, experiment: str, convention: str) -> str:
    """One FINISHED run whose 5 epochs are logged by `convention`: "epoch" (step = epoch), "global" (global step and
    an `epoch` metric) or "mixed" (epochs 1-3 the old way, then resumed with the new code, which replays epoch 3)."""
    from mlflow.entities import Metric, RunTag

    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    run_id = client.create_run(exp_id, run_name="digits-fixed-s0").info.run_id
    metrics, ts = [], 1_700_000_000_000
    for epoch, v in enumerate(VAL, start=1):
        new = convention == "global" or (convention == "mixed" and epoch >= 3)
        step = epoch * SPE if new else epoch
        values = {"val_acc": v, "train_acc": v + 0.01, "val_loss": 1 - v, "train_loss": 1.1 - v,
                  "epoch_time_s": float(epoch), "epoch_lr": 0.01}
        if convention == "mixed" and epoch == 3:  # stored by the old code before the kill, then replayed
            metrics += [Metric(k, -1.0, ts + epoch, epoch) for k in values]
        metrics += [Metric(k, x, ts + 10 + epoch, step) for k, x in values.items()]
        if new:
            metrics.append(Metric("epoch", float(epoch), ts + 10 + epoch, step))
        metrics += [Metric("lr", 0.01, ts + s, s) for s in range((epoch - 1) * SPE, epoch * SPE, 2)]
    metrics += [Metric("test_acc", 0.88, ts + 99, 5 * SPE), Metric("test_loss", 0.2, ts + 99, 5 * SPE)]
    client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in TAGS.items()])
    client.set_terminated(run_id, "FINISHED")
    return run_id


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("conventions")
    seed_store(root, tmp_path_factory)
    uri = f"sqlite:///{root}/mlruns/mlflow.db"
    client = MlflowClient(uri)
    for convention in ("epoch", "global", "mixed"):
        _log(client, convention, convention)
    return uri, root


def _epochs(data) -> pd.DataFrame:
    return data.epochs.drop(columns="run_id").reset_index(drop=True)


def test_step_of_an_epoch_metric_reads_through_the_epoch_metric_when_there_is_one():
    assert epoch_of_step(3, {}) == 3  # the old convention
    assert epoch_of_step(12, {4: 1.0, 8: 2.0, 12: 3.0}) == 3
    assert epoch_of_step(2, {12: 3.0}) == 2  # a resumed run's earlier epochs
    # an epoch logged twice keeps its latest write, whatever the step it was logged at
    assert by_epoch([(3, 10, -1.0), (12, 20, 0.8), (2, 5, 0.7)], {12: 3.0}) == [(2, 0.7), (3, 0.8)]


@pytest.mark.parametrize("convention", ["global", "mixed"])
def test_epoch_metrics_of_either_convention_load_as_the_same_frames(stores, convention):
    uri, _ = stores
    old, new = load_runs("epoch", uri), load_runs(convention, uri)
    pd.testing.assert_frame_equal(_epochs(new), _epochs(old))
    assert sorted(set(new.epochs["epoch"])) == [1, 2, 3, 4, 5]
    assert new.epochs[new.epochs["name"] == "val_acc"]["value"].tolist() == VAL
    pd.testing.assert_frame_equal(new.lr.drop(columns="run_id"), old.lr.drop(columns="run_id"))
    assert new.runs["test_metric"].tolist() == old.runs["test_metric"].tolist() == [0.88]


def test_a_bundle_of_global_step_runs_is_written_read_and_imported_with_epoch_numbers(stores, tmp_path,
                                                                                       tmp_path_factory):
    uri, _ = stores
    data = load_runs("global", uri)
    folder = write_bundle(data, tmp_path / "bundle", {})
    assert pd.read_csv(folder / "epochs.csv")["epoch"].max() == 5  # epoch numbers, never global steps
    pd.testing.assert_frame_equal(_epochs(read_bundle(folder)), _epochs(data))
    other = tmp_path / "other"
    other.mkdir()
    seed_store(other, tmp_path_factory)
    other_uri = f"sqlite:///{other}/mlruns/mlflow.db"
    assert import_bundle(folder, other_uri) == ("global", 1, 0)
    pd.testing.assert_frame_equal(_epochs(load_runs("global", other_uri)), _epochs(data))
