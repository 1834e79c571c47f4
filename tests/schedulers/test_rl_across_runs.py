"""The learned controllers' switches for learning across runs (`schedulers.rl`: online, explore, record_episode):
a frozen policy changes nothing it learned and never explores, a recorded episode holds every decision, and a
whole-run return is credited to each of them exactly as the module docstring says."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from adaptive_lr.schedulers import Observation, PolicyConfigError
from adaptive_lr.schedulers.rl import QLearning, ThompsonBandit

VALUES = [8, 4, 2, 3, 3, 3, 2.5, 2.4, 2.4, 1.0, 0.5, 0.6, 0.6, 0.3]
FACTORS = [0.5, 1.0, 2.0]


def kwargs(**overrides):
    return {"factors": FACTORS, "min_lr": 1 / 64, "max_lr": 4.0, "horizon": 20, "seed": 3, **overrides}


def drive(policy, values=VALUES, base_lr=1.0):
    """(LRs from tick 0, the decisions' multipliers)."""
    lrs = [policy.reset([base_lr])[0]]
    multipliers = []
    for t, v in enumerate(values, start=1):
        lrs.append(policy.observe(Observation(step=t, epoch=t, metrics={"val_loss": v}))[0])
        multipliers.append(policy.last_decision.extra["multiplier"])
    return lrs, multipliers


def trained(cls, **kw):
    """A policy that has learned something (one online run over VALUES)."""
    policy = cls(**kwargs(**kw))
    drive(policy)
    return policy


LEARNERS = {"bandit": ThompsonBandit, "qlearning": lambda **kw: QLearning(epsilon=0.5, epsilon_decay=1.0,
                                                                            epsilon_min=0.5, **kw)}


@pytest.mark.parametrize("name", LEARNERS)
def test_a_frozen_policy_learns_nothing_and_never_explores(name, tmp_path):
    make = LEARNERS[name]
    source = make(**kwargs())
    drive(source)
    path = tmp_path / "policy.pt"
    source.save_learned(path)
    frozen = make(**kwargs(warm_start=str(path), online=False, explore=False))
    assert frozen.frozen and not frozen.learns  # nothing worth saving after a run
    before = json.dumps(frozen.learned_state())
    rng_before = json.dumps(frozen.rng.bit_generator.state)
    _, multipliers = drive(frozen)
    assert json.dumps(frozen.learned_state()) == before  # its tables / weights unchanged by the run
    assert json.dumps(frozen.rng.bit_generator.state) == rng_before  # not one random draw: no exploration
    # every choice is the greedy one on what was learned (the first decision keeps, the shield may cut)
    greedy = make(**kwargs(warm_start=str(path), online=False, explore=False))
    assert drive(greedy)[1] == multipliers  # deterministic whatever the seed
    other_seed = make(**kwargs(warm_start=str(path), online=False, explore=False, seed=99))
    assert drive(other_seed)[1] == multipliers


@pytest.mark.parametrize("name", LEARNERS)
def test_online_learning_changes_the_tables_and_exploring_draws(name):
    make = LEARNERS[name]
    online = make(**kwargs())
    before = json.dumps(online.learned_state())
    state = json.dumps(online.rng.bit_generator.state)
    drive(online)
    assert json.dumps(online.learned_state()) != before and json.dumps(online.rng.bit_generator.state) != state
    exploring = make(**kwargs(online=False))  # a meta-training episode: explores, learns nothing in the run
    drive(exploring)
    assert json.dumps(exploring.learned_state()) == before
    assert json.dumps(exploring.rng.bit_generator.state) != state


def test_greedy_q_learning_picks_the_highest_q_and_the_bandit_its_highest_posterior_mean():
    q = QLearning(**kwargs(online=False, explore=False))
    q.weights = np.zeros((3, q.dim))
    q.weights[2, 0] = 1.0  # x2 is worth +1 everywhere
    _, multipliers = drive(q, values=[8, 4, 2, 1.9])
    assert multipliers == [1.0, 2.0, 2.0, 2.0]  # the first value only sets the reference: keep
    bandit = ThompsonBandit(**kwargs(online=False, explore=False, exploration=5.0))
    bandit.b[0, 0] = 3.0  # x0.5's posterior mean is 3 / (1 + 0) on the bias, the others 0
    _, multipliers = drive(bandit, values=[8, 4, 2, 1.9])
    assert multipliers == [1.0, 0.5, 0.5, 0.5]


@pytest.mark.parametrize("cls", [ThompsonBandit, QLearning])
def test_a_recorded_episode_holds_every_decision_with_its_features_and_action(cls, tmp_path):
    policy = cls(**kwargs(record_episode=True))
    lrs = [policy.reset([1.0])[0]]
    expected = []
    for t, v in enumerate(VALUES, start=1):
        lrs.append(policy.observe(Observation(step=t, epoch=t, metrics={"val_loss": v}))[0])
        extra = policy.last_decision.extra
        phi = [1.0, *(extra[n] for n in policy.features.names)]
        expected.append((phi, FACTORS.index(extra["multiplier"])))
    assert [(list(p), a) for p, a in policy.episode] == expected and len(expected) == len(VALUES)
    policy.save_learned(tmp_path / "run.pt")
    saved = torch.load(tmp_path / "run.pt", weights_only=True)
    assert saved["episode"] == [[p, a] for p, a in expected]
    policy.reset([1.0])  # a new run starts a new episode
    assert policy.episode == []
    cls(**kwargs()).save_learned(tmp_path / "cold.pt")  # without record_episode: no episode in the file
    assert "episode" not in torch.load(tmp_path / "cold.pt", weights_only=True)


@pytest.mark.parametrize("cls", [ThompsonBandit, QLearning])
def test_a_recorded_episode_survives_save_and_resume_and_old_checkpoints_still_load(cls):
    policy = cls(**kwargs(record_episode=True))
    drive(policy, VALUES[:6])
    state = json.loads(json.dumps(policy.state_dict()))
    resumed = cls(**kwargs(record_episode=True))
    resumed.load_state_dict(state)
    assert resumed.episode == policy.episode and len(resumed.episode) == 6
    del state["episode"]  # a checkpoint of a run started before episodes were recorded
    old = cls(**kwargs())
    old.load_state_dict(state)
    assert old.episode == []


def test_whole_run_return_is_credited_to_every_decision_q_learning_by_hand():
    q = QLearning(**kwargs(alpha=0.5))
    phi_a, phi_b = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5], [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    q.learn_episode([(phi_a, 2), (phi_b, 0), (phi_a, 2)], 0.8)
    # NLMS towards G = 0.8: w += 0.5 * (0.8 - w.phi) * phi / |phi|^2, decision by decision
    w2 = 0.5 * 0.8 * np.array(phi_a) / 1.25  # first (phi_a, 2): from 0
    w2 = w2 + 0.5 * (0.8 - w2 @ phi_a) * np.array(phi_a) / 1.25  # third: the same decision again
    w0 = 0.5 * 0.8 * np.array(phi_b) / 2.0
    assert np.allclose(q.weights[2], w2) and np.allclose(q.weights[0], w0) and not q.weights[1].any()
    assert math.isclose(float(q.weights[2] @ phi_a), 0.8 * (1 - 0.5 ** 2))  # halfway twice towards G


def test_whole_run_return_is_credited_to_every_decision_bandit_by_hand():
    bandit = ThompsonBandit(**kwargs(discount=0.5))  # within-run forgetting does not apply across runs
    phi_a, phi_b = np.arange(7.0) / 10, np.ones(7)
    bandit.learn_episode([(phi_a, 1), (phi_b, 1), (phi_a, 0)], -0.4)
    assert np.allclose(bandit.precision[1], np.outer(phi_a, phi_a) + np.outer(phi_b, phi_b))
    assert np.allclose(bandit.b[1], -0.4 * (phi_a + phi_b))
    assert np.allclose(bandit.precision[0], np.outer(phi_a, phi_a)) and np.allclose(bandit.b[0], -0.4 * phi_a)
    assert not bandit.precision[2].any() and not bandit.b[2].any()


def test_a_bad_episode_or_return_is_refused():
    q = QLearning(**kwargs())
    with pytest.raises(ValueError, match="return must be finite"):
        q.learn_episode([([1.0] * 7, 0)], math.nan)
    with pytest.raises(ValueError, match="does not fit 7 features and 3 actions"):
        q.learn_episode([([1.0] * 7, 3)], 0.5)
    with pytest.raises(ValueError, match="does not fit"):
        q.learn_episode([([1.0] * 6, 0)], 0.5)


@pytest.mark.parametrize("flag", ["online", "explore", "record_episode"])
def test_a_switch_that_is_not_a_bool_is_named(flag):
    with pytest.raises(PolicyConfigError, match=rf"^{flag} must be a bool"):
        QLearning(**{flag: "no"})


def test_provenance_is_saved_and_read_back_by_a_warm_start(tmp_path):
    path = tmp_path / "meta.pt"
    trained(QLearning).save_learned(path, provenance={"families": ["digits", "xor_noisy"], "runs": 12})
    warm = QLearning(**kwargs(warm_start=str(path)))
    assert warm.provenance == {"families": ["digits", "xor_noisy"], "runs": 12}
    assert QLearning(**kwargs()).provenance is None
