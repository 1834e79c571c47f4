"""Under Lightning DDP (2 CPU processes, gloo) every rank applies the same LR at every step.

The worker (`tests/ddp/lr_worker.py`) records each rank's LR before every optimizer step. The cases are chosen so
that a rank deciding on its own data would disagree: a step-interval controller watching the per-rank batch loss
(`train_loss_step`, different batches on each rank), and epoch-interval controllers on validation metrics computed
over each rank's shard.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).parent / "ddp" / "lr_worker.py"
TINY = "task=digits,trainer.max_epochs=3"
CASES = {
    # raises/cuts at every other step on the batch loss: the noisiest feedback a controller can get
    "heuristic_step": f"{TINY},scheduler=heuristic,scheduler.interval=step,scheduler.frequency=2,"
                      "scheduler.policy.monitor=train_loss_step,scheduler.policy.cooldown=0",
    "heuristic_epoch": f"{TINY},scheduler=heuristic,scheduler.policy.raise_threshold=0.01",
    # a seeded exploring learner: the same draws on every rank because its RNG and its inputs agree
    "rl_bandit_epoch": f"{TINY},scheduler=rl_bandit",
    # decides before every optimizer step from the (all-reduced) gradients and the identical parameters
    "hypergradient_step": f"{TINY},scheduler=hypergradient,scheduler.frequency=1",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "PYTHONWARNINGS": "ignore",
           "ADAPTIVE_LR_HOME": str(out)}
    cases = [f"{name}={overrides}" for name, overrides in CASES.items()]
    proc = subprocess.run([sys.executable, str(WORKER), str(out), *cases], env=env, cwd=out, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_rank_applies_the_same_lr_at_every_step(ddp_runs, case):
    ranks = [json.loads((ddp_runs / f"{case}.rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    lrs0, lrs1 = ranks[0]["lrs"], ranks[1]["lrs"]
    assert len(lrs0) == len(lrs1) > 0
    assert lrs0 == lrs1  # exact equality: the same decisions in the same order
    assert ranks[0]["actions"] == ranks[1]["actions"]
    # the controller really acted during the run (so equality is not the trivial constant-LR case)
    assert len({lr[0] for lr in lrs0}) > 1
