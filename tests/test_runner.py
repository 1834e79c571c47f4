"""`runner.run`: one tiny real run end to end, tracked in MLflow and TensorBoard; a crash marks the run FAILED."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from adaptive_lr.config import compose, to_container
from adaptive_lr.runner import build, config_hash, run
from store_support import seed_store, tracking_uri

TINY = ["task=xor_clean", "trainer.max_epochs=2", "data.n_samples=80"]
EPOCH_METRICS = ("train_loss", "val_loss", "train_acc", "val_acc", "epoch_time_s", "epoch_lr")
XOR_LR = 0.05  # configs/task/xor_clean.yaml


@pytest.fixture
def client(home: Path, tmp_path_factory: pytest.TempPathFactory):
    from mlflow.tracking import MlflowClient

    seed_store(home, tmp_path_factory)
    return MlflowClient(tracking_uri(home))


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_successful_run_is_fully_tracked(home, client):
    cfg = compose([*TINY, "experiment=unit"])
    result = run(cfg)

    r = client.get_run(result.run_id)
    assert r.info.status == "FINISHED" and result.status == "FINISHED"
    assert client.get_experiment(r.info.experiment_id).name == "unit"
    # tags: everything a report groups and filters by, plus identity and provenance
    tags = r.data.tags
    steps_per_epoch = int(tags["steps_per_epoch"])
    assert steps_per_epoch >= 1
    assert {k: tags[k] for k in ("task", "scheduler", "seed", "metric", "metric_mode", "threshold", "max_epochs",
                                 "adaptive")} == {
        "task": "xor_clean", "scheduler": "fixed", "seed": "0", "metric": "acc", "metric_mode": "max",
        "threshold": "0.95", "max_epochs": "2", "adaptive": "false",
    }
    assert tags["config_hash"] == config_hash(cfg)
    built = build(cfg)["datamodule"]  # the same config builds the same data: the same content hash
    built.setup("fit")
    assert tags["data_checksum"] == built.fingerprint() and len(tags["data_checksum"]) == 16
    assert tags["git_commit"] == (result.run_dir / "git_commit.txt").read_text().strip() != ""
    assert Path(tags["run_dir"]) == result.run_dir
    assert tags["epochs_trained"] == "2" and tags["diverged"] == "False"
    # params: the resolved config, flattened
    params = r.data.params
    assert params["lr"] == str(XOR_LR)
    assert params["scheduler.name"] == "fixed"
    assert params["trainer.max_epochs"] == "2"
    assert params["data.n_samples"] == "80"
    # the resolved config and commit, beside the results and as artifacts
    assert json.loads((result.run_dir / "config.json").read_text()) == to_container(cfg)
    assert {a.path for a in client.list_artifacts(result.run_id)} >= {"config.json", "git_commit.txt"}
    # epoch metrics: one value per epoch, on the global step of the epoch's end, beside the epoch number `epoch`
    ends = [steps_per_epoch, 2 * steps_per_epoch]
    assert history(client, result.run_id, "epoch") == [(ends[0], 1.0), (ends[1], 2.0)]
    for name in EPOCH_METRICS:
        assert [step for step, _ in history(client, result.run_id, name)] == ends, name
    assert [v for _, v in history(client, result.run_id, "epoch_lr")] == pytest.approx([XOR_LR, XOR_LR])
    times = [v for _, v in history(client, result.run_id, "epoch_time_s")]
    assert 0 < times[0] < times[1]
    assert all(0 <= v <= 1 for _, v in history(client, result.run_id, "val_acc"))
    # lr: step-indexed by optimizer step, from step 0 to the last step
    lr = history(client, result.run_id, "lr")
    steps = [step for step, _ in lr]
    assert steps[0] == 0 and steps[-1] == 2 * steps_per_epoch and steps == sorted(steps)
    assert all(v == pytest.approx(XOR_LR) for _, v in lr)
    # final test metrics
    assert r.data.metrics["test_acc"] == pytest.approx(result.metrics["test_acc"])
    assert 0 <= result.metrics["test_acc"] <= 1 and "test_loss" in result.metrics


def test_tensorboard_event_files_hold_lr_and_epoch_scalars(home, client):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = run(compose(TINY))

    acc = EventAccumulator(str(result.run_dir / "tensorboard"))
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {"lr/pg0", "val/loss", "lr/epoch_start"} <= scalars
    assert [e.value for e in acc.Scalars("lr/pg0")] == pytest.approx([XOR_LR] * len(acc.Scalars("lr/pg0")))
    steps_per_epoch = int(client.get_run(result.run_id).data.tags["steps_per_epoch"])
    assert [e.step for e in acc.Scalars("val/loss")] == [steps_per_epoch, 2 * steps_per_epoch]
    # the HParams plugin record: this run's settings and final metrics, as TensorBoard's HParams tab reads them
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")
    data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = data.session_start_info.hparams
    assert (hp["task"].string_value, hp["scheduler"].string_value, hp["seed"].number_value) == ("xor_clean",
                                                                                              "fixed", 0)
    assert hp["lr"].number_value == pytest.approx(XOR_LR)
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {"val/acc", "val/loss", "test/acc", "test/loss"}
    assert acc.Scalars("test/acc")[-1].value == pytest.approx(result.metrics["test_acc"])
    assert len(acc.Scalars("val/acc")) == 2  # the HParams tab reads the last one: no extra point was written


def test_two_runs_never_share_a_run_folder(home, client):
    cfg = compose([*TINY, "experiment=twice"])

    first, second = run(cfg), run(cfg)

    assert first.run_id != second.run_id
    assert first.run_dir != second.run_dir
    assert first.run_dir.parent == second.run_dir.parent == home / "runs" / "twice"
    for result in (first, second):
        assert (result.run_dir / "config.json").is_file()
        assert client.get_run(result.run_id).data.tags["run_dir"] == str(result.run_dir)


def test_crash_mid_run_is_failed_and_left_out_of_reports(home, client, monkeypatch):
    from adaptive_lr.reporting import write_report
    from adaptive_lr.tasks.classification import ClassificationTask

    ok = run(compose([*TINY, "experiment=crash"]))
    train_step = ClassificationTask.training_step

    def crash_in_epoch_2(self, batch, batch_idx):
        if self.current_epoch >= 1:
            raise RuntimeError("boom in epoch 2")
        return train_step(self, batch, batch_idx)

    monkeypatch.setattr(ClassificationTask, "training_step", crash_in_epoch_2)
    with pytest.raises(RuntimeError, match="boom in epoch 2"):
        run(compose([*TINY, "experiment=crash", "scheduler=heuristic"]))

    exp = client.get_experiment_by_name("crash")
    runs = {r.info.status: r for r in client.search_runs([exp.experiment_id])}
    assert sorted(runs) == ["FAILED", "FINISHED"]
    failed = runs["FAILED"]
    assert runs["FINISHED"].info.run_id == ok.run_id
    assert failed.data.tags["scheduler"] == "heuristic"
    assert "RuntimeError: boom in epoch 2" in failed.data.tags["error"]
    spe = int(failed.data.tags["steps_per_epoch"])  # epoch 1 kept, not lost (on its global step, as `epoch` says)
    assert [s for s, _ in history(client, failed.info.run_id, "val_loss")] == [spe]
    assert history(client, failed.info.run_id, "epoch") == [(spe, 1.0)]

    report = write_report("crash", tracking_uri(home), home / "reports")

    text = report.read_text()
    results, _, failed_section = text.partition("## Failed or incomplete runs")
    assert failed.info.run_id not in results
    assert failed.info.run_id in failed_section and "boom in epoch 2" in failed_section
    summary = pd.read_csv(report.parent / "summary.csv")
    assert summary["scheduler"].tolist() == ["fixed"] and summary["n_seeds"].tolist() == [1]
    assert "heuristic" not in (report.parent / "summary.csv").read_text()



def test_nonfinite_loss_is_recorded_and_stops_the_run_as_diverged(home, client):
    from adaptive_lr.reporting import write_report

    # plain SGD at an absurd LR blows the digits MLP up to NaN within the first epoch
    cfg = compose(["task=digits", "optimizer=sgd", "lr=1e12", "trainer.max_epochs=4", "experiment=unit"])
    result = run(cfg)

    r = client.get_run(result.run_id)
    assert r.info.status == "FINISHED"  # a diverged run is a result, not a crash
    assert r.data.tags["diverged"] == "True" and r.data.tags["epochs_trained"] == "1"
    spe = int(r.data.tags["steps_per_epoch"])  # epoch 1's end, on the global step
    assert history(client, result.run_id, "diverged_epoch") == [(spe, 1.0)]
    [(step, nonfinite)] = history(client, result.run_id, "nonfinite_steps")
    assert step == spe and nonfinite >= 1
    [(_, train_loss)] = history(client, result.run_id, "train_loss")
    assert train_loss != train_loss  # NaN is logged as NaN, not dropped

    summary = pd.read_csv(write_report("unit", tracking_uri(home), home / "reports").parent / "summary.csv")
    assert summary["diverged_count"].tolist() == [1]


def test_multi_start_keeps_the_lowest_initial_loss_and_logs_all_candidates(home, client):
    result = run(compose([*TINY, "multi_start.k=3", "multi_start.batches=2"]))

    tags = client.get_run(result.run_id).data.tags
    losses = [v for _, v in history(client, result.run_id, "multi_start_initial_loss")]
    assert tags["multi_start_k"] == "3" and len(losses) == 3
    assert int(tags["multi_start_best"]) == min(range(3), key=losses.__getitem__)


def test_a_group_may_select_several_views_and_unknown_ones_are_named():
    from adaptive_lr.config import ConfigError

    cfg = compose(["viz=[latent,params]"])
    assert set(cfg.viz) == {"latent", "params"}
    with pytest.raises(ConfigError, match="unknown viz 'nope'; allowed: boundary"):
        compose(["viz=[latent,nope]"])


def test_config_hash_ignores_where_the_data_come_from_but_not_which_series_is_forecast():
    from adaptive_lr.runner import config_hash

    base = compose(["task=cifar10"])
    assert config_hash(base) == config_hash(compose(["task=cifar10", "data.source=hf"]))
    forecast = compose(["task=electricity"])
    other_target = compose(["task=electricity", "data.source.target=Temperature"])
    assert config_hash(forecast) != config_hash(other_target)


#: config_hash of `task=<name>` (every other key at its default) and of a few overrides of `task=digits`, computed
#: with the configs and code of commit 4c097cb, before the callbacks group (configs/callbacks/) and the one
#: `_target_` style for models and tasks (issue 18). Runs and grid cells are keyed by these hashes: they must not move.
HASHES_BEFORE_CALLBACKS_GROUP = {
    ("task=digits",): "814502e0cb50", ("task=xor_clean",): "152ddd33a248", ("task=mnist",): "48b5c5d31074",
    ("task=cifar10",): "72e8448f977f", ("task=cifar100",): "477fe4316a7b", ("task=imdb",): "e0e71770b685",
    ("task=electricity",): "d9efebad275e", ("task=synthetic_cifar",): "51c275040c08",
    ("task=digits", "viz=[params]"): "afefa96e7860", ("task=digits", "live_control.enabled=false"): "814502e0cb50",
    ("task=digits", "trainer.enable_checkpointing=true"): "6d59dc8ac83c",
    ("task=digits", "stop_on_nonfinite=false"): "eac6e3e3b036",
    ("task=digits", "trainer=gpu"): "9b67882812e5", ("task=digits", "trainer=ddp_cpu"): "00e9bf867818",
}


@pytest.mark.parametrize("overrides", sorted(HASHES_BEFORE_CALLBACKS_GROUP))
def test_the_callbacks_group_and_the_target_style_leave_config_hashes_as_they_were(overrides):
    assert config_hash(compose(list(overrides))) == HASHES_BEFORE_CALLBACKS_GROUP[overrides]


def test_the_callbacks_group_is_not_hashed_but_the_keys_it_reads_are():
    cfg = compose(["task=digits"])
    assert "callbacks" in cfg and cfg.callbacks.epoch_metrics.stop_on_nonfinite is True
    assert config_hash(compose(["task=digits", "stop_on_nonfinite=false"])) != config_hash(cfg)


def test_every_project_target_in_configs_names_its_object_by_module():
    """One `_target_` style: `adaptive_lr.<package>.<module>.<Name>`, never a package re-export."""
    import re

    from hydra.utils import get_object

    from adaptive_lr.config import CONFIG_DIR

    targets = {match for path in CONFIG_DIR.rglob("*.yaml")
               for match in re.findall(r"_target_:\s*(adaptive_lr\.[\w.]+)", path.read_text())}
    assert len(targets) > 40
    named = {target: f"{get_object(target).__module__}.{get_object(target).__qualname__}" for target in targets}
    assert {target: name for target, name in named.items() if name != target} == {}
