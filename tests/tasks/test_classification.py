"""`EpochMeans` and `ClassificationTask`: exact weighted epoch means, published metrics equal a computation by hand."""

from __future__ import annotations

import copy
import functools

import lightning as L
import pytest
import torch
from torch import nn

from adaptive_lr.data.digits import DigitsDataModule
from adaptive_lr.data.xor import XORDataModule
from adaptive_lr.models.mlp import MLP
from adaptive_lr.tasks import ClassificationTask
from adaptive_lr.tasks.epoch_mean import EpochMeans
from trainer_support import bare_trainer

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*")  # a Lightning/torch deprecation, not ours

SGD = functools.partial(torch.optim.SGD, lr=0.5)


trainer = bare_trainer


# -- EpochMeans ------------------------------------------------------------------------------------------------------
def test_epoch_means_are_exact_batch_size_weighted_means_and_reset():
    means = EpochMeans(("loss", "acc"))
    assert means.compute() == {}
    means.add(torch.tensor([2.0, 1.0]), 3)
    means.add(torch.tensor([5.0, 0.0]), 1)
    means.add(torch.tensor([1.0, 0.5]), 4)
    out = means.compute()
    assert set(out) == {"loss", "acc"}
    assert out["loss"].item() == pytest.approx((2 * 3 + 5 * 1 + 1 * 4) / 8)
    assert out["acc"].item() == pytest.approx((1 * 3 + 0 + 0.5 * 4) / 8)
    assert means.compute() == {}  # reset after compute
    means.add(torch.tensor([7.0, 1.0]), 2)
    assert means.compute()["loss"].item() == 7.0


def test_epoch_means_apply_the_reduction_to_the_sums():
    means = EpochMeans(("loss",))
    means.add(torch.tensor([4.0]), 2)  # sums: [8, 2]
    seen = []

    def fake_all_reduce(
        sums: torch.Tensor,
    ) -> torch.Tensor:  # another rank contributed loss 1.0 over 6 samples
        seen.append(sums.clone())
        return sums + torch.tensor([6.0, 6.0])

    assert means.compute(fake_all_reduce)["loss"].item() == pytest.approx(14 / 8)
    assert torch.equal(seen[0], torch.tensor([8.0, 2.0]))


def test_epoch_means_do_not_hold_the_graph():
    w = torch.tensor(2.0, requires_grad=True)
    means = EpochMeans(("loss",))
    means.add(torch.stack([w * 3]), 1)
    assert not means.compute()["loss"].requires_grad


# -- ClassificationTask ----------------------------------------------------------------------------------------------
def by_hand(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module, binary: bool):
    with torch.no_grad():
        logits = model(x)
        preds = (logits > 0).float() if binary else logits.argmax(dim=1)
        return loss_fn(logits, y).item(), (preds == y).float().mean().item()


def test_binary_task_publishes_val_metrics_equal_to_a_computation_by_hand():
    L.seed_everything(0, verbose=False)
    dm = XORDataModule(
        variant="noisy", n_samples=200, batch_size=16, eval_batch_size=7
    )  # 40 val: 5 batches of 7 + 5
    task = ClassificationTask(MLP(2, [4], 1, "tanh"), SGD, nn.BCEWithLogitsLoss())
    assert task.binary
    t = trainer(max_epochs=2)
    t.fit(task, datamodule=dm)
    x_val, y_val = dm.splits[1]
    loss, acc = by_hand(task.model, x_val, y_val, nn.BCEWithLogitsLoss(), binary=True)
    m = t.callback_metrics
    assert {"train_loss", "train_acc", "val_loss", "val_acc"} <= set(m)
    assert m["val_loss"].item() == pytest.approx(loss, rel=1e-5)
    assert m["val_acc"].item() == pytest.approx(acc, abs=1e-6)
    assert 0.0 < acc < 1.0  # noisy XOR: a real accuracy, not a degenerate one
    assert set(task.logged_metrics) == {"train_loss", "train_acc", "val_loss", "val_acc", "train_eval_loss",
                                        "train_eval_acc", "nonfinite_steps"}


