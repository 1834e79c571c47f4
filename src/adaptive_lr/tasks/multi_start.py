"""Multi-start initialisation: try K random initialisations and keep the one with the lowest initial loss.

Small nets (the 2-2-1 XOR net above all) succeed or get stuck depending on their initial weights, which blurs a
comparison of LR schedulers. `choose_init` builds K candidates, each under its own seed derived from (`seed`, k)
(`numpy.random.SeedSequence`, so candidates of different run seeds never coincide), measures each one's mean
training loss over the same first M batches (eval mode, no gradients: dropout off, deterministic), and returns the
best. The global RNG state is the same after the call as before it (every candidate is built inside
`torch.random.fork_rng`), so the rest of the run (shuffling, dropout) does not depend on K.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def candidate_seed(seed: int, k: int) -> int:
    """The torch seed of candidate `k` of a multi-start with base `seed`."""
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


def initial_loss(model: nn.Module, loss_fn: LossFn, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Mean of `loss_fn(model(x), y)` over `batches`, in eval mode without gradients (the mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            losses = [loss_fn(model(x), y) for x, y in batches]
    finally:
        model.train(was_training)
    return float(torch.stack(losses).mean())  # host sync: once per candidate


def choose_init(
    build_model: Callable[[], nn.Module],
    loss_fn: LossFn,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    k: int,
    seed: int,
) -> tuple[nn.Module, list[float], int]:
    """The candidate with the lowest initial loss among `k`, all `k` losses (in candidate order), and its index.

    Ties go to the lowest index; a non-finite loss never wins unless every candidate has one. Deterministic given
    (`build_model`, `batches`, `k`, `seed`).
    """
    if not (isinstance(k, int) and not isinstance(k, bool) and k >= 1):
        raise ValueError(f"multi_start.k must be a positive int, got {k!r}")
    batches = list(batches)
    if not batches:
        raise ValueError("multi_start needs at least one batch to measure the initial loss, got none")
    best: nn.Module | None = None
    losses: list[float] = []
    for i in range(k):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(candidate_seed(seed, i))
            model = build_model()
        loss = initial_loss(model, loss_fn, batches)
        losses.append(loss)
        ranked = [v if np.isfinite(v) else np.inf for v in losses]
        if int(np.argmin(ranked)) == i:  # the new candidate is the (first) best so far: keep only it
            best = model
    best_index = int(np.argmin([v if np.isfinite(v) else np.inf for v in losses]))
    assert best is not None
    return best, losses, best_index
