"""Meta-training a learned LR controller across many short runs (issue 15, part 3).

The learned controllers (`schedulers.rl`) learn online from a one-interval reward within one run: the short-horizon
setting in which learned LR schedules pick rates far too small (Wu et al. 2018). Here the same learners are trained
across runs, with a reward over the whole run (`rewards`), then frozen:

1) plan: passes over every training family x seed x LR factor (`configs/meta_train.yaml`), each pass in an order
   shuffled with `schedule_seed`; episode k is the plan's k-th entry, so a longer training extends a shorter one.
2) reference: a fixed-LR run at the episode's family, seed and starting LR (once per such triple; its validation
   curve is kept in the state and reused by later passes).
3) episode: the controller's run starting from the current policy (`warm_start` = the policy after k episodes),
   exploring, learning nothing within the run and recording every decision (`episode_overrides`, the controller's
   `exploration`); its exploration RNG is seeded with k.
4) credit: the run's return G = reward(its validation curve, the reference's) (`configs/meta/reward/`), credited
   to every decision of the run (`LearnedController.learn_episode`: Monte-Carlo returns, undiscounted).
5) save: after every episode the state (learned parameters, episodes done, history, reference curves) is replaced
   atomically, so a stopped training resumes at the next episode, with the same plan and the same result.
6) the frozen policy: `policy.pt`, loadable with `scheduler.policy.warm_start=<it>` (evaluate it with the
   `frozen_overrides`: no learning, no exploration), with its provenance (families trained on, runs, seeds, LRs,
   git commits, config hash, reward definition) inside it and in `provenance.json`; `history.csv` lists the
   episodes.

Every run is an ordinary tracked run (MLflow experiment `name`, tags `meta_role` = reference or episode,
`meta_episode`, `meta_state`). The state lives in `<paths.runs>/meta-train/<name>[-without-<holdout>]-<hash>/`,
the hash being that of the meta config without `episodes`, `evaluation` and `reports`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from omegaconf import DictConfig, OmegaConf

from adaptive_lr.checks import is_int, is_number, require_int
from adaptive_lr.config import CONFIG_DIR, ConfigError, available, compose, to_container
from adaptive_lr.errors import one_line

META_CONFIG = "meta_train"  # configs/meta_train.yaml
STATE_FILE, POLICY_FILE, PROVENANCE_FILE, HISTORY_FILE = "state.pt", "policy.pt", "provenance.json", "history.csv"
UNHASHED = ("episodes", "evaluation", "reports")  # raising the episodes continues a training; the others do not train


@dataclass(frozen=True)
class Family:
    """A training family: a task config and the overrides of its short runs."""

    name: str
    task: str
    overrides: tuple[str, ...]

    @property
    def run_overrides(self) -> tuple[str, ...]:
        return (f"task={self.task}", *self.overrides)


@dataclass(frozen=True)
class Episode:
    index: int
    family: str
    seed: int
    lr_factor: float


@dataclass(frozen=True)
class MetaResult:
    policy: Path  # the frozen policy (warm_start file)
    state_dir: Path
    provenance: dict[str, Any]


# -- the meta config ---------------------------------------------------------------------------------------------
def compose_meta(overrides: Sequence[str] = ()) -> DictConfig:
    """The resolved meta config (configs/meta_train.yaml with these overrides), checked; ConfigError otherwise."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    for override in overrides:  # a group choice that does not exist: the allowed ones, in one line
        key, sep, value = override.lstrip("+~").partition("=")
        if sep and key.startswith("meta/") and (CONFIG_DIR / key).is_dir() and value not in available(key):
            raise ConfigError(f"unknown {key} {value!r}; allowed: {', '.join(available(key))}")
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = hydra_compose(META_CONFIG, overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"meta-train: {one_line(err)}") from err
    validate_meta(cfg)
    return cfg


