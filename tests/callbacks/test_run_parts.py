"""A run's callbacks come from the `callbacks` config group (configs/callbacks/default.yaml), the `_partial_` ones
completed with the run's parts (`RunParts`): the same callbacks, in the same order and with the same arguments, as
the runner built by hand before (issue 18), for every override that switches one on or off."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from omegaconf import OmegaConf

from adaptive_lr.callbacks import EpochMetrics, LRControl
from adaptive_lr.callbacks.views import ParamView
from adaptive_lr.config import ConfigError, compose
from adaptive_lr.runner import build_callbacks
from adaptive_lr.tracking.checkpoint import ResumeCheckpoint


def built(overrides: list[str], run_dir: Path, cfg=None) -> tuple[dict, dict, dict]:
    """(what `build_callbacks` returns, the trainer kwargs after it, the parts it was given) for a composed config
    (or `cfg`)."""
    cfg = cfg if cfg is not None else compose(["task=xor_clean", *overrides])
    parts = {"policy": instantiate(cfg.scheduler.build),
             "views": [instantiate(spec) for spec in (cfg.get("viz") or {}).values()]}
    trainer_kwargs = dict(cfg.trainer)
    return build_callbacks(cfg, parts, run_dir, trainer_kwargs), trainer_kwargs, parts


def kinds(callbacks: list) -> list[type]:
    return [type(c) for c in callbacks]


def test_the_default_group_builds_the_record_the_controller_with_live_control_and_the_resume_checkpoint(tmp_path):
    made, trainer_kwargs, parts = built([], tmp_path)
    assert kinds(made["callbacks"]) == [EpochMetrics, LRControl, ResumeCheckpoint]
    metrics, control, resumable = made["callbacks"]
    assert made["epoch_metrics"] is metrics and metrics.stop_on_nonfinite is True
    assert control.policy is parts["policy"] and (control.interval, control.frequency, control.log_every_n_steps) == (
        "epoch", 1, 50)
    live = control.live
    assert (live.path, live.min_lr, live.max_lr, live.every_n_steps) == (tmp_path / "control.json", 1e-7, 10.0, 10)
    assert made["resumable"] is resumable and (resumable.dirpath, resumable.every_n_epochs, resumable.every_n_steps) == (
        tmp_path / "checkpoints", 1, 0)
    assert trainer_kwargs["enable_checkpointing"] is True and made["keep_checkpoints"] is False


@pytest.mark.parametrize("overrides, expected", [
    (["live_control.enabled=false"], [EpochMetrics, LRControl, ResumeCheckpoint]),
    (["trainer.enable_checkpointing=true"], [EpochMetrics, LRControl, ModelCheckpoint, ResumeCheckpoint]),
    (["checkpoint.every_n_epochs=0"], [EpochMetrics, LRControl]),
    (["checkpoint.every_n_epochs=0", "checkpoint.every_n_steps=5"], [EpochMetrics, LRControl, ResumeCheckpoint]),
    (["viz=[params]"], [EpochMetrics, LRControl, ParamView, ResumeCheckpoint]),
    (["callbacks.resume_checkpoint=null"], [EpochMetrics, LRControl]),
    (["+callbacks.lr_monitor={_target_:lightning.pytorch.callbacks.LearningRateMonitor}"],
     [EpochMetrics, LRControl, ResumeCheckpoint, LearningRateMonitor]),  # a callback added by config alone
])
def test_the_overrides_that_switch_a_callback_still_do(tmp_path, overrides, expected):
    made, trainer_kwargs, parts = built(overrides, tmp_path)
    assert kinds(made["callbacks"]) == expected
    control = made["callbacks"][1]
    assert (control.live is None) == ("live_control.enabled=false" in overrides)
    assert trainer_kwargs["enable_checkpointing"] is (ResumeCheckpoint in expected or ModelCheckpoint in expected)
    assert made["keep_checkpoints"] is ("trainer.enable_checkpointing=true" in overrides)
    if ModelCheckpoint in expected:
        every = made["callbacks"][expected.index(ModelCheckpoint)]
        assert (Path(every.dirpath), every.save_top_k, every._every_n_epochs) == (tmp_path / "checkpoints", -1, 1)
    if ParamView in expected:
        assert made["callbacks"][2] is parts["views"][0]
    if "checkpoint.every_n_steps=5" in overrides:
        assert (made["resumable"].every_n_epochs, made["resumable"].every_n_steps) == (0, 5)


@pytest.mark.parametrize("trainer", ["gpu", "ddp_cpu"])
def test_a_trainer_config_without_enable_checkpointing_keeps_the_every_epoch_checkpoint_off(tmp_path, trainer):
    made, trainer_kwargs, _ = built([f"trainer={trainer}"], tmp_path)
    assert kinds(made["callbacks"]) == [EpochMetrics, LRControl, ResumeCheckpoint] and not made["keep_checkpoints"]


def test_the_arguments_are_read_from_the_run_config_keys(tmp_path):
    made, _, _ = built(["scheduler=hypergradient", "stop_on_nonfinite=false", "logger.log_every_n_steps=7",
                        "live_control.every_n_steps=3", "live_control.max_lr=2.0"], tmp_path)
    metrics, control = made["callbacks"][:2]
    assert metrics.stop_on_nonfinite is False
    assert (control.interval, control.log_every_n_steps, control.live.every_n_steps, control.live.max_lr) == (
        "step", 7, 3, 2.0)


def test_a_config_stored_before_the_group_existed_builds_the_same_callbacks(tmp_path):
    """A resumed run's config.json from before the group (and before `checkpoint.every_n_steps`)."""
    cfg = compose(["task=xor_clean", "live_control.every_n_steps=4", "checkpoint.every_n_epochs=2"])
    stored = OmegaConf.create(OmegaConf.to_container(cfg))
    del stored["callbacks"]
    del stored.checkpoint["every_n_steps"]
    made, trainer_kwargs, _ = built([], tmp_path, cfg=stored)
    assert kinds(made["callbacks"]) == [EpochMetrics, LRControl, ResumeCheckpoint]
    assert made["callbacks"][1].live.every_n_steps == 4
    assert (made["resumable"].every_n_epochs, made["resumable"].every_n_steps) == (2, 0)
    assert "callbacks" not in stored and trainer_kwargs["enable_checkpointing"] is True


def test_a_group_without_the_epoch_record_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="EpochMetrics"):
        built(["callbacks.epoch_metrics=null"], tmp_path)
