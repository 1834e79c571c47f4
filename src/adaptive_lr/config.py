"""Composing and validating run configs (Hydra compose API: no working-directory change, no output folder).

Every check here runs before anything is trained or written to the MLflow store, and fails with one line that
names the key and the allowed values.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adaptive_lr.checks import is_number, require_bool, require_int
from adaptive_lr.errors import UserError, one_line

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = PROJECT_ROOT / "configs"
EXPERIMENTS_DIR = PROJECT_ROOT / "experiments"
SEED_MAX = 2**32 - 1  # numpy's seeds are uint32; Lightning's seed_everything allows the same range


class ConfigError(UserError, ValueError):
    """A run or grid is misconfigured. The message is one line naming the key and what is allowed."""


class SchedulerConfigError(ConfigError):
    """The `scheduler` block of a run config is wrong (configs/scheduler/_base_.yaml says what each key allows)."""


def available(group: str) -> list[str]:
    """The choices of one config group, from the YAML files in configs/<group>/ (`_name_.yaml` files are blocks
    other configs include, not choices)."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))


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
    _require_set(cfg.scheduler, "scheduler", ("name", "adaptive", "policy"))  # before `build` refers to them
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
    if not (is_number(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


def _integer(name: str, value: Any, low: int, high: int | None = None) -> None:
    """An int (not a bool, not 1.5, not "abc") in [low, high]."""
    require_int(name, value, minimum=low, maximum=high, error=ConfigError)


def _require_set(node: DictConfig, prefix: str, keys: Sequence[str]) -> None:
    for key in keys:
        if key not in node or OmegaConf.is_missing(node, key):
            raise SchedulerConfigError(f"{prefix}.{key} must be set (in configs/{prefix}/<name>.yaml or as "
                                       f"{prefix}.{key}=<value>)")


def _policy_classes(node: Any, key: str) -> list[type]:
    """The object named by every `_target_` in a policy config (a wrapper's inner policies included), imported."""
    from hydra.utils import get_object
    from omegaconf import ListConfig

    found = []
    if isinstance(node, DictConfig):
        target = node.get("_target_")
        if target is not None:
            try:
                found.append(get_object(target))
            except (ImportError, AttributeError, ValueError) as err:
                raise SchedulerConfigError(f"{key}._target_: cannot import {target!r} ({one_line(err)})") from err
        for name, value in node.items():
            found += _policy_classes(value, f"{key}.{name}")
    elif isinstance(node, ListConfig):
        for i, value in enumerate(node):
            found += _policy_classes(value, f"{key}[{i}]")
    return found


def validate_scheduler(node: DictConfig) -> None:
    """The keys configs/scheduler/_base_.yaml declares, of the kinds it allows, and an interval every policy in
    `policy` can be driven at (a policy that decides before every optimizer step needs `step`)."""
    from adaptive_lr.schedulers.base import INTERVALS

    _require_set(node, "scheduler", ("name", "adaptive", "policy"))
    require_bool("scheduler.adaptive", node.adaptive, error=SchedulerConfigError)
    if node.interval not in INTERVALS:
        raise SchedulerConfigError(f"scheduler.interval must be one of {list(INTERVALS)}, got {node.interval!r}")
    require_int("scheduler.frequency", node.frequency, minimum=1, error=SchedulerConfigError)
    require_int("scheduler.warmup.ticks", node.warmup.ticks, minimum=0, error=SchedulerConfigError)
    factor = node.warmup.start_factor
    if not (is_number(factor) and 0 < factor <= 1):
        raise SchedulerConfigError(f"scheduler.warmup.start_factor must be in (0, 1], got {factor!r}")
    step_only = [c.__name__ for c in _policy_classes(node.policy, "scheduler.policy")
                 if getattr(c, "decides_before_step", False) is True]
    if step_only and node.interval != "step":
        raise SchedulerConfigError(f"scheduler.interval must be 'step' for {step_only[0]} (it decides before every "
                                   f"optimizer step), got {node.interval!r}")


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
    validate_scheduler(cfg.scheduler)
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


def upgrade_stored(cfg: DictConfig) -> DictConfig:
    """A run config stored by an older version, made buildable: one stored before `scheduler.build` existed gets
    configs/scheduler/_base_.yaml's (which only restates its `policy` and `warmup`, so the run builds what it did)."""
    if "build" not in cfg.scheduler:
        cfg.scheduler.build = OmegaConf.load(CONFIG_DIR / "scheduler" / "_base_.yaml").build
        OmegaConf.resolve(cfg)
    return cfg


def to_container(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
