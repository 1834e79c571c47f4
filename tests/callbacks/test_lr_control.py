"""`LRControl` inside a real (tiny, CPU) Lightning fit on XOR: the LR the optimizer uses, logging, resume, validation.

Every fit is a 2-2-1 tanh net on 200 XOR points (120 train, batch 32: 4 steps per epoch), seeded identically.
"""

from __future__ import annotations

import functools
import itertools
import math
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger

from adaptive_lr.callbacks import LRControl, LRControlConfigError
from adaptive_lr.data.xor import XORDataModule
from adaptive_lr.models.mlp import MLP
from adaptive_lr.schedulers import ACTIONS, Cosine, Fixed, Heuristic, StepDecay, Warmup
from adaptive_lr.schedulers.hypergradient import Hypergradient
from adaptive_lr.schedulers.line_search import LineSearch
from adaptive_lr.tasks import ClassificationTask

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*")  # a Lightning/torch deprecation, not ours

BASE_LR = 0.1
STEPS_PER_EPOCH = 4


class RecordingLogger(Logger):
    """Keeps every `log_metrics` call as (metrics, step)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[dict[str, float], int | None]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> str:
        return "0"

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.records.append((dict(metrics), step))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def steps_of(self, key: str) -> list[int | None]:
        return [step for metrics, step in self.records if key in metrics]

    def values_of(self, key: str) -> list[float]:
        return [metrics[key] for metrics, _ in self.records if key in metrics]


class LRRecorder(Callback):
    """The LR of the optimizer's group 0 at every training step (read before the step is taken)."""

    def __init__(self) -> None:
        self.step_lrs: list[float] = []
        self.logged_during_sanity: int | None = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ):
        self.step_lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_sanity_check_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.logged_during_sanity = sum(
            len(lg.records) for lg in trainer.loggers if isinstance(lg, RecordingLogger)
        )

    def epoch_lrs(self) -> list[float]:
        lrs = self.step_lrs[::STEPS_PER_EPOCH]
        # the LR only moves between epochs under an epoch-interval policy
        assert self.step_lrs == [lr for lr in lrs for _ in range(STEPS_PER_EPOCH)][: len(self.step_lrs)]
        return lrs


class DecisionRecorder(Callback):
    """Placed after LRControl: the policy's decision and state after every epoch-end decision."""

    def __init__(self, control: LRControl) -> None:
        self.control = control
        self.actions: list[str | None] = []
        self.states: list[dict[str, Any]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        decision = self.control.policy.last_decision
        self.actions.append(None if decision is None else decision.action)
        self.states.append(self.control.policy.state_dict())


def datamodule() -> XORDataModule:
    return XORDataModule(variant="noisy", n_samples=200, batch_size=32, seed=0)


def task(lr: float = BASE_LR) -> ClassificationTask:
    return ClassificationTask(
        MLP(2, [2], 1, "tanh"), functools.partial(torch.optim.SGD, lr=lr), torch.nn.BCEWithLogitsLoss()
    )


def fit(
    control: LRControl,
    max_epochs: int,
    *,
    extra: list[Callback] = (),
    logger: Logger | bool = False,
    ckpt_path: str | None = None,
    seed: int = 0,
    lr: float = BASE_LR,
    **trainer_kwargs: Any,
) -> tuple[L.Trainer, LRRecorder]:
    L.seed_everything(seed, verbose=False)
    recorder = LRRecorder()
    kwargs = {"enable_checkpointing": False, "num_sanity_val_steps": 0} | trainer_kwargs
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=max_epochs,
        logger=logger,
        callbacks=[control, recorder, *extra],
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        **kwargs,
    )
    trainer.fit(task(lr), datamodule=datamodule(), ckpt_path=ckpt_path)
    return trainer, recorder


