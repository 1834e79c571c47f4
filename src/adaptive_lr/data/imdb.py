"""IMDB movie-review sentiment (Maas et al. 2011): 25k train / 25k test reviews, label 1 = positive.

Where the reviews come from (first that exists; `adaptive_lr.data.source` conventions):
  1. the data directory (`<data_dir>/imdb/` or `<data_dir>/`): the aclImdb layout
     `aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt` as a folder, or inside a tarball (`aclImdb-labelled.tar.gz`,
     the offline mirror, or Stanford's `aclImdb_v1.tar.gz`), read member by member, never extracted;
     `train/unsup` and every other member are ignored;
  2. `download: true` and the `datasets` package importable: the Hugging Face hub dataset `hf.id`
     (`stanfordnlp/imdb`), downloaded into the cache;
  3. else `DataNotFoundError`.
That is `source: auto`; `source: hf` goes to 2 directly, and a folder path reads a dataset saved by `datasets`
(save_to_disk or Parquet, columns `hf.input_column` / `hf.label_column`, label 1 = pos), see `data.hf`.
Then, once per (source, tokenizer settings, max_len, val_size, split_seed), the expensive part is cached:
  4. reviews are put in a fixed order (split, label, numeric id), whatever order the folder or tarball lists
     them (a Hugging Face dataset's row number is the id);
  5. validation is `val_size` reviews carved from train by a permutation seeded with `split_seed` (independent of
     the run seed); the tokenizer is fit on the remaining train reviews only (never on val or test);
  6. every split is encoded once to int32 ids [N, max_len] (`data.text`: first `max_len` tokens, padded with the
     tokenizer's `pad_id` at the end) and written to the cache with the tokenizer beside it.
`subset` / `eval_subset` then cut the cached train / val and test splits to their first N (train is already in
random order; val and test are drawn by a seeded permutation), so quick runs share the full cache.
Batches are (ids [B, max_len] int32, label [B] int64) index slices (TensorBatchLoader); a model derives lengths
and attention masks from `ids != pad_id`.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Unpack

import torch

from adaptive_lr.checks import require_int
from adaptive_lr.data.base import HubDataModule, HubOptions
from adaptive_lr.data.hf import HFDataset, HubLocation, Location, read_splits, text_column
from adaptive_lr.data.source import DECODE_ERRORS, DataError, PathLike, cached, candidate_dirs, not_found
from adaptive_lr.data.text import TextTokenizer, WordVocabTokenizer

DATASET = "imdb"
FOLDER = "aclImdb"
TARBALLS = ("aclImdb-labelled.tar.gz", "aclImdb_v1.tar.gz")
EXPECTED = (f"{FOLDER}/{{train,test}}/{{pos,neg}}/<id>_<rating>.txt", *TARBALLS)
SPLITS = ("train", "test")
LABELS = {"neg": 0, "pos": 1}
HF = HFDataset("stanfordnlp/imdb", "text", "label")
_MEMBER = re.compile(r"(?:^|/)(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")

Reviews = dict[str, tuple[list[str], list[int]]]  # split -> (texts, labels)


# -- sources ---------------------------------------------------------------------------------------------------------
def _ordered(items: Iterable[tuple[str, str, int, str]], where: object,
             expected: str = EXPECTED[0]) -> Reviews:
    """(split, label name, id, text) records -> per split texts and labels in (label, id) order (rule 4); a
    split without reviews of both labels is a `DataError` naming the source."""
    out: Reviews = {}
    for split in SPLITS:
        rows = sorted((LABELS[lab], rid, text) for s, lab, rid, text in items if s == split)
        out[split] = ([t for _, _, t in rows], [lab for lab, _, _ in rows])
        missing = [name for name, label in LABELS.items() if label not in out[split][1]]
        if missing:
            raise DataError(f"imdb: {where} has no labelled {split}/{'|'.join(missing)} reviews; expected "
                            f"{expected}")
    return out


def _tar_records(path: Path) -> Iterator[tuple[str, str, int, str]]:
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            match = _MEMBER.search(member.name)
            if match and member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                yield match[1], match[2], int(match[3]), f.read().decode("utf-8")


def read_tarball(path: Path) -> Reviews:
    """The labelled reviews of an aclImdb tarball, read straight from its members."""
    try:
        records = list(_tar_records(path))
    except DECODE_ERRORS as err:
        raise DataError(f"imdb: {path} is not a readable aclImdb tarball ({err})") from err
    return _ordered(records, path)


def read_folder(root: Path) -> Reviews:
    """The labelled reviews of an extracted `aclImdb` folder."""
    records = []
    for split in SPLITS:
        for label in LABELS:
            for file in (root / split / label).glob("*.txt"):
                match = _MEMBER.search(file.as_posix())
                if match:
                    try:
                        records.append((split, label, int(match[3]), file.read_text(encoding="utf-8")))
                    except UnicodeDecodeError as err:
                        raise DataError(f"imdb: {file} is not UTF-8 text ({err})") from err
    return _ordered(records, root)


def read_hf(location: Location, cache_dir: PathLike) -> Reviews:
    """The labelled reviews of a Hugging Face dataset (label 0 = neg, 1 = pos, as here; `unsupervised`
    ignored)."""
    names = {label: name for name, label in LABELS.items()}
    splits = read_splits(location, cache_dir, len(LABELS), text_column)
    records = [(split, names[label], i, text) for split, (reviews, labels) in splits.items()
               for i, (text, label) in enumerate(zip(reviews, labels, strict=True))]
    return _ordered(records, location.where(), f"both labels 0 (neg) and 1 (pos) in column "
                                               f"{location.spec.label_column!r}")


def find_local(data_dir: PathLike) -> tuple[Path, list[Path]] | tuple[None, list[Path]]:
    """(the aclImdb folder or tarball in the data directory, or None; the folders searched)."""
    searched = candidate_dirs(DATASET, data_dir)
    for folder in searched:
        if all((folder / FOLDER / s / lab).is_dir() for s in SPLITS for lab in LABELS):
            return folder / FOLDER, searched
        for name in TARBALLS:
            if (folder / name).is_file():
                return folder / name, searched
    return None, searched


# -- the DataModule --------------------------------------------------------------------------------------------------
class IMDBDataModule(HubDataModule):
    """IMDB reviews as padded token ids with 2-class labels (module docstring, rules 1-6)."""

    num_outputs = 2
    dataset = DATASET

    def __init__(self, tokenizer: TextTokenizer | None = None, max_len: int = 256, val_size: int = 2500,
                 split_seed: int = 2500, subset: int | None = None, eval_subset: int | None = None,
                 **options: Unpack[HubOptions]) -> None:
        super().__init__(**options)
        for name, value in (("max_len", max_len), ("val_size", val_size)):
            require_int(f"data.{name}", value, minimum=1, allowed="a positive int")
        for name, value in (("subset", subset), ("eval_subset", eval_subset)):
            if value is not None:
                require_int(f"data.{name}", value, minimum=1, allowed="null or a positive int")
        self.tokenizer = tokenizer if tokenizer is not None else WordVocabTokenizer()
        self.max_len, self.val_size, self.split_seed = max_len, val_size, split_seed
        self.subset, self.eval_subset = subset, eval_subset
        self.cache_file: Path | None = None  # set by load(): where the encoded splits live, and the tokenizer
        self.tokenizer_dir: Path | None = None

    def default_hf(self) -> HFDataset:
        return HF

    def _source(self) -> tuple[tuple[object, ...], list[Path], Callable[[], Reviews]]:
        """(identity of the source, its files for the cache key, a zero-argument reader): the Hugging Face
        source that `source` names, else (`auto`) the first of 1-3."""
        location = self.hf_location()
        if location is not None:
            return self._hf(location)
        local, searched = find_local(self.data_dir)
        if local is not None and local.is_dir():
            dirs = [local / s / lab for s in SPLITS for lab in LABELS]  # their mtimes change when files do
            return ("aclImdb-folder",), dirs, lambda: read_folder(local)
        if local is not None:
            return ("aclImdb-tar",), [local], lambda: read_tarball(local)
        if self.download:
            try:
                import datasets  # noqa: F401
            except ImportError:
                raise not_found(DATASET, searched, EXPECTED, hint=(
                    "download=true needs the Hugging Face `datasets` package (pip install datasets), which is not "
                    "installed; or put aclImdb-labelled.tar.gz in the data directory.")) from None
            return self._hf(HubLocation(self.hf, DATASET, tuple(searched), EXPECTED))
        raise not_found(DATASET, searched, EXPECTED,
                        hint="Set data.download=true (needs the `datasets` package) or copy the IMDB tarball there.")

    def _hf(self, location: Location) -> tuple[tuple[object, ...], list[Path], Callable[[], Reviews]]:
        read = lambda: read_hf(location, self.cache_dir)
        return (location.kind, *location.settings), location.files(), read

    def _build(self, read: Callable[[], Reviews], tokenizer_dir: Path) -> dict[str, torch.Tensor]:
        reviews = read()
        train_texts, train_labels = reviews["train"]
        n = len(train_texts)
        if n <= self.val_size:
            raise DataError(f"data.val_size={self.val_size} leaves no training reviews (train has {n})")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed)).tolist()  # rule 5
        val_idx, train_idx = order[: self.val_size], order[self.val_size :]
        fit_texts = [train_texts[i] for i in train_idx]
        self.tokenizer.fit(fit_texts)
        self.tokenizer.save(tokenizer_dir)
        test_texts, test_labels = reviews["test"]
        labels = torch.tensor(train_labels, dtype=torch.long)
        return {  # rule 6
            "x_train": self.tokenizer.encode(fit_texts, self.max_len), "y_train": labels[train_idx],
            "x_val": self.tokenizer.encode([train_texts[i] for i in val_idx], self.max_len), "y_val": labels[val_idx],
            "x_test": self.tokenizer.encode(test_texts, self.max_len),
            "y_test": torch.tensor(test_labels, dtype=torch.long),
        }

    def encoded(self) -> dict[str, torch.Tensor]:
        """The full encoded splits, from the cache or built once (rules 4-6)."""
        ident, files, read = self._source()
        key = (*ident, self.tokenizer.identity(), self.max_len, self.val_size, self.split_seed)
        self.cache_file = self.cache_path("encoded", *key, files=files)
        tokenizer_dir = self.tokenizer_dir = self.cache_path("tokenizer", *key, files=files, suffix="")
        tensors = cached(self.cache_file, lambda: self._build(read, tokenizer_dir))
        self.tokenizer.load(tokenizer_dir)
        return tensors

    def _eval_part(self, x: torch.Tensor, y: torch.Tensor, salt: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.eval_subset is None or self.eval_subset >= len(x):
            return x, y
        g = torch.Generator().manual_seed(self.split_seed * 1_000_003 + salt)
        idx = torch.randperm(len(x), generator=g)[: self.eval_subset]
        return x[idx], y[idx]

    def load(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        t = self.encoded()
        n = len(t["x_train"]) if self.subset is None else min(self.subset, len(t["x_train"]))
        return ((t["x_train"][:n], t["y_train"][:n]),
                self._eval_part(t["x_val"], t["y_val"], 1), self._eval_part(t["x_test"], t["y_test"], 2))


# -- fixtures --------------------------------------------------------------------------------------------------------
def write_aclimdb(root: Path, reviews: dict[str, dict[str, list[str]]], tarball: str | None = None) -> Path:
    """Write `reviews` ({split: {"pos"|"neg"|"unsup": [text, ...]}}) in the aclImdb layout under `root`
    (`root/aclImdb/<split>/<label>/<i>_<rating>.txt`, ratings 8 for pos, 2 for neg, 0 for unsup); with `tarball`,
    pack that folder into `root/<tarball>` (gzip) and remove it. Returns the folder or the tarball. For tests and
    examples of the on-disk format."""
    import shutil

    rating = {"pos": 8, "neg": 2, "unsup": 0}
    folder = root / FOLDER
    for split, by_label in reviews.items():
        for label, texts in by_label.items():
            (folder / split / label).mkdir(parents=True, exist_ok=True)
            for i, text in enumerate(texts):
                (folder / split / label / f"{i}_{rating[label]}.txt").write_text(text, encoding="utf-8")
    if tarball is None:
        return folder
    with tarfile.open(root / tarball, "w:gz") as tar:
        tar.add(folder, arcname=FOLDER)
    shutil.rmtree(folder)
    return root / tarball
