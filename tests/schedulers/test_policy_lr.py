"""`PolicyLR` in plain PyTorch loops with a real optimizer."""

from __future__ import annotations

import io
import math
import warnings

import pytest
import torch
from torch.optim import lr_scheduler as tl

from adaptive_lr.schedulers import (
    Cosine,
    CosineWarmRestarts,
    Exponential,
    Fixed,
    Heuristic,
    Hypergradient,
    MultiStep,
    Observation,
    OneCycle,
    Plateau,
    PolicyLR,
    Polynomial,
    StepDecay,
    Warmup,
)

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


def run_epochs(model, opt, sched, epochs: int) -> list[list[float]]:
    """Train `epochs` epochs, stepping `sched` with each validation loss; the group LRs after each."""
    x, y, xv, yv = data()
    trajectory = []
    for _ in range(epochs):
        sched.step(train_epoch(model, opt, x, y, xv, yv))
        trajectory.append(group_lrs(opt))
    return trajectory


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
    opt.step()
    sched.step({"val_loss": 1.0, "val_acc": torch.tensor(0.3)})
    opt.step()
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
    trajectory = run_epochs(*build(heuristic), 25)

    model, opt, sched = build(heuristic)
    run_epochs(model, opt, sched, 12)
    ckpt = roundtrip({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()})
    assert "optimizer" not in sched.state_dict()
    model, opt, sched = build(heuristic, seed=123)  # fresh objects, other init: all state comes from ckpt
    model.load_state_dict(ckpt["model"])
    if scheduler_first:
        sched.load_state_dict(ckpt["sched"])
        opt.load_state_dict(ckpt["opt"])
    else:
        opt.load_state_dict(ckpt["opt"])
        sched.load_state_dict(ckpt["sched"])
    assert sched.last_epoch == 12 and sched.get_last_lr() == trajectory[11] == group_lrs(opt)
    assert run_epochs(model, opt, sched, 13) == trajectory[12:]


# -- a torch drop-in: side by side with the live torch scheduler ----------------------------------------------------
def optimizer(kind: str = "sgd", lrs=BASE_LRS) -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))]
    groups = [{"params": [p], "lr": lr} for p, lr in zip(params, lrs, strict=True)]
    return torch.optim.SGD(groups, momentum=0.9) if kind == "sgd" else torch.optim.Adam(groups)


