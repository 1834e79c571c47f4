"""Leave-one-family-out evaluation of a meta-trained controller (issue 15, part 3): does a policy learned on other
families transfer to a family it never saw, compared with the same controller learning from scratch?

1) for each family of the meta config: `meta_train` with that family held out (resumable; one policy per family);
2) one grid, `<name>-transfer`, written beside the policies and run like any grid (resumable, cells claimed once):
   per held-out family's task, at the family's usual LR and with its run overrides, over `evaluation.seeds`:
   - the controller learning from scratch (its one-run defaults: online, exploring), scheduler `<controller>`;
   - the controller frozen at the policy trained without that family (`warm_start`, `frozen_overrides`), which
     reports label `<controller> +warm`;
   - the fixed baselines of `evaluation.baselines` (the report's best baseline);
3) the report of that grid (`reports/<name>-transfer/<timestamp>/`), whose transfer section compares `+warm` with
   from-scratch on the test metric under the project's verdict rules, with each policy (`policy.pt`, provenance,
   training history) copied into its `policies/without-<family>/`.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import yaml
from omegaconf import DictConfig

from adaptive_lr.checks import require_int
from adaptive_lr.config import ConfigError, compose
from adaptive_lr.meta.train import (
    HISTORY_FILE,
    POLICY_FILE,
    PROVENANCE_FILE,
    MetaResult,
    compose_meta,
    config_hash,
    families_of,
    meta_train,
    reports_root,
)


def transfer_grid(cfg: DictConfig, policies: dict[str, MetaResult], folder: Path) -> Path:
    """Write the transfer grid (rule 2) into `folder` as an umbrella grid including one file per column; its path."""
    families = families_of(cfg)
    tasks = [f.task for f in families]
    if len(set(tasks)) != len(tasks):
        raise ConfigError(f"meta-train --leave-one-out: two families share a task ({', '.join(tasks)}); each held-out "
                          "family is one task of the transfer grid")
    folder.mkdir(parents=True, exist_ok=True)
    seeds = list(cfg.evaluation.seeds)
    common = list(cfg.run_overrides)
    task_overrides = {f.task: list(f.overrides) for f in families}
    parts = {"scratch": {"name": "scratch", "tasks": tasks, "seeds": seeds, "task_overrides": task_overrides,
                         "schedulers": [cfg.controller.scheduler, *cfg.evaluation.baselines],
                         "overrides": common}}
    for f in families:
        warm = [f"scheduler.policy.warm_start='{policies[f.name].policy}'", *cfg.frozen_overrides]
        parts[f"frozen-{f.name}"] = {"name": f"frozen-{f.name}", "tasks": [f.task], "seeds": seeds,
                                     "task_overrides": {f.task: list(f.overrides)},
                                     "schedulers": [cfg.controller.scheduler], "overrides": [*warm, *common]}
    for name, spec in parts.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    umbrella = {
        "name": f"{cfg.name}-transfer",
        "description": f"Leave-one-family-out transfer of {cfg.controller.scheduler} (meta config {config_hash(cfg)}): "
                       "frozen policy trained without the family vs learning from scratch",
        "include": [str((folder / f"{name}.yaml").resolve()) for name in parts],
    }
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(umbrella, sort_keys=False), encoding="utf-8")
    return path


def leave_one_out(overrides: Sequence[str] = (), jobs: int = 1, out: TextIO | None = None) -> Path:
    """Rules 1-3 of the module docstring; the path of the transfer report."""
    from adaptive_lr.experiment import LocalEngine, run_grid
    from adaptive_lr.reporting import write_report
    from adaptive_lr.tracking.run import mark_orphans, resolve_tracking_uri

    out = out if out is not None else sys.stderr
    require_int("meta-train --jobs", jobs, minimum=1, error=ConfigError, allowed="a positive int")
    cfg = compose_meta(overrides)
    if cfg.holdout is not None:
        raise ConfigError("meta-train --leave-one-out holds out every family in turn: drop holdout=")
    if len(cfg.families) < 2:
        raise ConfigError("meta-train --leave-one-out needs at least 2 families")
    policies = {f.name: meta_train(compose_meta([*overrides, f"holdout={f.name}"]), out) for f in families_of(cfg)}
    first = compose([*families_of(cfg)[0].run_overrides, *cfg.run_overrides])
    grid = transfer_grid(cfg, policies, Path(first.paths.runs) / "meta-train" / f"{cfg.name}-transfer-"
                         f"{config_hash(cfg)}")
    run_grid(str(grid), engine=LocalEngine(jobs), out=out)
    uri = resolve_tracking_uri(first.logger.tracking_uri, Path(first.paths.mlruns))
    mark_orphans(uri)
    report = write_report(f"{cfg.name}-transfer", uri, reports_root(cfg, first), tau_max=first.report.tau_max,
                          alpha=first.report.alpha)
    for family, result in policies.items():
        target = report.parent / "policies" / f"without-{family}"
        target.mkdir(parents=True, exist_ok=True)
        for name in (POLICY_FILE, PROVENANCE_FILE, HISTORY_FILE):
            shutil.copy2(result.state_dir / name, target / name)
    return report


def train_and_save(overrides: Sequence[str] = (), out: TextIO | None = None) -> Path:
    """`adaptive-lr meta-train`: one training (resumable), its policy, provenance and history copied into a new
    `reports/<name>[-without-<holdout>]/<timestamp>/`; the path of the copied policy."""
    from datetime import datetime

    from adaptive_lr.reporting.report import TIMESTAMP_FORMAT, _new_folder

    cfg = compose_meta(overrides)
    result = meta_train(cfg, out)
    first = compose([*families_of(cfg)[0].run_overrides, *cfg.run_overrides])
    label = cfg.name + (f"-without-{cfg.holdout}" if cfg.holdout else "")
    folder = _new_folder(reports_root(cfg, first) / label, datetime.now().strftime(TIMESTAMP_FORMAT))
    for name in (POLICY_FILE, PROVENANCE_FILE, HISTORY_FILE):
        shutil.copy2(result.state_dir / name, folder / name)
    return folder / POLICY_FILE
