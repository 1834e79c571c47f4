"""Electricity load sources for `data.forecast.ForecastDataModule`: one or many load series.

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

The windows, splits, normalisation and batches are `data.forecast.ForecastDataModule`'s (its docstring);
`ElectricityDataModule` is the same class under the name older configs and stored runs use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from adaptive_lr.data.forecast import (
    CSVSeries,
    ForecastDataModule,
    PathLike,
    SeriesSet,
    WindowIndex,
    check_complete,
    check_regular,
    naive_lags,
    numeric,
    read_csv,
    windows,
)
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

__all__ = ["ElectricityDataModule", "UCIElectricity", "VicElecCSV", "WindowIndex", "naive_lags", "windows"]

UCI_URL = "https://archive.ics.uci.edu/static/public/321/electricityloaddiagrams20112014.zip"
ElectricityDataModule = ForecastDataModule  # the name of configs written before the generic module


@dataclass(frozen=True)
class VicElecCSV(CSVSeries):
    """One CSV series: the `target` column plus `covariates` columns as extra inputs, in `Time` order (a
    `CSVSeries` with vic_elec's file and column names)."""

    file: str = "vic_elec.csv"
    time_column: str = "Time"
    target: str = "Demand"

    dataset = "electricity"
    hint = "This series has no download path: copy vic_elec.csv into the data directory."


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

    def load(self, data_dir: PathLike, cache_dir: PathLike, download: bool) -> SeriesSet:
        """The selected clients, each a float64 series [T, 1]."""
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
        stored = cached(
            cache_root(cache_dir) / self.dataset / f"uci-{key}.pt",
            lambda: {"values": self._decode(path, clients)},
        )
        return SeriesSet.padded(stored, path.name)

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
        frame = read_csv(
            path,
            self.dataset,
            sep=";",
            decimal=",",
            usecols=[0, *(1 + names.index(c) for c in chosen)],
            index_col=0,
            parse_dates=[0],
        )
        frame = numeric(frame[chosen], path.name, self.dataset)
        check_regular(frame.index, path.name, self.dataset)
        check_complete(frame, path.name, self.dataset)
        if self.freq is not None:
            bins = frame.resample(self.freq, label="right", closed="right")
            counts = bins.size()
            frame = bins.mean()[counts == counts.max()]  # drop partial intervals at the ends
        frame = frame.loc[self.start : self.end]
        return torch.tensor(frame.to_numpy().T).unsqueeze(-1)
