"""Electricity windows on fixtures in the real file formats: exact window/target alignment, train-only normalisation,
chronological split boundaries, seasonal-naive values, both sources (vic_elec CSV, UCI LD2011_2014.txt) and the
missing-data errors."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from adaptive_lr.data.electricity import ElectricityDataModule, UCIElectricity, VicElecCSV, naive_lags
from adaptive_lr.data.source import DataNotFoundError
from data_fixtures import DAYS, write_uci, write_vic_elec

T = DAYS * 48


@pytest.fixture(scope="module")
def vic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vic")
    write_vic_elec(root)
    return root


@pytest.fixture(scope="module")
def raw(vic_dir: Path) -> torch.Tensor:
    """Demand and Temperature as read by pandas, float64 [T, 2]."""
    frame = pd.read_csv(vic_dir / "electricity" / "vic_elec.csv")
    return torch.tensor(frame[["Demand", "Temperature"]].to_numpy())


def vic(vic_dir: Path, tmp_path: Path, **kwargs) -> ElectricityDataModule:
    kwargs.setdefault("source", VicElecCSV(covariates=("Temperature",)))
    dm = ElectricityDataModule(data_dir=vic_dir, cache_dir=tmp_path, download=False, **kwargs)
    dm.setup()
    return dm


# -- windows ---------------------------------------------------------------------------------------------------------
def test_split_points_and_origins_are_chronological_and_exact(vic_dir, tmp_path):
    dm = vic(
        vic_dir,
        tmp_path,
        lookback=8,
        horizon=4,
        season=48,
        stride=3,
        eval_stride=5,
        val_fraction=0.2,
        test_fraction=0.2,
    )
    assert dm.bounds == (288, 384, 480)  # 480 - 96 - 96
    # train: the first origin has a lookback and a season of history; the last window's targets end by 288
    assert dm.index[0].origin.tolist() == list(range(48, 285, 3))
    assert dm.index[1].origin.tolist() == list(range(288, 381, 5))
    assert dm.index[2].origin.tolist() == list(range(384, 477, 5))
    for split, (lo, hi) in enumerate([(0, 288), (288, 384), (384, 480)]):
        origin = dm.index[split].origin
        assert origin.min() >= lo and origin.max() + 4 <= hi  # every target inside its split's time range
    assert int(dm.index[0].origin.max()) + 4 <= 288  # so no val/test value is ever a train input either
    assert [len(s[0]) for s in dm.splits] == [79, 19, 19]
    assert dm.steps_per_epoch() == math.ceil(79 / 64)


def test_windows_are_the_lookback_inputs_and_the_next_horizon_targets(vic_dir, tmp_path, raw):
    dm = vic(vic_dir, tmp_path, lookback=8, horizon=4, stride=3)
    mean, std = dm.mean[0], dm.std[0]
    for split, (x, y, _, scale) in enumerate(dm.splits):
        assert x.dtype == y.dtype == torch.float32 and x.shape[1:] == (8, 2) and y.shape[1:] == (4,)
        assert torch.equal(scale, torch.full((len(x),), float(std[0]), dtype=torch.float32))
        for i in (0, len(x) // 2, len(x) - 1):
            o = int(dm.index[split].origin[i])
            torch.testing.assert_close(x[i].double() * std + mean, raw[o - 8 : o], rtol=0, atol=1e-3)
            torch.testing.assert_close(y[i].double() * std[0] + mean[0], raw[o : o + 4, 0], rtol=0, atol=1e-3)
    assert dm.input_shape == (8, 2) and dm.in_features == 2 and dm.num_outputs == 4


def test_normalisation_is_fit_on_the_train_part_only(vic_dir, tmp_path, raw):
    dm = vic(vic_dir, tmp_path, lookback=8, horizon=4, val_fraction=0.2, test_fraction=0.2)
    train = raw[:288]
    torch.testing.assert_close(dm.mean, train.mean(0, keepdim=True))
    torch.testing.assert_close(dm.std, train.std(0, keepdim=True))  # sample std (ddof=1), as pandas' .std()
    assert dm.std[0, 0].item() == pytest.approx(pd.Series(train[:, 0].numpy()).std())
    assert torch.equal(dm.scale, dm.std[:, 0])
    assert not torch.allclose(dm.mean, raw.mean(0, keepdim=True))  # the whole series has other statistics


def test_seasonal_naive_is_the_series_one_season_earlier(vic_dir, tmp_path, raw):
    dm = vic(vic_dir, tmp_path, lookback=8, horizon=4, season=48)
    demand = (raw[:, 0] - dm.mean[0, 0]) / dm.std[0, 0]
    for split, (_, _, naive, _) in enumerate(dm.splits):
        origin = dm.index[split].origin
        expected = demand[origin[:, None] + torch.arange(4) - 48]
        torch.testing.assert_close(naive, expected.float())


def test_seasonal_naive_beyond_one_season_repeats_the_last_observed_season():
    lags = naive_lags(6, 4)
    assert lags.tolist() == [4, 4, 4, 4, 8, 8]
    assert (torch.arange(6) - lags).tolist() == [-4, -3, -2, -1, -4, -3]  # relative to the origin o
    assert naive_lags(3, 48).tolist() == [48, 48, 48]
    assert (torch.arange(100) - naive_lags(100, 7) < 0).all()  # never a target


def test_seasonal_naive_for_a_horizon_longer_than_the_season(vic_dir, tmp_path, raw):
    dm = vic(vic_dir, tmp_path, lookback=8, horizon=6, season=4)
    demand = (raw[:, 0] - dm.mean[0, 0]) / dm.std[0, 0]
    origin = dm.index[1].origin
    expected = demand[origin[:, None] + torch.tensor([-4, -3, -2, -1, -4, -3])]
    torch.testing.assert_close(dm.splits[1][2], expected.float())


def test_short_lookback_windows_start_one_season_in(vic_dir, tmp_path):
    long = vic(vic_dir, tmp_path, lookback=60, horizon=4, season=48)
    short = vic(vic_dir, tmp_path, lookback=4, horizon=4, season=48)
    assert int(long.index[0].origin[0]) == 60 and int(short.index[0].origin[0]) == 48


def test_target_only_and_a_boolean_covariate(vic_dir, tmp_path, raw):
    alone = vic(vic_dir, tmp_path, source=VicElecCSV(), lookback=8, horizon=4)
    assert alone.input_shape == (8, 1)
    holiday = vic(vic_dir, tmp_path, source=VicElecCSV(covariates=("Holiday",)), lookback=8, horizon=4)
    assert holiday.mean[0, 1].item() == pytest.approx(48 / holiday.bounds[0])  # the first day is a holiday


def test_batches_carry_x_y_naive_and_scale(vic_dir, tmp_path):
    dm = vic(vic_dir, tmp_path, lookback=8, horizon=4, batch_size=16)
    x, y, naive, scale = next(iter(dm.train_dataloader()))
    assert (x.shape, y.shape, naive.shape, scale.shape) == ((16, 8, 2), (16, 4), (16, 4), (16,))
    assert len(dm.val_dataloader()) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lookback": 0}, "data.lookback must be a positive int, got 0"),
        ({"eval_stride": 0}, "data.eval_stride must be a positive int, got 0"),
        ({"val_fraction": 0.6, "test_fraction": 0.4}, "val_fraction and test_fraction"),
    ],
)
def test_bad_settings_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ElectricityDataModule(**kwargs)


def test_a_split_too_short_for_one_window_is_refused(vic_dir, tmp_path):
    with pytest.raises(
        ValueError, match="the val split of a 480-step series has no window of lookback 8 \\+ horizon 50"
    ):
        vic(vic_dir, tmp_path, lookback=8, horizon=50, val_fraction=0.1, test_fraction=0.3)


# -- sources and errors ----------------------------------------------------------------------------------------------
def test_missing_file_names_the_folders_and_the_file(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        ElectricityDataModule(data_dir=tmp_path, cache_dir=tmp_path / "cache", download=False).setup()
    msg = str(err.value)
    assert msg.startswith("electricity: data not found. Searched: ")
    assert str(tmp_path / "electricity") in msg and "Expected files: vic_elec.csv." in msg
    assert "no download path" in msg


def test_missing_values_and_unknown_columns_are_reported(tmp_path):
    write_vic_elec(tmp_path, days=3, missing_row=17)
    with pytest.raises(
        ValueError, match="column 'Demand' of vic_elec.csv has 1 missing values \\(first at 17\\)"
    ):
        ElectricityDataModule(data_dir=tmp_path, cache_dir=tmp_path / "c", download=False).setup()
    with pytest.raises(ValueError, match="vic_elec.csv has no column \\['Humidity'\\]"):
        ElectricityDataModule(
            VicElecCSV(covariates=("Humidity",)), data_dir=tmp_path, cache_dir=tmp_path / "c", download=False
        ).setup()


def test_decoded_series_is_cached(vic_dir, tmp_path):
    vic(vic_dir, tmp_path, lookback=8, horizon=4)
    cached = list((tmp_path / "electricity").glob("csv-*.pt"))
    assert len(cached) == 1
    assert torch.load(cached[0], weights_only=True)["values"].shape == (1, T, 2)


@pytest.fixture(scope="module")
def uci(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("uci")
    return root, write_uci(root / "electricity" / "LD2011_2014.txt")


def uci_dm(root: Path, tmp_path: Path, **source) -> ElectricityDataModule:
    dm = ElectricityDataModule(
        UCIElectricity(**source),
        lookback=8,
        horizon=4,
        season=24,
        stride=2,
        data_dir=root,
        cache_dir=tmp_path,
        download=False,
    )
    dm.setup()
    return dm


def test_uci_first_clients_are_separate_series_with_their_own_normalisation(uci, tmp_path):
    root, values = uci
    dm = uci_dm(root, tmp_path, clients=2)
    t1 = dm.bounds[0]
    expected = torch.tensor(values[["MT_001", "MT_002"]].to_numpy()).T  # [2, 384]
    torch.testing.assert_close(dm.mean[:, 0], expected[:, :t1].mean(1))
    torch.testing.assert_close(dm.std[:, 0], expected[:, :t1].std(1))
    x, y, _, scale = dm.splits[1]
    index = dm.index[1]
    per_series = len(range(max(t1, 24), dm.bounds[1] - 4 + 1, 2))
    assert index.series.tolist() == [0] * per_series + [1] * per_series
    assert torch.equal(scale, dm.scale[index.series].float())
    for i in (0, per_series - 1, per_series, 2 * per_series - 1):
        s, o = int(index.series[i]), int(index.origin[i])
        torch.testing.assert_close(
            x[i, :, 0].double() * dm.std[s, 0] + dm.mean[s, 0], expected[s, o - 8 : o], rtol=0, atol=1e-4
        )
        torch.testing.assert_close(
            y[i].double() * dm.std[s, 0] + dm.mean[s, 0], expected[s, o : o + 4], rtol=0, atol=1e-4
        )


def test_uci_named_clients_and_hourly_resampling(uci, tmp_path):
    root, values = uci
    dm = uci_dm(root, tmp_path, clients=("MT_003",), freq="1h")
    hourly = values["MT_003"].to_numpy().reshape(-1, 4).mean(1)  # 00:15..01:00 is the hour ending 01:00
    assert dm.bounds[2] == len(hourly) == 96
    torch.testing.assert_close(dm.mean[0, 0], torch.tensor(hourly[: dm.bounds[0]]).mean())


def test_uci_time_range_cut(uci, tmp_path):
    root, _ = uci
    dm = uci_dm(root, tmp_path, clients=1, start="2011-01-02", end="2011-01-03 23:59")
    assert dm.bounds[2] == 2 * 96


def test_uci_unknown_clients_and_missing_file(uci, tmp_path):
    root, _ = uci
    with pytest.raises(ValueError, match="unknown clients \\['MT_999'\\]"):
        uci_dm(root, tmp_path, clients=("MT_001", "MT_999"))
    with pytest.raises(ValueError, match="clients=5 but LD2011_2014.txt has 3 clients"):
        uci_dm(root, tmp_path, clients=5)
    with pytest.raises(
        DataNotFoundError, match="Expected files: LD2011_2014.txt. Download https://archive.ics.uci"
    ):
        uci_dm(tmp_path / "empty", tmp_path)


def test_uci_download_path_fetches_into_the_cache(uci, tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    root, values = uci
    calls = []

    def fake_download(url: str, download_root: str, **kwargs) -> None:  # no network in tests
        calls.append((url, download_root))
        (Path(download_root) / "LD2011_2014.txt").write_bytes(
            (root / "electricity" / "LD2011_2014.txt").read_bytes()
        )

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    dm = ElectricityDataModule(
        UCIElectricity(clients=1),
        lookback=8,
        horizon=4,
        season=24,
        data_dir=tmp_path / "nothing",
        cache_dir=tmp_path / "cache",
        download=True,
    )
    dm.setup()
    assert calls == [
        (
            "https://archive.ics.uci.edu/static/public/321/electricityloaddiagrams20112014.zip",
            str(tmp_path / "cache" / "electricity"),
        )
    ]
    assert dm.bounds[2] == len(values)
