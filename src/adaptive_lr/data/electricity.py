"""Electricity load forecasting: sliding windows over one or many load series, split by time.

Sources (objects built from config by `_target_`, given to the DataModule as `source`):
  - `VicElecCSV`: the half-hourly demand of Victoria, Australia (`vic_elec` of *Forecasting: Principles and
    Practice*), `<data_dir>/electricity/vic_elec.csv` with columns Time,Demand,Temperature,Date,Holiday; one
    series, the target column (default Demand) plus optional covariate columns (e.g. Temperature) as inputs.
    It has no download path: the file must be in the data directory.
  - `UCIElectricity`: UCI ElectricityLoadDiagrams20112014, `LD2011_2014.txt` (semicolon-separated, comma
    decimals, first column the timestamp, one column per client, kW per 15 minutes); `clients` picks columns (the
    first N or a list of names), `freq` optionally resamples (e.g. "1h": the mean kW of the hour = its kWh).
    Each client is its own series (normalised on its own). Not found locally and `download: true`: the UCI
    archive's zip is fetched into the cache with torchvision's downloader (the Hugging Face copies of this set
    need the `datasets` package and a loading script, so they are not used).

Windows (`ElectricityDataModule`): a window is identified by its forecast origin `o` (the first target step):
inputs are the `lookback` steps [o - lookback, o) of every feature (feature 0 is the target series), targets the
next `horizon` target values [o, o + horizon). A batch is (x [B, lookback, F], y [B, horizon], naive [B, horizon],
scale [B]): `naive` is the seasonal-naive forecast of the same targets and `scale` the target's normalising std,
so a task can report errors in original units without knowing the data. Rules:
  1. the split is chronological by fractions of the time axis: train [0, t1), val [t1, t2), test [t2, T);
  2. a window belongs to the split that holds all its targets: train windows lie entirely before t1 (no val or
     test value is ever a train input or target); val/test inputs may reach back into earlier splits (the known
     past at forecast time, as in deployment);
  3. normalisation (mean/std per series and feature) is fit on the train part [0, t1) only; a zero std
     (a constant feature) is replaced by 1;
  4. seasonal naive: the target at o + h is forecast by the last observed value one season earlier,
     y[o + h - season * ceil((h + 1) / season)], i.e. the last full season repeated: it never looks at a target;
  5. origins start at max(lookback, season) so every input and naive value exists; they step by `stride`
     (`eval_stride` for val/test, default the same).
Windows are strided views of the series where possible (one series: no copy of the overlapping inputs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from adaptive_lr.data.base import InMemoryDataModule
from adaptive_lr.data.source import (
    DataError,
    cache_root,
    cached,
    candidate_dirs,
    fetch,
    find_dir,
    not_found,
    source_key,
)

if TYPE_CHECKING:
    import pandas as pd

PathLike = str | os.PathLike[str] | None
UCI_URL = "https://archive.ics.uci.edu/static/public/321/electricityloaddiagrams20112014.zip"


# -- sources ---------------------------------------------------------------------------------------------------------
def _read_csv(path: Path, **kwargs: object) -> pd.DataFrame:
    """pandas.read_csv, with an empty, undecodable or malformed file a `DataError` naming it."""
    import pandas as pd

    try:
        return pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        reason = str(err).splitlines()[0]
        raise DataError(f"electricity: {path.name} is not a readable CSV ({reason})") from err


def _numeric(frame: pd.DataFrame, file: str) -> pd.DataFrame:
    """The columns as float64; a value that is not a number is a `DataError` naming its column and row."""
    import pandas as pd

    for column in frame.columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if bad.any():
            row = frame.index[bad.to_numpy().argmax()]
            raise DataError(f"electricity: column {column!r} of {file} has a non-numeric value "
                            f"{frame[column][row]!r} at row {row}; every value must be a number")
    return frame.astype("float64")


def _check_series(frame: pd.DataFrame, file: str) -> None:
    """Raise a ValueError naming the column, the count and the first row of any missing value."""
    for column in frame.columns:
        missing = frame[column].isna()
        if missing.any():
            first = frame.index[missing.to_numpy().argmax()]
            raise DataError(
                f"electricity: column {column!r} of {file} has {int(missing.sum())} missing values "
                f"(first at {first}); fill or drop them before forecasting"
            )


def _check_regular(times: pd.Series | pd.Index, file: str) -> None:
    """Raise a DataError unless the timestamps are strictly increasing with one constant step (a season is a
    fixed number of steps): a duplicated, unsorted or missing timestamp names its row."""
    import pandas as pd

    times = pd.Series(times)
    diffs = times.diff().iloc[1:]
    if len(diffs) and ((diffs != diffs.iloc[0]).any() or diffs.iloc[0] <= pd.Timedelta(0)):
        first_bad = diffs.iloc[0] <= pd.Timedelta(0)
        bad = 1 if first_bad else int((diffs != diffs.iloc[0]).to_numpy().argmax()) + 1
        step = diffs.iloc[bad - 1]
        what = "does not increase" if step <= pd.Timedelta(0) else f"differs from the first ({diffs.iloc[0]})"
        raise DataError(
            f"electricity: {file} is not a regular time series (timestamps must increase by one constant "
            f"step): the step at row {bad} ({times.iloc[bad - 1]} -> {times.iloc[bad]}) {what}"
        )


@dataclass(frozen=True)
class VicElecCSV:
    """One CSV series: the `target` column plus `covariates` columns as extra inputs, in `Time` order."""

    target: str = "Demand"
    covariates: tuple[str, ...] = ()
    file: str = "vic_elec.csv"
    time_column: str = "Time"

    dataset = "electricity"

    def load(self, data_dir: PathLike, cache_dir: PathLike, download: bool) -> torch.Tensor:
        """The series as float64 [1, T, 1 + len(covariates)] (feature 0 the target). Nothing to download."""
        searched = candidate_dirs(self.dataset, data_dir)
        folder = find_dir(self.dataset, searched, [self.file])
        if folder is None:
            raise not_found(
                self.dataset,
                searched,
                [self.file],
                hint="This series has no download path: copy vic_elec.csv into the data directory.",
            )
        path = folder / self.file
        columns = [self.target, *self.covariates]
        key = source_key("vic_elec", columns, self.time_column, files=[path])
        return cached(
            cache_root(cache_dir) / self.dataset / f"csv-{key}.pt",
            lambda: {"values": self._decode(path, columns)},
        )["values"]

    def _decode(self, path: Path, columns: list[str]) -> torch.Tensor:
        import pandas as pd

        frame = _read_csv(path)
        unknown = [c for c in [self.time_column, *columns] if c not in frame.columns]
        if unknown:
            raise DataError(
                f"electricity: {path.name} has no column {unknown}; columns: {list(frame.columns)}"
            )
        try:
            times = pd.to_datetime(frame[self.time_column], utc=True)
        except (ValueError, TypeError) as err:
            raise DataError(f"electricity: column {self.time_column!r} of {path.name} holds a value that is "
                            f"not a timestamp ({str(err).splitlines()[0]})") from err
        _check_regular(times, path.name)
        values = _numeric(frame[columns], path.name)
        _check_series(values, path.name)
        return torch.tensor(values.to_numpy()).unsqueeze(0)


@dataclass(frozen=True)
class UCIElectricity:
    """UCI ElectricityLoadDiagrams20112014: `clients` (the first N columns, or a list of names like "MT_001"), each
    its own univariate series; optionally resampled to `freq` (mean over each interval, labelled by its end, as the
    file's timestamps are) and cut to [`start`, `end`] (e.g. skip the years before most clients were connected)."""

    clients: int | tuple[str, ...] = 10
    freq: str | None = None
    start: str | None = None
    end: str | None = None
    file: str = "LD2011_2014.txt"

    dataset = "electricity"
    folders = ("electricity", "ElectricityLoadDiagrams20112014")

    def load(self, data_dir: PathLike, cache_dir: PathLike, download: bool) -> torch.Tensor:
        """The selected clients as float64 [n_clients, T, 1]."""
        if isinstance(self.clients, int) and self.clients < 1:
            raise DataError(
                f"electricity: clients must be a positive int or a list of names, got {self.clients!r}"
            )
        searched = candidate_dirs(self.dataset, data_dir, *self.folders)
        folder = find_dir(self.dataset, searched, [self.file])
        downloads = cache_root(cache_dir) / self.dataset
        if folder is None and (downloads / self.file).exists():
            folder = downloads
        if folder is None and download:
            from torchvision.datasets.utils import download_and_extract_archive

            downloads.mkdir(parents=True, exist_ok=True)
            zip_name = "electricityloaddiagrams20112014.zip"
            fetch(
                lambda: download_and_extract_archive(
                    UCI_URL, str(downloads), filename=zip_name, remove_finished=True
                ),
                self.dataset,
                [*searched, downloads],
                [self.file],
            )
            folder = downloads if (downloads / self.file).exists() else None
        if folder is None:
            raise not_found(
                self.dataset,
                [*searched, downloads],
                [self.file],
                hint=f"Download {UCI_URL} (or set data.download=true) and unzip it there.",
            )
        path = folder / self.file
        clients = self.clients if isinstance(self.clients, int) else list(self.clients)
        key = source_key("uci", clients, self.freq, self.start, self.end, files=[path])
        return cached(
            cache_root(cache_dir) / self.dataset / f"uci-{key}.pt",
            lambda: {"values": self._decode(path, clients)},
        )["values"]

    def _decode(self, path: Path, clients: int | list[str]) -> torch.Tensor:
        with open(path, encoding="utf-8") as f:
            header = [c.strip().strip('"') for c in f.readline().rstrip("\n").split(";")]
        names = header[1:]
        if isinstance(clients, int):
            if clients > len(names):
                raise DataError(f"electricity: clients={clients} but {path.name} has {len(names)} clients")
            chosen = names[:clients]
        else:
            unknown = [c for c in clients if c not in names]
            if unknown:
                raise DataError(
                    f"electricity: unknown clients {unknown}; {path.name} has {names[:3]}...{names[-1:]}"
                )
            chosen = clients
        frame = _read_csv(
            path,
            sep=";",
            decimal=",",
            usecols=[0, *(1 + names.index(c) for c in chosen)],
            index_col=0,
            parse_dates=[0],
        )
        frame = _numeric(frame[chosen], path.name)
        _check_regular(frame.index, path.name)
        _check_series(frame, path.name)
        if self.freq is not None:
            bins = frame.resample(self.freq, label="right", closed="right")
            counts = bins.size()
            frame = bins.mean()[counts == counts.max()]  # drop partial intervals at the ends
        frame = frame.loc[self.start : self.end]
        return torch.tensor(frame.to_numpy().T).unsqueeze(-1)


# -- windows ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WindowIndex:
    """Which series and forecast origin (index of the first target step) each window of a split has."""

    series: torch.Tensor
    origin: torch.Tensor


def naive_lags(horizon: int, season: int) -> torch.Tensor:
    """How many steps before its target (o + h) the seasonal-naive value of each horizon step h lies:
    season * ceil((h + 1) / season), the smallest multiple of the season that reaches back before the origin."""
    h = torch.arange(horizon)
    return season * ((h + season) // season)


def windows(
    series: torch.Tensor, origins: range, lookback: int, horizon: int, season: int
) -> tuple[torch.Tensor, ...]:
    """(x [N, lookback, F], y [N, horizon], naive [N, horizon]) for the origins of one series [T, F]; x and y are
    strided views (no copy of the overlapping windows)."""
    n, step = len(origins), origins.step
    if n == 0:
        empty = series.new_zeros((0, horizon))
        return series.new_zeros((0, lookback, series.shape[1])), empty, empty
    first = origins.start
    x = series[first - lookback : first - lookback + (n - 1) * step + lookback].unfold(0, lookback, step)
    y = series[first : first + (n - 1) * step + horizon, 0].unfold(0, horizon, step)
    idx = torch.as_tensor(origins)[:, None] + torch.arange(horizon) - naive_lags(horizon, season)  # rule 4
    return x.transpose(1, 2), y, series[:, 0][idx]


class ElectricityDataModule(InMemoryDataModule):
    """Sliding-window forecasting batches (x, y, naive, scale) from a load `source` (module docstring)."""

    def __init__(
        self,
        source: VicElecCSV | UCIElectricity | None = None,
        lookback: int = 96,
        horizon: int = 48,
        season: int = 48,
        stride: int = 1,
        eval_stride: int | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        batch_size: int = 64,
        eval_batch_size: int = 1024,
        seed: int = 0,
        data_dir: PathLike = None,
        cache_dir: PathLike = None,
        download: bool = True,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed)
        for name, value in (
            ("lookback", lookback),
            ("horizon", horizon),
            ("season", season),
            ("stride", stride),
            ("eval_stride", stride if eval_stride is None else eval_stride),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"data.{name} must be a positive int, got {value!r}")
        if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ValueError(
                f"val_fraction and test_fraction must be in (0, 1) with a sum below 1, got {val_fraction}, "
                f"{test_fraction}"
            )
        self.source = source if source is not None else VicElecCSV()
        self.lookback, self.horizon, self.season = lookback, horizon, season
        self.stride, self.eval_stride = stride, stride if eval_stride is None else eval_stride
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.data_dir, self.cache_dir, self.download = data_dir, cache_dir, download
        self.num_outputs = horizon
        # set by load(): the split points, train-fit normaliser [S, F], and each split's windows
        self.bounds: tuple[int, int, int] = (0, 0, 0)
        self.mean = self.std = torch.empty(0)
        self.index: tuple[WindowIndex, ...] = ()

    @property
    def scale(self) -> torch.Tensor:
        """The target's normalising std per series [S]: an error in normalised units times this is in original units."""
        return self.std[:, 0]

    def split_origins(self, length: int) -> tuple[range, range, range]:
        """Forecast origins of the train, val and test windows of a series of `length` steps (rules 1, 2, 5)."""
        t1 = length - round(length * self.val_fraction) - round(length * self.test_fraction)
        t2 = t1 + round(length * self.val_fraction)
        self.bounds = (t1, t2, length)
        first = max(self.lookback, self.season)
        spans = (
            (first, t1, self.stride),
            (max(first, t1), t2, self.eval_stride),
            (max(first, t2), length, self.eval_stride),
        )
        origins = tuple(range(lo, hi - self.horizon + 1, step) for lo, hi, step in spans)
        for split, span in zip(("train", "val", "test"), origins, strict=True):
            if len(span) == 0:
                raise DataError(
                    f"electricity: the {split} split of a {length}-step series has no window of lookback "
                    f"{self.lookback} + horizon {self.horizon} (season {self.season}); use a longer series, "
                    "larger fractions or a shorter window"
                )
        return origins  # type: ignore[return-value]

    def load(self) -> tuple[tuple[torch.Tensor, ...], ...]:
        raw = self.source.load(self.data_dir, self.cache_dir, self.download)  # float64 [S, T, F]
        origins = self.split_origins(raw.shape[1])
        train = raw[:, : self.bounds[0]]
        self.mean = train.mean(dim=1)  # rule 3: fit on the train part only
        std = train.std(dim=1)
        self.std = torch.where(std > 0, std, torch.ones_like(std))
        normalised = ((raw - self.mean[:, None]) / self.std[:, None]).float()
        splits, index = [], []
        for span in origins:
            parts = [
                windows(normalised[s], span, self.lookback, self.horizon, self.season)
                for s in range(len(normalised))
            ]
            scale = torch.cat([self.scale[s].float().expand(len(span)) for s in range(len(normalised))])
            if len(parts) == 1:
                x, y, naive = parts[0]
            else:
                x, y, naive = (torch.cat(t) for t in zip(*parts, strict=True))
            splits.append((x, y, naive, scale))
            index.append(
                WindowIndex(
                    torch.arange(len(normalised)).repeat_interleave(len(span)),
                    torch.as_tensor(span).repeat(len(normalised)),
                )
            )
        self.index = tuple(index)
        return tuple(splits)

    @property
    def in_features(self) -> int:
        """Input features per time step (the target plus covariates), what the model's `in_features` must be."""
        return self.splits[0][0].shape[-1]