def side_by_side(ours, theirs, steps: int = 120, between=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Step two (optimizer, scheduler) pairs together; `between(t)` runs after step t (e.g. to add a group)."""
    rows = {0: [], 1: []}
    for side, (opt, _) in enumerate((ours, theirs)):
        rows[side].append(group_lrs(opt))
    for t in range(1, steps + 1):
        for side, (opt, sched) in enumerate((ours, theirs)):
            opt.step()
            sched.step()
            rows[side].append(group_lrs(opt))
        if between is not None:
            between(t)
    return torch.tensor(rows[0], dtype=torch.float64), torch.tensor(rows[1], dtype=torch.float64)


def assert_same_lrs(ours: torch.Tensor, theirs: torch.Tensor, rtol: float = 1e-9) -> None:
    assert ours.shape == theirs.shape and ours.shape[0] > 100
    assert torch.allclose(ours, theirs, rtol=rtol, atol=1e-15), (ours - theirs).abs().max()


TORCH_EQUIVALENTS = {
    # name: (optimizer kind, our policy, torch's scheduler on an optimizer)
    "multistep": ("sgd", lambda: MultiStep([10, 25, 25, 70], gamma=0.5),
                  lambda opt: tl.MultiStepLR(opt, [10, 25, 25, 70], gamma=0.5)),
    "exponential": ("adam", lambda: Exponential(0.97), lambda opt: tl.ExponentialLR(opt, 0.97)),
    "polynomial": ("sgd", lambda: Polynomial(total_iters=90, power=2.0),
                   lambda opt: tl.PolynomialLR(opt, total_iters=90, power=2.0)),
    "onecycle": ("adam", lambda: OneCycle(total_steps=121, three_phase=True),
                 lambda opt: tl.OneCycleLR(opt, BASE_LRS, total_steps=121, three_phase=True, cycle_momentum=False)),
    "warm_restarts": ("sgd", lambda: CosineWarmRestarts(t_0=7, eta_min=1e-4),
                      lambda opt: tl.CosineAnnealingWarmRestarts(opt, T_0=7, eta_min=1e-4)),
    "warm_restarts_t_mult": ("adam", lambda: CosineWarmRestarts(t_0=5, t_mult=2),
                             lambda opt: tl.CosineAnnealingWarmRestarts(opt, T_0=5, T_mult=2)),
    "cosine_periodic": ("sgd", lambda: Cosine(t_max=30, eta_min=1e-4, periodic=True),
                        lambda opt: tl.CosineAnnealingLR(opt, T_max=30, eta_min=1e-4)),
    "step": ("adam", lambda: StepDecay(step_size=15, gamma=0.5), lambda opt: tl.StepLR(opt, 15, gamma=0.5)),
}


@pytest.mark.parametrize("name", TORCH_EQUIVALENTS)
def test_policy_lr_matches_the_live_torch_scheduler(name):
    kind, policy, scheduler = TORCH_EQUIVALENTS[name]
    opt, ref = optimizer(kind), optimizer(kind)
    ours, theirs = side_by_side((opt, PolicyLR(opt, policy())), (ref, scheduler(ref)), steps=120)
    assert len(set(ours[:, 0].tolist())) > 3
    assert_same_lrs(ours, theirs, rtol=1e-7)


def test_cosine_holds_its_floor_past_t_max_by_default():
    opt = optimizer()
    sched = PolicyLR(opt, Cosine(t_max=30, eta_min=1e-4))
    for _ in range(60):
        opt.step()
        sched.step()
    assert group_lrs(opt) == [1e-4, 1e-4]


def test_cosine_default_gives_bit_for_bit_the_lrs_of_existing_runs():
    """The periodic option and the shared cosine helper changed nothing: the former closed form, exactly."""
    for t_max, eta_min in [(7, 1e-6), (30, 0.0), (100, 1e-4), (333, 1e-6)]:
        policy = Cosine(t_max=t_max, eta_min=eta_min)
        ours = [policy.reset([0.3, 0.0031, 0.01])] + [policy.observe(Observation(t, t)) for t in range(1, 2 * t_max)]
        former = [[eta_min if t >= t_max else eta_min + (b - eta_min) * ((1.0 + math.cos(math.pi * t / t_max)) / 2.0)
                   for b in (0.3, 0.0031, 0.01)] for t in range(2 * t_max)]
        assert ours == former


@pytest.mark.parametrize("ours_first", [True, False])
def test_composes_with_another_scheduler_on_the_same_optimizer(ours_first):
    """Both stepped every tick: the LRs are the product of both schedules, as with two torch schedulers."""
    opt, ref = optimizer(), optimizer()
    if ours_first:
        ours = [PolicyLR(opt, Exponential(0.98)), tl.LinearLR(opt, 0.2, 1.0, total_iters=20)]
        theirs = [tl.ExponentialLR(ref, 0.98), tl.LinearLR(ref, 0.2, 1.0, total_iters=20)]
    else:
        ours = [tl.LinearLR(opt, 0.2, 1.0, total_iters=20), PolicyLR(opt, MultiStep([30, 60], 0.3))]
        theirs = [tl.LinearLR(ref, 0.2, 1.0, total_iters=20), tl.MultiStepLR(ref, [30, 60], 0.3)]
    ours_lrs, theirs_lrs = side_by_side((opt, tl.ChainedScheduler(ours)), (ref, tl.ChainedScheduler(theirs)))
    assert ours_lrs[0, 0] == pytest.approx(0.2 * BASE_LRS[0])  # the warmup's factor survived our construction
    assert_same_lrs(ours_lrs, theirs_lrs)


def test_a_feedback_policy_composes_with_a_warmup_scheduler():
    """Warmup by torch, cuts by a plateau policy: the product of the warmup factor and the policy's cuts."""
    opt, ref = optimizer(), optimizer()
    warm, sched = tl.LinearLR(opt, 0.1, 1.0, total_iters=10), PolicyLR(opt, Plateau(patience=1, factor=0.5))
    ref_warm, ref_sched = tl.LinearLR(ref, 0.1, 1.0, total_iters=10), tl.ReduceLROnPlateau(ref, patience=1, factor=0.5)
    for t in range(110):
        value = 1.0 / (1 + min(t, 40))
        for o, w, s in ((opt, warm, sched), (ref, ref_warm, ref_sched)):
            o.step()
            w.step()
            s.step(value)
        assert group_lrs(opt) == pytest.approx(group_lrs(ref), rel=1e-12)
    assert group_lrs(opt)[0] < 0.01  # several cuts happened after the warmup


@pytest.mark.parametrize("ours_first", [True, False])
def test_inside_sequential_lr_from_the_first_step(ours_first):
    opt, ref = optimizer(), optimizer()
    if ours_first:
        ours = [PolicyLR(opt, Polynomial(total_iters=40, power=1.5)), tl.ExponentialLR(opt, 0.95)]
        theirs = [tl.PolynomialLR(ref, total_iters=40, power=1.5), tl.ExponentialLR(ref, 0.95)]
    else:
        ours = [tl.LinearLR(opt, 0.1, 1.0, total_iters=50), PolicyLR(opt, Cosine(t_max=90, eta_min=0.0))]
        theirs = [tl.LinearLR(ref, 0.1, 1.0, total_iters=50), tl.CosineAnnealingLR(ref, T_max=90)]  # cut short at 30
    ours_lrs, theirs_lrs = side_by_side((opt, tl.SequentialLR(opt, ours, milestones=[30])),
                                        (ref, tl.SequentialLR(ref, theirs, milestones=[30])))
    if ours_first:  # the policy's tick 0 and 1, not 1 and 2
        assert ours_lrs[:2, 0].tolist() == pytest.approx([0.1, 0.1 * (1 - 1 / 40) ** 1.5])
    assert_same_lrs(ours_lrs, theirs_lrs)


def test_a_feedback_policy_is_refused_by_sequential_lr_like_reduce_lr_on_plateau():
    opt = optimizer()
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        tl.SequentialLR(opt, [PolicyLR(opt, Plateau()), tl.ExponentialLR(opt, 0.9)], milestones=[5])


def test_add_param_group_is_followed_like_torch():
    """A group added mid-run follows the schedule's relative change, as torch's chainable schedulers do."""
    opt, ref = optimizer(), optimizer()
    ours = tl.ChainedScheduler([PolicyLR(opt, Exponential(0.97)), PolicyLR(opt, MultiStep([50, 80], 0.5))])
    theirs = tl.ChainedScheduler([tl.ExponentialLR(ref, 0.97), tl.MultiStepLR(ref, [50, 80], 0.5)])
    rows: dict[str, list[list[float]]] = {"ours": [], "theirs": []}
    for t in range(1, 121):
        if t == 30:
            for o in (opt, ref):
                o.add_param_group({"params": [torch.nn.Parameter(torch.ones(4))], "lr": 0.5})
        for key, o, sched in (("ours", opt, ours), ("theirs", ref, theirs)):
            o.step()
            sched.step()
            if t >= 30:
                rows[key].append(group_lrs(o))
    ours_lrs, theirs_lrs = (torch.tensor(rows[k], dtype=torch.float64) for k in ("ours", "theirs"))
    assert ours_lrs.shape == (91, 3) and ours_lrs[-1, 2] < 0.5 * 0.97**80
    assert torch.allclose(ours_lrs, theirs_lrs, rtol=1e-9, atol=1e-15)
    assert ours.get_last_lr() == group_lrs(opt)


def roundtrip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # plain values only


def test_load_state_dict_restores_the_saved_hyperparameters_and_counters():
    saved_policy = lambda: Warmup(Heuristic(raise_threshold=0.02, up_factor=1.5, patience=1, max_lr=0.5), warmup=4)
    trajectory = run_epochs(*build(saved_policy), 30)

    model, opt, sched = build(saved_policy)
    run_epochs(model, opt, sched, 12)
    ckpt = roundtrip({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()})

    model, opt, sched = build(lambda: Warmup(Heuristic(), warmup=9))  # other hyperparameters: the saved ones win
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["opt"])
    sched.load_state_dict(ckpt["sched"])
    assert (sched.policy.warmup, sched.policy.policy.patience, sched.policy.policy.up_factor) == (4, 1, 1.5)
    assert sched.last_epoch == 12 and sched._step_count == 13 and sched.get_last_lr() == trajectory[11]
    assert run_epochs(model, opt, sched, 18) == trajectory[12:]