# -- 1) the LR the optimizer actually uses -----------------------------------------------------------------------------
def test_epoch_step_decay_matches_the_closed_form_and_torch_steplr():
    _, rec = fit(LRControl(StepDecay(step_size=2, gamma=0.5)), max_epochs=7)
    lrs = rec.epoch_lrs()
    assert lrs == pytest.approx([BASE_LR * 0.5 ** (e // 2) for e in range(7)], rel=1e-12)

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE_LR)
    steplr = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    expected = []
    for _ in range(7):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        steplr.step()
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_fixed_absolute_lr_overrides_the_optimizer_lr_from_the_first_step():
    _, rec = fit(LRControl(Fixed(lr=0.03)), max_epochs=2)
    assert rec.step_lrs == [0.03] * 2 * STEPS_PER_EPOCH


@pytest.mark.parametrize("frequency", [1, 3])
def test_step_interval_cosine_changes_the_lr_every_frequency_steps(frequency):
    t_max = 10
    _, rec = fit(
        LRControl(Cosine(t_max=t_max, eta_min=0.0), interval="step", frequency=frequency), max_epochs=4
    )
    n_steps = 4 * STEPS_PER_EPOCH
    assert len(rec.step_lrs) == n_steps

    def cosine(tick: int) -> float:
        return 0.0 if tick >= t_max else BASE_LR * (1 + math.cos(math.pi * tick / t_max)) / 2

    # optimizer step s (0-based) runs with the LR of the policy tick reached after s // frequency decisions
    assert rec.step_lrs == pytest.approx([cosine(s // frequency) for s in range(n_steps)], abs=1e-15)
    changes = [s for s in range(1, n_steps) if rec.step_lrs[s] != rec.step_lrs[s - 1]]
    assert changes == [s for s in range(1, n_steps) if s % frequency == 0 and s // frequency <= t_max]

    if frequency == 1:  # the same sequence as torch's scheduler stepped once per batch (up to t_max)
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE_LR)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max, eta_min=0.0)
        torch_lrs = []
        for _ in range(t_max + 1):
            torch_lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert rec.step_lrs[: t_max + 1] == pytest.approx(torch_lrs, abs=1e-12)


def test_epoch_interval_with_frequency_decides_every_k_epochs():
    _, rec = fit(LRControl(StepDecay(step_size=1, gamma=0.5), frequency=2), max_epochs=6)
    assert rec.epoch_lrs() == pytest.approx([BASE_LR * 0.5 ** (e // 2) for e in range(6)], rel=1e-12)


def test_warmup_over_steps_scales_the_first_steps():
    _, rec = fit(LRControl(Warmup(Fixed(), warmup=4, start_factor=0.25), interval="step"), max_epochs=2)
    factors = [0.25 + 0.75 * min(s, 4) / 4 for s in range(2 * STEPS_PER_EPOCH)]
    assert rec.step_lrs == pytest.approx([BASE_LR * f for f in factors], rel=1e-12)


# -- 2) logging ----------------------------------------------------------------------------------------------------------
def test_lr_is_logged_every_log_every_n_steps_and_never_during_sanity_checking():
    logger = RecordingLogger()
    _, rec = fit(
        LRControl(Cosine(t_max=12), interval="step", log_every_n_steps=3),
        max_epochs=3,
        logger=logger,
        num_sanity_val_steps=2,
    )
    assert rec.logged_during_sanity == 0
    steps = logger.steps_of("lr")
    assert steps == [0, 3, 6, 9, 12]  # train start, then every third optimizer step
    # each logged value is the LR the optimizer holds for the next step
    final_lr = 1e-6  # Cosine's eta_min, reached at tick t_max = 12, after the last step
    assert logger.values_of("lr") == pytest.approx([rec.step_lrs[s] for s in steps[:-1]] + [final_lr])
    assert logger.steps_of("controller_action") == []  # an open-loop schedule makes no decisions


def test_every_heuristic_decision_is_logged_with_its_action_code_and_factor():
    logger = RecordingLogger()
    control = LRControl(
        Heuristic(monitor="val_loss", raise_threshold=0.01, up_factor=2.0, patience=1), log_every_n_steps=1000
    )
    decisions = DecisionRecorder(control)
    _, rec = fit(control, max_epochs=6, extra=[decisions], logger=logger, num_sanity_val_steps=2)
    assert rec.logged_during_sanity == 0
    assert len(decisions.actions) == 6 and None not in decisions.actions
    assert logger.values_of("controller_action") == [float(ACTIONS[a]) for a in decisions.actions]
    assert logger.steps_of("controller_action") == [STEPS_PER_EPOCH * (e + 1) for e in range(6)]
    lrs = rec.epoch_lrs() + [decisions.states[-1]["lrs"][0]]
    assert logger.values_of("controller_factor") == pytest.approx([b / a for a, b in itertools.pairwise(lrs)])
    assert len(set(decisions.actions)) > 1  # the run exercised more than one kind of decision
    # lr: at train start and after every epoch decision (log_every_n_steps is never reached)
    assert logger.steps_of("lr") == [0] + [STEPS_PER_EPOCH * (e + 1) for e in range(6)]
    assert logger.values_of("lr") == pytest.approx(lrs)


# -- 3) resume -----------------------------------------------------------------------------------------------------------
RESUME_LR = (
    2.0  # large enough on this net that val_loss both falls fast and rises: raises, cuts and cooldowns
)


def heuristic() -> Heuristic:
    return Heuristic(
        monitor="val_loss",
        raise_threshold=0.02,
        up_factor=1.5,
        down_factor=0.5,
        plateau_threshold=0.005,
        patience=1,
        cooldown=1,
        max_lr=4.0,
    )


@pytest.mark.parametrize("stop_after", [2, 5])
def test_resumed_heuristic_run_matches_an_uninterrupted_one(tmp_path: Path, stop_after: int):
    total = 8
    control = LRControl(heuristic())
    full_decisions = DecisionRecorder(control)
    full_trainer, full = fit(control, max_epochs=total, extra=[full_decisions], lr=RESUME_LR)
    full_lrs = full.epoch_lrs()
    # the trajectory must move, and depend on the losses, for the comparison to mean anything
    assert {"raise", "cut_rise", "cooldown"} <= set(full_decisions.actions)

    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_epochs=1, save_top_k=-1)
    first_control = LRControl(heuristic())
    first_decisions = DecisionRecorder(first_control)
    _, first = fit(
        first_control,
        max_epochs=stop_after,
        extra=[first_decisions, ckpt],
        enable_checkpointing=True,
        lr=RESUME_LR,
    )
    assert first.epoch_lrs() == full_lrs[:stop_after]

    state = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert state["epoch"] == stop_after - 1
    saved = state["callbacks"][first_control.state_key]
    assert (
        saved
        == {"policy": first_control.policy.state_dict(), "decided_epoch": stop_after}
        == {"policy": full_decisions.states[stop_after - 1], "decided_epoch": stop_after}
    )

    # fresh callback and policy: everything they know comes from the checkpoint; another global seed too, since the
    # weights come from the checkpoint and the batch order from (data seed, epoch)
    resumed_control = LRControl(heuristic())
    resumed_decisions = DecisionRecorder(resumed_control)
    ckpt2 = ModelCheckpoint(dirpath=tmp_path / "resumed", save_last=True)
    resumed_trainer, resumed = fit(
        resumed_control,
        max_epochs=total,
        extra=[resumed_decisions, ckpt2],
        enable_checkpointing=True,
        ckpt_path=str(tmp_path / "last.ckpt"),
        seed=123,
        lr=RESUME_LR,
    )
    assert first.epoch_lrs() + resumed.epoch_lrs() == full_lrs
    assert first_decisions.actions + resumed_decisions.actions == full_decisions.actions
    assert resumed_control.policy.state_dict() == control.policy.state_dict()
    assert (
        resumed_trainer.callback_metrics["val_loss"].item()
        == full_trainer.callback_metrics["val_loss"].item()
    )


@pytest.mark.parametrize(
    "make_policy",
    [lambda: StepDecay(step_size=3, gamma=0.5), lambda: Cosine(t_max=9)],
    ids=["step_decay", "cosine"],
)
def test_resumed_step_interval_schedule_continues_its_tick_count(tmp_path: Path, make_policy):
    total, stop_after = 4, 2
    control = LRControl(make_policy(), interval="step")
    _, full = fit(control, max_epochs=total)

    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    _, first = fit(
        LRControl(make_policy(), interval="step"),
        max_epochs=stop_after,
        extra=[ckpt],
        enable_checkpointing=True,
    )
    resumed_control = LRControl(make_policy(), interval="step")
    _, resumed = fit(resumed_control, max_epochs=total, ckpt_path=str(tmp_path / "last.ckpt"))
    assert first.step_lrs + resumed.step_lrs == full.step_lrs
    assert resumed_control.policy.state_dict() == control.policy.state_dict()


def test_state_keys_tell_instances_apart():
    a, b = LRControl(StepDecay()), LRControl(StepDecay(), interval="step")
    assert a.state_key != b.state_key
    assert "StepDecay" in a.state_key


# -- 4) configuration errors -----------------------------------------------------------------------------------------
def test_a_monitor_the_task_never_logs_fails_at_setup_naming_the_allowed_metrics():
    class NoTraining(Callback):
        def on_train_start(self, trainer, pl_module):  # pragma: no cover - must not be reached
            raise AssertionError("training started")

    with pytest.raises(
        LRControlConfigError, match=r"'val_accuracy'.*allowed:.*'train_loss'.*'val_acc'.*'val_loss'"
    ):
        fit(LRControl(Heuristic(monitor="val_accuracy")), max_epochs=1, extra=[NoTraining()])


def test_a_wrapped_policy_is_checked_through_its_inner_monitor():
    with pytest.raises(LRControlConfigError, match="'lr_typo'"):
        fit(LRControl(Warmup(Heuristic(monitor="lr_typo"), warmup=2)), max_epochs=1)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"interval": "batch"}, "interval"),
        ({"frequency": 0}, "frequency"),
        ({"frequency": 1.5}, "frequency"),
        ({"log_every_n_steps": 0}, "log_every_n_steps"),
    ],
)
def test_bad_constructor_arguments_raise_naming_the_argument(kwargs, name):
    with pytest.raises(LRControlConfigError, match=name) as info:
        LRControl(Fixed(), **kwargs)
    assert repr(next(iter(kwargs.values()))) in str(info.value)


def test_a_policy_that_is_not_an_lr_policy_is_refused():
    with pytest.raises(LRControlConfigError, match="policy must be an LRPolicy"):
        LRControl(torch.optim.lr_scheduler.StepLR)  # type: ignore[arg-type]


# -- 5) feedback decisions on the step interval ----------------------------------------------------------------------
@pytest.mark.parametrize("frequency", [1, 3])
def test_step_interval_feedback_policy_decides_every_frequency_steps_on_the_step_loss(frequency):
    logger = RecordingLogger()
    policy = Heuristic(
        monitor="train_loss_step",
        raise_threshold=0.01,
        up_factor=1.25,
        rise_tolerance=0.0,
        patience=1,
        cooldown=0,
        max_lr=5.0,
    )
    seen: list[tuple[int, float]] = []

    class StepLoss(Callback):  # the loss each optimizer step returned, by global step
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append((trainer.global_step, float(outputs["loss"])))

    control = LRControl(policy, interval="step", frequency=frequency, log_every_n_steps=1000)
    _, rec = fit(control, max_epochs=3, extra=[StepLoss()], logger=logger)
    n_steps = 3 * STEPS_PER_EPOCH
    decision_steps = [s for s in range(1, n_steps + 1) if s % frequency == 0]
    assert logger.steps_of("controller_action") == decision_steps
    assert policy.tick == len(decision_steps)
    # the watched value is the loss of the batch just trained on
    losses = dict(seen)
    assert logger.values_of("controller_value") == pytest.approx([losses[s] for s in decision_steps])
    # the LR changes only right after a decision step, by the logged factor
    factors = dict(zip(decision_steps, logger.values_of("controller_factor"), strict=True))
    for s in range(1, n_steps):
        ratio = rec.step_lrs[s] / rec.step_lrs[s - 1]
        assert ratio == pytest.approx(factors.get(s, 1.0))
    assert any(f != 1.0 for f in factors.values())


def test_step_decisions_on_an_epoch_metric_wait_for_the_first_validation():
    logger = RecordingLogger()
    policy = Heuristic(monitor="val_loss", cooldown=0)
    fit(LRControl(policy, interval="step", log_every_n_steps=1000), max_epochs=3, logger=logger)
    # epoch 0 has no val_loss yet: its steps make no decision; later steps all see the last epoch's val_loss
    assert logger.steps_of("controller_action") == list(range(STEPS_PER_EPOCH + 1, 3 * STEPS_PER_EPOCH + 1))
    values = logger.values_of("controller_value")
    assert len(set(values[:STEPS_PER_EPOCH])) == 1 and values[0] != values[-1]


def test_the_step_loss_is_not_offered_to_an_epoch_interval_policy():
    with pytest.raises(LRControlConfigError, match="'train_loss_step'") as info:
        fit(LRControl(Heuristic(monitor="train_loss_step")), max_epochs=1)
    assert "'train_loss_step'" not in str(info.value).split("allowed:")[1]


def test_resume_from_a_checkpoint_written_at_validation_end(tmp_path: Path):
    control = LRControl(heuristic())
    _, full = fit(control, max_epochs=6, lr=RESUME_LR)
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_on_train_epoch_end=False)
    _, first = fit(
        LRControl(heuristic()), max_epochs=3, extra=[ckpt], enable_checkpointing=True, lr=RESUME_LR
    )
    resumed_control = LRControl(heuristic())
    _, resumed = fit(resumed_control, max_epochs=6, ckpt_path=str(tmp_path / "last.ckpt"), lr=RESUME_LR)
    assert first.step_lrs + resumed.step_lrs == full.step_lrs
    assert resumed_control.policy.state_dict() == control.policy.state_dict()


# -- 6) gradient-aware policies: hypergradient (before every step) and line search (probe batch) ---------------------
def flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1).double() for t in tensors])


