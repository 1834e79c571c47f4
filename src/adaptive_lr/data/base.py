"""The DataModule bases: datasets held entirely in memory as tensors (`InMemoryDataModule`), read from files
(`FileDataModule`: the data-directory, cache and download options of `data.source`), and optionally from Hugging
Face instead (`HubDataModule`: the `source` and `hf` options of `data.hf`). A dataset module says only what differs:
its own options, where its files may lie, how they decode, and how the decoded tensors become the three splits."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, TypedDict, Unpack

import lightning as L
import torch

from adaptive_lr.data.hf import HFDataset, Location, hf_location
from adaptive_lr.data.source import PathLike, cache_path, cached
from adaptive_lr.data.tensor_loader import BatchTransform, TensorBatchLoader

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path


class InMemoryDataModule(L.LightningDataModule):
    """Subclasses implement `load()` returning ((x_train, y_train), (x_val, y_val), (x_test, y_test)).

    Everything else (batching, per-epoch shuffling, DDP sharding, the metadata a task needs) lives here once.
    """

    #: shape of one input sample and the number of outputs the model needs; set by `setup`
    input_shape: tuple[int, ...] = ()
    num_outputs: int = 0
    #: whole-batch transforms of the inputs (e.g. crop+flip+normalise uint8 images), or None
    train_transform: BatchTransform | None = None
    eval_transform: BatchTransform | None = None
    #: size of the fixed train subset evaluated like the validation set (the generalization gap's train side);
    #: None = the validation set's size, 0 = no such pass
    train_eval_size: int | None = None

    def __init__(self, batch_size: int = 64, eval_batch_size: int = 1024, seed: int = 0) -> None:
        super().__init__()
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self._splits: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None

    def load(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self._splits is None:
            self._splits = self.load()
            self.input_shape = tuple(self._splits[0][0].shape[1:])

    @property
    def splits(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        self.setup()
        assert self._splits is not None
        return self._splits

    def fingerprint(self) -> str:
        """A content hash of the train/val/test tensors this module feeds, after decoding, subsetting and splitting:
        two runs with the same fingerprint trained and were evaluated on the same data. The runner records it as
        the run's `data_checksum` tag. Hashes every byte once (blake2b; ~0.2 s for MNIST's 55k/5k/10k floats)."""
        h = hashlib.blake2b(digest_size=8)
        for split in self.splits:
            for t in split:
                t = t.detach().cpu().contiguous()
                h.update(f"{t.dtype}{tuple(t.shape)};".encode())
                h.update(t.view(-1).view(torch.uint8).numpy())
        return h.hexdigest()

    def _shard(self, loader: TensorBatchLoader) -> TensorBatchLoader:
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1:
            loader.shard(trainer.global_rank, trainer.world_size)
        return loader

    def train_dataloader(self) -> TensorBatchLoader:
        return self._shard(TensorBatchLoader(self.splits[0], self.batch_size, shuffle=True, seed=self.seed,
                                             transform=self.train_transform))

    def val_dataloader(self) -> TensorBatchLoader:
        return self._shard(TensorBatchLoader(self.splits[1], self.eval_batch_size, transform=self.eval_transform))

    def train_eval_dataloader(self) -> TensorBatchLoader | None:
        """A fixed random subset of the training split (as many rows as the validation split, or
        `train_eval_size`), batched and transformed like the validation set: the task evaluates it in eval mode
        after every validation, so train and validation metrics are measured the same way (dropout off, no
        augmentation). The subset is a pure function of the data seed; None when switched off."""
        train, val = self.splits[0], self.splits[1]
        n_train = len(train[0])
        size = min(n_train, len(val[0]) if self.train_eval_size is None else self.train_eval_size)
        if size <= 0:
            return None
        rows = torch.randperm(n_train, generator=torch.Generator().manual_seed(self.seed))[:size].sort().values
        subset = tuple(t.index_select(0, rows) for t in train)
        return self._shard(TensorBatchLoader(subset, self.eval_batch_size, transform=self.eval_transform))

    def test_dataloader(self) -> TensorBatchLoader:
        return self._shard(TensorBatchLoader(self.splits[2], self.eval_batch_size, transform=self.eval_transform))

    def steps_per_epoch(self) -> int:
        return len(self.train_dataloader())


class LoaderOptions(TypedDict, total=False):
    """The options of every `InMemoryDataModule` (config keys `data.<name>`): batch sizes and the run seed."""

    batch_size: int
    eval_batch_size: int
    seed: int  # the run seed: the shuffle order of the training batches and the train-eval subset


class FileOptions(LoaderOptions, total=False):
    """The options every file-backed DataModule takes, besides its own."""

    data_dir: PathLike  # the local data directory (else $ADAPTIVE_LR_DATA_DIR), `data.source` rule 1
    cache_dir: PathLike  # where decoded tensors and downloads go
    download: bool  # whether a dataset missing from the data directory may be downloaded into the cache


class HubOptions(FileOptions, total=False):
    """`FileOptions` plus where a `HubDataModule`'s data come from (`data.hf` module docstring)."""

    source: str  # auto (the module's own order) | hf (the hub dataset `hf`) | a folder holding a saved dataset
    hf: HFDataset | None  # the hub dataset and its columns; None: the module's default


class FileDataModule(InMemoryDataModule):
    """An in-memory DataModule decoded from files: found by `data.source.locate` (data directory, cache, download),
    decoded once and cached under `<cache>/<dataset>/` (`decoded`). Subclasses set `dataset` and implement
    `load()`."""

    #: the dataset's folder in the data directory and the cache, and its name in messages
    dataset: str = ""

    def __init__(self, batch_size: int = 64, eval_batch_size: int = 1024, seed: int = 0, data_dir: PathLike = None,
                 cache_dir: PathLike = None, download: bool = True) -> None:
        super().__init__(batch_size, eval_batch_size, seed)
        self.data_dir, self.cache_dir, self.download = data_dir, cache_dir, download

    def cache_path(self, name: str, *parts: object, files: Iterable[Path] = (), suffix: str = ".pt") -> Path:
        """`<cache>/<dataset>/<name>-<key><suffix>`, the key made of `parts` and the `files`' identities."""
        return cache_path(self.cache_dir, self.dataset, name, *parts, files=files, suffix=suffix)

    def decoded(self, name: str, *parts: object, files: Iterable[Path],
                build: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The tensors `build` decodes from `files` with settings `parts`, from the cache once built."""
        return cached(self.cache_path(name, *parts, files=files), build)


class HubDataModule(FileDataModule):
    """A `FileDataModule` whose data may instead come from a Hugging Face dataset: `source` and `hf` (`data.hf`).
    Subclasses implement `default_hf()`, the hub dataset of `source: hf` when the config gives none."""

    def __init__(self, source: str = "auto", hf: HFDataset | None = None, **options: Unpack[FileOptions]) -> None:
        super().__init__(**options)
        self.source_setting, self.hf_setting = source, hf

    def default_hf(self) -> HFDataset:
        raise NotImplementedError

    @property
    def hf(self) -> HFDataset:
        """The hub dataset and its columns: the `hf` option, else the module's default."""
        return self.hf_setting if self.hf_setting is not None else self.default_hf()

    def hf_location(self) -> Location | None:
        """The Hugging Face location `source` names, or None for `auto` (the module's own order)."""
        return hf_location(self.source_setting, self.hf, self.dataset)
