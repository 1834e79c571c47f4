"""Smoke test of the synthetic LR-control benchmark's problem and loop (benchmarks/lr_control.py), tiny sizes."""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import lr_control  # noqa: E402  (a plain import: a broken benchmark module fails here, never skips)


def test_problem_trains_at_the_good_lr_and_controllers_run_through_policy_lr():
    problem = lr_control.Problem(dim=5, steps=200, decide_every=10, n_val=200)
    data = lr_control.make_data(problem, seed=0)
    assert data.x.shape == (200, 16, 5) and data.x_val.shape == (200, 5)
    assert lr_control.make_data(problem, 0).y_val.equal(data.y_val)  # seeded: the same data every time
    good, run = lr_control.run_case(problem, data, lr_control.GOOD_LR, None, seed=0)
    assert good < 0.1 * data.initial_loss and len(run.lrs) == 20 and set(run.lrs) == {lr_control.GOOD_LR}
    for name, make in lr_control.controllers(problem).items():
        loss, run = lr_control.run_case(problem, data, lr_control.GOOD_LR * 0.01, make, seed=0)
        assert len(run.lrs) == 20 and loss <= data.initial_loss, name
        assert all(1e-5 <= lr <= 10.0 for lr in run.lrs)


def test_diverged_losses_are_capped_at_the_initial_loss():
    assert lr_control.capped(math.inf, 4.0) == 4.0
    assert lr_control.capped(math.nan, 4.0) == 4.0
    assert lr_control.capped(7.0, 4.0) == 4.0
    assert lr_control.capped(0.5, 4.0) == 0.5
