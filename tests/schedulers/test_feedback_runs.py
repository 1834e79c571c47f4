"""`plateau_feedback` and `feedback_wsd` through the harness: one tiny digits run each, whose logged LR is replayed
from the logged decisions (step interval) or from the rule (epoch interval)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from adaptive_lr.schedulers import ACTIONS
from store_support import seed_store, tracking_uri

LR = 0.01  # train.yaml's lr: digits keeps it
TINY = ["task=digits", "logger.tensorboard=false", "experiment=unit"]


@pytest.fixture
def client(home: Path, tmp_path_factory: pytest.TempPathFactory):
    from mlflow.tracking import MlflowClient

    seed_store(home, tmp_path_factory)
    return MlflowClient(tracking_uri(home))


def logged(client, run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


def train(overrides: list[str]):
    from adaptive_lr.config import compose
    from adaptive_lr.runner import run

    result = run(compose([*TINY, *overrides]))
    assert result.status == "FINISHED"
    return result


def test_plateau_feedback_decides_every_few_steps_and_the_logged_lr_follows_its_decisions(home, client):
    # every step's loss into an EMA (0.5: a window of 2), a decision every 5 steps; a 20% threshold and patience 1
    # make cuts certain within 3 epochs
    result = train(["scheduler=plateau_feedback", "trainer.max_epochs=3", "scheduler.frequency=1",
                    "scheduler.policy.decide_every=5", "scheduler.policy.smoothing=0.5",
                    "scheduler.policy.threshold=0.2", "scheduler.policy.patience=1", "scheduler.policy.cooldown=0",
                    "logger.log_every_n_steps=1"])

    total = 3 * int(client.get_run(result.run_id).data.tags["steps_per_epoch"])
    lr, actions = logged(client, result.run_id, "lr"), logged(client, result.run_id, "controller_action")
    factors = logged(client, result.run_id, "controller_factor")
    assert sorted(lr) == list(range(total + 1)) and lr[0] == LR
    assert sorted(actions) == list(range(5, total + 1, 5))  # the step loss is there from the first decision on
    codes = {code: name for name, code in ACTIONS.items()}
    assert {codes[a] for a in actions.values()} <= {"hold", "raise", "cut_plateau"}
    assert ACTIONS["cut_plateau"] in actions.values()
    expected = LR
    for step in range(1, total + 1):  # the LR of every step: the product of the decisions so far
        expected *= factors.get(step, 1.0)
        assert lr[step] == pytest.approx(expected, rel=1e-9), step
    assert lr[total] < LR


def test_feedback_wsd_warms_up_lets_the_controller_steer_then_anneals_to_zero_at_the_last_epoch(home, client):
    # 5 epochs: warmup over 5% (epoch 1 at 0.1 x lr), the controller for epochs 2-3, then 1-sqrt from its LR:
    # the cooldown starts at tick 3 = 0.6 x 5. A 90% threshold and patience 1 make the controller cut at tick 2
    result = train(["scheduler=feedback_wsd", "trainer.max_epochs=5", "scheduler.policy.fraction=0.4",
                    "scheduler.policy.policy.threshold=0.9", "scheduler.policy.policy.patience=1",
                    "logger.log_every_n_steps=1000"])

    spe = int(client.get_run(result.run_id).data.tags["steps_per_epoch"])
    lr, actions = logged(client, result.run_id, "lr"), logged(client, result.run_id, "controller_action")
    assert sorted(lr) == [e * spe for e in range(6)]  # at train start and after each epoch's decision
    epoch_lr = [lr[e * spe] for e in range(6)]
    assert epoch_lr[0] == pytest.approx(0.1 * LR) and epoch_lr[1] == LR  # tick 1: the controller's first: hold
    assert epoch_lr[2] == LR / 2  # tick 2: the controller's cut
    assert epoch_lr[3:] == pytest.approx([LR / 2, LR / 2 * (1 - math.sqrt(0.5)), 0.0], rel=1e-12, abs=0)
    assert [actions[e * spe] for e in range(1, 6)] == [ACTIONS[a] for a in ("hold", "cut_plateau", "anneal",
                                                                             "anneal", "anneal")]
