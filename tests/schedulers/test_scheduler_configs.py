"""The scheduler configs as a run composes them: configs/scheduler/_base_.yaml (and the `_bounds_` and `_rl_`
blocks) under every scheduler YAML, checked at compose time; the warmup composed in config (`scheduler.build`);
one `_target_` style; and the config hashes runs were keyed by before the configs shared a base."""

from __future__ import annotations

import pytest
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf

from adaptive_lr.config import ConfigError, SchedulerConfigError, available, compose, upgrade_stored
from adaptive_lr.runner import config_hash
from adaptive_lr.schedulers import Heuristic, Observation, Warmup

#: config_hash of `task=mnist scheduler=<name>` and of `task=xor_clean scheduler=<name> scheduler.warmup.ticks=3`,
#: computed with the configs and code of commit 2f169cb, before the scheduler configs shared `_base_.yaml` and named
#: their classes by module (issue 18). The study's runs and grid cells are keyed by these hashes: they must not move.
HASHES_BEFORE = {
    "cosine": ("5d0986ccb017", "75ff732f985c"),
    "feedback_wsd": ("4825cf057677", "20425bc99c41"),
    "fixed": ("48b5c5d31074", "9cff2baab2b0"),
    "heuristic": ("1deeda103204", "daea64995c1a"),
    "hypergradient": ("340c240e1d66", "3c9d2526d882"),
    "line_search": ("9c658a15b053", "f79eb0c5e6fc"),
    "linear": ("7d29f5e9e2b9", "87f83272c4a5"),
    "onecycle": ("f126ad8f3211", "038162d3c007"),
    "plateau": ("6ca54fd6abb0", "731243de86e6"),
    "plateau_feedback": ("31f7501ec057", "3ac66be7cb53"),
    "rl_bandit": ("83632eb54b8b", "9fe87a07bbc9"),
    "rl_qlearning": ("bc639ff6c136", "5f68997d1a95"),
    "step": ("657af3443485", "ad0c38918e89"),
    "wsd": ("3ef852268caf", "c68afcd6d713"),
}


@pytest.mark.parametrize("name", sorted(HASHES_BEFORE))
def test_a_scheduler_config_hashes_as_it_did_before_the_shared_base(name):
    plain, warmed = HASHES_BEFORE[name]
    assert config_hash(compose(["task=mnist", f"scheduler={name}"])) == plain
    assert config_hash(compose(["task=xor_clean", f"scheduler={name}", "scheduler.warmup.ticks=3"])) == warmed


@pytest.mark.parametrize("name", available("scheduler"))
def test_every_scheduler_config_composes_and_builds_its_policy_by_module_path(name):
    """Each YAML gets the base's keys, and every `_target_` in its policy is the module path of the class it
    names (one style: a new policy needs no re-export)."""
    cfg = compose(["task=xor_clean", f"scheduler={name}"]).scheduler
    assert set(cfg) == {"name", "adaptive", "interval", "frequency", "warmup", "policy", "build"}
    assert cfg.build.policy == cfg.policy and cfg.build.ticks == cfg.warmup.ticks == 0
    policy = instantiate(cfg.build)
    assert type(policy) is get_object(cfg.policy._target_)  # no warmup: the bare policy
    targets, nodes = [], [cfg.policy]
    while nodes:
        node = nodes.pop()
        targets += [node._target_] if "_target_" in node else []
        nodes += [v for v in node.values() if OmegaConf.is_dict(v)]
    for target in targets:
        found = get_object(target)
        assert f"{found.__module__}.{found.__qualname__}" == target


def test_underscore_files_are_blocks_not_choices():
    assert not [name for name in available("scheduler") if name.startswith("_")]
    with pytest.raises(ConfigError, match="unknown scheduler '_base_'"):
        compose(["scheduler=_base_"])


