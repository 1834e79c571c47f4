"""Multi-start initialisation: try K random initialisations and keep the one with the lowest initial loss.

Small nets (the 2-2-1 XOR net above all) succeed or get stuck depending on their initial weights, which blurs a
comparison of LR schedulers. `choose_init` builds K candidate tasks (each a task module around a freshly
initialised model), each under its own seed derived from (`seed`, k) (`numpy.random.SeedSequence`, so candidates
of different run seeds never coincide), measures each one's mean training loss over the same first M batches
(`batch_loss`: the task owns its batch format, so classification's (x, y) and forecasting's
(x, y, naive, scale[, future]) batches alike; eval mode, no gradients: dropout off, deterministic), and returns the
best. The global RNG state is the same after the call as before it (every candidate is built inside
`torch.random.fork_rng`), so the rest of the run (shuffling, dropout) does not depend on K.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import numpy as np
import torch

from adaptive_lr.checks import require_int

Batch = Sequence[torch.Tensor]


class Candidate(Protocol):
    """What a candidate must be: a module (train/eval modes) that computes the loss of one of its batches
    (`tasks.base.EpochMeanTask.batch_loss`)."""

    training: bool

    def batch_loss(self, batch: Batch) -> torch.Tensor: ...

    def train(self, mode: bool = True) -> Candidate: ...


C = TypeVar("C", bound=Candidate)


def candidate_seed(seed: int, k: int) -> int:
    """The torch seed of candidate `k` of a multi-start with base `seed`."""
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


def initial_loss(candidate: Candidate, batches: Sequence[Batch]) -> float:
    """Mean of `candidate.batch_loss(batch)` over `batches`, in eval mode without gradients (the mode is
    restored)."""
    was_training = candidate.training
    candidate.train(False)
    try:
        with torch.no_grad():
            losses = [candidate.batch_loss(batch) for batch in batches]
    finally:
        candidate.train(was_training)
    return float(torch.stack(losses).mean())  # host sync: once per candidate


def choose_init(build: Callable[[], C], batches: Sequence[Batch], k: int, seed: int) -> tuple[C, list[float], int]:
    """The candidate with the lowest initial loss among `k` built by `build` (a task module around a new model),
    all `k` losses (in candidate order), and its index.

    Ties go to the lowest index; a non-finite loss never wins unless every candidate has one. Deterministic given
    (`build`, `batches`, `k`, `seed`).
    """
    require_int("multi_start.k", k, minimum=1, allowed="a positive int")
    batches = list(batches)
    if not batches:
        raise ValueError("multi_start needs at least one batch to measure the initial loss, got none")
    best: C | None = None
    losses: list[float] = []
    for i in range(k):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(candidate_seed(seed, i))
            candidate = build()
        losses.append(initial_loss(candidate, batches))
        ranked = [v if np.isfinite(v) else np.inf for v in losses]
        if int(np.argmin(ranked)) == i:  # the new candidate is the (first) best so far: keep only it
            best = candidate
    best_index = int(np.argmin([v if np.isfinite(v) else np.inf for v in losses]))
    assert best is not None
    return best, losses, best_index
