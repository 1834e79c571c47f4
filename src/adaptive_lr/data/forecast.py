"""Forecasting on any regular time series: sliding windows over one or many series, split by time.

The DataModule (`ForecastDataModule`) takes a `source` (an object built from config by `_target_`) whose
`load(data_dir, cache_dir, download)` returns a `SeriesSet`: one float64 tensor [T_s, F] per series, feature 0
the target, then the past covariates, then the `future_features` known-future covariates (values known ahead for
the forecast window: calendar dummies, an exogenous forecast). `CSVSeries` reads any CSV by configuration (file,
time, target, covariate and series-id columns); `data.electricity` holds the electricity sources.

Windows: a window is identified by its series and forecast origin `o` (the first target step): inputs are the
`lookback` steps [o - lookback, o) of every feature, targets the next `horizon` target values [o, o + horizon).
A batch is (x [B, lookback, F], y [B, horizon], naive [B, horizon], scale [B]), plus future [B, horizon, K], the
known-future covariates over [o, o + horizon), when the source has K > 0 of them (a batch without them keeps its
four tensors). `naive` is the seasonal-naive forecast of the same targets and `scale` the target's normalising std,
so a task can report errors in original units without knowing the data. Rules:
  1. each series is split chronologically by fractions of its own length: train [0, t1), val [t1, t2), test
     [t2, T);
  2. a window belongs to the split that holds all its targets: train windows lie entirely before t1 (no val or
     test value is ever a train input or target); val/test inputs may reach back into earlier splits (the known
     past at forecast time, as in deployment); a window never spans two series;
  3. normalisation (mean/std per series and feature) is fit on each series' train part [0, t1) only; a zero std
     (a constant feature) is replaced by 1;
  4. seasonal naive: the target at o + h is forecast by the last observed value one season earlier,
     y[o + h - season * ceil((h + 1) / season)], i.e. the last full season repeated: it never looks at a target;
  5. origins start at max(lookback, season) so every input and naive value exists; they step by `stride`
     (`eval_stride` for val/test, default the same).
Windows are strided views of the series where possible (one series: no copy of the overlapping inputs).

Bad files raise `DataError` with one line naming the file, the column and the row (data rows counted from 0, the
first line after the header): a missing column, a missing or non-numeric value, a timestamp that is not one, a
series whose timestamps are unsorted, duplicated or irregular, a series too short for one window per split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Unpack

import torch

from adaptive_lr.checks import require_int
from adaptive_lr.data.base import FileDataModule, FileOptions
from adaptive_lr.data.source import DataError, PathLike, candidate_dirs, decoded, not_found

if TYPE_CHECKING:
    import pandas as pd


# -- reading CSVs ----------------------------------------------------------------------------------------------------
def read_csv(path: Path, dataset: str, **kwargs: object) -> pd.DataFrame:
    """pandas.read_csv, with an empty, undecodable or malformed file a `DataError` naming it."""
    import pandas as pd

    try:
        return pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        reason = str(err).splitlines()[0]
        raise DataError(f"{dataset}: {path.name} is not a readable CSV ({reason})") from err


def numeric(frame: pd.DataFrame, file: str, dataset: str) -> pd.DataFrame:
    """The columns as float64; a value that is not a number is a `DataError` naming its column and row."""
    import pandas as pd

    for column in frame.columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if bad.any():
            row = frame.index[bad.to_numpy().argmax()]
            raise DataError(f"{dataset}: column {column!r} of {file} has a non-numeric value "
                            f"{frame[column][row]!r} at row {row}; every value must be a number")
    return frame.astype("float64")


def check_complete(frame: pd.DataFrame, file: str, dataset: str) -> None:
    """A `DataError` naming the column, the count and the first row of any missing value."""
    for column in frame.columns:
        missing = frame[column].isna()
        if missing.any():
            first = frame.index[missing.to_numpy().argmax()]
            raise DataError(
                f"{dataset}: column {column!r} of {file} has {int(missing.sum())} missing values "
                f"(first at {first}); fill or drop them before forecasting"
            )


def check_regular(times: pd.Series | pd.Index, file: str, dataset: str, what: str = "") -> None:
    """A `DataError` unless the timestamps are strictly increasing with one constant step (a season is a fixed
    number of steps): a duplicated, unsorted or missing timestamp names its row (`times`' index; a `pd.Index` is
    numbered from 0). `what` names the column and series in the message, after the file."""
    import pandas as pd

    times = pd.Series(times) if isinstance(times, pd.Index) else times
    diffs = times.diff().iloc[1:]
    if len(diffs) and ((diffs != diffs.iloc[0]).any() or diffs.iloc[0] <= pd.Timedelta(0)):
        bad = 1 if diffs.iloc[0] <= pd.Timedelta(0) else int((diffs != diffs.iloc[0]).to_numpy().argmax()) + 1
        step = diffs.iloc[bad - 1]
        how = "does not increase" if step <= pd.Timedelta(0) else f"differs from the first ({diffs.iloc[0]})"
        raise DataError(
            f"{dataset}: {what}{file} is not a regular time series (timestamps must increase by one constant "
            f"step): the step at row {times.index[bad]} ({times.iloc[bad - 1]} -> {times.iloc[bad]}) {how}"
        )


def timestamps(frame: pd.DataFrame, column: str, file: str, dataset: str) -> pd.Series:
    """The column parsed as UTC timestamps; a value that is not one is a `DataError` naming the column and row."""
    import pandas as pd

    try:
        return pd.to_datetime(frame[column], utc=True)
    except (ValueError, TypeError) as err:
        parsed = pd.to_datetime(frame[column], utc=True, errors="coerce", format="mixed")
        bad = parsed.isna() & frame[column].notna()
        where = f" at row {frame.index[bad.to_numpy().argmax()]}" if bad.any() else ""
        raise DataError(f"{dataset}: column {column!r} of {file} holds a value that is not a timestamp{where} "
                        f"({str(err).splitlines()[0]})") from err


# -- sources ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeriesSet:
    """What a source gives `ForecastDataModule`: one float64 tensor [T_s, F] per series (feature 0 the target, the
    last `future_features` the known-future covariates), each series' name, and the file (for messages)."""

    values: tuple[torch.Tensor, ...]
    names: tuple[str, ...]
    file: str
    future_features: int = 0

    @classmethod
    def padded(cls, stored: dict, file: str, future_features: int = 0) -> SeriesSet:
        """From a cached {"values": [S, T_max, F] (NaN-padded), "lengths": [S] (optional), "names" (optional)}."""
        values = stored["values"]
        lengths = stored.get("lengths", torch.full((len(values),), values.shape[1])).tolist()
        names = stored.get("names") or [str(s) for s in range(len(values))]
        return cls(tuple(v[:n] for v, n in zip(values, lengths, strict=True)), tuple(names), file, future_features)


