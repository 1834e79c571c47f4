"""CIFAR-10 and CIFAR-100: 32x32 RGB images, 50k train / 10k test, held in memory as uint8 [N, 3, 32, 32].

One DataModule serves both (`num_classes` 10 or 100 picks the variant: folder names, pickle files, label key,
download class, normalising statistics). Sources, searched in each candidate folder (`<data_dir>/cifar10`,
`<data_dir>/cifar10-jpeg`, `<data_dir>`; `cifar100...` for CIFAR-100) in this order:
  a. torchvision's python pickles: `cifar-10-batches-py/data_batch_1..5, test_batch` (labels under b"labels") or
     `cifar-100-python/train, test` (b"fine_labels"), each a dict with b"data" [N, 3072] uint8, channel-major;
  b. an ImageFolder tree `train/<class>/<image>`, `test/<class>/<image>` (jpg/jpeg/png);
  c. such a tree packed in an archive, `cifar10-jpeg.tar.gz` (the offline mirror's copy) by default, read in
     memory (members sliced from the decompressed tar, nothing extracted into the data directory).
Then, with `download: true`, torchvision's `CIFAR10`/`CIFAR100(root=<cache>/<variant>, download=True)` (source a,
in the cache); else `DataNotFoundError`. That is `source: auto`; `source: hf` reads the Hugging Face hub
dataset `hf.id` (`uoft-cs/cifar10`, `uoft-cs/cifar100`: PNG images in `img`, labels in `label`/`fine_label`),
and a folder path a dataset saved by `datasets` (save_to_disk or Parquet), both as `data.hf` says; their rows
keep their order, as pickles do. Whatever the source, it is decoded once and cached as uint8 tensors under the
cache folder. Rules:
  1. image-tree classes are the train folder's class names sorted (torchvision's ImageFolder order); a test class
     unknown to train, or a class count other than `num_classes`, is an error naming them; samples are ordered by
     (class, file name), so the decoded tensors do not depend on the order of an archive's members;
  2. JPEGs are decoded in one batched `torchvision.io.decode_jpeg` call (about 4x PIL's per-file speed: ~6 s for
     the 60k of the mirror on this 2-core machine, plus ~4 s to gunzip and index the tar); other formats one by one;
     every image must be 3x32x32 after conversion to RGB;
  3. validation is `val_size` train images drawn with `split_seed` (fixed, independent of the run seed); `subset`
     keeps that many of the rest, stratified by class; test is the official 10k, always whole;
  4. batches are uint8 index slices; the train loader applies `random_crop_flip` (if `augment`) and `Normalize` to
     whole batches, the eval loaders `Normalize` only.
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import ClassVar, Unpack

import numpy as np
import torch

from adaptive_lr.checks import require_int
from adaptive_lr.data.augment import Normalize, random_crop_flip
from adaptive_lr.data.base import HubDataModule, HubOptions
from adaptive_lr.data.hf import HFDataset, Location, image_column, read_splits
from adaptive_lr.data.source import (
    DECODE_ERRORS,
    DataError,
    PathLike,
    cache_root,
    candidate_dirs,
    locate,
    torchvision_download,
)
from adaptive_lr.data.splits import holdout_split

IMAGE_SHAPE = (3, 32, 32)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class CIFARVariant:
    """The facts that differ between CIFAR-10 and CIFAR-100."""

    name: str
    num_classes: int
    folders: tuple[str, ...]  # data-directory folders searched, before the data directory itself
    pickle_folder: str
    train_pickles: tuple[str, ...]
    test_pickles: tuple[str, ...]
    label_key: bytes
    archive: str
    torchvision_class: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    hf: HFDataset  # the hub dataset of `source: hf`


VARIANTS = {
    10: CIFARVariant("cifar10", 10, ("cifar10", "cifar10-jpeg"), "cifar-10-batches-py",
                     tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), b"labels",
                     "cifar10-jpeg.tar.gz", "CIFAR10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                     HFDataset("uoft-cs/cifar10", "img", "label")),
    100: CIFARVariant("cifar100", 100, ("cifar100", "cifar100-jpeg"), "cifar-100-python", ("train",), ("test",),
                      b"fine_labels", "cifar100-jpeg.tar.gz", "CIFAR100", (0.5071, 0.4865, 0.4409),
                      (0.2673, 0.2564, 0.2762), HFDataset("uoft-cs/cifar100", "img", "fine_label")),
}


# -- sources ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LocalSource:
    """A source in one folder of the data directory or the cache: `path` is the folder or file that holds it.
    Each kind implements `find` (the source in a folder, or None), `files` (their identities key the cache) and
    `decode`."""

    path: Path
    variant: CIFARVariant

    kind: ClassVar[str]
    settings: ClassVar[tuple[str, ...]] = ()  # besides the files, what the cache key depends on


@dataclass(frozen=True)
class PickleSource(LocalSource):
    """Source a: torchvision's python pickles in the folder `path`."""

    kind = "pickles"

    @classmethod
    def find(cls, folder: Path, variant: CIFARVariant, archive: str) -> PickleSource | None:
        found = cls(folder / variant.pickle_folder, variant)
        return found if all(f.is_file() for f in found.files()) else None

    def files(self) -> list[Path]:
        return [self.path / n for n in (*self.variant.train_pickles, *self.variant.test_pickles)]

    def _read(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.path / name
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
        except (*DECODE_ERRORS, ValueError) as err:
            raise DataError(f"{path}: not a readable CIFAR pickle ({err})") from err
        if not isinstance(batch, dict):
            raise DataError(f"{path}: a CIFAR pickle holds a dict, found {type(batch).__name__}")
        missing = [k for k in (b"data", self.variant.label_key) if k not in batch]
        if missing:
            raise DataError(f"{path}: no {missing} in this CIFAR pickle; keys: {sorted(batch)}")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[self.variant.label_key], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != int(np.prod(IMAGE_SHAPE)) or len(data) != len(labels):
            raise DataError(f"{path}: data {data.shape} and {len(labels)} labels; expected [N, 3072] and N labels")
        return torch.from_numpy(data.reshape(-1, *IMAGE_SHAPE).copy()), torch.from_numpy(labels)

    def decode(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for split, names in zip(SPLITS, (self.variant.train_pickles, self.variant.test_pickles), strict=True):
            parts = [self._read(n) for n in names]
            out[f"x_{split}"] = torch.cat([x for x, _ in parts])
            out[f"y_{split}"] = torch.cat([y for _, y in parts])
        return out


def _tree_entry(path: PurePosixPath) -> tuple[str, str] | None:
    """(split, class) of an image at `.../<train|test>/<class>/<file>`, else None (hidden files are skipped)."""
    parts = path.parts
    if len(parts) < 3 or parts[-3] not in SPLITS or path.name.startswith("."):
        return None
    return (parts[-3], parts[-2]) if path.suffix.lower() in IMAGE_SUFFIXES else None


def decode_images(entries: Sequence[tuple[str, str, str, torch.Tensor]], num_classes: int,
                  where: str) -> dict[str, torch.Tensor]:
    """Decoded uint8 tensors from (split, class, name, encoded bytes as a uint8 tensor) entries (rules 1, 2)."""
    classes = sorted({c for split, c, _, _ in entries if split == "train"})
    if len(classes) != num_classes:
        raise DataError(f"{where}: found {len(classes)} train classes, expected {num_classes}: {classes[:12]}")
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({c for split, c, _, _ in entries if split == "test" and c not in index})
    if unknown:
        raise DataError(f"{where}: test classes {unknown} have no train folder")
    out: dict[str, torch.Tensor] = {}
    for split in SPLITS:
        rows = sorted(((index[c], name, data) for s, c, name, data in entries if s == split), key=lambda r: r[:2])
        if not rows:
            raise DataError(f"{where}: no {split} images (expected {split}/<class>/<image>)")
        out[f"x_{split}"] = torch.stack(_decode_all([data for _, _, data in rows], [name for _, name, _ in rows]))
        out[f"y_{split}"] = torch.tensor([label for label, _, _ in rows], dtype=torch.long)
    return out


def _decode_all(encoded: list[torch.Tensor], names: list[str]) -> list[torch.Tensor]:
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    jpeg = [i for i, data in enumerate(encoded) if data[:2].tolist() == [0xFF, 0xD8]]
    images: list[torch.Tensor | None] = [None] * len(encoded)
    if jpeg:
        try:
            decoded = decode_jpeg([encoded[i] for i in jpeg], mode=ImageReadMode.RGB)
        except RuntimeError as err:  # one damaged JPEG fails the batch, and the message does not say which
            raise DataError(f"a JPEG among {len(jpeg)} images ({names[jpeg[0]]}, ...) cannot be decoded: "
                            f"{str(err).splitlines()[0]}") from err
        for i, image in zip(jpeg, decoded, strict=True):
            images[i] = image  # rule 2: one batched call
    for i, data in enumerate(encoded):
        if images[i] is None:
            try:
                images[i] = decode_image(data, mode=ImageReadMode.RGB)
            except RuntimeError as err:
                raise DataError(f"{names[i]}: not a decodable image ({str(err).splitlines()[0]})") from err
    for image, name in zip(images, names, strict=True):
        if tuple(image.shape) != IMAGE_SHAPE:  # type: ignore[union-attr]
            raise DataError(f"{name}: image of shape {tuple(image.shape)}, expected {IMAGE_SHAPE}")  # type: ignore[union-attr]
    return images  # type: ignore[return-value]


@dataclass(frozen=True)
class TreeSource(LocalSource):
    """Source b: an ImageFolder tree `path/{train,test}/<class>/<image>`."""

    kind = "tree"

    @classmethod
    def find(cls, folder: Path, variant: CIFARVariant, archive: str) -> TreeSource | None:
        return cls(folder, variant) if all((folder / s).is_dir() for s in SPLITS) else None

    def files(self) -> list[Path]:
        return sorted(p for s in SPLITS for p in (self.path / s).glob("*/*")
                      if _tree_entry(PurePosixPath(p.relative_to(self.path).as_posix())))

    def decode(self) -> dict[str, torch.Tensor]:
        entries = []
        for path in self.files():
            split, cls_name = _tree_entry(PurePosixPath(path.relative_to(self.path).as_posix()))  # type: ignore[misc]
            entries.append((split, cls_name, str(path), torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)))
        return decode_images(entries, self.variant.num_classes, str(self.path))


@dataclass(frozen=True)
class ArchiveSource(LocalSource):
    """Source c: an image tree inside a (gzipped) tar `path`, read in memory."""

    kind = "archive"

    @classmethod
    def find(cls, folder: Path, variant: CIFARVariant, archive: str) -> ArchiveSource | None:
        return cls(folder / archive, variant) if (folder / archive).is_file() else None

    def files(self) -> list[Path]:
        return [self.path]

    def decode(self) -> dict[str, torch.Tensor]:
        opener = gzip.open if self.path.suffix in (".gz", ".tgz") else open
        entries = []
        try:
            with opener(self.path, "rb") as f:
                raw = bytearray(f.read())
            buffer = torch.frombuffer(raw, dtype=torch.uint8)
            with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
                for member in tar.getmembers():  # headers only; each member's bytes are a slice of `buffer`
                    where = _tree_entry(PurePosixPath(member.name)) if member.isfile() else None
                    if where is not None:
                        data = buffer[member.offset_data : member.offset_data + member.size]
                        entries.append((*where, member.name, data))
        except DECODE_ERRORS as err:
            raise DataError(f"{self.path}: not a readable (gzipped) tar of train/<class>/<image> and "
                            f"test/<class>/<image> ({err})") from err
        return decode_images(entries, self.variant.num_classes, str(self.path))


SOURCES = (PickleSource, TreeSource, ArchiveSource)  # the order they are looked for in each folder


@dataclass(frozen=True)
class HFImageSource:
    """`source: hf` or a folder: a Hugging Face dataset with an Image column (`adaptive_lr.data.hf`)."""

    location: Location
    variant: CIFARVariant
    cache_dir: PathLike

    @property
    def kind(self) -> str:
        return self.location.kind

    @property
    def settings(self) -> tuple[str, ...]:
        return self.location.settings

    def files(self) -> list[Path]:
        return self.location.files()

    def decode(self) -> dict[str, torch.Tensor]:
        splits = read_splits(self.location, self.cache_dir, self.variant.num_classes, image_column)
        out: dict[str, torch.Tensor] = {}
        for split, (encoded, labels) in splits.items():
            where = f"{self.location.where()} {split}"
            names = [f"{where} row {i}" for i in range(len(encoded))]
            tensors = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in encoded]
            out[f"x_{split}"] = torch.stack(_decode_all(tensors, names))
            out[f"y_{split}"] = torch.tensor(labels, dtype=torch.long)
        return out


