"""Hugging Face `datasets` as one more source of the real-data DataModules (CIFAR-10/100, IMDB, electricity load).

A DataModule's `source` setting (config key `data.source`) picks where its data come from:
  - `auto` (default): the DataModule's own order (data directory, the cache, then its library's download);
  - `hf`: the hub dataset `hf.id` (`uoft-cs/cifar10`, `uoft-cs/cifar100`, `stanfordnlp/imdb`) through
    `load_dataset`, downloaded into the project's cache (`<cache>/huggingface/datasets`) and read from there
    afterwards (offline too, with `HF_DATASETS_OFFLINE=1`); a failed download is a `DataNotFoundError`;
  - a folder: a `DatasetDict` written by `save_to_disk` (it holds `dataset_dict.json`), or Parquet files
    whose path names the split (`plain_text/train-00000-of-00001.parquet` as on the hub, `test.parquet`).
Rules:
  1. the `train` and `test` splits are read, rows in their order; others (IMDB's `unsupervised`) are ignored;
  2. `hf.input_column` holds the inputs (an `Image` feature for CIFAR, strings for IMDB) and `hf.label_column`
     integer class labels (`ClassLabel` or an integer `Value`) in [0, num_classes); a missing split or column,
     another type, a label out of range or an unreadable file is a `DataError` naming the file (or hub id)
     and the column;
  3. the DataModule decodes what it gets exactly as the same content from its other sources (the tensors, and
     so the run's `data_checksum`, do not depend on the source) and caches the tensors under a key made of the
     hub id and columns, or of the local files' identities, so a second run neither loads nor decodes again.
Time series (`HFSeries`, the electricity load source `data.electricity.UCIElectricity` with `location: hf` or a
folder) follow the same locations with one split (`hf.split`, default `train`) and `read_series` in place of rule 2:
one row per series with sequence columns (the GluonTS/Chronos layout of the hub's load datasets: an id, a list of
timestamps, a list of values) or one row per time step (a long table grouped by the series column).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adaptive_lr.data.source import DataError, DataNotFoundError, PathLike, cache_root, fetch

if TYPE_CHECKING:
    import pandas as pd
    from datasets import Dataset, DatasetDict

SPLITS = ("train", "test")
AUTO = "auto"
INT_DTYPES = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}


@dataclass(frozen=True)
class HFDataset:
    """Which hub dataset holds a task's data, and its input and label columns (`data.hf` in a task config)."""

    id: str
    input_column: str
    label_column: str = "label"

    config = None  # the hub dataset's default configuration
    splits = SPLITS  # rule 1

    def columns(self) -> tuple[str, str, str]:
        return self.id, self.input_column, self.label_column


@dataclass(frozen=True)
class HFSeries:
    """Which hub dataset (and configuration, `load_dataset`'s `name`) holds a set of time series, the split to
    read and its columns (`data.source.hf` in a forecasting task config): `series_column` names each series,
    `time_column` holds timestamps and `target_column` numbers, either as sequences (one row per series) or as
    scalars (one row per time step)."""

    id: str
    config: str | None = None
    split: str = "train"
    series_column: str = "id"
    time_column: str = "timestamp"
    target_column: str = "target"

    @property
    def splits(self) -> tuple[str, ...]:
        return (self.split,)

    def columns(self) -> tuple[str, ...]:
        return (self.id, self.config or "", self.split, self.series_column, self.time_column, self.target_column)


Spec = HFDataset | HFSeries


def hf_cache(cache_dir: PathLike) -> Path:
    """Where `load_dataset` keeps downloads and Arrow files: under the project's cache folder, where
    `runtime.configure_environment` also points `HF_HOME`."""
    return cache_root(cache_dir) / "huggingface" / "datasets"


# -- locations: where a DatasetDict is loaded from ----------------------------------------------------------
@dataclass(frozen=True)
class HubLocation:
    """`source: hf`: the hub dataset `spec.id`, through `load_dataset` into the project's cache."""

    spec: Spec
    dataset: str
    searched: tuple[Path, ...] = ()  # for a failed download's message: the local folders searched before it
    expected: tuple[str, ...] = ()  # and the files they could have held

    kind = "hf-hub"

    def files(self) -> list[Path]:
        return []  # the hub id and columns are the identity (`settings`)

    @property
    def settings(self) -> tuple[str, ...]:
        return self.spec.columns()

    @property
    def label(self) -> str:
        return self.spec.id + (f" ({self.spec.config})" if self.spec.config else "")

    def where(self) -> str:
        return f"hub dataset {self.label}"

    def load(self, cache_dir: PathLike) -> DatasetDict:
        from datasets import load_dataset

        cache = hf_cache(cache_dir)
        name = {"name": self.spec.config} if self.spec.config else {}  # a named configuration of the hub dataset
        return fetch(lambda: load_dataset(self.spec.id, **name, cache_dir=str(cache)), self.dataset,
                     [*self.searched, cache], [*self.expected, f"the Hugging Face dataset {self.label}"])


