"""Bad arguments raise PolicyConfigError (a ValueError) whose message names the argument."""

from __future__ import annotations

import re

import pytest

from adaptive_lr.schedulers import Cosine, Fixed, Heuristic, PolicyConfigError, StepDecay, Warmup

BAD = [
    (lambda: Fixed(lr=0.0), "lr"),
    (lambda: Fixed(lr=float("nan")), "lr"),
    (lambda: StepDecay(step_size=0), "step_size"),
    (lambda: StepDecay(step_size=2.5), "step_size"),
    (lambda: StepDecay(step_size=True), "step_size"),
    (lambda: StepDecay(gamma=0.0), "gamma"),
    (lambda: StepDecay(gamma=1.5), "gamma"),
    (lambda: Cosine(t_max=0), "t_max"),
    (lambda: Cosine(t_max=10, eta_min=-1e-3), "eta_min"),
    (lambda: Warmup("cosine", warmup=5), "policy"),
    (lambda: Warmup(Fixed(), warmup=0), "warmup"),
    (lambda: Warmup(Fixed(), warmup=5, start_factor=0.0), "start_factor"),
    (lambda: Warmup(Fixed(), warmup=5, start_factor=1.5), "start_factor"),
    (lambda: Heuristic(monitor=""), "monitor"),
    (lambda: Heuristic(mode="down"), "mode"),
    (lambda: Heuristic(raise_threshold=0.0), "raise_threshold"),
    (lambda: Heuristic(raise_threshold=1.0), "raise_threshold"),
    (lambda: Heuristic(up_factor=1.0), "up_factor"),
    (lambda: Heuristic(down_factor=1.0), "down_factor"),
    (lambda: Heuristic(down_factor=0.0), "down_factor"),
    (lambda: Heuristic(rise_tolerance=-0.1), "rise_tolerance"),
    (lambda: Heuristic(plateau_threshold=0.05), "plateau_threshold"),  # must stay below raise_threshold
    (lambda: Heuristic(patience=0), "patience"),
    (lambda: Heuristic(cooldown=-1), "cooldown"),
    (lambda: Heuristic(min_lr=0.0), "min_lr"),
    (lambda: Heuristic(min_lr=1e-3, max_lr=1e-4), "max_lr"),
]


@pytest.mark.parametrize("build, name", BAD, ids=[f"{i}-{name}" for i, (_, name) in enumerate(BAD)])
def test_bad_argument_is_named(build, name):
    """One line (the CLI prints it as its `error:` line): the key, what it must be, and the value given."""
    with pytest.raises(PolicyConfigError) as err:
        build()
    assert re.fullmatch(rf"{name} must be [^\n]+, got [^\n]+", str(err.value)), str(err.value)


def test_bad_base_lr_is_refused_at_reset():
    with pytest.raises(PolicyConfigError, match="base lr"):
        Fixed().reset([0.1, 0.0])