class StepTrace(Callback):
    """Placed after LRControl: parameters before each step, and the gradient and LR that step used."""

    def __init__(self) -> None:
        self.before: list[torch.Tensor] = []
        self.grads: list[torch.Tensor] = []
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.before.append(flat(pl_module.parameters()))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.grads.append(flat(p.grad for p in pl_module.parameters()))
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_hypergradient_decides_before_every_step_by_the_textbook_rule():
    beta, epochs = 0.05, 3
    logger, trace = RecordingLogger(), StepTrace()
    policy = Hypergradient(variant="additive", beta=beta, max_lr=10.0)  # the reference has no bounds
    control = LRControl(policy, interval="step", log_every_n_steps=1000)
    fit(control, max_epochs=epochs, extra=[trace], logger=logger, lr=RESUME_LR)
    n = epochs * STEPS_PER_EPOCH
    assert len(trace.lrs) == n
    # the slow reference: lr_t = lr_{t-1} + beta * g_t . u_{t-1}, u_{t-1} = (theta_{t-1} - theta_t) / lr_{t-1}, where
    # g_t is the gradient step t applies (recorded after it) and theta_t the parameters before it
    expected, lr, u = [], RESUME_LR, torch.zeros_like(trace.grads[0])
    for t in range(n):
        lr = lr + beta * float(trace.grads[t] @ u)
        expected.append(lr)
        if t + 1 < n:
            u = (trace.before[t] - trace.before[t + 1]) / trace.lrs[t]
    assert trace.lrs == pytest.approx(expected, rel=1e-5)
    assert trace.lrs[0] == RESUME_LR and len(set(trace.lrs)) == n  # u_0 = 0 keeps the base LR, then it moves
    # every decision is logged, at the step count before its update
    assert logger.steps_of("controller_action") == list(range(n))
    assert logger.values_of("controller_action") == [float(ACTIONS["hypergradient"])] * n
    assert logger.values_of("controller_hypergrad")[0] == 0.0
    assert logger.values_of("controller_hypergrad")[1:] == pytest.approx(
        [(b - a) / beta for a, b in itertools.pairwise(trace.lrs)], rel=1e-4
    )
    assert all(-1.0 <= c <= 1.0 for c in logger.values_of("controller_cos"))


