"""The one Lightning callback that drives any `LRPolicy`."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from adaptive_lr.checks import require_int
from adaptive_lr.errors import UserError
from adaptive_lr.live_control import LiveOverride
from adaptive_lr.optim.effective_lr import effective_lr
from adaptive_lr.schedulers.base import ACTIONS, INTERVALS, LRPolicy, Observation
from adaptive_lr.tracking import schema


class LRControlConfigError(UserError, ValueError):
    """The callback was configured with an invalid argument; the message names it and the allowed values."""


def _as_float(value: Any) -> float:
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


class LRControl(Callback):
    """Drives `policy` every `frequency` optimizer steps (`interval="step"`) or epochs (`interval="epoch"`).

    - At train start the policy is reset from the optimizer's LRs (or, on resume, its restored LRs are re-applied).
    - At each decision point it builds an `Observation` from `trainer.callback_metrics` (only if the policy watches
      a metric: open-loop schedules never trigger a host sync), asks the policy for new LRs and writes them into
      every param group. Epoch decisions happen at the end of the epoch's final validation (so a checkpoint
      written at validation end already holds them), or at train-epoch end for epochs without validation.
    - Under DDP every rank decides on the same numbers: epoch metrics are reduced across ranks by the task, the
      step loss by this callback, and probe losses are averaged; the policy is deterministic given its
      observations and state (RNGs are seeded and checkpointed). Rank 0's LRs are broadcast at each decision, so
      every rank applies the same LR even if a policy were not (see `_agree`).
    - It logs `lr` (and `lr/pg{i}` for further groups) every `log_every_n_steps` steps, and every controller
      decision as `controller_action` (code from `ACTIONS`) and `controller_factor`, to every attached logger.
      The logged `lr` is the step size the group's next update applies (`optim.effective_lr`): `group["lr"]`,
      except for learning-rate-free optimizers, whose `group["lr"]` is the multiplier the policy scales (d * lr
      for D-Adaptation and Prodigy, DoG's eta, Schedule-Free's lr with its warmup); a DoG group is left out
      before its first step, when its step size is not known yet.
    - Its state (the policy's state) goes into checkpoints under `state_key`.
    - With `live` (a `LiveOverride` on the run folder's control file) a person can hold the LR by hand
      (`adaptive-lr set-lr / scale-lr / release-lr`): applied at the next polled step (`live.every_n_steps`), logged as a `human` decision, and
      winning over the policy's LRs until released (the policy keeps observing meanwhile).
    - Policies that read parameters or gradients are bound to the optimizer at train start (after the reset, or
      after the restore on resume) with `policy.bind(optimizer, probe)`. `probe` (only for `policy.needs_probe`)
      returns `pl_module.probe_loss(batch)` on one fixed batch: the first batch of the validation dataloader, taken
      once at train start and moved to the device.
    - A policy that `decides_before_step` (it reads the gradient of the update its LR will scale) decides in
      `on_before_optimizer_step`, when that gradient exists, instead of at batch end; it is step-interval only.
      Such a decision is logged at the step count before the update.
    """

    def __init__(
        self,
        policy: LRPolicy,
        interval: Literal["step", "epoch"] = "epoch",
        frequency: int = 1,
        log_every_n_steps: int = 50,
        live: LiveOverride | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(policy, LRPolicy):
            raise LRControlConfigError(f"policy must be an LRPolicy, got {type(policy).__name__}")
        if interval not in INTERVALS:
            raise LRControlConfigError(f"interval must be one of {list(INTERVALS)}, got {interval!r}")
        for name, value in (("frequency", frequency), ("log_every_n_steps", log_every_n_steps)):
            require_int(name, value, minimum=1, error=LRControlConfigError, allowed="a positive int")
        if policy.decides_before_step and interval != "step":
            raise LRControlConfigError(
                f"{type(policy).__name__} decides before every optimizer step: interval must be 'step', "
                f"got {interval!r}"
            )
        self.policy, self.interval, self.frequency = policy, interval, frequency
        self.log_every_n_steps = log_every_n_steps
        self.live = live  # a person's LR override (`adaptive-lr set-lr`), polled before every step
        self._restored = False
        self._disagreed = False  # a DDP rank's policy chose other LRs than rank 0's (warned once)
        self._decided_epoch = 0  # last epoch (1-based) whose decision was made, so no epoch decides twice
        # Lightning reads `state_key` at every hook call (for its profiler's action name): built once
        self._state_key = self._generate_state_key(policy=type(policy).__name__, interval=interval)

    @property
    def state_key(self) -> str:
        return self._state_key

    @staticmethod
    def monitorable(logged: tuple[str, ...], interval: str) -> list[str]:
        """Metrics a policy may watch: what the task logs, plus the step loss this callback adds on step decisions."""
        return sorted((*logged, "train_loss_step") if interval == "step" else logged)

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if self.policy.needs_probe and not callable(getattr(pl_module, "probe_loss", None)):
            raise LRControlConfigError(
                f"{type(self.policy).__name__} needs a probe loss but {type(pl_module).__name__} has no "
                "probe_loss(batch) method"
            )
        if self.policy.monitor is None:
            return
        logged = getattr(pl_module, "logged_metrics", None)
        if logged is None:
            return
        allowed = self.monitorable(logged, self.interval)
        if self.policy.monitor not in allowed:
            raise LRControlConfigError(
                f"scheduler.monitor={self.policy.monitor!r} is never logged by {type(pl_module).__name__}; "
                f"allowed: {allowed}"
            )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        groups = self._param_groups(trainer)
        if self._restored:  # resumed from a checkpoint: the policy continues where it stopped
            if len(self.policy.lrs) != len(groups):
                raise LRControlConfigError(
                    f"checkpointed policy has {len(self.policy.lrs)} param groups, the optimizer {len(groups)}"
                )
            lrs = self.policy.lrs
        else:
            lrs = self.policy.reset([g.get("initial_lr", g["lr"]) for g in groups])
        self._apply(groups, self._overridden(lrs))
        # one optimizer as it is; several as one list of groups, in the order the LRs are applied
        optimizer = trainer.optimizers[0] if len(trainer.optimizers) == 1 else SimpleNamespace(param_groups=groups)
        self.policy.bind(optimizer, self._probe(trainer, pl_module) if self.policy.needs_probe else None)
        if not self._restored:  # a restored run logged this step's LR before its checkpoint, if it logs one there
            self._log_lr(trainer)

    @staticmethod
    def _probe(trainer: L.Trainer, pl_module: L.LightningModule) -> Callable[[], float]:
        """`probe_loss` on the first validation batch, taken once (a fixed batch: every probe sees the same data).

        Under DDP each rank probes its own shard's first batch and the losses are averaged across ranks, so every
        rank makes the same decision (their parameters are identical).
        """
        loaders = trainer.val_dataloaders
        if isinstance(loaders, (list, tuple)):
            loaders = loaders[0] if loaders else None
        if loaders is None:
            raise LRControlConfigError(
                "a policy that needs_probe takes its probe batch from the validation dataloader, "
                "but this fit has none"
            )
        batch = trainer.strategy.batch_to_device(next(iter(loaders)))

        def probe() -> float:
            loss = pl_module.probe_loss(batch)
            if trainer.world_size > 1:  # one all-reduce per probe (a few per decision)
                loss = float(trainer.strategy.reduce(torch.tensor(loss, device=pl_module.device), reduce_op="mean"))
            return loss

        return probe

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.live is None or batch_idx % self.live.every_n_steps:
            return
        groups = self._param_groups(trainer)
        before = groups[0]["lr"]
        command = self.live.poll(before)  # one stat(); the file is read only when it changed
        if command is None:
            return
        self._apply(groups, self._overridden(self.policy.lrs))
        after = groups[0]["lr"]
        self._log(trainer, {schema.CONTROLLER_ACTION: float(ACTIONS["human"]),
                            schema.CONTROLLER_FACTOR: after / before if before > 0 else 1.0, schema.HUMAN_LR: after})
        self._log_lr(trainer)

    def _overridden(self, lrs: list[float]) -> list[float]:
        """The policy's LRs, or a person's override of them (further groups keep their ratio to the first)."""
        if self.live is None or self.live.lr is None:
            return lrs
        return [self.live.lr * lr / lrs[0] if lrs[0] > 0 else self.live.lr for lr in lrs]

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        # a pre-step policy: the gradients of this update exist, the parameters have not moved yet
        if self.policy.decides_before_step and trainer.global_step % self.frequency == 0:
            self._decide(trainer, Observation(step=trainer.global_step, epoch=trainer.current_epoch))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if self.interval == "step" and step % self.frequency == 0 and not self.policy.decides_before_step:
            metrics: Mapping[str, float] = {}
            if self.policy.needs_metrics:
                # host sync point, once per decision: the step loss of this batch plus whatever epoch metrics exist
                metrics = self._metrics(trainer)
                loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs
                if loss is not None:
                    if trainer.world_size > 1:  # each rank saw its own batch: decide on their mean
                        loss = trainer.strategy.reduce(loss.detach(), reduce_op="mean")
                    metrics = {**metrics, "train_loss_step": _as_float(loss)}
            self._decide(trainer, Observation(step=step, epoch=trainer.current_epoch, metrics=metrics))
        if step % self.log_every_n_steps == 0:
            self._log_lr(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # An epoch-end validation: decide here, before a checkpoint written at validation end (ModelCheckpoint
        # always runs after other callbacks), so such a checkpoint already holds this epoch's decision.
        if trainer.state.fn == "fit" and not trainer.sanity_checking and self._epoch_finished(trainer):
            self._decide_epoch(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._decide_epoch(trainer)  # epochs without validation decide here; no-op if validation already did

    def _decide_epoch(self, trainer: L.Trainer) -> None:
        epoch = trainer.current_epoch + 1
        if self.interval != "epoch" or epoch % self.frequency != 0 or self._decided_epoch == epoch:
            return
        self._decided_epoch = epoch
        metrics = self._metrics(trainer) if self.policy.needs_metrics else {}
        self._decide(trainer, Observation(step=trainer.global_step, epoch=epoch, metrics=metrics))

    @staticmethod
    def _epoch_finished(trainer: L.Trainer) -> bool:
        """True at the validation that follows an epoch's last training batch (not a mid-epoch one)."""
        return bool(trainer.is_last_batch)

    # -- helpers -------------------------------------------------------------------------------------------------
    @staticmethod
    def _param_groups(trainer: L.Trainer) -> list[dict[str, Any]]:
        return [g for opt in trainer.optimizers for g in opt.param_groups]

    @staticmethod
    def _apply(groups: list[dict[str, Any]], lrs: list[float]) -> None:
        for group, lr in zip(groups, lrs, strict=True):
            group["lr"] = lr

    @staticmethod
    def _metrics(trainer: L.Trainer) -> dict[str, float]:
        return {k: _as_float(v) for k, v in trainer.callback_metrics.items() if isinstance(v, (torch.Tensor, float, int))}

    def _decide(self, trainer: L.Trainer, obs: Observation) -> None:
        if self.policy.monitor is not None and self.policy.monitor not in obs.metrics:
            return  # nothing measured yet at this point (e.g. a step decision before the first validation)
        lrs = self._agree(trainer, self.policy.observe(obs))
        self._apply(self._param_groups(trainer), self._overridden(lrs))
        decision = self.policy.last_decision
        if decision is not None:
            record = {schema.CONTROLLER_ACTION: float(ACTIONS.get(decision.action, -1)),
                      schema.CONTROLLER_FACTOR: decision.factor}
            if decision.value is not None and math.isfinite(decision.value):
                record["controller_value"] = decision.value
            record.update({f"controller_{k}": float(v) for k, v in decision.extra.items()})
            self._log(trainer, record)
        if self.interval == "epoch":
            self._log_lr(trainer)

    def _agree(self, trainer: L.Trainer, lrs: list[float]) -> list[float]:
        """Under DDP every rank applies rank 0's LRs (one broadcast per decision).

        Ranks decide on the same reduced metrics with the same policy state, so they already agree; the broadcast
        guarantees it even for a policy that is not deterministic across processes, and such a disagreement is
        reported once, since the policy's own state on that rank has then drifted from rank 0's.
        """
        if trainer.world_size <= 1:
            return lrs
        chosen = [float(lr) for lr in trainer.strategy.broadcast(list(lrs), src=0)]
        if chosen != lrs and not self._disagreed:
            self._disagreed = True
            warnings.warn(f"rank {trainer.global_rank}: {type(self.policy).__name__} chose LRs {lrs} but rank 0 "
                          f"chose {chosen}; applying rank 0's (the policy is not deterministic across ranks)",
                          stacklevel=2)
        self.policy.lrs = list(chosen)
        return chosen

    def _log_lr(self, trainer: L.Trainer) -> None:
        # the step size applied, not the multiplier a learning-rate-free optimizer keeps in group["lr"]; DoG's eta
        # is a tensor: a host sync, at this logging cadence only
        lrs = [effective_lr(g) for g in self._param_groups(trainer)]
        record = {schema.LR if i == 0 else f"lr/pg{i}": lr for i, lr in enumerate(lrs) if lr is not None}
        if record:
            self._log(trainer, record)

    @staticmethod
    def _log(trainer: L.Trainer, metrics: dict[str, float]) -> None:
        if trainer.sanity_checking:
            return
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    # -- persistence ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {"policy": self.policy.state_dict(), "decided_epoch": self._decided_epoch}
        if self.live is not None:
            state["live"] = self.live.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.policy.load_state_dict(state_dict["policy"])
        self._decided_epoch = int(state_dict.get("decided_epoch", 0))
        if self.live is not None and "live" in state_dict:
            self.live.load_state_dict(state_dict["live"])
        self._restored = True
