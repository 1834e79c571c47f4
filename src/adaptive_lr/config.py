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

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = PROJECT_ROOT / "configs"
EXPERIMENTS_DIR = PROJECT_ROOT / "experiments"


class ConfigError(ValueError):
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
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(str(err).splitlines()[0]) from err
    validate(cfg)
    return cfg


def _positive(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


def validate(cfg: DictConfig) -> None:
    """Static checks of a composed config (dynamic ones, like the monitored metric, happen at build time)."""
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
    if not isinstance(cfg.trainer.max_epochs, int) or cfg.trainer.max_epochs < 1:
        raise ConfigError(f"trainer.max_epochs must be a positive int, got {cfg.trainer.max_epochs!r}")
    if cfg.scheduler.interval not in ("step", "epoch"):
        raise ConfigError(f"scheduler.interval must be one of ['step', 'epoch'], got {cfg.scheduler.interval!r}")
    fixed_lr = cfg.scheduler.policy.get("lr")
    if fixed_lr is not None:
        _positive("scheduler.policy.lr", fixed_lr)


def to_container(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
