"""The learning-rate sweep protocol (`experiment.Sweep`): the same log grid of initial LRs for every method, the same
multipliers for learning-rate-free ones, phase/tags per cell, and clear errors for bad sweep specs."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from adaptive_lr.config import ConfigError, compose
from adaptive_lr.experiment import load_grid

VARIANTS = """variants:
  prodigy: [scheduler=fixed, optimizer=prodigy]
  dog: [scheduler=fixed, optimizer=dog]
"""
FACTORS = [10 ** (k / 2) for k in range(-4, 5)]  # 9 points over 4 decades, half a decade apart


def write(path: Path, sweep: str, extra: str = "", schedulers: str = "[fixed, cosine, prodigy, dog]") -> str:
    path.write_text(f"tasks: [digits, xor_clean]\nschedulers: {schedulers}\nseeds: [0, 1]\n{VARIANTS}"
                    f"overrides: [trainer.max_epochs=2]\n{extra}sweep: {sweep}\n")
    return str(path)


def swept(grid) -> dict[tuple[str, str], dict[int, list[float]]]:
    """(task, scheduler) -> seed -> swept values in order, read from the cells' tags."""
    out: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for cell in grid.cells:
        tags = dict(cell.tags)
        value = tags.get("sweep_lr", tags.get("sweep_multiplier"))
        out[cell.task, cell.scheduler][cell.seed].append(float(value))
    return out


def test_every_method_sweeps_the_same_lrs_and_lr_free_ones_the_same_multipliers(tmp_path):
    grid = load_grid(write(tmp_path / "sweep.yaml", "{}", extra="task_overrides: {xor_clean: [lr=0.2]}\n"))
    assert len(grid.cells) == 2 * 4 * 2 * 9 and {c.phase for c in grid.cells} == {"sweep"}
    values = swept(grid)
    centers = {"digits": 0.01, "xor_clean": 0.2}  # train.yaml's lr; the grid's task override of xor's 0.05
    for (task, sched), per_seed in values.items():
        assert set(per_seed) == {0, 1}  # every point with every seed of the grid
        center, kind = (1.0, "sweep_multiplier") if sched in ("prodigy", "dog") else (centers[task], "sweep_lr")
        for points in per_seed.values():
            assert points == pytest.approx([center * f for f in FACTORS], rel=1e-5), (task, sched)
    for task in centers:  # the same LRs for every LR method, the same multipliers for every LR-free one
        assert values[task, "fixed"] == values[task, "cosine"]
        assert values[task, "prodigy"] == values[task, "dog"] == values["digits", "prodigy"]
    # each cell's override is the last, so it wins; LR-free cells set the multiplier and leave the task's LR alone
    for cell in grid.cells[:: 9 * 2 + 4]:
        cfg, tags = compose(cell.overrides), dict(cell.tags)
        assert float(tags["sweep_factor"]) == pytest.approx(
            float(tags.get("sweep_lr", tags.get("sweep_multiplier"))) / (
                1.0 if "sweep_multiplier" in tags else centers[cell.task]), rel=1e-5)
        if "sweep_lr" in tags:
            assert cfg.lr == float(tags["sweep_lr"]) and cell.point == f"lr={cfg.lr}"
        else:
            assert cfg.optimizer.lr == cfg.lr_multiplier == float(tags["sweep_multiplier"])
            assert cfg.lr == centers[cell.task] and cell.point == f"lr_multiplier={cfg.lr_multiplier}"
    assert len({c.key for c in grid.cells}) == len(grid.cells)  # a sweep point is part of the cell's key


def test_center_decades_and_points_shape_the_grid(tmp_path):
    grid = load_grid(write(tmp_path / "a.yaml", "{center: 0.003, decades: 2, points: 3}", schedulers="[fixed, dog]"))
    values = swept(grid)
    assert values["digits", "fixed"][0] == values["xor_clean", "fixed"][1] == pytest.approx([3e-4, 3e-3, 3e-2])
    assert values["digits", "dog"][0] == pytest.approx([0.1, 1.0, 10.0])  # the multiplier: around 1.0
    grid = load_grid(write(tmp_path / "b.yaml", "{center: {xor_clean: 0.5}, points: 2}", schedulers="[cosine]"))
    values = swept(grid)
    assert values["xor_clean", "cosine"][0] == pytest.approx([5e-3, 50.0])
    assert values["digits", "cosine"][0] == pytest.approx([1e-4, 1.0])  # not in the map: its own lr, 0.01


