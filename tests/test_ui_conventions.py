"""The UIs' conventions, read from what one tiny run wrote (no UI started): in MLflow every metric on the global step
with the epoch as its own metric, the standard source and git tags, the data as a dataset input carrying the data
checksum; in TensorBoard grouped tags, a short run name and HParams with the final validation and test values."""

from __future__ import annotations

import json

import pytest

from adaptive_lr.config import compose
from adaptive_lr.runner import run
from store_support import seed_store, tracking_uri

TINY = ["task=xor_clean", "trainer.max_epochs=2", "data.n_samples=80", "experiment=ui", "logger.log_every_n_steps=1",
        "viz=params", "viz.params.every_n_steps=1", "viz.params.panel_every_n_steps=0",
        "viz.params.histogram_every_n_steps=2"]
GROUPS = ("lr/", "train/", "val/", "test/", "controller/", "views/")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One finished run (xor_clean, 2 epochs, the parameter view on) in its own home: (result, MLflow run, home)."""
    from mlflow.tracking import MlflowClient

    home = tmp_path_factory.mktemp("ui_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADAPTIVE_LR_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        seed_store(home, tmp_path_factory)
        result = run(compose(TINY))
    client = MlflowClient(tracking_uri(home))
    return result, client.get_run(result.run_id), client, home


def test_mlflow_metrics_share_the_global_step_and_the_epoch_is_a_metric(tiny):
    result, mlflow_run, client, _ = tiny
    spe = int(mlflow_run.data.tags["steps_per_epoch"])
    last = 2 * spe

    def steps(key):
        return sorted(m.step for m in client.get_metric_history(result.run_id, key))

    assert [(m.step, m.value) for m in sorted(client.get_metric_history(result.run_id, "epoch"),
                                              key=lambda m: m.step)] == [(spe, 1.0), (last, 2.0)]
    for key in ("train_loss", "val_loss", "val_acc", "epoch_time_s", "epoch_lr"):
        assert steps(key) == [spe, last], key
    assert sorted(set(steps("lr"))) == list(range(last + 1))  # every step (log_every_n_steps=1), the same axis
    assert steps("test_acc") == [last]
    assert all(max(steps(key)) <= last for key in mlflow_run.data.metrics)  # no metric on another axis


def test_mlflow_source_and_git_tags(tiny):
    _, mlflow_run, _, _ = tiny
    tags = mlflow_run.data.tags
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"]
    assert tags["mlflow.source.git.commit"] == tags["git_commit"].removesuffix("-dirty")
    if tags["git_commit"] != "unknown":
        assert tags["mlflow.source.git.branch"]
    assert tags["mlflow.runName"] == "xor_clean-fixed-s0" and "mlflow.user" in tags


def test_the_data_is_a_dataset_input_carrying_the_data_checksum(tiny):
    _, mlflow_run, _, _ = tiny
    (given,) = mlflow_run.inputs.dataset_inputs
    assert given.dataset.name == "xor_clean"
    assert given.dataset.digest == mlflow_run.data.tags["data_checksum"]
    assert {t.key: t.value for t in given.tags} == {"mlflow.data.context": "training"}
    assert json.loads(given.dataset.source)["tags"]["mlflow.source.name"].endswith("XORDataModule")
    profile = json.loads(given.dataset.profile)
    assert set(profile) == {"train", "val", "test"} and sum(profile.values()) == 80


def test_tensorboard_tags_are_grouped_the_run_has_a_short_name_and_hparams_hold_val_and_test(tiny):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    result, mlflow_run, _, home = tiny
    link = home / "tensorboard" / "ui" / "xor_clean" / "fixed" / "seed0"  # what TensorBoard lists: ui/xor_clean/...
    assert link.is_symlink() and link.resolve() == (result.run_dir / "tensorboard").resolve()
    acc = EventAccumulator(str(link), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    assert all(t.startswith(GROUPS) for kind in ("scalars", "histograms") for t in tags[kind]), tags
    assert {"lr/pg0", "lr/epoch_start", "train/loss", "train/acc", "train/epoch", "val/loss", "val/acc",
            "test/acc", "views/norm/grads/total"} <= set(tags["scalars"])
    spe = int(mlflow_run.data.tags["steps_per_epoch"])
    assert [e.step for e in acc.Scalars("val/acc")] == [spe, 2 * spe]  # the global step, as in MLflow
    content = acc.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {"val/acc", "val/loss", "test/acc", "test/loss"}


def test_a_dataset_read_from_a_folder_names_the_folder_as_its_source(tmp_path):
    import types

    import torch

    from adaptive_lr.tracking.datasets import dataset_input

    splits = tuple((torch.zeros(n, 2), torch.zeros(n)) for n in (6, 2, 2))
    module = types.SimpleNamespace(data_dir=str(tmp_path), splits=splits)
    given = dataset_input("mnist", "0123456789abcdef", module)
    assert given.dataset.source_type == "local" and str(tmp_path) in given.dataset.source
    assert json.loads(given.dataset.profile) == {"train": 6, "val": 2, "test": 2}
    assert given.dataset.digest == "0123456789abcdef"


def test_a_dataset_inserted_by_a_concurrent_worker_is_linked_on_the_next_try(tmp_path):
    """Two grid workers starting runs on the same data both insert the dataset; the loser's unique-key error means
    it exists now, so the input is logged again (and any other error still raises)."""
    import pytest
    from mlflow.exceptions import MlflowException

    from adaptive_lr.data.xor import XORDataModule
    from adaptive_lr.tracking.datasets import log_dataset_input

    class Client:
        def __init__(self, errors):
            self.errors, self.calls = list(errors), 0

        def log_inputs(self, run_id, datasets):
            self.calls += 1
            if self.errors:
                raise MlflowException(self.errors.pop(0))

    race = Client(["(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, datasets.name"])
    log_dataset_input(race, "r", "xor", "abc", XORDataModule())
    assert race.calls == 2
    other = Client(["RESOURCE_DOES_NOT_EXIST: run r"])
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        log_dataset_input(other, "r", "xor", "abc", XORDataModule())
    assert other.calls == 1