def _split_in_path(split: str) -> re.Pattern[str]:
    """Whether a file's path names `split` (`plain_text/train-00000-of-00001.parquet`, `test.parquet`)."""
    return re.compile(rf"(?:^|[/_.-]){re.escape(split)}(?:[/_.-]|$)")


@dataclass(frozen=True)
class DiskLocation:
    """`source: <folder>`: a `save_to_disk` DatasetDict or Parquet files named by split, read offline."""

    path: Path
    spec: Spec
    dataset: str

    kind = "hf-disk"

    @classmethod
    def at(cls, source: object, spec: Spec, dataset: str, key: str = "data.source") -> DiskLocation:
        path = Path(source).expanduser() if isinstance(source, str) and source else None
        if path is None or not path.is_dir():
            raise DataNotFoundError(f"{dataset}: {key}={source!r} is neither 'auto', 'hf' nor a folder "
                                    "holding a dataset saved by Hugging Face `datasets` (save_to_disk, "
                                    "Parquet)")
        return cls(path, spec, dataset)

    @property
    def settings(self) -> tuple[str, ...]:
        return self.spec.columns()[1:]

    def saved(self) -> bool:
        return (self.path / "dataset_dict.json").is_file()

    def files(self) -> list[Path]:
        pattern = "*.arrow" if self.saved() else "*.parquet"
        return sorted(p for p in self.path.rglob(pattern) if p.is_file())

    def where(self) -> str:
        return str(self.path)

    def parquet_splits(self) -> dict[str, list[str]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        found: dict[str, list[str]] = {}
        for split in self.spec.splits:
            pattern = _split_in_path(split)
            found[split] = [str(f) for f in self.files()
                            if pattern.search(f.relative_to(self.path).as_posix())]
            if not found[split]:
                raise DataError(f"{self.dataset}: {self.path} has no {split} split: expected a dataset "
                                f"saved with save_to_disk (dataset_dict.json) or Parquet files named "
                                f"{split}*.parquet")
            for file in found[split]:
                try:
                    pq.read_metadata(file)
                except (OSError, pa.ArrowException) as err:
                    raise DataError(f"{self.dataset}: {file} is not a readable Parquet file ({err})") from err
        return found

    def load(self, cache_dir: PathLike) -> DatasetDict:
        from datasets import load_dataset, load_from_disk

        if self.saved():
            try:
                return load_from_disk(str(self.path))
            except (OSError, ValueError) as err:
                raise DataError(f"{self.dataset}: {self.path} is not a readable saved dataset "
                                f"({err})") from err
        return load_dataset("parquet", data_files=self.parquet_splits(), cache_dir=str(hf_cache(cache_dir)))


Location = HubLocation | DiskLocation
#: the named values of `data.source` (`auto`: None, the DataModule's own order); any other value is a folder
NAMED: dict[str, Callable[[Spec, str], Location | None]] = {
    AUTO: lambda spec, dataset: None,
    "hf": HubLocation,
}


def hf_location(source: object, spec: Spec, dataset: str, key: str = "data.source") -> Location | None:
    """The Hugging Face location `source` (the value of config key `key`) names, or None for `auto` (module
    docstring)."""
    named = NAMED.get(source) if isinstance(source, str) else None
    return named(spec, dataset) if named is not None else DiskLocation.at(source, spec, dataset, key)


# -- reading columns (rule 2) -------------------------------------------------------------------------------
def read_splits(location: Location, cache_dir: PathLike, num_classes: int,
                inputs: Callable[[Dataset, str, str], list[Any]]) -> dict[str, tuple[list[Any], list[int]]]:
    """{split: (inputs, labels)} of the train and test splits; `inputs(dataset, column, where)` reads and
    checks the input column."""
    data = location.load(cache_dir)
    spec, where = location.spec, location.where()
    out: dict[str, tuple[list[Any], list[int]]] = {}
    for split in SPLITS:
        if split not in data:
            raise DataError(f"{location.dataset}: {where} has no {split} split (it has {sorted(data)})")
        part = data[split]
        if len(part) == 0:
            raise DataError(f"{location.dataset}: {where} has an empty {split} split")
        for column in (spec.input_column, spec.label_column):
            if column not in part.column_names:
                raise DataError(f"{location.dataset}: {where} {split} split has no column {column!r} "
                                f"(it has {part.column_names}); set data.hf.input_column or "
                                "data.hf.label_column")
        out[split] = (inputs(part, spec.input_column, f"{where} {split}"),
                      labels(part, spec.label_column, num_classes, f"{where} {split}"))
    return out


def labels(part: Dataset, column: str, num_classes: int, where: str) -> list[int]:
    """Integer class labels in [0, num_classes) from a `ClassLabel` or integer `Value` column."""
    from datasets import ClassLabel, Value

    feature = part.features[column]
    if not (isinstance(feature, ClassLabel) or (isinstance(feature, Value) and feature.dtype in INT_DTYPES)):
        raise DataError(f"{where}: column {column!r} holds {feature}, expected integer class labels")
    values = list(part[column])
    bad = [v for v in values if not 0 <= v < num_classes]
    if bad:
        raise DataError(f"{where}: column {column!r} has labels {sorted(set(bad))[:5]} outside "
                        f"[0, {num_classes})")
    return values


def image_column(part: Dataset, column: str, where: str) -> list[bytes]:
    """The encoded bytes of an `Image` column (read from its paths where the bytes are not stored)."""
    from datasets import Image

    feature = part.features[column]
    if not isinstance(feature, Image):
        raise DataError(f"{where}: column {column!r} holds {feature}, expected an Image feature")
    out = []
    for cell in part.cast_column(column, Image(decode=False))[column]:
        out.append(cell["bytes"] if cell["bytes"] is not None else Path(cell["path"]).read_bytes())
    return out


def text_column(part: Dataset, column: str, where: str) -> list[str]:
    """The strings of a text column."""
    from datasets import Value

    feature = part.features[column]
    if not (isinstance(feature, Value) and feature.dtype in ("string", "large_string")):
        raise DataError(f"{where}: column {column!r} holds {feature}, expected text (a string Value)")
    return list(part[column])



# -- reading time series -------------------------------------------------------------------------------------------
def read_series(location: Location, cache_dir: PathLike) -> list[tuple[str, pd.Series]]:
    """Every series of the split `location.spec` names, in the dataset's order (rows in their order; in a long
    table, series by first appearance), each a float64 `pandas.Series` indexed by its timestamps. A missing split
    or column, a timestamp column that holds no timestamps, a target that holds no numbers or an empty split is a
    `DataError` naming the dataset and the column; missing values and irregular timestamps are the caller's to
    check (`data.forecast.check_complete`, `check_regular`)."""
    data = location.load(cache_dir)
    spec, where = location.spec, location.where()
    assert isinstance(spec, HFSeries)
    if spec.split not in data:
        raise DataError(f"{location.dataset}: {where} has no {spec.split} split (it has {sorted(data)}); set "
                        "data.source.hf.split")
    part = data[spec.split]
    columns = (spec.series_column, spec.time_column, spec.target_column)
    missing = [c for c in columns if c not in part.column_names]
    if missing:
        raise DataError(f"{location.dataset}: {where} {spec.split} split has no column {missing} (it has "
                        f"{part.column_names}); set data.source.hf.series_column, time_column or target_column")
    if len(part) == 0:
        raise DataError(f"{location.dataset}: {where} has an empty {spec.split} split")
    time_kind, sequences = _element(part.features[spec.time_column])
    target_kind, target_sequences = _element(part.features[spec.target_column])
    if sequences != target_sequences:
        raise DataError(f"{location.dataset}: {where}: columns {spec.time_column!r} and {spec.target_column!r} "
                        "must both be sequences (one row per series) or both scalars (one row per time step)")
    if not (time_kind.startswith(("timestamp", "date")) or time_kind in ("string", "large_string")):
        raise DataError(f"{location.dataset}: {where}: column {spec.time_column!r} holds {time_kind}, expected "
                        "timestamps")
    if not target_kind.startswith(("float", "int", "uint")):
        raise DataError(f"{location.dataset}: {where}: column {spec.target_column!r} holds {target_kind}, "
                        "expected numbers")
    frame = part.select_columns(list(columns)).to_pandas()
    if sequences:
        rows = zip(frame[spec.series_column], frame[spec.time_column], frame[spec.target_column], strict=True)
        out = [(str(name), _series(times, values, where, spec.time_column)) for name, times, values in rows]
    else:
        groups = frame.groupby(spec.series_column, sort=False)
        out = [(str(name), _series(rows[spec.time_column], rows[spec.target_column], where, spec.time_column))
               for name, rows in groups]
    names = [name for name, _ in out]
    if len(set(names)) < len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})[:3]
        raise DataError(f"{location.dataset}: {where}: series {repeated} appear in more than one row of column "
                        f"{spec.series_column!r}")
    return out


def _element(feature: object) -> tuple[str, bool]:
    """(the dtype of a column's values, whether the column holds sequences of them)."""
    from datasets import LargeList, List, Sequence, Value

    if isinstance(feature, (List, LargeList, Sequence)):
        inner = feature.feature
        return (inner.dtype if isinstance(inner, Value) else str(inner)), True
    return (feature.dtype if isinstance(feature, Value) else str(feature)), False


def _series(times: Any, values: Any, where: str, time_column: str) -> pd.Series:
    import numpy as np
    import pandas as pd

    try:
        index = pd.DatetimeIndex(pd.to_datetime(np.asarray(times)))
    except (ValueError, TypeError) as err:
        raise DataError(f"{where}: column {time_column!r} holds a value that is not a timestamp "
                        f"({str(err).splitlines()[0]})") from err
    return pd.Series(np.asarray(values, dtype=np.float64), index=index)