@pytest.mark.parametrize("sweep, message", [
    ("[0.01, 0.1]", "sweep must be a mapping"),
    ("{decades: 0}", "sweep.decades must be a positive number, got 0"),
    ("{decades: four}", "sweep.decades must be a positive number, got 'four'"),
    ("{points: 1}", r"sweep.points must be an int >= 2, got 1"),
    ("{points: 4.5}", r"sweep.points must be an int >= 2, got 4.5"),
    ("{center: -0.01}", "sweep.center must be a positive number or a map"),
    ("{center: {digits: 0}}", "sweep.center must be a positive number or a map"),
    ("{center: {mnist: 0.01}}", r"sweep.center names tasks \['mnist'\] that the grid does not run"),
    ("{param: ''}", "sweep.param must be a config key"),
    ("{points: 9, span: 4}", r"sweep has unknown keys \['span'\]; allowed: param, center, decades, points"),
])
def test_a_bad_sweep_spec_fails_with_a_message_naming_it(tmp_path, sweep, message):
    with pytest.raises(ConfigError, match=message):
        load_grid(write(tmp_path / "bad.yaml", sweep, schedulers="[fixed]"))


def test_a_sweep_excludes_tuning_and_needs_seeds(tmp_path):
    with pytest.raises(ConfigError, match="either a sweep or tuning"):
        load_grid(write(tmp_path / "t.yaml", "{}", extra="tuning: {values: [0.1]}\n", schedulers="[fixed]"))
    path = tmp_path / "s.yaml"
    path.write_text("tasks: [digits]\nschedulers: [fixed]\nseeds: []\nsweep: {}\n")
    with pytest.raises(ConfigError, match="at least one seed per point"):
        load_grid(str(path))


def test_the_sweep_demo_grid_runs_four_methods_over_nine_points():
    grid = load_grid("sweep-demo")
    values = swept(grid)
    assert set(values) == {("digits", s) for s in ("fixed", "cosine", "heuristic", "prodigy")}
    assert values["digits", "fixed"][0] == values["digits", "heuristic"][0] == pytest.approx(
        [0.01 * f for f in FACTORS], rel=1e-5)
    assert values["digits", "prodigy"][0] == pytest.approx(FACTORS, rel=1e-5)


def test_a_sweep_grid_runs_every_point_tagged_with_its_phase_and_value(home, tmp_path_factory, tmp_path):
    import io

    from mlflow.tracking import MlflowClient

    from adaptive_lr.experiment import run_grid
    from store_support import seed_store, tracking_uri

    seed_store(home, tmp_path_factory)
    path = tmp_path / "tiny-sweep.yaml"
    path.write_text("name: tiny-sweep\ntasks: [xor_clean]\nschedulers: [fixed, prodigy]\nseeds: [3]\n"
                    "variants: {prodigy: [scheduler=fixed, optimizer=prodigy]}\n"
                    "overrides: [trainer.max_epochs=1, data.n_samples=80, logger.tensorboard=false]\n"
                    "sweep: {decades: 2, points: 2}\n")
    run_grid(str(path), out=io.StringIO())
    client = MlflowClient(tracking_uri(home))
    exp = client.get_experiment_by_name("tiny-sweep")
    found = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("grid_parent") != "true"]
    seen = {(r.data.tags["scheduler"], r.data.tags["phase"], r.data.tags.get("sweep_lr"),
             r.data.tags.get("sweep_multiplier"), r.data.tags["sweep_factor"], r.info.status) for r in found}
    assert seen == {("fixed", "sweep", "0.005", None, "0.1", "FINISHED"),
                    ("fixed", "sweep", "0.5", None, "10", "FINISHED"),
                    ("prodigy", "sweep", None, "0.1", "0.1", "FINISHED"),
                    ("prodigy", "sweep", None, "10", "10", "FINISHED")}
    params = {(r.data.tags["scheduler"], r.data.params["lr"], r.data.params.get("lr_multiplier")) for r in found}
    assert params == {("fixed", "0.005", None), ("fixed", "0.5", None), ("prodigy", "0.05", "0.1"),
                      ("prodigy", "0.05", "10.0")}  # the swept value is what ran