class Source(Protocol):
    def load(self, data_dir: PathLike, cache_dir: PathLike, download: bool) -> SeriesSet: ...


@dataclass(frozen=True)
class CSVSeries:
    """Any CSV of one or many regular series: `target` plus past `covariates` (observed up to the forecast origin)
    plus `future_covariates` (known for the forecast window too), in `time_column` order; with `series_column`
    each of its values is a series of its own (rows of a series need not be contiguous). `file` is a path:
    absolute, or relative to the data directory (`<data_dir>/<dataset>/`, `<data_dir>/`) or the working one."""

    file: str = "series.csv"
    time_column: str = "time"
    target: str = "value"
    covariates: tuple[str, ...] = ()
    future_covariates: tuple[str, ...] = ()
    series_column: str | None = None

    dataset = "forecast"
    hint = "Set data.source.file to your CSV's path."

    @property
    def columns(self) -> list[str]:
        """The feature columns in order: target, past covariates, known-future covariates."""
        return [self.target, *self.covariates, *self.future_covariates]

    def find(self, data_dir: PathLike) -> Path:
        """The file: an absolute path, else the first of the data directory's folders, then the working one."""
        path = Path(self.file).expanduser()
        if path.is_absolute():
            searched, path = [path.parent], Path(path.name)
        else:
            searched = [*candidate_dirs(self.dataset, data_dir), Path.cwd()]
        for folder in searched:
            if (folder / path).is_file():
                return folder / path
        raise not_found(self.dataset, searched, [str(path)], hint=self.hint)

    def load(self, data_dir: PathLike, cache_dir: PathLike, download: bool) -> SeriesSet:
        """Every series as float64 [T_s, F]. Nothing to download."""
        path = self.find(data_dir)
        stored = decoded(cache_dir, self.dataset, "csv", "csv", self.columns, self.time_column, self.series_column,
                         files=[path], build=lambda: self._decode(path))
        return SeriesSet.padded(stored, path.name, len(self.future_covariates))

    def _decode(self, path: Path) -> dict:
        frame = read_csv(path, self.dataset)
        group = [] if self.series_column is None else [self.series_column]
        unknown = [c for c in [self.time_column, *group, *self.columns] if c not in frame.columns]
        if unknown:
            raise DataError(
                f"{self.dataset}: {path.name} has no column {unknown}; columns: {list(frame.columns)}"
            )
        if len(set(self.columns)) < len(self.columns) or set(group) & {self.time_column, *self.columns}:
            raise DataError(f"{self.dataset}: {path.name}: the time, series, target and covariate columns must "
                            f"be distinct, got time {self.time_column!r}, series {self.series_column!r}, features "
                            f"{self.columns}")
        times = timestamps(frame, self.time_column, path.name, self.dataset)
        values = numeric(frame[self.columns], path.name, self.dataset)
        check_complete(values, path.name, self.dataset)
        if self.series_column is None:
            check_regular(times, path.name, self.dataset, f"column {self.time_column!r} of ")
            return {"values": torch.tensor(values.to_numpy()).unsqueeze(0)}
        names, series = [], []
        for name, rows in frame.groupby(self.series_column, sort=False).groups.items():
            file = f"{path.name} (series {self.series_column}={name!r})"
            check_regular(times[rows], file, self.dataset, f"column {self.time_column!r} of ")
            names.append(str(name))
            series.append(torch.tensor(values.loc[rows].to_numpy()))
        lengths = torch.tensor([len(s) for s in series])
        padded = torch.full((len(series), int(lengths.max()), len(self.columns)), float("nan"), dtype=torch.float64)
        for s, values_s in enumerate(series):
            padded[s, : len(values_s)] = values_s
        return {"values": padded, "lengths": lengths, "names": names}


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
    series: torch.Tensor, origins: range, lookback: int, horizon: int, season: int, future_features: int = 0
) -> tuple[torch.Tensor, ...]:
    """(x [N, lookback, F], y [N, horizon], naive [N, horizon]) for the origins of one series [T, F], plus
    future [N, horizon, K] (the last K features over the targets' steps) when `future_features` K > 0; x, y and
    future are strided views (no copy of the overlapping windows)."""
    n, step = len(origins), origins.step
    if n == 0:
        empty = series.new_zeros((0, horizon))
        future = (series.new_zeros((0, horizon, future_features)),) if future_features else ()
        return series.new_zeros((0, lookback, series.shape[1])), empty, empty, *future
    first = origins.start
    x = series[first - lookback : first - lookback + (n - 1) * step + lookback].unfold(0, lookback, step)
    ahead = series[first : first + (n - 1) * step + horizon]
    y = ahead[:, 0].unfold(0, horizon, step)
    idx = torch.as_tensor(origins)[:, None] + torch.arange(horizon) - naive_lags(horizon, season)  # rule 4
    future = (ahead[:, -future_features:].unfold(0, horizon, step).transpose(1, 2),) if future_features else ()
    return x.transpose(1, 2), y, series[:, 0][idx], *future


