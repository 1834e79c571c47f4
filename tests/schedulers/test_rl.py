"""The learned controllers (`schedulers.rl`) and their features on fixed metric sequences.

Unless a test says otherwise the controllers use the factors 0.5 / 1 / 2 from a base LR of 1 (so every LR is an
exact power of 2), bounds [1/64, 4], a horizon of 20 ticks and seed 3. Rewards follow the module's rule: the
relative improvement minus the trend of earlier changes (EMA, beta 0.8), divided by 0.1, clipped to [-1, 1].
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from adaptive_lr.schedulers import ACTIONS, Observation, PolicyConfigError, PolicyLR
from adaptive_lr.schedulers.features import FEATURE_NAMES, FeatureExtractor
from adaptive_lr.schedulers.rl import QLearning, ThompsonBandit

NAN, INF = math.nan, math.inf
VALUES = [8, 4, 2, 3, 3, 3, 3, NAN, 2.5, 2.4, 2.4, 2.4, 1.0, 0.5, 0.6, 0.6, 0.6, 0.6, 0.3]
# rewards for VALUES, by hand: t2 -50% and t3 -50% (vs trends 0, -0.1) saturate at +1; t4 +50% is -1; the flat
# ticks earn -(0 - trend)/0.1 with trend -0.044, -0.0352, -0.02816; NaN is -1; 2.5 after the NaN (trend pushed up
# by the NaN's +1) is a full +1.
REWARDS_HEAD = [1.0, 1.0, -1.0, -0.44, -0.352, -0.2816, -1.0, 1.0]
BASE_LRS = (1.0, 0.25)


def kwargs(**overrides):
    return {"factors": [0.5, 1.0, 2.0], "min_lr": 1 / 64, "max_lr": 4.0, "horizon": 20, "seed": 3, **overrides}


def run(policy, values, base_lrs=BASE_LRS, monitor="val_loss"):
    """Group-0 LR at every tick (tick 0 first), the actions, the rewards and the group-1 LRs."""
    lrs = [policy.reset(list(base_lrs))]
    actions, rewards = [], []
    for t, v in enumerate(values, start=1):
        lrs.append(policy.observe(Observation(step=t, epoch=t, metrics={monitor: v, "other": 1.0})))
        actions.append(policy.last_decision.action)
        rewards.append(policy.last_decision.extra["reward"])
    return [row[0] for row in lrs], actions, rewards, [row[1] for row in lrs]


# -- features ------------------------------------------------------------------------------------------------------
def test_features_are_scale_free_sign_normalised_and_in_fixed_order():
    fx = FeatureExtractor("val_acc", mode="max", horizon=4, val_key="val_loss", grad_norm_key="grad_norm", beta=0.5)
    assert fx.names == FEATURE_NAMES == ("slope", "noise", "val_trend", "grad_trend", "log_lr", "progress")
    first = fx.update(Observation(1, 1, {"val_acc": 0.5, "val_loss": 2.0, "grad_norm": 4.0}), lr=0.2, base_lr=0.1,
                      tick=1)
    assert first == [0.0, 0.0, 0.0, 0.0, pytest.approx(math.log(2)), 0.25]
    # accuracy 0.5 -> 0.6 is a 20% improvement: slope -0.2 (lower is better); val loss 2 -> 1.5 is -25%
    x = fx.update(Observation(2, 2, {"val_acc": 0.6, "val_loss": 1.5, "grad_norm": 5.0}), lr=0.1, base_lr=0.1,
                  tick=2)
    assert x == pytest.approx([-0.2, math.sqrt(0.5 * 0.04), 0.5 * -0.25, 0.25, 0.0, 0.5])
    assert fx.last_change == pytest.approx(-0.2) and fx.trend == pytest.approx(-0.1)
    # a NaN is the worst clipped change (+1), is not remembered, and progress saturates at 1
    x = fx.update(Observation(9, 9, {"val_acc": NAN}), lr=0.1, base_lr=0.1, tick=9)
    assert x[0] == 1.0 and x[2] == pytest.approx(-0.125) and x[3] == 0.0 and x[5] == 1.0
    assert math.isnan(fx.last_change) and fx.prev == -0.6
    restored = FeatureExtractor("val_acc", mode="max", horizon=4, beta=0.5)
    restored.load_state_dict(json.loads(json.dumps(fx.state_dict())))
    assert restored.state_dict() == pytest.approx(fx.state_dict(), nan_ok=True)


def test_missing_optional_metrics_give_zero_features():
    fx = FeatureExtractor("train_loss_step", horizon=10, val_key="val_loss", grad_norm_key="grad_norm")
    fx.update(Observation(1, 0, {"train_loss_step": 1.0}), lr=1.0, base_lr=1.0, tick=1)
    x = fx.update(Observation(2, 0, {"train_loss_step": 4.0}), lr=1.0, base_lr=1.0, tick=2)
    assert x[0] == 1.0  # +300% clipped to +1
    assert x[2] == 0.0 and x[3] == 0.0


# -- exact sequences -------------------------------------------------------------------------------------------------
def test_greedy_q_learning_keeps_while_rewarded_then_moves_and_cuts_on_nan():
    policy = QLearning(**kwargs(epsilon=0.0, epsilon_min=0.0))
    lrs, actions, rewards, group1 = run(policy, VALUES)
    assert rewards[0] != rewards[0]  # NaN: the first value has nothing to be compared with
    assert rewards[1:9] == pytest.approx(REWARDS_HEAD)
    assert actions == [
        "keep",  # all Q are 0: a tie goes to the factor closest to 1
        "keep", "keep",  # rewarded +1, +1: Q(keep) > 0
        "keep", "keep",  # the -1 at t4 and the -0.44 at t5 lower Q(keep), still above 0
        "scale_down",  # Q(keep) < 0 now; down and up tie at 0 and are equally mild: the first one (down)
        "scale_up",  # down just earned -0.28: up is the only action still at 0
        "cut_nonfinite",  # NaN: forced cut by the smallest factor, and the LR may never exceed 0.5 again
        *["scale_down"] * 11,  # after the NaN every action taken looked bad or down looked best
    ]
    assert lrs == [1, 1, 1, 1, 1, 1, 0.5, 1, 0.5, 0.25, 0.125, 1 / 16, 1 / 32, *[1 / 64] * 7]
    assert group1 == [max(lr / 4, 1 / 64) for lr in lrs]  # the same factors, within the same bounds


def test_thompson_bandit_exact_sequence_under_seed():
    lrs, actions, rewards, _ = run(ThompsonBandit(**kwargs()), VALUES)
    assert rewards[1:9] == pytest.approx(REWARDS_HEAD)
    assert actions == [
        "keep",  # the first value only sets the reference: no exploring without any evidence
        "scale_down", "scale_up", "keep", "keep", "scale_down", "scale_down", "cut_nonfinite", "scale_down",
        "scale_up", "scale_down", "scale_down", "keep", "keep", "scale_down", "scale_down", "scale_up", "scale_up",
        "keep",
    ]
    assert lrs == [1, 1, 0.5, 1, 1, 1, 0.5, 0.25, 0.125, 1 / 16, 0.125, 1 / 16, 1 / 32, 1 / 32, 1 / 32, 1 / 64,
                   1 / 64, 1 / 32, 1 / 16, 1 / 16]
    assert max(lrs[8:]) == 0.125  # the ceiling left by the NaN at LR 0.25: exploration never goes back over it


def test_epsilon_greedy_q_learning_exact_sequence_under_seed():
    lrs, actions, _, _ = run(QLearning(**kwargs(epsilon=0.5)), VALUES)
    assert actions[:8] == ["keep", "scale_down", "scale_down", "keep", "scale_down", "keep", "scale_up",
                           "cut_nonfinite"]
    assert lrs[:9] == [1, 1, 0.5, 0.25, 0.25, 0.125, 0.125, 0.25, 0.125]
    assert actions[8:16] == ["scale_up"] * 8 and lrs[9:17] == [0.125] * 8  # raises, held at the NaN's ceiling
    assert lrs[-2:] == [1 / 16, 1 / 16]


def test_greedy_bandit_with_no_data_keeps_the_lr():
    policy = ThompsonBandit(**kwargs(exploration=0.0))
    lrs, actions, _, _ = run(policy, [5.0, 4.0, 3.0])
    # t1: no data, all means 0 -> keep; t2: keep earned +1 -> its mean is the only positive one
    assert actions == ["keep", "keep", "keep"] and lrs == [1, 1, 1, 1]


# -- structural facts ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [ThompsonBandit, QLearning])
def test_nan_and_blowup_force_the_deepest_cut_and_cap_later_lrs(make):
    policy = make(**kwargs(factors=[0.8, 0.5, 1.0, 2.0]))
    lrs, actions, rewards, _ = run(policy, [1.0, INF, 0.9, 2.0, *[2.0 * 0.7**k for k in range(1, 30)]])
    assert actions[1] == "cut_nonfinite" and actions[3] == "cut_rise"  # 0.9 -> 2.0 more than doubles
    assert rewards[1] == rewards[3] == -1.0
    assert lrs[2] == lrs[1] * 0.5 and lrs[4] == lrs[3] * 0.5
    assert policy.last_decision.extra["multiplier"] in (0.8, 0.5, 1.0, 2.0)
    assert max(lrs[4:]) <= lrs[4]  # capped below the LR that blew up, however good the later values look
    assert {"cut_nonfinite", "cut_rise", "scale_down", "scale_up", "keep"} >= set(actions)
    assert set(actions) <= set(ACTIONS)


@pytest.mark.parametrize("make", [ThompsonBandit, QLearning])
def test_lr_stays_within_bounds_on_a_wild_sequence(make):
    g = torch.Generator().manual_seed(0)
    values = (torch.rand(200, generator=g) * 10).tolist()
    lrs, actions, _, group1 = run(make(**kwargs(divergence_rise=None)), values, base_lrs=(4.0, 1 / 64))
    assert lrs[0] == 4.0 and group1[0] == 1 / 64
    assert all(1 / 64 <= lr <= 4.0 for lr in lrs + group1)
    with pytest.raises(PolicyConfigError, match="starting LR 8 is outside its bounds"):
        run(make(**kwargs(divergence_rise=None)), values, base_lrs=(8.0, 1e-3))  # never clamped silently
    assert len(set(actions)) == 3  # the sequence exercised every action


@pytest.mark.parametrize("make", [ThompsonBandit, QLearning])
def test_reward_sign_follows_mode(make):
    _, _, rewards, _ = run(make(**kwargs()), [1.0, 0.95, 0.855])
    assert rewards[1] == pytest.approx(0.5)  # -5% loss, trend 0
    assert rewards[2] == pytest.approx(0.9)  # -10% vs trend 0.2 * -5% = -1%: 9% better than the trend
    _, _, rewards, _ = run(make(**kwargs(mode="max", monitor="val_acc")), [0.5, 0.525, 0.5], monitor="val_acc")
    assert rewards[1] == pytest.approx(0.5)  # +5% accuracy is an improvement
    assert rewards[2] < 0
    _, _, rewards, _ = run(make(**kwargs(reward_baseline=False)), [1.0, 0.95, 0.855])
    assert rewards[2] == pytest.approx(1.0)  # without the baseline: -10% / 0.1


def test_decision_extra_holds_features_reward_and_learner_state():
    policy = QLearning(**kwargs())
    run(policy, [2.0, 1.0, 1.5])
    d = policy.last_decision
    assert set(FEATURE_NAMES) | {"reward", "multiplier", "epsilon", "explored", "q", "td_error"} == set(d.extra)
    assert all(isinstance(v, float) for v in d.extra.values())
    assert d.extra["epsilon"] == pytest.approx(0.1 * 0.97**2) and d.extra["progress"] == pytest.approx(3 / 20)
    bandit = ThompsonBandit(**kwargs())
    run(bandit, [2.0, 1.0, 1.5])
    assert {"sampled_reward", "mean_reward"} <= set(bandit.last_decision.extra)


def test_missing_monitor_names_what_is_there():
    policy = ThompsonBandit()
    policy.reset([0.1])
    with pytest.raises(KeyError, match="val_loss"):
        policy.observe(Observation(step=1, epoch=0, metrics={"train_loss": 1.0}))


# -- persistence -----------------------------------------------------------------------------------------------------
SETUPS = {
    "bandit": (ThompsonBandit, kwargs(factors=[0.5, 0.8, 1.0, 1.25, 2.0])),
    "qlearning": (QLearning, kwargs(epsilon=0.6, epsilon_decay=0.99)),
}
FACTORIES = {name: (lambda cls=cls, kw=kw: cls(**kw)) for name, (cls, kw) in SETUPS.items()}


def observe(policy, t):
    lrs = policy.observe(Observation(step=t, epoch=t, metrics={"val_loss": VALUES[t - 1]}))
    return lrs, policy.last_decision.action, policy.last_decision.extra["reward"]


@pytest.mark.parametrize("name", FACTORIES)
def test_resume_at_every_tick_continues_identically_including_the_rng(name):
    reference = FACTORIES[name]()
    reference.reset(list(BASE_LRS))
    expected = [observe(reference, t) for t in range(1, len(VALUES) + 1)]
    for k in range(len(VALUES) + 1):
        first = FACTORIES[name]()
        first.reset(list(BASE_LRS))
        for t in range(1, k + 1):
            observe(first, t)
        state = json.loads(json.dumps(first.state_dict()))  # plain, serialisable values only
        resumed = FACTORIES[name]()  # never reset: the state alone must be enough
        resumed.load_state_dict(state)
        assert resumed.lrs == first.lrs and resumed.tick == k
        rest = [observe(resumed, t) for t in range(k + 1, len(VALUES) + 1)]
        assert json.dumps(rest) == json.dumps(expected[k:]), f"resumed at {k}"  # NaN rewards compare equal too


@pytest.mark.parametrize("name", FACTORIES)
def test_save_learned_and_warm_start_round_trip(name, tmp_path):
    trained = FACTORIES[name]()
    run(trained, VALUES)
    path = tmp_path / "policy_learned.pt"
    trained.save_learned(path)
    cls, kw = SETUPS[name]
    warm = cls(**kw, warm_start=str(path))
    assert warm.warm_started and not trained.warm_started
    assert warm.learned_state() == trained.learned_state()
    # reset starts a new trajectory but keeps what was learned: both continue identically from a fresh start
    assert run(warm, VALUES[:8]) == run(trained, VALUES[:8])
    assert cls(**kw).learned_state() != trained.learned_state()  # a cold start has learned nothing


def test_warm_start_mismatches_are_named(tmp_path):
    path = tmp_path / "q.pt"
    QLearning(**kwargs()).save_learned(path)
    with pytest.raises(PolicyConfigError, match=r"^warm_start .* has class='QLearning'.*'ThompsonBandit'"):
        ThompsonBandit(**kwargs(warm_start=str(path)))
    with pytest.raises(PolicyConfigError, match=r"^warm_start .* has factors=\[0.5, 1.0, 2.0\]"):
        QLearning(**kwargs(factors=[0.5, 1.0, 1.5], warm_start=str(path)))
    with pytest.raises(PolicyConfigError, match=r"^warm_start .*missing\.pt.* does not exist"):
        QLearning(warm_start=str(tmp_path / "missing.pt"))
    with pytest.raises(PolicyConfigError, match=r"learned 'weights' has shape \(2, 7\), expected \(3, 7\)"):
        QLearning(**kwargs()).load_learned({"weights": [[0.0] * 7] * 2})
    with pytest.raises(PolicyConfigError, match=r"learned state lacks 'b'"):
        ThompsonBandit(**kwargs()).load_learned({"precision": [[[0.0] * 7] * 7] * 3})


# -- config errors ---------------------------------------------------------------------------------------------------
BAD = [
    (lambda: QLearning(monitor=""), "monitor"),
    (lambda: QLearning(mode="up"), "mode"),
    (lambda: QLearning(factors=[1.0, 2.0]), "factors"),  # no multiplier < 1 to cut with
    (lambda: QLearning(factors=[0.5, 0.5, 2.0]), "factors"),
    (lambda: QLearning(factors=[0.5, -1.0]), "factors"),
    (lambda: QLearning(min_lr=0.0), "min_lr"),
    (lambda: QLearning(min_lr=1e-3, max_lr=1e-4), "max_lr"),
    (lambda: QLearning(horizon=0), "horizon"),
    (lambda: QLearning(val_key=""), "val_key"),
    (lambda: QLearning(grad_norm_key=3), "grad_norm_key"),
    (lambda: QLearning(reward_scale=0.0), "reward_scale"),
    (lambda: QLearning(reward_baseline="yes"), "reward_baseline"),
    (lambda: QLearning(divergence_rise=-1.0), "divergence_rise"),
    (lambda: QLearning(seed=-1), "seed"),
    (lambda: QLearning(alpha=0.0), "alpha"),
    (lambda: QLearning(gamma=1.0), "gamma"),
    (lambda: QLearning(epsilon=1.5), "epsilon"),
    (lambda: QLearning(epsilon=0.1, epsilon_min=0.2), "epsilon_min"),
    (lambda: QLearning(epsilon_decay=0.0), "epsilon_decay"),
    (lambda: ThompsonBandit(prior_precision=0.0), "prior_precision"),
    (lambda: ThompsonBandit(noise=-1.0), "noise"),
    (lambda: ThompsonBandit(exploration=-0.5), "exploration"),
    (lambda: ThompsonBandit(discount=0.0), "discount"),
    (lambda: ThompsonBandit(discount=1.5), "discount"),
]


@pytest.mark.parametrize("build, name", BAD, ids=[f"{i}-{name}" for i, (_, name) in enumerate(BAD)])
def test_bad_argument_is_named(build, name):
    with pytest.raises(PolicyConfigError, match=rf"^{name} must"):
        build()


# -- driving -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [ThompsonBandit, QLearning])
def test_policy_lr_drives_the_optimizer_and_resumes(make):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(64, 1, generator=g)

    def setup():
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        return model, opt, PolicyLR(opt, make(min_lr=1e-4, max_lr=0.5, horizon=30, seed=1))

    def epoch(model, opt, sched):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x[:48]), y[:48]).backward()
        opt.step()
        with torch.no_grad():
            sched.step({"val_loss": torch.nn.functional.mse_loss(model(x[48:]), y[48:])})
        return opt.param_groups[0]["lr"]

    model, opt, sched = setup()
    used = [epoch(model, opt, sched) for _ in range(30)]
    assert used == [lr for lr in used if 1e-4 <= lr <= 0.5] and len(set(used)) > 3
    assert sched.get_last_lr() == sched.policy.lrs == [used[-1]]

    model2, opt2, sched2 = setup()
    head = [epoch(model2, opt2, sched2) for _ in range(12)]
    saved = (model2.state_dict(), opt2.state_dict(), sched2.state_dict())
    model3, opt3, sched3 = setup()
    model3.load_state_dict(saved[0])
    opt3.load_state_dict(saved[1])
    sched3.load_state_dict(saved[2])
    assert head + [epoch(model3, opt3, sched3) for _ in range(18)] == used


@pytest.mark.parametrize("scheduler, cls", [("rl_bandit", ThompsonBandit), ("rl_qlearning", QLearning)])
def test_configs_compose_and_build(scheduler, cls):
    from adaptive_lr.config import compose
    from adaptive_lr.runner import build

    cfg = compose([f"scheduler={scheduler}", "task=xor_clean", "data.n_samples=80", "seed=4"])
    policy = build(cfg)["policy"]
    assert type(policy) is cls and not policy.warm_started
    assert policy.features.horizon == cfg.trainer.max_epochs and policy.seed == 4
    assert policy.factors == (0.5, 0.8, 1.0, 1.25, 2.0) and policy.monitor == "val_loss"


def test_a_warmed_up_controller_still_saves_what_it_learned(tmp_path):
    from adaptive_lr.schedulers import Fixed, Warmup

    inner = ThompsonBandit(**kwargs())
    wrapped = Warmup(inner, warmup=3)
    assert wrapped.learns and not Warmup(Fixed(), warmup=3).learns
    wrapped.save_learned(tmp_path / "learned.pt")
    inner.save_learned(tmp_path / "direct.pt")
    assert torch.load(tmp_path / "learned.pt", weights_only=False)["class"] == "ThompsonBandit"
    with pytest.raises(NotImplementedError, match="Fixed learns nothing"):
        Warmup(Fixed(), warmup=3).save_learned(tmp_path / "none.pt")