# -- the DataModule --------------------------------------------------------------------------------------------------
class ImageTransform:
    """Whole-batch crop+flip (optional) then normalisation of a uint8 batch (rule 4); picklable for worker spawns."""

    def __init__(self, normalize: Normalize, augment: bool, padding: int) -> None:
        self.normalize, self.augment, self.padding = normalize, augment, padding

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if self.augment:
            x = random_crop_flip(x, g, pad=self.padding)
        return self.normalize(x)


class CIFARDataModule(HubDataModule):
    """CIFAR-10 or CIFAR-100 (`num_classes`) from pickles, an image tree or an archive (module docstring)."""

    def __init__(self, num_classes: int = 10, val_size: int = 5000, subset: int | None = None, split_seed: int = 1234,
                 augment: bool = True, crop_padding: int = 4, archive: str | None = None,
                 **options: Unpack[HubOptions]) -> None:
        super().__init__(**options)
        if num_classes not in VARIANTS:
            raise ValueError(f"data.num_classes must be one of {sorted(VARIANTS)} (CIFAR-10/100), got {num_classes!r}")
        require_int("data.crop_padding", crop_padding, minimum=0, allowed="a non-negative int")
        self.variant = VARIANTS[num_classes]
        self.dataset, self.num_outputs = self.variant.name, num_classes
        self.val_size, self.subset, self.split_seed = val_size, subset, split_seed
        self.archive = archive if archive is not None else self.variant.archive
        normalize = Normalize(self.variant.mean, self.variant.std)
        self.train_transform = ImageTransform(normalize, augment, crop_padding)
        self.eval_transform = ImageTransform(normalize, False, 0)

    def default_hf(self) -> HFDataset:
        return self.variant.hf

    def expected(self) -> list[str]:
        """The files any one source needs, for the not-found message."""
        v = self.variant
        return [f"{v.pickle_folder}/{{{','.join((*v.train_pickles, *v.test_pickles))}}}",
                "train/<class>/*.jpg and test/<class>/*.jpg", self.archive]

    def _find(self, folder: Path) -> LocalSource | None:
        """The first source in `folder`, in the order a, b, c."""
        found = (kind.find(folder, self.variant, self.archive) for kind in SOURCES)
        return next((source for source in found if source is not None), None)

    def source(self) -> LocalSource | HFImageSource:
        """The Hugging Face source that `source` names, else (`auto`) the first source found (folder by
        folder, each in the order a, b, c), else the download (or an error)."""
        v = self.variant
        location = self.hf_location()
        if location is not None:
            return HFImageSource(location, v, self.cache_dir)
        downloads = cache_root(self.cache_dir) / v.name
        return locate(v.name, candidate_dirs(v.name, self.data_dir, *v.folders), self._find, self.expected(),
                      downloads=downloads, find_download=lambda folder: PickleSource.find(folder, v, self.archive),
                      download=torchvision_download(v.torchvision_class, downloads) if self.download else None,
                      hint="(any one of these), or set data.download=true (needs network).")

    def raw(self) -> dict[str, torch.Tensor]:
        """The decoded uint8 images and long labels, from the cache when this source was decoded before."""
        src = self.source()
        return self.decoded(src.kind, self.variant.name, src.kind, *src.settings, files=src.files(), build=src.decode)

    def load(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        raw = self.raw()
        x, y = raw["x_train"], raw["y_train"]
        train, val = holdout_split(y, self.val_size, self.subset, self.split_seed, self.num_outputs)  # rule 3
        return (x[train], y[train]), (x[val], y[val]), (raw["x_test"], raw["y_test"])