def test_load_state_dict_of_another_kind_of_policy_is_refused():
    _, _, sched = build(heuristic)
    state = sched.state_dict()
    _, _, other = build(lambda: Plateau())
    with pytest.raises(ValueError, match="holds a Heuristic policy, this PolicyLR drives a Plateau"):
        other.load_state_dict(state)


@pytest.mark.parametrize("last_epoch", [-1, 39])
def test_rebuilt_on_a_restored_optimizer_it_keeps_the_restored_lrs_like_torch(last_epoch):
    """Torch's way to resume: rebuild on the restored optimizer (with `last_epoch`), compared with torch's."""
    opt = optimizer()
    sched = PolicyLR(opt, Cosine(t_max=120, eta_min=0.0, periodic=True))
    for _ in range(40):
        opt.step()
        sched.step()
    restored_lrs = group_lrs(opt)
    state = roundtrip(opt.state_dict())

    opt, ref = optimizer(), optimizer()
    opt.load_state_dict(state)
    ref.load_state_dict(state)
    ours = PolicyLR(opt, Cosine(t_max=120, eta_min=0.0, periodic=True), last_epoch=last_epoch)
    theirs = tl.CosineAnnealingLR(ref, T_max=120, last_epoch=last_epoch)
    assert group_lrs(opt) == pytest.approx(restored_lrs, rel=1e-12) and ours.last_epoch == theirs.last_epoch
    assert_same_lrs(*side_by_side((opt, ours), (ref, theirs), steps=110))


