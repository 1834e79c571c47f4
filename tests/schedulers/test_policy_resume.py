"""Save at every tick k, load into a fresh instance, and the remaining LRs and actions are identical."""

from __future__ import annotations

import json
import math

import pytest

from adaptive_lr.schedulers import Cosine, Fixed, Heuristic, Observation, StepDecay, Warmup

VALUES = [8, 4, 2, 3, 3, 3, 3, math.nan, 2.5, 2.4, 2.4, 2.4, 1.0, 0.5, 0.6, 0.6, 0.6, 0.6, 0.3]
BASE_LRS = [0.1, 0.03]


def heuristic() -> Heuristic:
    return Heuristic(raise_threshold=0.1, up_factor=2.0, patience=2, cooldown=2, max_lr=0.5)


FACTORIES = {
    "fixed": Fixed,
    "fixed_abs": lambda: Fixed(lr=0.05),
    "step": lambda: StepDecay(step_size=3, gamma=0.5),
    "cosine": lambda: Cosine(t_max=12),
    "warmup_step": lambda: Warmup(StepDecay(step_size=3, gamma=0.5), warmup=5),
    "heuristic": heuristic,
    "warmup_heuristic": lambda: Warmup(heuristic(), warmup=6, start_factor=0.2),
    "warmup_warmup_heuristic": lambda: Warmup(Warmup(heuristic(), warmup=3), warmup=5),
}


def observe(policy, t: int):
    lrs = policy.observe(Observation(step=t, epoch=t, metrics={"val_loss": VALUES[t - 1]}))
    decision = policy.last_decision
    return lrs, None if decision is None else decision.action


@pytest.mark.parametrize("name", FACTORIES)
def test_resume_at_every_tick_continues_identically(name):
    make = FACTORIES[name]
    reference = make()
    reference.reset(BASE_LRS)
    expected = [observe(reference, t) for t in range(1, len(VALUES) + 1)]
    assert len({tuple(lrs) for lrs, _ in expected}) > 1 or name.startswith("fixed")

    for k in range(len(VALUES) + 1):
        first = make()
        first.reset(BASE_LRS)
        for t in range(1, k + 1):
            observe(first, t)
        state = json.loads(json.dumps(first.state_dict()))  # plain, serialisable values only

        resumed = make()  # never reset: the state alone must be enough
        resumed.load_state_dict(state)
        assert resumed.lrs == first.lrs and resumed.tick == k
        assert [observe(resumed, t) for t in range(k + 1, len(VALUES) + 1)] == expected[k:], f"resumed at {k}"
