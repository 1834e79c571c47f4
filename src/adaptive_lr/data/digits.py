"""scikit-learn's bundled handwritten digits: 1797 8x8 grey images, 10 classes. Needs no download."""

from __future__ import annotations

import torch

from adaptive_lr.data.base import InMemoryDataModule
from adaptive_lr.data.splits import split_indices


class DigitsDataModule(InMemoryDataModule):
    """Flattened 64-pixel inputs scaled to [0, 1]; a fixed seeded 60/20/20 split (independent of the run seed)."""

    num_outputs = 10

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int = 1024,
        seed: int = 0,
        split_seed: int = 1234,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed)
        self.split_seed, self.val_fraction, self.test_fraction = split_seed, val_fraction, test_fraction

    def load(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.as_tensor(bunch.data, dtype=torch.float32) / 16.0
        y = torch.as_tensor(bunch.target, dtype=torch.long)
        parts = split_indices(len(x), self.val_fraction, self.test_fraction, self.split_seed)
        return tuple((x[idx], y[idx]) for idx in parts)
