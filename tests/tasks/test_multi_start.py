"""`choose_init`: K seeded candidates, the one with the lowest initial loss wins; deterministic; RNG untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adaptive_lr.tasks.multi_start import candidate_seed, choose_init, initial_loss

G = torch.Generator().manual_seed(0)
BATCHES = [(torch.randn(16, 3, generator=G), torch.randint(0, 2, (16,), generator=G)) for _ in range(3)]
LOSS = nn.CrossEntropyLoss()


def build() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, 2))


def reference_losses(k: int, seed: int) -> list[float]:
    """Each candidate rebuilt by hand under its seed, its loss the mean over the batches in eval mode."""
    losses = []
    for i in range(k):
        torch.manual_seed(candidate_seed(seed, i))
        model = build().eval()
        with torch.no_grad():
            losses.append(sum(float(LOSS(model(x), y)) for x, y in BATCHES) / len(BATCHES))
    return losses


def test_keeps_the_candidate_with_the_lowest_initial_loss():
    model, losses, best = choose_init(build, LOSS, BATCHES, k=6, seed=3)

    expected = reference_losses(6, 3)
    assert losses == pytest.approx(expected, rel=1e-6)
    assert len(set(losses)) == 6  # the candidates differ
    assert best == min(range(6), key=expected.__getitem__)
    torch.manual_seed(candidate_seed(3, best))
    for got, want in zip(model.state_dict().values(), build().state_dict().values(), strict=True):
        assert torch.equal(got, want)
    assert model.training  # handed back ready to train
    assert initial_loss(model, LOSS, BATCHES) == pytest.approx(losses[best])


def test_is_deterministic_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    first = choose_init(build, LOSS, BATCHES, k=4, seed=0)
    after_first = torch.rand(3)
    torch.manual_seed(123)
    second = choose_init(build, LOSS, BATCHES, k=4, seed=0)
    after_second = torch.rand(3)
    torch.manual_seed(123)
    untouched = torch.rand(3)

    assert first[1] == second[1] and first[2] == second[2]
    assert all(torch.equal(a, b) for a, b in zip(first[0].state_dict().values(), second[0].state_dict().values(),
                                                 strict=True))
    assert torch.equal(after_first, untouched) and torch.equal(after_second, untouched)
    assert choose_init(build, LOSS, BATCHES, k=4, seed=1)[1] != first[1]  # another seed, other candidates
    assert candidate_seed(0, 1) != candidate_seed(1, 0)  # run seeds never share candidates


def test_a_non_finite_candidate_never_wins():
    built = iter(range(3))

    def nan_first() -> nn.Module:
        model = build()
        if next(built) == 0:
            with torch.no_grad():
                model[3].bias.fill_(float("nan"))
        return model

    _, losses, best = choose_init(nan_first, LOSS, BATCHES, k=3, seed=0)
    assert torch.isnan(torch.tensor(losses[0])) and best != 0
    assert losses[best] == min(losses[1:])


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="multi_start.k must be a positive int, got 0"):
        choose_init(build, LOSS, BATCHES, k=0, seed=0)
    with pytest.raises(ValueError, match="needs at least one batch"):
        choose_init(build, LOSS, [], k=2, seed=0)