class ForecastDataModule(FileDataModule):
    """Sliding-window forecasting batches (x, y, naive, scale[, future]) from a series `source` (module
    docstring)."""

    def __init__(self, source: Source | None = None, lookback: int = 96, horizon: int = 48, season: int = 48,
                 stride: int = 1, eval_stride: int | None = None, val_fraction: float = 0.15,
                 test_fraction: float = 0.15, **options: Unpack[FileOptions]) -> None:
        super().__init__(**options)
        for name, value in (
            ("lookback", lookback),
            ("horizon", horizon),
            ("season", season),
            ("stride", stride),
            ("eval_stride", stride if eval_stride is None else eval_stride),
        ):
            require_int(f"data.{name}", value, minimum=1, allowed="a positive int")
        if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ValueError(
                f"val_fraction and test_fraction must be in (0, 1) with a sum below 1, got {val_fraction}, "
                f"{test_fraction}"
            )
        if source is None:
            from adaptive_lr.data.electricity import VicElecCSV

            source = VicElecCSV()
        self.source = source
        self.lookback, self.horizon, self.season = lookback, horizon, season
        self.stride, self.eval_stride = stride, stride if eval_stride is None else eval_stride
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.dataset = getattr(source, "dataset", "forecast")
        self.num_outputs = horizon
        # set by load(): each series' split points, the train-fit normaliser [S, F], and each split's windows
        self.series_bounds: tuple[tuple[int, int, int], ...] = ()
        self.mean = self.std = torch.empty(0)
        self.index: tuple[WindowIndex, ...] = ()
        self.future_features = 0

    @property
    def bounds(self) -> tuple[int, int, int]:
        """The split points (t1, t2, T) of the first series (of every series when they have one length)."""
        return self.series_bounds[0] if self.series_bounds else (0, 0, 0)

    @property
    def scale(self) -> torch.Tensor:
        """The target's normalising std per series [S]: an error in normalised units times this is in original units."""
        return self.std[:, 0]

    def split_points(self, length: int) -> tuple[int, int, int]:
        """(t1, t2, T) of a series of `length` steps (rule 1)."""
        t1 = length - round(length * self.val_fraction) - round(length * self.test_fraction)
        return t1, t1 + round(length * self.val_fraction), length

    def split_origins(self, length: int, where: str = "") -> tuple[range, range, range]:
        """Forecast origins of the train, val and test windows of a series of `length` steps (rules 1, 2, 5);
        `where` names the series in the error when a split has no window."""
        t1, t2, _ = self.split_points(length)
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
                    f"{where}the {split} split of a {length}-step series has no window of lookback "
                    f"{self.lookback} + horizon {self.horizon} (season {self.season}); use a longer series, "
                    "larger fractions or a shorter window"
                )
        return origins  # type: ignore[return-value]

    def load(self) -> tuple[tuple[torch.Tensor, ...], ...]:
        data = self.source.load(self.data_dir, self.cache_dir, self.download)
        k = self.future_features = data.future_features
        bounds, origins, means, stds, normalised = [], [], [], [], []
        for name, series in zip(data.names, data.values, strict=True):  # series: float64 [T_s, F]
            where = f"{self.dataset}: {data.file}" + (f" (series {name!r})" if len(data.values) > 1 else "") + ": "
            origins.append(self.split_origins(len(series), where))
            bounds.append(self.split_points(len(series)))
            train = series[: bounds[-1][0]]
            mean, std = train.mean(dim=0), train.std(dim=0)  # rule 3: fit on the train part only
            std = torch.where(std > 0, std, torch.ones_like(std))
            means.append(mean)
            stds.append(std)
            normalised.append(((series - mean) / std).float())
        self.series_bounds = tuple(bounds)
        self.mean, self.std = torch.stack(means), torch.stack(stds)
        splits, index = [], []
        for split in range(3):
            spans = [o[split] for o in origins]
            parts = [windows(s, span, self.lookback, self.horizon, self.season, k)  # rule 2: one series each
                     for s, span in zip(normalised, spans, strict=True)]
            scale = torch.cat([self.scale[s].float().expand(len(span)) for s, span in enumerate(spans)])
            tensors = parts[0] if len(parts) == 1 else tuple(torch.cat(t) for t in zip(*parts, strict=True))
            splits.append((*tensors[:3], scale, *tensors[3:]))
            index.append(WindowIndex(torch.cat([torch.full((len(span),), s) for s, span in enumerate(spans)]),
                                     torch.cat([torch.as_tensor(span) for span in spans])))
        self.index = tuple(index)
        return tuple(splits)

    @property
    def in_features(self) -> int:
        """Input features per time step (the target plus every covariate), the model's `in_features`."""
        return self.splits[0][0].shape[-1]

    def model_sizes(self) -> dict[str, int]:
        """The model sizes this data implies (loads it); the runner fills in those a model config leaves `???`."""
        return {"in_features": self.in_features, "future_features": self.future_features, "horizon": self.horizon}
