"""Composing and validating run configs (Hydra compose API: no working-directory change, no output folder).

Every check here runs before anything is trained or written to the MLflow store, and fails with one line that
names the key and the allowed values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adaptive_lr.errors import UserError, one_line

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = PROJECT_ROOT / "configs"
EXPERIMENTS_DIR = PROJECT_ROOT / "experiments"
SEED_MAX = 2**32 - 1  # numpy's seeds are uint32; Lightning's seed_everything allows the same range


class ConfigError(UserError, ValueError):
    """A run or grid is misconfigured. The message is one line naming the key and what is allowed."""


def available(group: str) -> list[str]:
    """The choices of one config group, from the YAML files in configs/<group>/."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _check_choices(overrides: Sequence[str]) -> None:
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if not (sep and "." not in key and "@" not in key and (CONFIG_DIR / key).is_dir()):
            continue
        # a group may take several configs at once: `viz=[latent,params]`
        choices = value[1:-1].split(",") if value.startswith("[") and value.endswith("]") else [value]
        for choice in (c.strip() for c in choices):
            if choice and choice not in available(key):
                raise ConfigError(f"unknown {key} {choice!r}; allowed: {', '.join(available(key))}")


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The resolved run config for these Hydra-style overrides (`task=xor_clean scheduler=cosine seed=1`)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    _check_choices(overrides)
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = hydra_compose("train", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:  # one line, with Hydra's hints ("use +key=1")
        raise ConfigError(one_line(err)) from err
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as err:  # its message names the missing key, not the one that refers to it
        raise ConfigError(f"{_unresolvable(cfg) or 'config'}: {one_line(err)}") from err
    validate(cfg)
    return cfg


def _unresolvable(node: DictConfig, prefix: str = "") -> str | None:
    """The dotted key of the first value under `node` whose interpolation cannot be resolved."""
    from omegaconf import ListConfig
    from omegaconf.errors import OmegaConfBaseException

    for key in node:
        name = f"{prefix}{key}"
        try:
            value = node[key]  # resolves it
            if isinstance(value, ListConfig):
                OmegaConf.to_container(value, resolve=True)
        except OmegaConfBaseException:
            return name
        found = _unresolvable(value, f"{name}.") if isinstance(value, DictConfig) else None
        if found:
            return found
    return None


def _positive(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


def _integer(name: str, value: Any, low: int, high: int | None = None) -> None:
    """An int (not a bool, not 1.5, not "abc") in [low, high]."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if not (is_int and value >= low and (high is None or value <= high)):
        allowed = f"an int in [{low}, {high}]" if high is not None else f"an int >= {low}"
        raise ConfigError(f"{name} must be {allowed}, got {value!r}")


def validate(cfg: DictConfig) -> None:
    """Static checks of a composed config (dynamic ones, like the monitored metric, happen at build time)."""
    _integer("seed", cfg.seed, 0, SEED_MAX)
    _positive("lr", cfg.lr)
    if cfg.optimizer.get("lr") is not None:
        _positive("optimizer.lr", cfg.optimizer.lr)
    if cfg.task.mode not in ("min", "max"):
        raise ConfigError(f"task.mode must be one of ['min', 'max'], got {cfg.task.mode!r}")
    threshold = cfg.task.threshold
    if cfg.task.metric == "acc" and not (isinstance(threshold, (int, float)) and 0 < threshold < 1):
        raise ConfigError(f"task.threshold must be in (0, 1) for an accuracy, got {threshold!r}")
    if cfg.task.metric != "acc":
        _positive("task.threshold", threshold)
    _integer("trainer.max_epochs", cfg.trainer.max_epochs, 1)
    if cfg.scheduler.interval not in ("step", "epoch"):
        raise ConfigError(f"scheduler.interval must be one of ['step', 'epoch'], got {cfg.scheduler.interval!r}")
    _integer("scheduler.frequency", cfg.scheduler.frequency, 1)
    _integer("scheduler.warmup.ticks", cfg.scheduler.warmup.ticks, 0)
    factor = cfg.scheduler.warmup.start_factor
    if isinstance(factor, bool) or not (isinstance(factor, (int, float)) and 0 < factor <= 1):
        raise ConfigError(f"scheduler.warmup.start_factor must be in (0, 1], got {factor!r}")
    for key in ("batch_size", "eval_batch_size"):
        if key in cfg.data:
            _integer(f"data.{key}", cfg.data[key], 1)
    _integer("logger.log_every_n_steps", cfg.logger.log_every_n_steps, 1)
    _integer("multi_start.k", cfg.multi_start.k, 1)
    _integer("multi_start.batches", cfg.multi_start.batches, 1)
    live = cfg.live_control
    _integer("live_control.every_n_steps", live.every_n_steps, 1)
    _positive("live_control.min_lr", live.min_lr)
    _positive("live_control.max_lr", live.max_lr)
    if live.min_lr >= live.max_lr:
        raise ConfigError(f"live_control.min_lr must be below live_control.max_lr, got {live.min_lr} and "
                          f"{live.max_lr}")
    fixed_lr = cfg.scheduler.policy.get("lr")
    if fixed_lr is not None:
        _positive("scheduler.policy.lr", fixed_lr)


def to_container(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
