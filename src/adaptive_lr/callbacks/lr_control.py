"""The one Lightning callback that drives any `LRPolicy`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from adaptive_lr.schedulers.base import ACTIONS, LRPolicy, Observation


class LRControlConfigError(ValueError):
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
    - Under DDP the watched metrics are already reduced across ranks (the task logs them with `sync_dist=True`),
      and the policy is deterministic given its observations and state, so every rank applies the same LR.
    - It logs `lr` (and `lr/pg{i}` for further groups) every `log_every_n_steps` steps, and every controller
      decision as `controller_action` (code from `ACTIONS`) and `controller_factor`, to every attached logger.
    - Its state (the policy's state) goes into checkpoints under `state_key`.
    """

    def __init__(
        self,
        policy: LRPolicy,
        interval: Literal["step", "epoch"] = "epoch",
        frequency: int = 1,
        log_every_n_steps: int = 50,
    ) -> None:
        super().__init__()
        if not isinstance(policy, LRPolicy):
            raise LRControlConfigError(f"policy must be an LRPolicy, got {type(policy).__name__}")
        if interval not in ("step", "epoch"):
            raise LRControlConfigError(f"interval must be one of ['step', 'epoch'], got {interval!r}")
        if not (isinstance(frequency, int) and frequency >= 1):
            raise LRControlConfigError(f"frequency must be a positive int, got {frequency!r}")
        if not (isinstance(log_every_n_steps, int) and log_every_n_steps >= 1):
            raise LRControlConfigError(f"log_every_n_steps must be a positive int, got {log_every_n_steps!r}")
        self.policy, self.interval, self.frequency = policy, interval, frequency
        self.log_every_n_steps = log_every_n_steps
        self._restored = False
        self._decided_epoch = 0  # last epoch (1-based) whose decision was made, so no epoch decides twice

    @property
    def state_key(self) -> str:
        return self._generate_state_key(policy=type(self.policy).__name__, interval=self.interval)

    @staticmethod
    def monitorable(logged: tuple[str, ...], interval: str) -> list[str]:
        """Metrics a policy may watch: what the task logs, plus the step loss this callback adds on step decisions."""
        return sorted((*logged, "train_loss_step") if interval == "step" else logged)

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self.policy.monitor is None:
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
        self._apply(groups, lrs)
        self._log_lr(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if self.interval == "step" and step % self.frequency == 0:
            metrics: Mapping[str, float] = {}
            if self.policy.needs_metrics:
                # host sync point, once per decision: the step loss of this batch plus whatever epoch metrics exist
                metrics = self._metrics(trainer)
                loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs
                if loss is not None:
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
        return bool(trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)

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
        lrs = self.policy.observe(obs)
        self._apply(self._param_groups(trainer), lrs)
        decision = self.policy.last_decision
        if decision is not None:
            record = {"controller_action": float(ACTIONS.get(decision.action, -1)),
                      "controller_factor": decision.factor}
            if decision.value is not None and math.isfinite(decision.value):
                record["controller_value"] = decision.value
            record.update({f"controller_{k}": float(v) for k, v in decision.extra.items()})
            self._log(trainer, record)
        if self.interval == "epoch":
            self._log_lr(trainer)

    def _log_lr(self, trainer: L.Trainer) -> None:
        lrs = [g["lr"] for g in self._param_groups(trainer)]
        record = {"lr": lrs[0]} | {f"lr/pg{i}": lr for i, lr in enumerate(lrs) if i > 0}
        self._log(trainer, record)

    @staticmethod
    def _log(trainer: L.Trainer, metrics: dict[str, float]) -> None:
        if trainer.sanity_checking:
            return
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    # -- persistence ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.state_dict(), "decided_epoch": self._decided_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.policy.load_state_dict(state_dict["policy"])
        self._decided_epoch = int(state_dict.get("decided_epoch", 0))
        self._restored = True
