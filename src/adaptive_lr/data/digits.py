"""scikit-learn's bundled handwritten digits: 1797 8x8 grey images, 10 classes. Needs no download."""

from __future__ import annotations

from typing import Unpack

import torch

from adaptive_lr.data.base import InMemoryDataModule, LoaderOptions
from adaptive_lr.data.splits import split_indices


class DigitsDataModule(InMemoryDataModule):
    """Flattened 64-pixel inputs scaled to [0, 1]; a fixed seeded 60/20/20 split (independent of the run seed)."""

    num_outputs = 10

    def __init__(self, split_seed: int = 1234, val_fraction: float = 0.2, test_fraction: float = 0.2,
                 **options: Unpack[LoaderOptions]) -> None:
        super().__init__(**options)
        self.split_seed, self.val_fraction, self.test_fraction = split_seed, val_fraction, test_fraction

    def load(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        data = _digits_csv()
        x = torch.as_tensor(data[:, :-1], dtype=torch.float32) / 16.0
        y = torch.as_tensor(data[:, -1].astype(int), dtype=torch.long)
        parts = split_indices(len(x), self.val_fraction, self.test_fraction, self.split_seed)
        return tuple((x[idx], y[idx]) for idx in parts)


def _digits_csv():
    """scikit-learn's `digits.csv.gz` (64 pixel columns, then the label) read as `load_digits` reads it
    (`np.loadtxt`, comma-separated), without importing scikit-learn: that import cost ~1.4 s of a cold
    `adaptive-lr train task=digits` (`python -X importtime`). Falls back to `load_digits` if the file moved."""
    import gzip
    import importlib.util
    from pathlib import Path

    import numpy as np

    spec = importlib.util.find_spec("sklearn")  # locates the package without running its __init__
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return np.loadtxt(f, delimiter=",")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.column_stack([bunch.data, bunch.target])
