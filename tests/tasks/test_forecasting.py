"""`ForecastTask`: published epoch means equal a computation by hand (normalised and original units, and the
seasonal-naive baseline), `probe_loss`, the forecaster model, and one real run through `runner.run` per scheduler
kind (a fixed schedule and a controller watching val_loss)."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch
from torch import nn

from adaptive_lr.config import ConfigError, compose
from adaptive_lr.data.electricity import ElectricityDataModule, VicElecCSV
from adaptive_lr.models.forecaster import LSTMForecaster
from adaptive_lr.runner import build, run
from adaptive_lr.tasks.forecasting import ForecastTask
from trainer_support import bare_trainer

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*")

ADAM = functools.partial(torch.optim.Adam, lr=0.01)
TINY = [
    "task=electricity",
    "trainer.max_epochs=1",
    "data.lookback=8",
    "data.horizon=4",
    "data.stride=2",
    "model.hidden=8",
    "data.batch_size=32",
]


def write_vic_elec(folder: Path, days: int = 8) -> Path:
    """`<folder>/electricity/vic_elec.csv` in the real column format: a daily sine demand plus noise."""
    g = torch.Generator().manual_seed(0)
    t = torch.arange(days * 48, dtype=torch.float64)
    demand = (
        4000
        + 800 * torch.sin(2 * math.pi * t / 48)
        + 50 * torch.randn(len(t), generator=g, dtype=torch.float64)
    )
    times = pd.date_range("2011-12-31T13:00:00Z", periods=len(t), freq="30min")
    pd.DataFrame(
        {
            "Time": times.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Demand": demand.numpy().round(6),
            "Temperature": (20 + 5 * torch.sin(2 * math.pi * t / 48)).numpy().round(2),
            "Date": times.strftime("%Y-%m-%d"),
            "Holiday": "FALSE",
        }
    ).to_csv(folder / "vic_elec.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    (root / "electricity").mkdir()
    write_vic_elec(root / "electricity")
    return root


trainer = bare_trainer


def datamodule(data_dir: Path, tmp_path: Path) -> ElectricityDataModule:
    # 384 steps: val 58 steps -> 55 windows, in eval batches of 16, 16, 16, 7 (weighted means must be exact)
    return ElectricityDataModule(
        VicElecCSV(covariates=("Temperature",)),
        lookback=8,
        horizon=4,
        stride=3,
        eval_stride=1,
        batch_size=16,
        eval_batch_size=16,
        data_dir=data_dir,
        cache_dir=tmp_path,
        download=False,
    )


def test_forecaster_shape_and_validation():
    model = LSTMForecaster(in_features=3, hidden=5, num_layers=2, horizon=7, dropout=0.1)
    assert model(torch.randn(4, 11, 3)).shape == (4, 7)
    with pytest.raises(ValueError, match="model.horizon must be a positive int, got 0"):
        LSTMForecaster(1, 4, 1, 0)
    with pytest.raises(ValueError, match="model.dropout must be in \\[0, 1\\), got 1.0"):
        LSTMForecaster(1, 4, 1, 2, dropout=1.0)
    with pytest.raises(ValueError, match="expects \\[batch, lookback, features\\], got shape \\(4, 11\\)"):
        model(torch.randn(4, 11))


def test_val_and_test_metrics_equal_a_computation_by_hand(data_dir, tmp_path):
    L.seed_everything(0, verbose=False)
    dm = datamodule(data_dir, tmp_path)
    task = ForecastTask(LSTMForecaster(2, 8, 1, 4), ADAM)  # default loss: MSE
    t = trainer(max_epochs=2)
    t.fit(task, datamodule=dm)
    assert set(task.logged_metrics) == {
        "train_loss",
        "train_mse",
        "train_mae",
        "train_eval_loss",
        "train_eval_mse",
        "train_eval_mae",
        "nonfinite_steps",
        *(
            f"val_{m}"
            for m in (
                "loss",
                "mse",
                "mae",
                "mse_orig",
                "mae_orig",
                "naive_mse",
                "naive_mae",
                "naive_mse_orig",
                "naive_mae_orig",
            )
        ),
    }
    assert {"train_loss", "train_mse", "train_mae"} <= set(t.callback_metrics)
    for stage, split in (("val", 1), ("test", 2)):
        (t.validate if stage == "val" else t.test)(task, datamodule=dm, verbose=False)
        m = t.callback_metrics
        x, y, naive, scale = dm.splits[split]
        assert len(x) == 55 and torch.equal(scale, torch.full_like(scale, float(dm.scale[0])))
        task.eval()
        with torch.no_grad():
            err = task.model(x) - y
        std = float(dm.scale[0])
        expected = {
            "loss": err.square().mean(),
            "mse": err.square().mean(),
            "mae": err.abs().mean(),
            "mse_orig": (err * std).square().mean(),
            "mae_orig": (err * std).abs().mean(),
            "naive_mse": (naive - y).square().mean(),
            "naive_mae": (naive - y).abs().mean(),
            "naive_mse_orig": ((naive - y) * std).square().mean(),
        }
        for name, value in expected.items():
            assert m[f"{stage}_{name}"].item() == pytest.approx(value.item(), rel=1e-4), f"{stage}_{name}"
    # original units: the same errors times the target's train std (the mean cancels in a difference)
    assert m["test_mse_orig"].item() == pytest.approx(
        m["test_mse"].item() * float(dm.scale[0]) ** 2, rel=1e-4
    )


def test_train_metrics_are_the_weighted_means_of_the_epochs_batch_losses(data_dir, tmp_path):
    L.seed_everything(1, verbose=False)
    dm = datamodule(data_dir, tmp_path)
    model = LSTMForecaster(2, 4, 1, 4)
    manual = LSTMForecaster(2, 4, 1, 4)
    manual.load_state_dict(model.state_dict())
    t = trainer(max_epochs=1)
    t.fit(ForecastTask(model, ADAM, nn.L1Loss()), datamodule=dm)  # loss MAE: loss and mse now differ
    opt = ADAM(manual.parameters())
    sums, n = torch.zeros(3), 0
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    for x, y, _, _ in loader:
        pred = manual(x)
        loss = nn.L1Loss()(pred, y)
        sums += torch.stack([loss, (pred - y).square().mean(), (pred - y).abs().mean()]).detach() * len(x)
        n += len(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert n == len(dm.splits[0][0])
    for i, name in enumerate(("train_loss", "train_mse", "train_mae")):
        assert t.callback_metrics[name].item() == pytest.approx((sums[i] / n).item(), rel=1e-4), name
    assert t.callback_metrics["train_loss"].item() == pytest.approx(t.callback_metrics["train_mae"].item())


def test_probe_loss_is_the_eval_mode_loss_and_restores_the_mode(data_dir, tmp_path):
    L.seed_everything(0, verbose=False)
    dm = datamodule(data_dir, tmp_path)
    dm.setup()
    model = LSTMForecaster(2, 8, 2, 4, dropout=0.5)
    task = ForecastTask(model, ADAM)
    batch = tuple(t[:10] for t in dm.splits[0])
    task.train()
    first = task.probe_loss(batch)
    assert task.model.training  # restored
    model.eval()
    with torch.no_grad():
        assert first == pytest.approx(nn.MSELoss()(model(batch[0]), batch[1]).item(), rel=1e-6)
    assert task.probe_loss(batch) == first  # dropout off: deterministic
    assert not task.model.training  # eval mode restored too
    assert not any(p.grad is not None for p in model.parameters())


# -- through the runner ----------------------------------------------------------------------------------------------
def test_run_finishes_with_model_and_naive_test_metrics(store, data_dir):
    from mlflow.tracking import MlflowClient

    from store_support import tracking_uri

    cfg = compose([*TINY, f"data_dir={data_dir}"])
    result = run(cfg)
    assert result.status == "FINISHED"
    r = MlflowClient(tracking_uri(store)).get_run(result.run_id)
    assert r.info.status == "FINISHED"
    assert (r.data.tags["metric"], r.data.tags["metric_mode"]) == ("mse", "min")
    names = {
        "test_loss",
        "test_mse",
        "test_mae",
        "test_mse_orig",
        "test_mae_orig",
        "test_naive_mse",
        "test_naive_mae",
        "test_naive_mse_orig",
        "test_naive_mae_orig",
    }
    assert names <= set(result.metrics) and names <= set(r.data.metrics)
    # the naive baseline depends on the data alone: recompute it from the run's own datamodule config
    dm = build(cfg)["datamodule"]
    _, y, naive, _ = dm.splits[2]
    assert result.metrics["test_naive_mse"] == pytest.approx((naive - y).square().mean().item(), rel=1e-5)
    assert result.metrics["test_naive_mse_orig"] == pytest.approx(
        result.metrics["test_naive_mse"] * float(dm.scale[0]) ** 2, rel=1e-5
    )
    assert {"val_mse", "val_naive_mse", "train_mse"} <= set(r.data.metrics)


def test_a_controller_watching_val_loss_runs_and_an_unlogged_monitor_is_refused(store, data_dir):
    result = run(
        compose(
            [
                *TINY,
                f"data_dir={data_dir}",
                "scheduler=heuristic",
                "trainer.max_epochs=2",
                "scheduler.policy.monitor=val_mse",
            ]
        )
    )
    assert result.status == "FINISHED" and math.isfinite(result.metrics["test_mse"])
    with pytest.raises(
        ConfigError, match="scheduler.policy.monitor='val_acc' is never logged by task 'electricity'"
    ):
        build(
            compose(
                [*TINY, f"data_dir={data_dir}", "scheduler=heuristic", "scheduler.policy.monitor=val_acc"]
            )
        )
