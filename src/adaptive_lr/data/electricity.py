"""Electricity load sources for `data.forecast.ForecastDataModule`: one or many load series.

Sources (objects built from config by `_target_`, given to the DataModule as `source`):
  - `VicElecCSV`: the half-hourly demand of Victoria, Australia (`vic_elec` of *Forecasting: Principles and
    Practice*), `<data_dir>/electricity/vic_elec.csv` with columns Time,Demand,Temperature,Date,Holiday; one
    series, the target column (default Demand) plus optional covariate columns (e.g. Temperature) as inputs.
    It has no download path: the file must be in the data directory.
  - `UCIElectricity`: UCI ElectricityLoadDiagrams20112014 (370 clients, kW per 15 minutes, 2011-2014); `clients`
    picks series (the first N or a list of names), `freq` optionally resamples (e.g. "1h": the mean kW of the
    hour = its kWh), `start`/`end` cut the time range. Each client is its own series (normalised on its own).
    Where from (`location`, as `data.source` of CIFAR and IMDB):
      `auto` (default): `LD2011_2014.txt` (semicolon-separated, comma decimals, first column the timestamp, one
        column per client) in the data directory, else in the cache, else (`download: true`) the UCI archive's
        zip fetched into the cache with torchvision's downloader;
      `hf`: the Hugging Face hub dataset `hf` through `load_dataset` into the project's cache
        (`<cache>/huggingface/datasets`, read from there afterwards, offline too). The default is the UCI set as
        Chronos publishes it in Parquet (`autogluon/chronos_datasets`, configuration `electricity_15min`: one row
        per client, columns `id`, `timestamp`, `consumption_kW`); `hf.id`, `hf.config` and the column names
        select another copy, such as the 321-client hourly set (`monash_electricity_hourly`, target `target`);
      a folder: a dataset saved by `datasets` (save_to_disk, or Parquet files named by split), with `hf`'s split
        and columns, one row per series (sequence columns) or one row per time step (`data.hf.read_series`).
    Every location gives the same tensors for the same content, decoded once and cached under a key of the
    settings and the source (file identities, or the hub id and columns).

The windows, splits, normalisation and batches are `data.forecast.ForecastDataModule`'s (its docstring);
`ElectricityDataModule` is the same class under the name older configs and stored runs use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from adaptive_lr.data.forecast import (
    CSVSeries,
    ForecastDataModule,
    SeriesSet,
    WindowIndex,
    check_complete,
    check_regular,
    naive_lags,
    numeric,
    read_csv,
    windows,
)
from adaptive_lr.data.hf import HFSeries, Location, hf_location, read_series
from adaptive_lr.data.source import DataError, PathLike, cache_root, candidate_dirs, decoded, find_dir, locate

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ElectricityDataModule", "UCIElectricity", "VicElecCSV", "WindowIndex", "naive_lags", "windows"]

UCI_URL = "https://archive.ics.uci.edu/static/public/321/electricityloaddiagrams20112014.zip"
UCI_ZIP = "electricityloaddiagrams20112014.zip"
#: the UCI set on the Hugging Face hub, in Parquet (no loading script): one row per client
UCI_HF = HFSeries("autogluon/chronos_datasets", "electricity_15min", "train", "id", "timestamp", "consumption_kW")
ElectricityDataModule = ForecastDataModule  # the name of configs written before the generic module


def download_uci(folder: Path) -> None:
    """The UCI archive fetched with torchvision's downloader and unzipped into `folder` (LD2011_2014.txt)."""
    from torchvision.datasets.utils import download_and_extract_archive

    folder.mkdir(parents=True, exist_ok=True)
    download_and_extract_archive(UCI_URL, str(folder), filename=UCI_ZIP, remove_finished=True)


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
    file's timestamps are) and cut to [`start`, `end`] (e.g. skip the years before most clients were connected).
    `location` and `hf`: where the data come from (module docstring)."""

    clients: int | tuple[str, ...] = 10
    freq: str | None = None
    start: str | None = None
    end: str | None = None
    file: str = "LD2011_2014.txt"
    location: str = "auto"
    hf: HFSeries = UCI_HF

    dataset = "electricity"
    folders = ("electricity", "ElectricityLoadDiagrams20112014")

    def load(self, data_dir: PathLike, cache_dir: PathLike, download: bool) -> SeriesSet:
        """The selected clients, each a float64 series [T, 1]."""
        if isinstance(self.clients, int) and self.clients < 1:
            raise DataError(
                f"electricity: clients must be a positive int or a list of names, got {self.clients!r}"
            )
        location = hf_location(self.location, self.hf, self.dataset, "data.source.location")
        if location is not None:
            return self._load_hf(location, cache_dir)
        downloads = cache_root(cache_dir) / self.dataset
        folder = locate(self.dataset, candidate_dirs(self.dataset, data_dir, *self.folders),
                        lambda folder: find_dir(self.dataset, [folder], [self.file]), [self.file],
                        downloads=downloads, download=(lambda: download_uci(downloads)) if download else None,
                        hint=f"Download {UCI_URL} (or set data.download=true) and unzip it there.")
        path = folder / self.file
        clients = self.clients if isinstance(self.clients, int) else list(self.clients)
        stored = decoded(cache_dir, self.dataset, "uci", "uci", clients, self.freq, self.start, self.end,
                         files=[path], build=lambda: {"values": self._decode(path, clients)})
        return SeriesSet.padded(stored, path.name)

    def _load_hf(self, location: Location, cache_dir: PathLike) -> SeriesSet:
        """The selected clients from a Hugging Face location, decoded once and cached like the text file."""
        clients = self.clients if isinstance(self.clients, int) else list(self.clients)
        stored = decoded(cache_dir, self.dataset, location.kind, location.kind, *location.settings, clients,
                         self.freq, self.start, self.end, files=location.files(),
                         build=lambda: self._decode_hf(location, cache_dir, clients))
        return SeriesSet.padded(stored, location.where())

    def _decode_hf(self, location: Location, cache_dir: PathLike, clients: int | list[str]) -> dict:
        """Each chosen series checked (numbers, regular and complete), resampled and cut as the text file's
        columns are; series may differ in length (NaN-padded, with their lengths)."""
        import pandas as pd

        series = dict(read_series(location, cache_dir))
        where = location.where()
        chosen, out = self._choose(list(series), clients, where), []
        for name in chosen:
            frame = pd.DataFrame({name: series[name]})
            file = f"{where} (series {name!r})"
            check_regular(frame.index, file, self.dataset, f"column {location.spec.time_column!r} of ")
            check_complete(frame, file, self.dataset)
            out.append(torch.tensor(self._resample_cut(frame).to_numpy()))  # [T_s, 1]
        lengths = torch.tensor([len(v) for v in out])
        padded = torch.full((len(out), int(lengths.max()), 1), float("nan"), dtype=torch.float64)
        for s, values in enumerate(out):
            padded[s, : len(values)] = values
        return {"values": padded, "lengths": lengths, "names": chosen}

    @staticmethod
    def _choose(names: list[str], clients: int | list[str], where: str) -> list[str]:
        """The first `clients` names, or the named ones (a `DataError` for a name the data does not hold)."""
        if isinstance(clients, int):
            if clients > len(names):
                raise DataError(f"electricity: clients={clients} but {where} has {len(names)} clients")
            return names[:clients]
        unknown = [c for c in clients if c not in names]
        if unknown:
            raise DataError(f"electricity: unknown clients {unknown}; {where} has {names[:3]}...{names[-1:]}")
        return list(clients)

    def _resample_cut(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The frame resampled to `freq` (means of whole intervals, labelled by their end) and cut to
        [`start`, `end`]."""
        if self.freq is not None:
            bins = frame.resample(self.freq, label="right", closed="right")
            counts = bins.size()
            frame = bins.mean()[counts == counts.max()]  # drop partial intervals at the ends
        return frame.loc[self.start : self.end]

    def _decode(self, path: Path, clients: int | list[str]) -> torch.Tensor:
        with open(path, encoding="utf-8") as f:
            header = [c.strip().strip('"') for c in f.readline().rstrip("\n").split(";")]
        names = header[1:]
        chosen = self._choose(names, clients, path.name)
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
        return torch.tensor(self._resample_cut(frame).to_numpy().T).unsqueeze(-1)