def test_line_search_probes_the_first_validation_batch_every_epoch():
    epochs, factors = 4, [0.5, 1.0, 2.0]
    logger = RecordingLogger()
    control = LRControl(LineSearch(factors=factors, max_lr=0.5), log_every_n_steps=1000)
    trainer, rec = fit(control, max_epochs=epochs, logger=logger, lr=RESUME_LR / 10)
    assert logger.steps_of("controller_action") == [STEPS_PER_EPOCH * (e + 1) for e in range(epochs)]
    assert logger.values_of("controller_action") == [float(ACTIONS["line_search"])] * epochs
    assert logger.values_of("controller_probe_forwards_total") == [3.0 * (e + 1) for e in range(epochs)]
    best = logger.values_of("controller_best_factor")
    assert set(best) <= set(factors) and len(set(best)) > 1
    lrs = rec.epoch_lrs() + [control.policy.lrs[0]]
    assert lrs[1:] == pytest.approx([min(lr * f, 0.5) for lr, f in zip(lrs, best, strict=False)], rel=1e-12)
    # the parameters were left at the kept candidate: its probe loss is the loss on the first validation batch now
    batch = next(iter(trainer.datamodule.val_dataloader()))
    assert trainer.lightning_module.probe_loss(batch) == logger.values_of("controller_probe_loss")[-1]


