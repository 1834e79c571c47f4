"""Deterministic train/val/test splits shared by the DataModules."""

from __future__ import annotations

import torch

from adaptive_lr.checks import require_int
from adaptive_lr.data.source import DataError


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int) -> tuple[torch.Tensor, ...]:
    """A seeded permutation of range(n) cut into disjoint (train, val, test) index tensors."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(
            f"val_fraction and test_fraction must be in [0, 1) with a sum below 1, got {val_fraction}, {test_fraction}"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    return order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test]


def holdout_split(labels: torch.Tensor, val_size: int, subset: int | None, seed: int,
                  num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) indices into `labels`, both sorted: `val_size` drawn with `seed`, then `subset` of the rest
    (stratified: `subset // num_classes` per class, one more for the first `subset % num_classes` classes, each
    drawn in the same seeded order; a class with too few images gives all it has)."""
    n = len(labels)
    require_int("data.val_size", val_size, minimum=1, maximum=n - 1, error=DataError,
                allowed=f"an int in [1, {n - 1}] (the train set has {n} images)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, train = order[:val_size], order[val_size:]
    if subset is not None:
        require_int("data.subset", subset, minimum=1, error=DataError, allowed="a positive int or null")
        per_class, extra = divmod(subset, num_classes)
        train_labels = labels[train]
        train = torch.cat([train[train_labels == c][: per_class + (c < extra)] for c in range(num_classes)])
    return train.sort().values, val.sort().values