def test_resuming_with_last_epoch_needs_initial_lr_like_torch():
    with pytest.raises(KeyError, match="initial_lr"):
        PolicyLR(optimizer(), Cosine(t_max=10), last_epoch=5)


def test_rebuilt_on_a_restored_optimizer_then_loaded_it_continues_the_uninterrupted_run():
    def run(opt, sched, steps):
        lrs = []
        for t in range(steps):
            opt.step()
            sched.step(1.0 / (1 + min(t, 20)))
            lrs.append(group_lrs(opt))
        return lrs

    opt = optimizer()
    uninterrupted = run(opt, PolicyLR(opt, Warmup(Plateau(patience=2, factor=0.5), warmup=5)), 110)
    opt = optimizer()
    sched = PolicyLR(opt, Warmup(Plateau(patience=2, factor=0.5), warmup=5))
    run(opt, sched, 30)
    ckpt = roundtrip({"opt": opt.state_dict(), "sched": sched.state_dict()})
    opt = optimizer()
    opt.load_state_dict(ckpt["opt"])
    sched = PolicyLR(opt, Warmup(Plateau(patience=2, factor=0.5), warmup=5))  # on the restored optimizer
    sched.load_state_dict(ckpt["sched"])
    assert run(opt, sched, 80) == uninterrupted[30:]


def test_warns_when_stepped_before_the_optimizer_like_torch():
    opt = optimizer()
    sched = PolicyLR(opt, Exponential(0.9))
    with pytest.warns(UserWarning, match=r"before `optimizer.step\(\)`"):
        sched.step()
    opt = optimizer()
    sched = PolicyLR(opt, Exponential(0.9))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step()
        sched.step()


def test_a_policy_that_decides_before_the_step_is_not_warned():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = torch.optim.SGD([w], lr=0.1)
    sched = PolicyLR(opt, Hypergradient())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            opt.zero_grad()
            (w**2).sum().backward()
            sched.step()
            opt.step()


def test_it_does_not_clamp_unless_the_policy_is_bounded():
    opt, ref = optimizer(lrs=[5.0, 2.0]), optimizer(lrs=[5.0, 2.0])
    ours, theirs = side_by_side((opt, PolicyLR(opt, Exponential(1.02))), (ref, tl.ExponentialLR(ref, 1.02)))
    assert ours.max() > 50
    assert_same_lrs(ours, theirs)


def test_only_a_policy_that_watches_a_metric_is_a_plateau_scheduler():
    opt = optimizer()
    assert isinstance(PolicyLR(opt, Plateau()), (PolicyLR, tl.ReduceLROnPlateau))
    assert isinstance(PolicyLR(opt, Warmup(heuristic(), 3)), tl.ReduceLROnPlateau)
    assert not isinstance(PolicyLR(opt, Fixed()), tl.ReduceLROnPlateau)
    assert isinstance(PolicyLR(opt, Fixed()), tl.LRScheduler)


def test_lightning_passes_the_monitored_metric_from_configure_optimizers():
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randn(64, 1, generator=g)

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)
            self.values: list[float] = []

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            loss = torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])
            self.log("val_loss", loss)

        def on_validation_epoch_end(self):
            if not self.trainer.sanity_checking:
                self.values.append(float(self.trainer.callback_metrics["val_loss"]))

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            self.sched = PolicyLR(opt, Plateau(patience=0, factor=0.5, threshold=0.5))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": self.sched, "monitor": "val_loss"}}

    model = Tiny()
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    trainer = L.Trainer(max_epochs=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, loader, loader)

    assert model.sched.last_epoch == 4 and model.sched.policy.tick == 4 and len(model.values) == 4
    ref = optimizer(lrs=[0.1, 0.1])
    reference = tl.ReduceLROnPlateau(ref, patience=0, factor=0.5, threshold=0.5)
    for value in model.values:
        reference.step(value)
    assert model.sched.get_last_lr()[0] == ref.param_groups[0]["lr"] < 0.1  # it received val_loss and cut