def same_state(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b, strict=True))
    return a == b


# (policy, LRControl arguments, epochs before the checkpoint, total epochs). Both checkpoints fall between two
# decisions, where the anchor differs from the parameters: the hypergradient's is one step old, the line search
# (every 2 epochs) checkpoints after epoch 3, one epoch after its last decision.
GRADIENT_POLICIES = {
    "hypergradient": (lambda: Hypergradient(variant="multiplicative", beta=0.2), {"interval": "step"}, 2, 4),
    "line_search": (lambda: LineSearch(factors=[0.5, 1.0, 1.5]), {"interval": "epoch", "frequency": 2}, 3, 6),
}


@pytest.mark.parametrize("name", GRADIENT_POLICIES)
def test_resumed_gradient_policy_run_matches_an_uninterrupted_one(tmp_path: Path, name: str):
    make_policy, kwargs, stop_after, total = GRADIENT_POLICIES[name]
    control = LRControl(make_policy(), **kwargs)
    full_trainer, full = fit(control, max_epochs=total, lr=RESUME_LR / 4)
    assert len(set(full.step_lrs)) > 1  # the trajectory moves

    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    first_control = LRControl(make_policy(), **kwargs)
    _, first = fit(first_control, max_epochs=stop_after, extra=[ckpt], enable_checkpointing=True, lr=RESUME_LR / 4)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)["callbacks"][first_control.state_key]
    assert same_state(saved["policy"], first_control.policy.state_dict())
    # the parameters the next decision measures from, which the checkpointed weights are not
    assert not torch.equal(flat(saved["policy"]["anchor"][0]), flat(first_control.policy._groups[0]["params"]))

    resumed_control = LRControl(make_policy(), **kwargs)
    resumed_trainer, resumed = fit(
        resumed_control, max_epochs=total, ckpt_path=str(tmp_path / "last.ckpt"), seed=123, lr=RESUME_LR / 4
    )
    assert first.step_lrs + resumed.step_lrs == full.step_lrs
    assert same_state(resumed_control.policy.state_dict(), control.policy.state_dict())
    full_params = flat(full_trainer.lightning_module.parameters())
    assert torch.equal(flat(resumed_trainer.lightning_module.parameters()), full_params)


