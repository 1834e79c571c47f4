"""A run's loggers come from the `loggers` config group (configs/loggers/default.yaml), completed with the run's
`LoggerParts` (issue 18): MLflow first and required, TensorBoard as `logger.tensorboard` says, linked under the
TensorBoard folder by its short name, and a logger added by config alone."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf

from adaptive_lr.config import ConfigError, compose
from adaptive_lr.runner import _Place, build_loggers, config_hash
from adaptive_lr.tracking import schema
from adaptive_lr.tracking.loggers import LeanTensorBoardLogger, MLflowRunLogger
from adaptive_lr.tracking.tb_names import EVENTS


def build(overrides: list[str], tmp_path: Path, resume: str | None = None, cfg=None):
    """(the loggers, the runs whose flush-on-close they registered) for a composed config."""
    cfg = cfg if cfg is not None else compose(["task=xor_clean", f"paths.root={tmp_path}", *overrides])
    closed: list = []
    tracked = SimpleNamespace(run_id="r1", tags={schema.CELL: "", schema.PHASE: ""}, flush_on_close=closed.append)
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True, exist_ok=True)
    place = _Place(f"sqlite:///{tmp_path}/mlflow.db", "xor_clean-fixed-s0", run_dir, None)
    return build_loggers(cfg, place, tracked, resume), closed


def test_the_default_group_builds_mlflow_first_then_tensorboard_linked_by_its_short_name(tmp_path):
    loggers, closed = build(["seed=3", "experiment=e1"], tmp_path)
    assert [type(x) for x in loggers] == [MLflowRunLogger, LeanTensorBoardLogger]
    mlflow, tensorboard = loggers
    assert closed == [mlflow] and mlflow.run_id == "r1" and mlflow.flush_every_s == 10
    assert Path(tensorboard.save_dir) == tmp_path / "runs" / "r1" / EVENTS
    link = tmp_path / "tensorboard" / "e1" / "xor_clean" / "fixed" / "seed3"
    assert link.is_symlink() and link.resolve() == (tmp_path / "runs" / "r1" / EVENTS).resolve()


def test_overrides_switch_and_add_loggers(tmp_path):
    assert [type(x) for x in build(["logger.tensorboard=false"], tmp_path)[0]] == [MLflowRunLogger]
    assert build(["logger.mlflow_flush_every_s=2.5"], tmp_path)[0][0].flush_every_s == 2.5
    added = build([f"+loggers.csv={{_target_:lightning.pytorch.loggers.CSVLogger,save_dir:{tmp_path}/csv}}"],
                  tmp_path)[0]
    assert [type(x) for x in added] == [MLflowRunLogger, LeanTensorBoardLogger, CSVLogger]


@pytest.mark.parametrize("override", ["loggers.mlflow=null", "loggers.tensorboard.enabled=false loggers.mlflow=null"])
def test_a_group_without_mlflow_first_is_a_config_error(tmp_path, override):
    with pytest.raises(ConfigError, match="first logger must be MLflow"):
        build(override.split(), tmp_path)


def test_a_resumed_run_skips_what_it_stored_and_a_stored_config_without_the_group_gets_the_default(tmp_path,
                                                                                                   monkeypatch):
    skipped: list = []
    monkeypatch.setattr(MLflowRunLogger, "skip_stored", lambda self: skipped.append(self) or 0)
    cfg = compose(["task=xor_clean", f"paths.root={tmp_path}", "logger.tensorboard=false"])
    stored = OmegaConf.create({k: v for k, v in OmegaConf.to_container(cfg).items() if k != "loggers"})
    loggers, _ = build([], tmp_path, resume="r1", cfg=stored)
    assert [type(x) for x in loggers] == [MLflowRunLogger] and skipped == loggers
    assert build([], tmp_path)[0][0] not in skipped  # a new run skips nothing


def test_the_group_is_not_part_of_the_config_hash():
    base = compose(["task=digits"])
    assert config_hash(compose(["task=digits", "loggers.tensorboard.enabled=false"])) == config_hash(base)
    assert config_hash(compose(["task=digits", "loggers.mlflow.flush_every_s=1"])) == config_hash(base)
