"""`choose_init`: K seeded candidate tasks, the one with the lowest initial loss wins; deterministic; RNG
untouched; each task's own batch format (`batch_loss`): classification's (x, y) and forecasting's
(x, y, naive, scale, future) batches, directly and through the runner on a forecasting config."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from torch import nn

from adaptive_lr.config import compose
from adaptive_lr.models.forecaster import LSTMForecaster
from adaptive_lr.tasks import ClassificationTask
from adaptive_lr.tasks.forecasting import ForecastTask
from adaptive_lr.tasks.multi_start import candidate_seed, choose_init, initial_loss
from data_fixtures import write_hourly_zones

G = torch.Generator().manual_seed(0)
BATCHES = [(torch.randn(16, 3, generator=G), torch.randint(0, 2, (16,), generator=G)) for _ in range(3)]
LOSS = nn.CrossEntropyLoss()
SGD = functools.partial(torch.optim.SGD, lr=0.1)
# forecasting batches as ForecastDataModule yields them with a known-future covariate: x [B, 6, 3], y [B, 4],
# naive [B, 4], scale [B], future [B, 4, 1]
FORECAST_BATCHES = [(torch.randn(8, 6, 3, generator=G), torch.randn(8, 4, generator=G), torch.randn(8, 4, generator=G),
                     torch.rand(8, generator=G) + 0.5, torch.randn(8, 4, 1, generator=G)) for _ in range(2)]


def build_model() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, 2))


def build() -> ClassificationTask:
    return ClassificationTask(build_model(), SGD, LOSS)


def build_forecaster() -> ForecastTask:
    return ForecastTask(LSTMForecaster(3, 5, 1, 4, dropout=0.5, future_features=1), SGD)


def reference_losses(k: int, seed: int) -> list[float]:
    """Each candidate's model rebuilt by hand under its seed, its loss the mean over the batches in eval mode."""
    losses = []
    for i in range(k):
        torch.manual_seed(candidate_seed(seed, i))
        model = build_model().eval()
        with torch.no_grad():
            losses.append(sum(float(LOSS(model(x), y)) for x, y in BATCHES) / len(BATCHES))
    return losses


def test_keeps_the_candidate_with_the_lowest_initial_loss():
    task, losses, best = choose_init(build, BATCHES, k=6, seed=3)

    expected = reference_losses(6, 3)
    assert losses == pytest.approx(expected, rel=1e-6)
    assert len(set(losses)) == 6  # the candidates differ
    assert best == min(range(6), key=expected.__getitem__)
    torch.manual_seed(candidate_seed(3, best))
    for got, want in zip(task.model.state_dict().values(), build_model().state_dict().values(), strict=True):
        assert torch.equal(got, want)
    assert task.training and task.model.training  # handed back ready to train
    assert initial_loss(task, BATCHES) == pytest.approx(losses[best])


def test_is_deterministic_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    first = choose_init(build, BATCHES, k=4, seed=0)
    after_first = torch.rand(3)
    torch.manual_seed(123)
    second = choose_init(build, BATCHES, k=4, seed=0)
    after_second = torch.rand(3)
    torch.manual_seed(123)
    untouched = torch.rand(3)

    assert first[1] == second[1] and first[2] == second[2]
    assert all(torch.equal(a, b) for a, b in zip(first[0].state_dict().values(), second[0].state_dict().values(),
                                                 strict=True))
    assert torch.equal(after_first, untouched) and torch.equal(after_second, untouched)
    assert choose_init(build, BATCHES, k=4, seed=1)[1] != first[1]  # another seed, other candidates
    assert candidate_seed(0, 1) != candidate_seed(1, 0)  # run seeds never share candidates


def test_a_non_finite_candidate_never_wins():
    built = iter(range(3))

    def nan_first() -> ClassificationTask:
        task = build()
        if next(built) == 0:
            with torch.no_grad():
                task.model[3].bias.fill_(float("nan"))
        return task

    _, losses, best = choose_init(nan_first, BATCHES, k=3, seed=0)
    assert torch.isnan(torch.tensor(losses[0])) and best != 0
    assert losses[best] == min(losses[1:])


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="multi_start.k must be a positive int, got 0"):
        choose_init(build, BATCHES, k=0, seed=0)
    with pytest.raises(ValueError, match="needs at least one batch"):
        choose_init(build, [], k=2, seed=0)


def test_forecasting_candidates_are_ranked_on_their_own_five_tensor_batches():
    """The forecaster gets x and the horizon's known-future covariates; the loss is against y (not naive, not
    scale): the same numbers as the model called by hand, in eval mode (dropout off)."""
    task, losses, best = choose_init(build_forecaster, FORECAST_BATCHES, k=3, seed=7)
    expected = []
    for i in range(3):
        torch.manual_seed(candidate_seed(7, i))
        model = build_forecaster().model.eval()
        with torch.no_grad():
            expected.append(sum(float(nn.functional.mse_loss(model(x, future), y))
                                for x, y, _, _, future in FORECAST_BATCHES) / len(FORECAST_BATCHES))
    assert losses == pytest.approx(expected, rel=1e-6) and len(set(losses)) == 3
    assert best == min(range(3), key=expected.__getitem__) and task.training
    probe = task.probe_loss(FORECAST_BATCHES[0])  # the probe: batch_loss in eval mode, the mode restored
    assert task.model.training
    assert probe == pytest.approx(initial_loss(task, FORECAST_BATCHES[:1]), rel=1e-6)


def test_a_forecasting_run_with_multi_start_trains_and_logs_every_candidate(home, tmp_path, tmp_path_factory):
    from mlflow.tracking import MlflowClient

    from adaptive_lr.runner import run
    from store_support import seed_store, tracking_uri

    seed_store(home, tmp_path_factory)
    csv = write_hourly_zones(tmp_path / "zones.csv")
    result = run(compose([
        "task=forecast_csv", f"data.source.file={csv}", "data.source.time_column=ts", "data.source.target=load_mw",
        "data.source.future_covariates=[wind_fc]", "data.source.series_column=zone", "data.lookback=24",
        "data.horizon=12", "data.season=24", "data.stride=6", "model.hidden=8", "trainer.max_epochs=1",
        "logger.tensorboard=false", "multi_start.k=3", "multi_start.batches=2"]))
    client = MlflowClient(tracking_uri(home))
    tags = client.get_run(result.run_id).data.tags
    losses = [m.value for m in sorted(client.get_metric_history(result.run_id, "multi_start_initial_loss"),
                                      key=lambda m: m.step)]
    assert result.status == "FINISHED" and tags["multi_start_k"] == "3" and len(losses) == 3
    assert int(tags["multi_start_best"]) == min(range(3), key=losses.__getitem__)
    assert Path(tags["run_dir"]).is_dir()