def test_a_pre_step_policy_needs_the_step_interval():
    with pytest.raises(LRControlConfigError, match=r"decides before every optimizer step.*'step', got 'epoch'"):
        LRControl(Hypergradient(), interval="epoch")


def test_a_probe_policy_needs_a_module_with_probe_loss():
    control = LRControl(LineSearch())
    with pytest.raises(LRControlConfigError, match="LineSearch needs a probe loss but Linear has no probe_loss"):
        control.setup(None, torch.nn.Linear(1, 1), "fit")  # type: ignore[arg-type]


def test_probe_loss_is_the_eval_mode_loss_and_leaves_the_module_as_it_was():
    module = ClassificationTask(
        torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 1)),
        functools.partial(torch.optim.SGD, lr=0.1),
        torch.nn.BCEWithLogitsLoss(),
    )
    x, y = torch.randn(16, 2, generator=torch.Generator().manual_seed(0)), (torch.arange(16) % 2).float()[:, None]
    module.train()
    with torch.no_grad():
        expected = float(torch.nn.functional.binary_cross_entropy_with_logits(module.model.eval()(x), y))
    module.train()
    assert module.probe_loss((x, y)) == expected == module.probe_loss((x, y))  # eval mode: dropout off
    assert module.model.training and module.model[1].training
    assert module._means["train"].compute() == {} and module._means["val"].compute() == {}


