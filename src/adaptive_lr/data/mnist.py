"""MNIST and Fashion-MNIST: 28x28 grey images, 60k train / 10k test, 10 classes, from the original IDX files.

One DataModule serves both (they share the file format and names; `dataset` picks the folder, the download class
and the normalising statistics). Sources, in order (see `data/source.py`):
  1. the data directory: the four IDX `.gz` files in `<data_dir>/<dataset>/` (the offline mirror's layout), in
     torchvision's `<data_dir>/MNIST/raw/` (`FashionMNIST/raw/`), or in `<data_dir>` itself;
  2. with `download: true`, torchvision's `MNIST`/`FashionMNIST(root=<cache>/<dataset>, download=True)`, which
     leaves the same `.gz` files in `<cache>/<dataset>/MNIST/raw/`;
  3. else `DataNotFoundError`.
The IDX files are parsed here with numpy (magic number, dtype and dimensions checked) and cached once as uint8
tensors under the cache folder. Rules of `load()`:
  1. inputs are scaled to [0, 1] and standardised with the dataset's known mean/std (not the split's), as float32
     in memory; `flatten: true` gives [N, 784] (the MLP), else [N, 1, 28, 28] (a CNN);
  2. validation is `val_size` images of the official train set drawn with `split_seed` (fixed, independent of the
     run seed); `subset` keeps that many of the remaining train images, stratified by class (quick runs);
  3. test is the official 10k test set, always whole.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Unpack

import numpy as np
import torch

from adaptive_lr.data.base import FileDataModule, FileOptions
from adaptive_lr.data.source import (
    DECODE_ERRORS,
    DataError,
    cache_root,
    candidate_dirs,
    find_dir,
    locate,
    torchvision_download,
)
from adaptive_lr.data.splits import holdout_split

IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
IDX_UBYTE = 0x08  # the IDX type code of unsigned bytes, the only one these datasets use
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801  # ubyte with 3 dims / with 1 dim
NOT_FOUND_HINT = "Copy the four IDX .gz files there, or set data.download=true (needs network)."


@dataclass(frozen=True)
class IDXDataset:
    """What differs between the IDX datasets: folder name, torchvision class (also its folder), statistics."""

    name: str
    torchvision_class: str
    mean: float
    std: float


DATASETS = {
    "mnist": IDXDataset("mnist", "MNIST", 0.1307, 0.3081),
    "fashion-mnist": IDXDataset("fashion-mnist", "FashionMNIST", 0.2860, 0.3530),
}


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The array stored in a gzipped IDX file, after checking its magic number and that its size matches its dims."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except DECODE_ERRORS as err:  # truncated, or not gzip at all
        raise DataError(f"{path}: not a readable gzipped IDX file ({err})") from err
    if len(data) < 4:
        raise DataError(f"{path}: not an IDX file ({len(data)} bytes)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataError(f"{path}: IDX magic number {found:#010x}, expected {magic:#010x} "
                         f"(type {IDX_UBYTE:#04x} with {magic & 0xFF} dims)")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + int(np.prod(dims)):
        raise DataError(f"{path}: IDX dims {dims} need {int(np.prod(dims))} bytes of data, found {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def decode_idx(folder: Path) -> dict[str, torch.Tensor]:
    """uint8 tensors x_train [N, H, W], y_train [N], x_test, y_test from the four IDX files in `folder`."""
    arrays = [read_idx(folder / name, IMAGES_MAGIC if "images" in name else LABELS_MAGIC) for name in IDX_FILES]
    out = dict(zip(("x_train", "y_train", "x_test", "y_test"), (torch.from_numpy(a.copy()) for a in arrays),
                   strict=True))
    for split in ("train", "test"):
        if len(out[f"x_{split}"]) != len(out[f"y_{split}"]):
            raise DataError(f"{folder}: {split} has {len(out[f'x_{split}'])} images but "
                             f"{len(out[f'y_{split}'])} labels")
    return out


class MNISTDataModule(FileDataModule):
    """MNIST or Fashion-MNIST (`dataset`), standardised float inputs in memory (module docstring)."""

    num_outputs = 10

    def __init__(self, dataset: str = "mnist", flatten: bool = True, val_size: int = 5000, subset: int | None = None,
                 split_seed: int = 1234, **options: Unpack[FileOptions]) -> None:
        super().__init__(**options)
        if dataset not in DATASETS:
            raise ValueError(f"data.dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
        self.spec = DATASETS[dataset]
        self.dataset = self.spec.name
        self.flatten, self.val_size, self.subset, self.split_seed = flatten, val_size, subset, split_seed

    def source_dir(self) -> Path:
        """The folder holding the four IDX files: the data directory, else the cache's download (rule order above)."""
        spec = self.spec
        raw = f"{spec.torchvision_class}/raw"
        downloads = cache_root(self.cache_dir) / spec.name
        return locate(spec.name, candidate_dirs(spec.name, self.data_dir, spec.name, raw),
                      lambda folder: find_dir(spec.name, [folder], IDX_FILES), IDX_FILES,
                      downloads=downloads / raw, hint=NOT_FOUND_HINT,
                      download=torchvision_download(spec.torchvision_class, downloads) if self.download else None)

    def raw(self) -> dict[str, torch.Tensor]:
        """The decoded uint8 images and labels, from the cache when this source was decoded before."""
        folder = self.source_dir()
        return self.decoded("idx", "idx", self.spec.name, files=[folder / f for f in IDX_FILES],
                            build=lambda: decode_idx(folder))

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() / 255.0 - self.spec.mean) / self.spec.std  # rule 1
        return x.flatten(1) if self.flatten else x.unsqueeze(1)

    def load(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        raw = self.raw()
        y_train, y_test = raw["y_train"].long(), raw["y_test"].long()
        train, val = holdout_split(y_train, self.val_size, self.subset, self.split_seed, self.num_outputs)  # rule 2
        x_train = raw["x_train"]
        return ((self._inputs(x_train[train]), y_train[train]), (self._inputs(x_train[val]), y_train[val]),
                (self._inputs(raw["x_test"]), y_test))