def _ints(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(is_int(v) and v >= 0 for v in value)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def validate_meta(cfg: DictConfig) -> None:
    """Static checks of a meta config, each failing with one line naming the key."""
    data = to_container(cfg)
    families = data.get("families")
    if not isinstance(families, dict) or not families:
        raise ConfigError("meta-train: families must map family names to {task, overrides}, got "
                          f"{families!r}")
    for name, spec in families.items():
        if not (isinstance(spec, dict) and set(spec) <= {"task", "overrides"} and spec.get("task") in available("task")
                and _strings(spec.get("overrides", []))):
            raise ConfigError(f"meta-train: families.{name} must be {{task: <one of {', '.join(available('task'))}>, "
                              f"overrides: [..]}}, got {spec!r}")
    episodes = data.get("episodes")
    require_int("meta-train: episodes", episodes, minimum=1, error=ConfigError)
    if not _ints(data.get("seeds")):
        raise ConfigError(f"meta-train: seeds must be a non-empty list of ints >= 0, got {data.get('seeds')!r}")
    factors = data.get("lr_factors")
    if not (isinstance(factors, list) and factors and all(is_number(f) and f > 0 for f in factors)):
        raise ConfigError(f"meta-train: lr_factors must be a non-empty list of positive numbers, got {factors!r}")
    holdout = data.get("holdout")
    if holdout is not None and holdout not in families:
        raise ConfigError(f"meta-train: holdout must be one of the families ({', '.join(families)}) or null, "
                          f"got {holdout!r}")
    if holdout is not None and len(families) < 2:
        raise ConfigError("meta-train: holding out the only family leaves nothing to train on")
    controller = data.get("controller") or {}
    if controller.get("scheduler") not in available("scheduler"):
        raise ConfigError(f"meta-train: controller.scheduler must be a scheduler config, got "
                          f"{controller.get('scheduler')!r}")
    for key in ("run_overrides", "episode_overrides", "frozen_overrides"):
        if not _strings(data.get(key)):
            raise ConfigError(f"meta-train: {key} must be a list of overrides, got {data.get(key)!r}")
    if not _strings(controller.get("exploration", [])):
        raise ConfigError(f"meta-train: controller.exploration must be a list of overrides, got "
                          f"{controller.get('exploration')!r}")
    evaluation = data.get("evaluation") or {}
    if not _ints(evaluation.get("seeds")) or not _strings(evaluation.get("baselines", [])):
        raise ConfigError(f"meta-train: evaluation needs seeds (ints >= 0) and baselines (scheduler configs), got "
                          f"{evaluation!r}")


def families_of(cfg: DictConfig) -> list[Family]:
    return [Family(name, spec.task, tuple(spec.get("overrides", []))) for name, spec in cfg.families.items()]


def training_families(cfg: DictConfig) -> list[Family]:
    return [f for f in families_of(cfg) if f.name != cfg.holdout]


def config_hash(cfg: DictConfig) -> str:
    """Identity of a training: the meta config without what does not change it (UNHASHED)."""
    data = {k: v for k, v in to_container(cfg).items() if k not in UNHASHED}
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


def reports_root(cfg: DictConfig, run_cfg: DictConfig) -> Path:
    """Where a training's policy folder and a transfer report go: `reports`, else the runs' `paths.reports`."""
    return Path(cfg.reports if cfg.reports is not None else run_cfg.paths.reports)


def state_dir(cfg: DictConfig, runs_root: Path) -> Path:
    label = cfg.name + (f"-without-{cfg.holdout}" if cfg.holdout else "")
    return Path(runs_root) / "meta-train" / f"{label}-{config_hash(cfg)}"


def plan(cfg: DictConfig, families: Sequence[Family], n: int) -> list[Episode]:
    """The first n episodes (rule 1 of the module docstring): passes over family x seed x LR factor."""
    combos = [(f.name, int(s), float(x)) for f in families for s in cfg.seeds for x in cfg.lr_factors]
    order: list[tuple[str, int, float]] = []
    for p in range(math.ceil(n / len(combos))):
        chunk = list(combos)
        random.Random(f"{cfg.schedule_seed}/{p}").shuffle(chunk)
        order += chunk
    return [Episode(k, *order[k]) for k in range(n)]


# -- the runs ----------------------------------------------------------------------------------------------------
def _val_curve(tracking_uri: str, run_id: str, name: str) -> list[float]:
    """The run's logged validation curve (one value per epoch, in epoch order)."""
    from mlflow.tracking import MlflowClient

    points = sorted(MlflowClient(tracking_uri).get_metric_history(run_id, name), key=lambda m: (m.step, m.timestamp))
    return list({m.step: float(m.value) for m in points}.values())


def _run(overrides: Sequence[str], tags: dict[str, Any]) -> tuple[Any, DictConfig, list[float]]:
    """One tracked run; (its RunResult, its config, its validation curve of the task's metric)."""
    from adaptive_lr.runner import run
    from adaptive_lr.tracking.run import resolve_tracking_uri

    cfg = compose(overrides)
    result = run(cfg, tags=tags)
    uri = resolve_tracking_uri(cfg.logger.tracking_uri, Path(cfg.paths.mlruns))
    return result, cfg, _val_curve(uri, result.run_id, f"val_{cfg.task.metric}")


def _save_atomically(obj: Any, path: Path) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _learner(cfg: DictConfig, family: Family) -> Any:
    """The controller built from its scheduler config (cold unless that config warm-starts it): what the episodes
    teach."""
    from hydra.utils import instantiate

    from adaptive_lr.schedulers.rl import LearnedController

    run_cfg = compose([*family.run_overrides, f"scheduler={cfg.controller.scheduler}", *cfg.run_overrides])
    policy = instantiate(run_cfg.scheduler.policy)
    if not isinstance(policy, LearnedController):
        raise ConfigError(f"meta-train: controller.scheduler={cfg.controller.scheduler!r} is "
                          f"{type(policy).__name__}, not a learned controller (rl_bandit, rl_qlearning)")
    return policy


def _load_state(cfg: DictConfig, folder: Path, learner: Any) -> dict[str, Any]:
    """The training state in `folder`: a fresh one, or the saved one (5) resume), whose learned parameters are
    loaded into `learner`."""
    import torch

    state = {"config_hash": config_hash(cfg), "done": 0, "history": [], "references": {}, "commits": []}
    if (folder / STATE_FILE).is_file():  # 5) resume
        state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
        learner.load_learned(state["learned"])
    return state


def _train_episode(cfg: DictConfig, episode: Episode, family: Family, usual_lr: float, learner: Any, reward: Any,
                   state: dict[str, Any], folder: Path) -> str:
    """Steps 2) to 5) for one episode, recorded in `state` (saved); what the progress line says about it."""
    import torch

    from adaptive_lr.tracking.run import git_commit

    lr = float(f"{usual_lr * episode.lr_factor:.6g}")
    common = [*family.run_overrides, f"seed={episode.seed}", f"lr={lr}", f"experiment={cfg.name}",
              *cfg.run_overrides]
    tags = {"meta_episode": episode.index, "meta_state": folder.name}
    # 2) the reference run, once per family x seed x LR
    key = f"{family.name}|{episode.seed}|{lr:g}"
    if key not in state["references"]:
        _, _, curve = _run([*common, "scheduler=fixed"], {**tags, "meta_role": "reference"})
        state["references"][key] = curve
    # 3) the episode, from the policy after `index` episodes
    snapshot = folder / "policies" / f"after-{episode.index:03d}.pt"
    learner.save_learned(snapshot)
    result, run_cfg, curve = _run(
        [*common, f"scheduler={cfg.controller.scheduler}", f"scheduler.policy.warm_start='{snapshot}'",
         f"scheduler.policy.seed={episode.index}", *cfg.episode_overrides, *cfg.controller.exploration],
        {**tags, "meta_role": "episode"})
    recorded = torch.load(Path(result.run_dir) / "policy_learned.pt", map_location="cpu",
                          weights_only=True)["episode"]
    # 4) the whole-run return, credited to every decision of the run
    ret = reward(curve, state["references"][key], run_cfg.task.mode)
    learner.learn_episode(recorded, ret)
    state["history"].append({
        "episode": episode.index, "family": family.name, "seed": episode.seed, "lr": lr,
        "lr_factor": episode.lr_factor, "return": ret, "score": reward.score(curve),
        "reference_score": reward.score(state["references"][key]), "decisions": len(recorded),
        "run_id": result.run_id,
    })  # fmt: skip
    commit = git_commit()
    state["commits"] = sorted({*state["commits"], commit})
    state.update(done=episode.index + 1, learned=learner.learned_state())
    _save_atomically(state, folder / STATE_FILE)  # 5)
    return (f"{family.name} seed {episode.seed} lr {lr:g}: return {ret:+.3f} (val {run_cfg.task.metric} "
            f"{reward.score(curve):.4g} vs reference {reward.score(state['references'][key]):.4g}), "
            f"{len(recorded)} decisions")


def meta_train(cfg: DictConfig, out: TextIO | None = None) -> MetaResult:
    """Train the controller of `cfg` over its episodes (resuming a stopped training); the frozen policy."""
    out = out if out is not None else sys.stderr
    families = {f.name: f for f in training_families(cfg)}
    usual = {name: float(compose([*f.run_overrides, *cfg.run_overrides]).lr) for name, f in families.items()}
    learner = _learner(cfg, next(iter(families.values())))
    reward = _instantiate_reward(cfg)
    first = compose([*next(iter(families.values())).run_overrides, *cfg.run_overrides])
    folder = state_dir(cfg, Path(first.paths.runs))
    (folder / "policies").mkdir(parents=True, exist_ok=True)
    state = _load_state(cfg, folder, learner)
    episodes = plan(cfg, list(families.values()), int(cfg.episodes))
    print(f"[{cfg.name}] {len(episodes)} episodes on {', '.join(families)} ({state['done']} done; state "
          f"{folder})", file=out, flush=True)
    t0, started = time.perf_counter(), state["done"]
    for episode in episodes[state["done"]:]:
        summary = _train_episode(cfg, episode, families[episode.family], usual[episode.family], learner, reward,
                                 state, folder)
        done = episode.index + 1 - started
        eta = (time.perf_counter() - t0) / done * (len(episodes) - episode.index - 1)
        print(f"[{cfg.name}] episode {episode.index + 1}/{len(episodes)} {summary} | ETA {eta / 60:.1f} min",
              file=out, flush=True)
    provenance = _provenance(cfg, families, usual, state, reward, type(learner).__name__)
    learner.save_learned(folder / POLICY_FILE, provenance)  # 6)
    (folder / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    _write_history(state["history"], folder / HISTORY_FILE)
    return MetaResult(folder / POLICY_FILE, folder, provenance)


def _instantiate_reward(cfg: DictConfig) -> Any:
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(cfg.reward)
    except InstantiationException as err:
        raise ConfigError(f"meta-train: reward: {one_line(err.__cause__ or err)}") from err


def _provenance(cfg: DictConfig, families: dict[str, Family], usual: dict[str, float], state: dict[str, Any],
                reward: Any, policy_class: str) -> dict[str, Any]:
    """What the frozen policy was trained on and how, in plain values (stored in the policy file)."""
    history = state["history"]
    per_pass = len(families) * len(cfg.seeds) * len(cfg.lr_factors)
    passes = [history[i:i + per_pass] for i in range(0, len(history), per_pass)]
    trained = sorted({h["family"] for h in history})  # the families it has seen runs of
    return {
        "controller": cfg.controller.scheduler, "policy_class": policy_class,
        "families": trained, "training_set": sorted(families),
        "family_runs": {n: list(families[n].run_overrides) for n in trained},
        "held_out": cfg.holdout, "episodes": len(history), "runs": len(history) + len(state["references"]),
        "episode_runs": len(history), "reference_runs": len(state["references"]),
        "seeds": sorted({int(h["seed"]) for h in history}),
        "lrs": {n: sorted({float(h["lr"]) for h in history if h["family"] == n}) for n in trained},
        "usual_lrs": dict(sorted(usual.items())),
        "git_commits": list(state["commits"]), "config_hash": config_hash(cfg),
        "reward": reward.describe(), "reward_config": to_container(cfg.reward),
        "mean_return_per_pass": [float(sum(h["return"] for h in p) / len(p)) for p in passes],
        "meta_config": {k: v for k, v in to_container(cfg).items() if k not in ("evaluation", "reports")},
        "created": datetime.now().isoformat(timespec="seconds"),
    }  # fmt: skip


def _write_history(history: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]) if history else ["episode"])
        writer.writeheader()
        writer.writerows(history)