def test_train_subset_is_evaluated_in_eval_mode_like_validation_and_leaves_training_unchanged():
    """`train_eval_*` equals an eval-mode computation by hand on the datamodule's fixed train subset (dropout off,
    so it differs from the train-mode forward), and the pass draws no random numbers: parameters after training
    are identical with the pass switched off."""

    def fit(train_eval_size):
        L.seed_everything(3, verbose=False)
        dm = DigitsDataModule(batch_size=64, eval_batch_size=50, seed=4)
        dm.train_eval_size = train_eval_size
        task = ClassificationTask(nn.Sequential(nn.Linear(64, 32), nn.Dropout(0.5), nn.ReLU(), nn.Linear(32, 10)),
                                  SGD)
        t = trainer(max_epochs=2, limit_train_batches=4)
        t.fit(task, datamodule=dm)
        return dm, task, t

    dm, task, t = fit(None)
    x_sub = torch.cat([b[0] for b in dm.train_eval_dataloader()])
    y_sub = torch.cat([b[1] for b in dm.train_eval_dataloader()])
    assert len(x_sub) == len(dm.splits[1][0])  # the validation set's size
    task.model.eval()
    loss, acc = by_hand(task.model, x_sub, y_sub, nn.CrossEntropyLoss(), binary=False)
    assert t.callback_metrics["train_eval_loss"].item() == pytest.approx(loss, rel=1e-5)
    assert t.callback_metrics["train_eval_acc"].item() == pytest.approx(acc, abs=1e-6)
    task.model.train()
    with torch.no_grad():  # train mode (dropout on) gives another loss: the pass really ran in eval mode
        assert nn.CrossEntropyLoss()(task.model(x_sub), y_sub).item() != pytest.approx(loss, rel=1e-3)
    assert torch.equal(torch.cat([b[0] for b in fit(None)[0].train_eval_dataloader()]), x_sub)  # fixed subset

    _, off, t_off = fit(0)
    assert "train_eval_acc" not in t_off.callback_metrics
    for a, b in zip(task.model.parameters(), off.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_multiclass_task_on_digits_uses_argmax_accuracy_and_weighted_val_batches():
    L.seed_everything(0, verbose=False)
    dm = DigitsDataModule(batch_size=128, eval_batch_size=100)  # 359 val samples: batches 100, 100, 100, 59
    task = ClassificationTask(MLP(64, [], 10), SGD)  # default loss: cross-entropy
    assert not task.binary
    t = trainer(max_epochs=1, limit_train_batches=3)
    t.fit(task, datamodule=dm)
    x_val, y_val = dm.splits[1]
    loss, acc = by_hand(task.model, x_val, y_val, nn.CrossEntropyLoss(), binary=False)
    assert t.callback_metrics["val_loss"].item() == pytest.approx(loss, rel=1e-5)
    assert t.callback_metrics["val_acc"].item() == pytest.approx(acc, abs=1e-6)
    assert 0.1 < acc < 1.0

    t.validate(task, datamodule=dm, verbose=False)  # outside fit only the val means are published
    assert t.callback_metrics["val_acc"].item() == pytest.approx(acc, abs=1e-6)
    t.test(task, datamodule=dm, verbose=False)
    x_test, y_test = dm.splits[2]
    assert t.callback_metrics["test_acc"].item() == pytest.approx(
        by_hand(task.model, x_test, y_test, nn.CrossEntropyLoss(), binary=False)[1], abs=1e-6
    )


@pytest.mark.parametrize("epochs", [1, 3])
def test_train_metrics_are_the_weighted_means_of_the_last_epochs_batch_losses(epochs):
    """Replays the same training by hand (same init, same seeded batch order per epoch) and compares."""
    L.seed_everything(1, verbose=False)
    dm = XORDataModule(variant="corner", n_samples=150, batch_size=32, seed=5)  # 90 train: 32, 32, 26
    model = MLP(2, [3], 1, "tanh")
    manual = copy.deepcopy(model)
    t = trainer(max_epochs=epochs)
    t.fit(ClassificationTask(model, SGD, nn.BCEWithLogitsLoss()), datamodule=dm)

    opt = SGD(manual.parameters())
    loader = dm.train_dataloader()
    loss_fn = nn.BCEWithLogitsLoss()
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        loss_sum = acc_sum = n = 0.0
        for x, y in loader:
            loss = loss_fn(manual(x), y)
            with torch.no_grad():
                acc_sum += ((manual(x) > 0).float() == y).float().sum().item()
            loss_sum += loss.item() * len(y)
            n += len(y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert n == 90
    assert t.callback_metrics["train_loss"].item() == pytest.approx(loss_sum / n, rel=1e-5)
    assert t.callback_metrics["train_acc"].item() == pytest.approx(acc_sum / n, abs=1e-6)
    for p, q in zip(model.parameters(), manual.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_train_metrics_are_published_without_a_validation_loop():
    L.seed_everything(0, verbose=False)
    dm = XORDataModule(variant="clean", n_samples=100, batch_size=20)
    t = trainer(max_epochs=1, limit_val_batches=0)
    t.fit(ClassificationTask(MLP(2, [2], 1, "tanh"), SGD, nn.BCEWithLogitsLoss()), datamodule=dm)
    assert {"train_loss", "train_acc"} <= set(t.callback_metrics)
    assert "val_loss" not in t.callback_metrics


class NaNOnSteps(nn.Module):
    """Wraps a model and returns NaN logits on the given (0-based) training calls; gradients stay finite."""

    def __init__(self, model: nn.Module, nan_calls: set[int]) -> None:
        super().__init__()
        self.model, self.nan_calls, self.calls = model, nan_calls, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if self.training:
            if self.calls in self.nan_calls:
                # torch.where routes a zero gradient to `out`, so the weights stay finite after the step
                out = torch.where(
                    torch.ones_like(out, dtype=torch.bool), torch.full_like(out, float("nan")), out
                )
            self.calls += 1
        return out


def test_nonfinite_steps_counts_nan_training_losses():
    L.seed_everything(0, verbose=False)
    dm = XORDataModule(variant="clean", n_samples=100, batch_size=20)  # 60 train: 3 steps per epoch
    model = NaNOnSteps(MLP(2, [2], 1, "tanh"), nan_calls={1, 4, 5})
    task = ClassificationTask(model, SGD, nn.BCEWithLogitsLoss())
    t = trainer(max_epochs=3)
    t.fit(task, datamodule=dm)
    assert model.calls == 9
    assert int(task.nonfinite_steps) == 3
    assert all(torch.isfinite(p).all() for p in task.parameters())
    assert torch.isfinite(t.callback_metrics["val_loss"])  # validation never sees the NaNs
    assert "nonfinite_steps" in task.state_dict()  # persistent: survives a checkpoint


def test_train_loss_of_an_epoch_with_a_nan_step_is_nan():
    L.seed_everything(0, verbose=False)
    dm = XORDataModule(variant="clean", n_samples=100, batch_size=20)
    model = NaNOnSteps(MLP(2, [2], 1, "tanh"), nan_calls={0})
    t = trainer(max_epochs=1)
    t.fit(ClassificationTask(model, SGD, nn.BCEWithLogitsLoss()), datamodule=dm)
    assert torch.isnan(t.callback_metrics["train_loss"])


def test_the_lightning_bookkeeping_fast_paths_keep_module_semantics():
    import inspect
    import types

    from lightning.pytorch.utilities.signature_utils import is_param_in_hook_signature

    from adaptive_lr.tasks.base import EpochMeanTask

    task = ClassificationTask(MLP(2, [2], 1, "tanh"), SGD, nn.BCEWithLogitsLoss())
    task._current_fx_name = "training_step"  # the fast path: a plain attribute, as nn.Module would store it
    assert task._current_fx_name == "training_step" and "_current_fx_name" in vars(task)
    task.extra = nn.Linear(1, 1)  # everything else still goes through nn.Module: submodules and buffers register
    task.scale = nn.Parameter(torch.ones(1))
    assert "extra" in task._modules and "scale" in task._parameters and "extra" not in vars(task)
    # the precomputed signatures are the real ones (Lightning reads them to pass batch_idx)
    for name in ("training_step", "validation_step", "test_step"):
        method = getattr(EpochMeanTask, name)
        bare = types.FunctionType(method.__code__, method.__globals__)  # the same function without __signature__
        bare.__annotations__ = method.__annotations__
        assert method.__signature__ == inspect.signature(bare)
        assert list(inspect.signature(getattr(task, name)).parameters) == ["batch", "batch_idx"]
        assert is_param_in_hook_signature(getattr(task, name), "batch_idx", min_args=2)  # Lightning passes it


class StepHooks(L.Callback):
    """Records what `on_before_optimizer_step` sees: the step count, the hook name the module reports, whether
    every gradient exists, and the parameters before the update."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str, bool]] = []
        self.before: list[list[torch.Tensor]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        grads = all(p.grad is not None for p in pl_module.parameters())
        self.calls.append((trainer.global_step, pl_module._current_fx_name, grads))
        self.before.append([p.detach().clone() for p in pl_module.parameters()])


class StepHooksAfterBackward(StepHooks):
    """The same, plus `on_after_backward`: a hook only Lightning's own backward calls."""

    after_backward = 0

    def on_after_backward(self, trainer, pl_module) -> None:
        self.after_backward += 1


class RecordingTask(ClassificationTask):
    def on_before_optimizer_step(self, optimizer) -> None:
        self.module_hook_steps = [*getattr(self, "module_hook_steps", []), self.trainer.global_step]

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.names_after_step = [*getattr(self, "names_after_step", []), self._current_fx_name]  # restored
        return loss


def test_the_direct_step_trains_and_calls_hooks_exactly_as_lightnings_path():
    """Single device, fp32: the direct step (torch optimizer, loss.backward) against Lightning's manual_backward and
    LightningOptimizer.step, forced by a callback that overrides on_after_backward. Same parameters after 2 epochs,
    same global_step, and the on_before_optimizer_step hooks of the callback and the module called once per step,
    with the gradients in place and the parameters not yet moved."""
    results = {}
    for hooks in (StepHooks(), StepHooksAfterBackward()):
        L.seed_everything(3, verbose=False)
        dm = XORDataModule(variant="corner", n_samples=150, batch_size=32, seed=5)  # 3 steps per epoch
        task = RecordingTask(MLP(2, [3], 1, "tanh"), SGD, nn.BCEWithLogitsLoss())
        t = trainer(max_epochs=2, callbacks=[hooks])
        t.fit(task, datamodule=dm)
        results[type(hooks)] = (task, t, hooks)
    (direct, t_direct, h_direct), (lightning, t_lightning, h_lightning) = results.values()
    assert direct._direct is not None and lightning._direct is None  # each took the path it was meant to
    assert h_lightning.after_backward == 6
    assert t_direct.global_step == t_lightning.global_step == 6
    progress = [t.fit_loop.epoch_loop.manual_optimization.optim_step_progress.state_dict()  # checkpointed
                for t in (t_direct, t_lightning)]
    assert progress[0] == progress[1] and progress[0]["total"]["ready"] == 6
    for hooks in (h_direct, h_lightning):
        assert hooks.calls == [(step, "on_before_optimizer_step", True) for step in range(6)]
    assert direct.module_hook_steps == lightning.module_hook_steps == list(range(6))
    assert direct.names_after_step == lightning.names_after_step == ["training_step"] * 6
    for before_direct, before_lightning in zip(h_direct.before, h_lightning.before, strict=True):
        for p, q in zip(before_direct, before_lightning, strict=True):
            torch.testing.assert_close(p, q)
    assert not all(torch.equal(p, q) for p, q in zip(h_direct.before[0], h_direct.before[1], strict=True))
    for p, q in zip(direct.parameters(), lightning.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    assert t_direct.callback_metrics["train_loss"].item() == pytest.approx(
        t_lightning.callback_metrics["train_loss"].item(), rel=1e-6)


def test_other_precisions_take_lightnings_path_and_still_count_steps():
    """Mixed precision needs Lightning's precision plugin around backward and step: no direct step there."""
    L.seed_everything(0, verbose=False)
    dm = XORDataModule(variant="corner", n_samples=150, batch_size=32, seed=5)
    task = RecordingTask(MLP(2, [3], 1, "tanh"), SGD, nn.BCEWithLogitsLoss())
    t = trainer(max_epochs=1, precision="bf16-mixed")
    t.fit(task, datamodule=dm)
    assert task._direct is None
    assert t.global_step == 3 and task.module_hook_steps == [0, 1, 2]
