"""Random tensors shaped like a real dataset: for throughput benchmarks and smoke tests, never for results."""

from __future__ import annotations

from typing import Unpack

import torch

from adaptive_lr.data.base import InMemoryDataModule, LoaderOptions


class SyntheticDataModule(InMemoryDataModule):
    """`n_train`/`n_val`/`n_test` samples of shape `shape` with labels in [0, num_classes), from a fixed seed.

    Labels are a fixed random linear function of the inputs, so there is signal to fit.
    """

    def __init__(self, shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, n_train: int = 8192,
                 n_val: int = 1024, n_test: int = 1024, data_seed: int = 1234,
                 **options: Unpack[LoaderOptions]) -> None:
        super().__init__(**options)
        self.shape, self.num_outputs = tuple(shape), num_classes
        self.sizes, self.data_seed = (n_train, n_val, n_test), data_seed

    def load(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        g = torch.Generator().manual_seed(self.data_seed)
        x = torch.randn(sum(self.sizes), *self.shape, generator=g)
        w = torch.randn(x[0].numel(), self.num_outputs, generator=g)
        y = (x.flatten(1) @ w).argmax(dim=1)
        a, b, _ = self.sizes
        return (x[:a], y[:a]), (x[a : a + b], y[a : a + b]), (x[a + b :], y[a + b :])