def test_the_rl_block_and_the_bounds_block_reach_both_learned_controllers():
    bandit, qlearning = (compose([f"scheduler={name}"]).scheduler for name in ("rl_bandit", "rl_qlearning"))
    shared = {k: v for k, v in bandit.policy.items() if k in qlearning.policy and k != "_target_"}
    assert {k: qlearning.policy[k] for k in shared} == shared
    assert {"monitor", "factors", "horizon", "seed", "warm_start", "min_lr", "max_factor"} <= set(shared)
    assert bandit.adaptive is qlearning.adaptive is True


@pytest.mark.parametrize("overrides, names", [
    (["scheduler.interval=hourly"], ["scheduler.interval", "['step', 'epoch']", "'hourly'"]),
    (["scheduler.frequency=0"], ["scheduler.frequency", "an int >= 1", "got 0"]),
    (["scheduler.frequency=true"], ["scheduler.frequency", "an int >= 1", "got True"]),
    (["scheduler.warmup.ticks=-2"], ["scheduler.warmup.ticks", "an int >= 0", "got -2"]),
    (["scheduler.warmup.ticks=1.5"], ["scheduler.warmup.ticks", "an int >= 0", "got 1.5"]),
    (["scheduler.warmup.start_factor=0"], ["scheduler.warmup.start_factor", "(0, 1]", "got 0"]),
    (["scheduler.adaptive=maybe"], ["scheduler.adaptive", "a bool", "'maybe'"]),
    (["scheduler=hypergradient", "scheduler.interval=epoch"],
     ["scheduler.interval must be 'step' for Hypergradient", "got 'epoch'"]),
    (["scheduler=feedback_wsd", "scheduler.policy.policy._target_=adaptive_lr.schedulers.hypergradient.Hypergradient"],
     ["scheduler.interval must be 'step' for Hypergradient", "got 'epoch'"]),  # an inner policy counts too
    (["scheduler.policy._target_=adaptive_lr.schedulers.nope.Nope"], ["scheduler.policy._target_", "nope.Nope"]),
])
def test_a_bad_scheduler_block_fails_at_compose_time_with_one_line(overrides, names):
    with pytest.raises(SchedulerConfigError) as err:
        compose(["task=xor_clean", *overrides])
    message = str(err.value)
    assert "\n" not in message and all(name in message for name in names), message


def test_a_warmup_is_composed_in_config_around_any_policy_with_the_runners_old_lrs():
    """`scheduler.build` with warmup ticks is `Warmup(policy, ticks, start_factor)`, which the runner built itself
    before: the same LRs tick by tick."""
    cfg = compose(["task=xor_clean", "scheduler=heuristic", "scheduler.warmup.ticks=3",
                   "scheduler.warmup.start_factor=0.5"]).scheduler
    built = instantiate(cfg.build)
    by_hand = Warmup(instantiate(cfg.policy), warmup=3, start_factor=0.5)
    assert type(built) is Warmup and type(built.policy) is Heuristic
    losses = [8.0, 4.0, 2.0, 3.0, 3.0, 3.0, 3.0, 2.5, 2.0]
    lrs = []
    for policy in (built, by_hand):
        lrs.append([policy.reset([0.01, 0.1])])
        lrs[-1] += [policy.observe(Observation(step=t, epoch=t, metrics={"val_loss": v}))
                    for t, v in enumerate(losses, 1)]
    assert lrs[0] == lrs[1] and lrs[0][0] == [0.005, 0.05]


def test_a_config_stored_before_the_build_node_is_upgraded_to_build_the_same_policy():
    cfg = compose(["task=xor_clean", "scheduler=cosine", "scheduler.warmup.ticks=2"])
    stored = OmegaConf.create(OmegaConf.to_container(cfg))
    del stored.scheduler["build"]
    upgraded = upgrade_stored(stored)
    assert OmegaConf.to_container(upgraded) == OmegaConf.to_container(cfg) and config_hash(upgraded) == config_hash(cfg)
    assert type(instantiate(upgraded.scheduler.build)) is Warmup


def test_a_build_that_does_more_than_restate_policy_and_warmup_changes_the_hash():
    plain = compose(["task=xor_clean", "scheduler=cosine"])
    other = compose(["task=xor_clean", "scheduler=cosine", "scheduler.build.ticks=2"])
    assert config_hash(other) != config_hash(plain)