# -- live control (a person's override) ----------------------------------------------------------------------------
class Steer(Callback):
    """Issues CLI commands at the end of given steps, as a person in another terminal would."""

    def __init__(self, run_dir: Path, commands: dict[int, list[str]]) -> None:
        self.run_dir, self.commands = run_dir, commands

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        from adaptive_lr.cli import main

        args = self.commands.get(trainer.global_step)
        if args:
            assert main([args[0], str(self.run_dir), *args[1:]]) == 0


def running(folder: Path) -> Path:
    """Make `folder` the run folder of a RUNNING MLflow run of this process, as `adaptive-lr train` would: LR
    commands are refused for any run that is not running."""
    import json
    import os
    import platform

    from mlflow.tracking import MlflowClient

    from adaptive_lr.tracking.run import IDENTITY_FILE

    uri = f"sqlite:///{folder}/mlflow.db"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("live", artifact_location=(folder / "a").as_uri()),
                            tags={"host": platform.node(), "pid": str(os.getpid()), "run_dir": str(folder)})
    (folder / IDENTITY_FILE).write_text(json.dumps({"run_id": run.info.run_id, "tracking_uri": uri}))
    return folder


def test_a_set_lr_command_takes_effect_at_the_next_step_and_wins_until_released(tmp_path):
    from adaptive_lr.live_control import CONTROL_FILE, LiveOverride

    running(tmp_path)

    live = LiveOverride(tmp_path / CONTROL_FILE, min_lr=1e-4, max_lr=1.0)
    control = LRControl(StepDecay(step_size=1, gamma=0.5), interval="epoch", live=live)
    logger = RecordingLogger()
    steer = Steer(tmp_path, {3: ["set-lr", "0.123"], 5: ["scale-lr", "100"], 9: ["release-lr"]})
    _, recorder = fit(control, max_epochs=3, extra=[steer], logger=logger)

    lrs = recorder.step_lrs  # before each of the 12 steps; the schedule halves the LR every epoch (4 steps)
    assert lrs[:4] == [BASE_LR, BASE_LR, BASE_LR, 0.123]  # issued after step 3 (global_step 3), applied at once
    assert lrs[4:6] == [0.123, 1.0]  # the epoch-end decision did not undo it; x100 clamped to max_lr
    assert lrs[6:9] == [1.0, 1.0, 1.0]
    assert lrs[9:] == [BASE_LR / 4] * 3  # released: the schedule's own LR for epoch 3
    human = [(m["human_lr"], step) for m, step in logger.records if "human_lr" in m]
    assert human == [(0.123, 3), (1.0, 5), (BASE_LR / 4, 9)]
    assert logger.values_of("controller_action").count(ACTIONS["human"]) == 3
    assert control.state_dict()["live"] == {"applied_seq": 3, "lr": None}


def test_the_control_file_is_polled_every_n_steps_of_an_epoch(tmp_path):
    from adaptive_lr.live_control import CONTROL_FILE, LiveOverride

    running(tmp_path)
    live = LiveOverride(tmp_path / CONTROL_FILE, min_lr=1e-4, max_lr=1.0, every_n_steps=2)
    control = LRControl(Fixed(), interval="epoch", live=live)
    steer = Steer(tmp_path, {3: ["set-lr", "0.123"]})  # after the 3rd step: batch 3 of epoch 1 is not polled
    _, recorder = fit(control, max_epochs=2, extra=[steer])

    assert recorder.step_lrs == [BASE_LR] * 4 + [0.123] * 4  # applied at the next polled batch, epoch 2's first
    with pytest.raises(ValueError, match="every_n_steps must be an int >= 1, got 0"):
        LiveOverride(tmp_path / CONTROL_FILE, every_n_steps=0)


def test_live_commands_refuse_bad_values_and_unknown_runs(tmp_path, capsys):
    from adaptive_lr.cli import main

    assert main(["set-lr", str(running(tmp_path)), "-1"]) == 2
    assert "value must be a positive finite number" in capsys.readouterr().err
    assert main(["set-lr", "no-such-run", "0.1", f"paths.root={tmp_path}"]) == 2
    assert "'no-such-run' is neither a run folder nor a run ID" in capsys.readouterr().err
