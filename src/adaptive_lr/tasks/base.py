"""What every task kind shares: manual optimisation, device-side epoch means, one publish per epoch and stage.

A task kind (classification, forecasting) subclasses `EpochMeanTask` and implements `batch_metrics`, which
returns the batch loss (with its graph, for training) and a 1-D tensor of batch means aligned with the stage's
metric names. Everything else lives here once:
  1. manual optimisation: zero_grad/backward/step without Lightning's per-step closure and hook chain (part of
     the fixed cost per step that the MNIST rows of `benchmarks/results.md` measure); consequence: Trainer's
     gradient_clip_val and accumulate_grad_batches do not apply to these tasks. On one device in fp32
     (`SingleDeviceStrategy`, the plain `Precision` plugin, one optimizer) the step goes straight to the torch
     optimizer and `loss.backward()` (~35-60 us less per MNIST-MLP step, timed with perf_counter around
     `training_step`; a whole step: `benchmarks/results.md`), keeping what Lightning's path does there: the
     step counter (`global_step`) and the `on_before_optimizer_step` hooks of the callbacks and the module that
     override it, called with the gradients in place (what it needs is captured once at train start,
     `DirectStep`: no per-step lookup through `compat`). A module or callback that overrides `backward`,
     `on_before_backward` or `on_after_backward`, and every other strategy or precision (DDP, mixed precision),
     takes Lightning's path (`manual_backward`, `LightningOptimizer.step`);
  2. batch metrics summed on the device (`EpochMeans`): no per-step `self.log`, `.item()` or cross-rank sync;
     the sums are all-reduced once per epoch and stage and published with `self.log(logger=False)` into
     `trainer.callback_metrics`, where controllers and the tracking callbacks (`EpochMetrics`) read them;
  3. train means are published when the epoch's validation ends (so callbacks' `on_train_epoch_end` sees them),
     or at `on_train_epoch_end` when no validation ran;
  4. non-finite training losses counted on the device (`nonfinite_steps`), read once per epoch by `EpochMetrics`;
  5. batches of in-memory tensors already on the device skip Lightning's recursive transfer;
  6. two costs Lightning adds to every step are paid once instead (~0.14 ms a step, timeit; a whole step:
     `benchmarks/results.md`): it sets `_current_fx_name` on the module around every hook (~35 times a step,
     each through `nn.Module.__setattr__`'s checks for parameters, buffers and submodules: a plain string needs
     none of them), and it calls `inspect.signature(training_step)` every step (the step methods carry a
     precomputed one);
  7. after every validation during fit, a fixed train subset of the validation set's size (the datamodule's
     `train_eval_dataloader`) is evaluated the same way (eval mode, no gradient, no augmentation) and published as
     `train_eval_{name}` with the train metric names: the generalization gap compares it with `val_{metric}`,
     where the running train-mode means of (2) mix dropout and a moving model. It draws no global random numbers,
     so the training trajectory is unchanged;
  8. optimizers with `train()`/`eval()` modes (Schedule-Free, `optim.AveragedDoG`: their evaluation point, the
     averaged weights, differs from the point where gradients are taken) are in train mode for every training
     step and in eval mode everywhere else: switched to train at train start and after every validation during
     fit (validation may run mid-epoch), to eval at every validation start and at train end (so test, and
     whoever uses the module after fit, see the averaged weights). A checkpoint holds the eval-mode state, as
     Schedule-Free's README requires: inside validation it already is; a checkpoint written during training
     (at train-epoch end) takes the weights and optimizer states again in eval mode, then switches back.
  9. a checkpoint holds the running epoch sums of (2) (`epoch_sums`), so a run restored from a checkpoint written
     mid-epoch (`checkpoint.every_n_steps`) publishes the same epoch means as the uninterrupted run; under DDP the
     ranks' sums are added into the checkpoint and restored on rank 0 (the same means, summed in another order).
 10. Lightning wraps every hook call (about 20 per training step) in `trainer.profiler.profile(name)`. Its default
     `PassThroughProfiler` does nothing there, but `profile` is a `@contextmanager` generator: each call builds a
     generator and a context manager, 2.6 us against 0.5 us for `NoProfiler`, which returns one shared no-op
     context (timeit, this machine): ~0.04 ms a step (an MNIST-MLP step's own time: `benchmarks/results.md`). The
     runner hands `NoProfiler` to the Trainer unless the config asks for a profiler (`trainer.profiler=simple`).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch import nn

from adaptive_lr.compat import HOOK_NAME, step_counter
from adaptive_lr.tasks.epoch_mean import EpochMeans

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
STAGES = ("train", "val", "test")
TRAIN_EVAL = "train_eval"  # the fixed train subset evaluated like validation (docstring, 7)
BACKWARD_HOOKS = ("on_before_backward", "on_after_backward")  # a direct step would skip these (docstring, 1)
StepHook = Callable[[L.Trainer, L.LightningModule, torch.optim.Optimizer], None]
BEFORE_STEP_HOOK = "on_before_optimizer_step"
EPOCH_SUMS = "epoch_sums"  # the checkpoint key of the running epoch sums (docstring, 9)


@dataclass(frozen=True)
class DirectStep:
    """What the direct training step (module docstring, 1) needs, captured once at train start: the torch
    optimizer, the `on_before_optimizer_step` hooks to call, and Lightning's step-counter callables (looked up
    through `compat` once, not on every step)."""

    optimizer: torch.optim.Optimizer
    hooks: tuple[StepHook, ...]
    before_step: Callable[[], Any]
    after_step: Callable[[], Any]
    trainer: L.Trainer  # the hooks' first argument


class EpochMeanTask(L.LightningModule):
    """Base of the task kinds. `metric_names[stage]` lists the per-stage metrics (the first must be "loss") that
    `batch_metrics` returns, in order; each is published as `{stage}_{name}`.

    Subclasses set the class attributes `metric` (the base metric a report and a threshold refer to) and
    `metric_mode` ("max" or "min").
    """

    metric: str = ""
    metric_mode: str = ""
    _optimizers_training = False  # whether optimizers with modes were last switched to train (docstring, 8)

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory,
        loss: nn.Module,
        metric_names: Mapping[str, Sequence[str]],
    ) -> None:
        super().__init__()
        if set(metric_names) != set(STAGES) or any(tuple(n)[:1] != ("loss",) for n in metric_names.values()):
            raise ValueError(
                f"metric_names must map each of {STAGES} to names starting with 'loss', got {metric_names}"
            )
        self.model = model
        self.optimizer_factory = optimizer
        self.loss_fn = loss
        self.automatic_optimization = False  # see training_step
        self.register_buffer("nonfinite_steps", torch.zeros((), dtype=torch.long), persistent=True)
        self._means = {stage: EpochMeans(tuple(metric_names[stage])) for stage in STAGES}
        self._means[TRAIN_EVAL] = EpochMeans(tuple(metric_names["train"]))
        # what a step that skips Lightning's path needs (set at train start; None: Lightning's path)
        self._direct: DirectStep | None = None

    # -- what a subclass provides ------------------------------------------------------------------------------------
    def batch_metrics(self, batch: Sequence[torch.Tensor], stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, values): the batch loss (graph kept) and a 1-D tensor of batch means aligned with the stage's
        metric names (values[0] is the detached loss)."""
        raise NotImplementedError

    def __setattr__(self, name: str, value: Any) -> None:
        if name == HOOK_NAME:  # Lightning's hook bookkeeping, a str or None (module docstring, 6)
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # -- metric names ------------------------------------------------------------------------------------------------
    @property
    def logged_metrics(self) -> tuple[str, ...]:
        """Every metric name this task puts into `trainer.callback_metrics` during fit (a controller may watch any)."""
        return tuple(f"{s}_{m}" for s in ("train", "val", TRAIN_EVAL) for m in self._means[s].names) + (
            "nonfinite_steps",
        )

    # -- Lightning plumbing ------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def predict(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        """The model's output for a batch whose first tensor is the input (a task whose model takes more of the
        batch, such as known-future covariates, overrides this)."""
        return self.model(batch[0])

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # batches of in-memory tensors usually live on the device already: skip Lightning's recursive move
        if isinstance(batch, (tuple, list)) and all(
            isinstance(t, torch.Tensor) and t.device == device for t in batch
        ):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _shared_step(self, batch: Sequence[torch.Tensor], stage: str) -> torch.Tensor:
        loss, values = self.batch_metrics(batch, stage)
        self._means[stage].add(values, len(batch[0]))
        return loss

    def _publish(self, stage: str) -> None:
        reduce = None
        if self.trainer.world_size > 1:
            reduce = lambda t: self.trainer.strategy.reduce(t, reduce_op="sum")  # noqa: E731
        for name, value in self._means[stage].compute(reduce).items():
            self.log(f"{stage}_{name}", value, logger=False)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.state.fn == "fit":
            self._publish("train")
            if not self.trainer.sanity_checking:
                self._evaluate_train_subset()
        self._publish("val")

    def _evaluate_train_subset(self) -> None:
        """Docstring, 7: the train subset in eval mode, published as `train_eval_*` (nothing without a loader)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        loader = datamodule.train_eval_dataloader() if hasattr(datamodule, "train_eval_dataloader") else None
        if loader is None:
            return
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for batch in loader:
                    batch = self.transfer_batch_to_device(batch, self.device, 0)
                    _, values = self.batch_metrics(batch, "train")
                    self._means[TRAIN_EVAL].add(values, len(batch[0]))
        finally:
            self.model.train(was_training)
        self._publish(TRAIN_EVAL)

    def on_train_epoch_end(self) -> None:
        self._publish("train")  # no-op when validation already published this epoch's train means

    def on_test_epoch_end(self) -> None:
        self._publish("test")

    def on_train_start(self) -> None:
        self._direct = self._direct_step()
        self._set_optimizer_mode(train=True)

    def _direct_step(self) -> DirectStep | None:
        """What a direct step needs, or None where Lightning's path must run (module docstring, 1)."""
        trainer = self.trainer
        if (type(trainer.strategy) is not SingleDeviceStrategy or type(trainer.precision_plugin) is not Precision
                or len(trainer.optimizers) != 1
                or any(is_overridden(hook, self, L.LightningModule) for hook in ("backward", *BACKWARD_HOOKS))
                or any(is_overridden(hook, cb, Callback) for cb in trainer.callbacks for hook in BACKWARD_HOOKS)):
            return None
        hooks: list[StepHook] = [cb.on_before_optimizer_step for cb in trainer.callbacks
                                 if is_overridden(BEFORE_STEP_HOOK, cb, Callback)]
        if is_overridden(BEFORE_STEP_HOOK, self, L.LightningModule):
            hooks.append(lambda trainer, module, optimizer: module.on_before_optimizer_step(optimizer))
        lightning_optimizer: LightningOptimizer = self.optimizers()  # public; we advance its step counter
        before_step, after_step = step_counter(trainer)
        return DirectStep(lightning_optimizer.optimizer, tuple(hooks), before_step, after_step, trainer)

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        # Manual optimization (module docstring, 1): the same zero_grad/backward/step as Lightning's automatic loop
        direct = self._direct
        optimizer = self.optimizers() if direct is None else direct.optimizer
        optimizer.zero_grad()
        loss = self._shared_step(batch, "train")
        if direct is None:  # through the LightningOptimizer (precision scaling and DDP sync intact)
            self.manual_backward(loss)
            optimizer.step()
        else:
            loss.backward()
            direct.before_step()  # Lightning's step counter (global_step), as its step() does
            if direct.hooks:
                # the hook name around the hooks, as Lightning's own hook calls set it (self.log reads it); set on
                # the instance directly (see __setattr__), restored even if a hook raises
                caller = self.__dict__.get(HOOK_NAME)
                object.__setattr__(self, HOOK_NAME, BEFORE_STEP_HOOK)
                try:
                    for hook in direct.hooks:
                        hook(direct.trainer, self, optimizer)
                finally:
                    object.__setattr__(self, HOOK_NAME, caller)
            optimizer.step()
            direct.after_step()
        self.nonfinite_steps.add_(~loss.detach().isfinite())  # device-side count, read once per epoch
        return loss.detach()

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.model.parameters())

    # Lightning inspects the step methods' signatures every step; subclasses that override one keep Lightning's
    # behaviour (their function has no `__signature__`)
    for _step in (training_step, validation_step, test_step):
        _step.__signature__ = inspect.signature(_step)  # type: ignore[attr-defined]
    del _step

    # -- optimizers with train/eval modes (docstring, 8) -------------------------------------------------------------
    def _moded_optimizers(self) -> list[torch.optim.Optimizer]:
        return [o for o in self.trainer.optimizers
                if callable(getattr(o, "train", None)) and callable(getattr(o, "eval", None))]

    def _set_optimizer_mode(self, train: bool) -> None:
        for optimizer in self._moded_optimizers():
            getattr(optimizer, "train" if train else "eval")()
        self._optimizers_training = train

    def on_validation_start(self) -> None:
        self._set_optimizer_mode(train=False)

    def on_validation_end(self) -> None:
        # after callbacks' on_validation_end, so a checkpoint written at validation end is in eval mode; the
        # sanity check runs before training, whose start switches to train mode
        if self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            self._set_optimizer_mode(train=True)

    def on_train_end(self) -> None:
        self._set_optimizer_mode(train=False)

    def on_test_start(self) -> None:
        self._set_optimizer_mode(train=False)  # after fit the trainer holds no optimizer: on_train_end did it

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[EPOCH_SUMS] = self._epoch_sums()
        if not (self._optimizers_training and self._moded_optimizers()):
            return
        strategy = self.trainer.strategy
        self._set_optimizer_mode(train=False)
        try:  # copies: switching back to train mode changes the parameters and states in place
            checkpoint["state_dict"] = {k: v.clone() for k, v in strategy.lightning_module_state_dict().items()}
            if "optimizer_states" in checkpoint:
                checkpoint["optimizer_states"] = [copy.deepcopy(strategy.optimizer_state(o))
                                                  for o in self.trainer.optimizers]
        finally:
            self._set_optimizer_mode(train=True)

    # -- epoch sums in checkpoints (docstring, 9) --------------------------------------------------------------------
    def _epoch_sums(self) -> dict[str, dict[str, torch.Tensor | None]]:
        """Every stage's running sums; under DDP summed over the ranks (a collective: every rank writes the
        checkpoint's content, rank 0 the file)."""
        trainer, reduce = self._attached_trainer(), None
        if trainer is not None and trainer.world_size > 1:
            reduce = lambda t: trainer.strategy.reduce(t, reduce_op="sum")  # noqa: E731
        return {stage: means.state_dict(reduce) for stage, means in self._means.items()}

    def _attached_trainer(self) -> L.Trainer | None:
        try:
            return self.trainer
        except RuntimeError:  # not attached (a checkpoint saved or loaded by hand)
            return None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        sums = checkpoint.get(EPOCH_SUMS)
        if sums is None:  # a checkpoint written before the sums were saved: epoch-end ones, where they are empty
            return
        trainer = self._attached_trainer()
        rank = trainer.global_rank if trainer is not None else 0
        for stage, state in sums.items():  # the ranks' summed part on rank 0; the others continue from zero
            if stage in self._means:
                self._means[stage].load_state_dict(state if rank == 0 else {"sums": None}, self.device)

    # -- the task's batch format: one loss for whoever holds a batch -------------------------------------------------
    def batch_loss(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        """The loss of the model on one batch of this task's format, a 0-d tensor (with its graph when gradients
        are on). The one place outside `batch_metrics` that knows what a batch holds: multi-start ranks
        initialisations by it (`tasks.multi_start`) and controllers probe with it (`probe_loss`). Here: the
        model's output (`predict`) against the second tensor, as both task kinds' batches put the target there
        ((x, y) for classification; (x, y, naive, scale[, future]) for forecasting)."""
        return self.loss_fn(self.predict(batch), batch[1])

    # -- controllers' probe ------------------------------------------------------------------------------------------
    def probe_loss(self, batch: Sequence[torch.Tensor]) -> float:
        """`batch_loss` on `batch` in eval mode without gradients (dropout off; the train/eval mode is restored).
        For controllers that probe a candidate LR; costs one host sync, so call it sparingly."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                loss = self.batch_loss(self.transfer_batch_to_device(batch, self.device, 0))
        finally:
            self.model.train(was_training)
        return float(loss.item())  # sync point: one per probe


_NO_OP = nullcontext()


class NoProfiler(PassThroughProfiler):
    """`PassThroughProfiler` whose `profile(name)` is one reused `nullcontext` (no generator per hook call; module
    docstring, 10)."""

    def profile(self, action_name: str) -> Any:  # type: ignore[override]
        return _NO_OP