def test_a_sweep_with_its_own_seeds_then_runs_the_grid_seeds_at_each_columns_best_point(home, tmp_path_factory,
                                                                                       tmp_path):
    """The tuned track: sweep seeds at every point (phase sweep), then the grid's seeds at the point with the best
    mean final validation metric (phase final, tagged with the point), chosen from the store's sweep runs."""
    import io
    import math

    from mlflow.tracking import MlflowClient

    from adaptive_lr.experiment import best_sweep_points, run_grid
    from store_support import seed_store, tracking_uri

    seed_store(home, tmp_path_factory)
    path = tmp_path / "tuned.yaml"
    path.write_text("name: tuned\ntasks: [xor_clean]\nschedulers: [fixed]\nseeds: [0, 1]\n"
                    "overrides: [trainer.max_epochs=2, data.n_samples=80, logger.tensorboard=false]\n"
                    "sweep: {decades: 4, points: 3, seeds: [100]}\n")
    grid = load_grid(str(path))
    assert [c.point for c in grid.sweep_cells] == ["lr=0.0005", "lr=0.05", "lr=5.0"]  # xor's lr 0.05, 2 decades apart
    assert {c.seed for c in grid.sweep_cells} == {100} and [c.seed for c in grid.cells] == [0, 1]
    out = io.StringIO()
    run_grid(str(path), out=out)

    client = MlflowClient(tracking_uri(home))
    exp = client.get_experiment_by_name("tuned")
    found = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("grid_parent") != "true"]
    sweep = {r.data.params["lr"]: r.data.metrics.get("val_acc", math.nan) for r in found
             if r.data.tags["phase"] == "sweep"}
    assert set(sweep) == {"0.0005", "0.05", "5.0"}
    finite = {lr: v for lr, v in sweep.items() if math.isfinite(v)}
    best = max(finite, key=lambda lr: (finite[lr], -float(lr)))  # ties: the first (lowest) point
    assert best_sweep_points(grid, tracking_uri(home)) == {("xor_clean", "fixed"): f"lr={float(best)}"}
    final = [r for r in found if r.data.tags["phase"] == "final"]
    assert sorted(int(r.data.tags["seed"]) for r in final) == [0, 1]
    assert {(r.data.params["lr"], r.data.tags["tuned_from_sweep"]) for r in final} == {(best, f"lr={float(best)}")}
    assert f"best sweep point xor_clean/fixed: lr={float(best):g}" in out.getvalue()


def test_anytime_fractions_are_real_runs_with_that_share_of_the_epoch_budget(tmp_path):
    """`anytime: [0.25, 0.5]`: each final cell again with max_epochs rounded to the fraction (at least 1), phase
    `anytime`, its own key, after any tuned override; the tuning phase does not repeat them."""
    path = tmp_path / "anytime.yaml"
    path.write_text("name: anytime\ntasks: [xor_clean]\nschedulers: [fixed, cosine]\nseeds: [0, 1]\n"
                    "overrides: [trainer.max_epochs=8]\nanytime: [0.25, 0.5]\n"
                    "tuning: {param: lr, values: [0.01, 0.1], seeds: [7]}\n")
    from adaptive_lr.experiment import tune_cells

    grid = load_grid(str(path))
    final = [c for c in grid.cells if c.phase == "final"]
    short = [c for c in grid.cells if c.phase == "anytime"]
    assert len(final) == 4 and len(short) == 8 and len({c.key for c in grid.cells}) == 12
    budgets = {(c.scheduler, c.seed, dict(c.tags)["budget_fraction"]): compose(c.overrides).trainer.max_epochs
               for c in short}
    assert set(budgets.values()) == {2, 4} and budgets["cosine", 0, "0.25"] == 2 and budgets["fixed", 1, "0.5"] == 4
    cosine = next(c for c in short if c.scheduler == "cosine" and dict(c.tags)["budget_fraction"] == "0.5")
    assert compose(cosine.overrides).scheduler.policy.t_max == 4  # cosine anneals over the shorter horizon
    assert len(tune_cells(grid)) == 2 * 2 * 1  # schedulers x values x tuning seeds: no anytime tuning
    path.write_text(path.read_text().replace("anytime: [0.25, 0.5]", "anytime: [1.5]"))
    with pytest.raises(ConfigError, match=r"anytime must be a list of budget fractions in \(0, 1\)"):
        load_grid(str(path))
