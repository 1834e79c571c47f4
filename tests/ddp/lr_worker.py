"""A 2-process DDP fit (gloo, CPU) that records the LR every rank applies at every step.

Not a test module: `tests/test_ddp.py` runs it as `python lr_worker.py OUT_DIR NAME=OVERRIDE,OVERRIDE...`. Lightning's "ddp"
strategy launches rank 1 by re-running this script with the same arguments, so everything here runs on every rank;
each rank writes `OUT_DIR/NAME.rank{r}.json` with its LR sequence and the controller decisions it made.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from adaptive_lr.callbacks import LRControl
from adaptive_lr.config import compose
from adaptive_lr.runner import build
from adaptive_lr.runtime import configure_runtime


class RecordLR(Callback):
    """Every param group's LR at the start of every optimizer step, and each decision's action, on this rank."""

    def __init__(self, policy) -> None:
        self.policy, self.lrs, self.actions = policy, [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append([g["lr"] for opt in trainer.optimizers for g in opt.param_groups])
        decision = self.policy.last_decision
        self.actions.append(None if decision is None else [decision.tick, decision.action])


def fit(out: Path, name: str, overrides: list[str]) -> None:
    cfg = compose(["trainer=ddp_cpu", *overrides])
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    parts = build(cfg)
    policy = parts["policy"]
    control = LRControl(policy, interval=cfg.scheduler.interval, frequency=cfg.scheduler.frequency)
    record = RecordLR(policy)
    trainer = L.Trainer(**dict(cfg.trainer), logger=False, callbacks=[control, record],
                        use_distributed_sampler=False, default_root_dir=str(out))
    trainer.fit(parts["module"], datamodule=parts["datamodule"])
    (out / f"{name}.rank{trainer.global_rank}.json").write_text(
        json.dumps({"world_size": trainer.world_size, "lrs": record.lrs, "actions": record.actions})
    )


def main(out: Path, cases: list[str]) -> None:
    """Each case is `name=override,override,...`; the cases run one after the other in the same process group."""
    configure_runtime()
    for case in cases:
        name, _, overrides = case.partition("=")
        fit(out, name, overrides.split(","))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
