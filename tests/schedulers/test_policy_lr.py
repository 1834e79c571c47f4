"""`PolicyLR` in plain PyTorch loops with a real optimizer."""

from __future__ import annotations

import io

import pytest
import torch
from torch.optim import lr_scheduler as tl

from adaptive_lr.schedulers import Fixed, Heuristic, Observation, PolicyLR, StepDecay, Warmup

BASE_LRS = [0.1, 0.02]


def heuristic() -> Heuristic:
    return Heuristic(raise_threshold=0.02, up_factor=1.5, patience=2, cooldown=1, max_lr=0.5)


def build(policy_factory, seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 1)
    groups = [{"params": [model.weight], "lr": BASE_LRS[0]}, {"params": [model.bias], "lr": BASE_LRS[1]}]
    opt = torch.optim.SGD(groups, momentum=0.9)
    return model, opt, PolicyLR(opt, policy_factory())


def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(64, 1, generator=g)
    return x[:48], y[:48], x[48:], y[48:]


def train_epoch(model, opt, x, y, xv, yv) -> torch.Tensor:
    opt.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.step()
    with torch.no_grad():
        return torch.nn.functional.mse_loss(model(xv), yv)


def group_lrs(opt) -> list[float]:
    return [g["lr"] for g in opt.param_groups]


def test_step_with_val_loss_matches_driving_the_policy_directly():
    x, y, xv, yv = data()
    model, opt, sched = build(lambda: Warmup(heuristic(), warmup=3))
    used, losses, actions = [group_lrs(opt)], [], []
    for _ in range(40):
        val_loss = train_epoch(model, opt, x, y, xv, yv)
        sched.step(val_loss)  # a 0-dim tensor, like ReduceLROnPlateau accepts
        losses.append(float(val_loss))
        actions.append(sched.policy.last_decision.action)
        used.append(group_lrs(opt))
        assert sched.get_last_lr() == used[-1]
    assert sched.last_epoch == 40
    assert len(set(actions)) >= 3  # the loop exercised the controller, not only "hold"

    direct = Warmup(heuristic(), warmup=3)
    expected = [direct.reset(BASE_LRS)]
    expected += [direct.observe(Observation(t, t, {"val_loss": v})) for t, v in enumerate(losses, start=1)]
    assert used == expected


def test_step_accepts_a_dict_of_named_metrics():
    _, opt, sched = build(heuristic)
    sched.step({"val_loss": 1.0, "val_acc": torch.tensor(0.3)})
    sched.step({"val_loss": 0.5, "val_acc": 0.4})
    assert sched.policy.last_decision.action == "raise"
    assert group_lrs(opt) == pytest.approx([0.15, 0.03])


def test_step_without_metrics_on_a_feedback_policy_raises_naming_the_monitor():
    _, _, sched = build(lambda: Warmup(heuristic(), warmup=2))
    with pytest.raises(ValueError, match="val_loss"):
        sched.step()
    assert sched.last_epoch == 0


def test_open_loop_policy_steps_without_metrics_like_step_lr():
    _, opt, sched = build(lambda: StepDecay(step_size=10, gamma=0.1))
    _, ref_opt, _ = build(Fixed)
    ref = tl.StepLR(ref_opt, step_size=10, gamma=0.1)
    ours, theirs = [group_lrs(opt)], [group_lrs(ref_opt)]
    for t in range(100):
        opt.step()
        sched.step() if t % 2 else sched.step(123.0)  # a value given to an open-loop policy is ignored
        ref_opt.step()
        ref.step()
        ours.append(group_lrs(opt))
        theirs.append(group_lrs(ref_opt))
    assert torch.allclose(torch.tensor(ours, dtype=torch.float64), torch.tensor(theirs, dtype=torch.float64))


def test_construction_resets_the_policy_and_writes_tick_zero_lrs():
    _, opt, sched = build(lambda: Fixed(lr=0.05))
    assert group_lrs(opt) == [0.05, 0.05] == sched.get_last_lr()
    assert [g["initial_lr"] for g in opt.param_groups] == BASE_LRS
    assert sched.base_lrs == BASE_LRS and sched.last_epoch == 0
    assert isinstance(sched, tl.LRScheduler)


@pytest.mark.parametrize("scheduler_first", [False, True])
def test_state_dict_round_trip_resumes_identically(scheduler_first):
    x, y, xv, yv = data()
    model, opt, sched = build(heuristic)
    trajectory = []
    for _ in range(25):
        sched.step(train_epoch(model, opt, x, y, xv, yv))
        trajectory.append(group_lrs(opt))

    model, opt, sched = build(heuristic)
    for _ in range(12):
        sched.step(train_epoch(model, opt, x, y, xv, yv))
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, buffer)
    assert "optimizer" not in sched.state_dict()

    buffer.seek(0)
    ckpt = torch.load(buffer, weights_only=True)
    model, opt, sched = build(heuristic, seed=123)  # fresh objects, other init: all state comes from ckpt
    model.load_state_dict(ckpt["model"])
    if scheduler_first:
        sched.load_state_dict(ckpt["sched"])
        opt.load_state_dict(ckpt["opt"])
    else:
        opt.load_state_dict(ckpt["opt"])
        sched.load_state_dict(ckpt["sched"])
    assert sched.last_epoch == 12 and sched.get_last_lr() == trajectory[11] == group_lrs(opt)
    resumed = []
    for _ in range(13):
        sched.step(train_epoch(model, opt, x, y, xv, yv))
        resumed.append(group_lrs(opt))
    assert resumed == trajectory[12:]
