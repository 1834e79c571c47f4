"""The bar of issue 15 as a report section (`reporting.bar`), on a synthetic bundle of two families whose verdicts
are known by construction: one controller passes all three criteria, and for each criterion one controller fails
it (and only it, where the numbers allow); plus the feedback_wsd / wsd ablation and the transfer table."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from adaptive_lr.reporting import read_bundle, write_bundle, write_report_from_bundle
from adaptive_lr.reporting.bar import BAR, Bar, evaluate, family_and_part, met
from adaptive_lr.reporting.collect import RUN_COLUMNS, RunData
from adaptive_lr.reporting.report import compute
from adaptive_lr.reporting.transfer import transfer_table

NOW = datetime(2026, 1, 2, 3, 4, 5)
SEEDS = range(5)
# per-seed noise patterns (different columns get different ones, so paired differences have a spread)
NOISE = [
    [0.0003, -0.0002, 0.0001, -0.0003, 0.0001],
    [-0.0001, 0.0002, -0.0003, 0.0001, 0.0001],
    [0.0002, 0.0001, -0.0002, -0.0002, 0.0001],
    [-0.0002, -0.0001, 0.0003, 0.0001, -0.0001],
    [0.0001, 0.0003, -0.0001, -0.0002, -0.0001],
]
WIDE = [0.05, -0.04, 0.03, -0.05, 0.01]  # a controller whose seeds disagree: inconclusive
LRS = [10 ** (-4 + i / 2) for i in range(9)]  # the sweep: 9 points, 0.5 decades apart


def run(run_id: str, task: str, scheduler: str, **values) -> dict:
    base = {c: "" for c in RUN_COLUMNS} | {
        "run_id": run_id, "run_name": run_id, "status": "FINISHED", "task": task, "scheduler": scheduler, "seed": 0,
        "adaptive": False, "metric": "acc", "mode": "max", "threshold": 0.99, "max_epochs": 2, "steps_per_epoch": 1,
        "test_loss": math.nan, "test_metric": math.nan, "test_baseline": math.nan, "diverged_tag": False,
        "phase": "final", "start_time": 0, "superseded": False, "equivalence_margin": 0.005,
        "margin_relative": False, "lr": 0.01, "lr_param": "lr", "final_val": math.nan, "budget_fraction": math.nan,
        "end_time": math.nan, "data_checksum": "",
    }  # fmt: skip
    return base | values


class Builder:
    def __init__(self) -> None:
        self.runs: list[dict] = []
        self.epochs: list[tuple] = []
        self.actions: list[tuple] = []

    def column(self, task: str, scheduler: str, level: float, noise: list[float], adaptive: bool = False,
               decides: bool = False, lr: float = 0.01) -> None:
        """Five final seeds of one column with test values level + noise (val curve ends at the same value)."""
        for seed in SEEDS:
            run_id = f"{task}|{scheduler}|{seed}"
            value = level + noise[seed]
            self.runs.append(run(run_id, task, scheduler, seed=seed, adaptive=adaptive, test_metric=value, lr=lr,
                                 data_checksum=f"data{seed}"))
            self.epochs += [(run_id, 1, "val_acc", value - 0.01), (run_id, 2, "val_acc", value)]
            if decides:
                self.actions.append((run_id, 10, 0.0, "hold", 1.0))

    def sweep(self, task: str, scheduler: str, good_points: int) -> None:
        """A sweep whose `good_points` middle points are within the margin of the best (0.95), the rest far off."""
        first = (len(LRS) - good_points) // 2
        for i, lr in enumerate(LRS):
            value = 0.95 if first <= i < first + good_points else 0.5
            self.runs.append(run(f"{task}|{scheduler}|sweep{i}", task, scheduler, seed=100, phase="sweep", lr=lr,
                                 final_val=value, adaptive=scheduler != "cosine"))

    def data(self) -> RunData:
        return RunData("controller-study", "local MLflow store", pd.DataFrame(self.runs, columns=RUN_COLUMNS),
                       pd.DataFrame(self.epochs, columns=["run_id", "epoch", "name", "value"]),
                       pd.DataFrame(columns=["run_id", "step", "value"]),
                       pd.DataFrame(self.actions, columns=["run_id", "step", "code", "action", "factor"]))


def study() -> RunData:
    b = Builder()
    # alpha: tuned cosine 0.905 > untuned wsd 0.900
    tuned, untuned = "alpha (study-alpha)", "alpha (study-alpha-untuned)"
    b.column(tuned, "cosine", 0.905, NOISE[0], lr=0.003)
    b.column(tuned, "wsd", 0.904, NOISE[1], lr=0.003)
    b.column(tuned, "feedback_wsd", 0.904, NOISE[2], adaptive=True, decides=True, lr=0.001)
    b.column(untuned, "wsd", 0.900, NOISE[1])
    b.column(untuned, "feedback_wsd", 0.905, NOISE[2], adaptive=True, decides=True)  # passes all three
    b.column(untuned, "only_i", 0.900, NOISE[3], adaptive=True, decides=True)  # worse than cosine; = wsd
    b.column(untuned, "only_ii", 0.905, NOISE[4], adaptive=True, decides=True)  # = cosine, > wsd; narrow region
    b.column(untuned, "lrfree", 0.99, NOISE[3], adaptive=True)  # adaptive, but no controller decisions: not judged
    for name, good in (("cosine", 1), ("feedback_wsd", 3), ("only_i", 3), ("only_ii", 2), ("wsd", 1)):
        b.sweep(tuned, name, good)
    # beta: tuned cosine 0.900 < untuned wsd 0.905
    tuned, untuned = "beta (study-beta)", "beta (study-beta-untuned)"
    b.column(tuned, "cosine", 0.900, NOISE[0], lr=0.003)
    b.column(tuned, "wsd", 0.904, NOISE[1], lr=0.003)
    b.column(tuned, "feedback_wsd", 0.904, NOISE[2], adaptive=True, decides=True, lr=0.001)
    b.column(untuned, "wsd", 0.905, NOISE[1])
    b.column(untuned, "feedback_wsd", 0.85, NOISE[2], adaptive=True, decides=True)  # worse than both
    b.column(untuned, "only_iii", 0.900, NOISE[3], adaptive=True, decides=True)  # = cosine, worse than wsd
    b.column(untuned, "noisy", 0.90, WIDE, adaptive=True, decides=True)  # inconclusive: does not pass
    for name, good in (("cosine", 1), ("feedback_wsd", 3), ("only_iii", 4), ("noisy", 3), ("wsd", 1)):
        b.sweep(tuned, name, good)
    # a family with only one part is not evaluated
    b.column("gamma (study-gamma)", "cosine", 0.9, NOISE[0])
    return b.data()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return write_bundle(study(), tmp_path_factory.mktemp("bar") / "bundle", {})


@pytest.fixture(scope="module")
def result(bundle):
    ctx = compute(read_bundle(bundle), {}, NOW)
    return evaluate(ctx.per_run, ctx.data.runs, ctx.data.actions, ctx.regions, ctx.alpha)


def test_parts_of_a_merged_report_give_family_and_track():
    assert family_and_part("mnist (study-mnist-untuned)") == ("mnist", "study-mnist-untuned")
    assert family_and_part("imdb (study-imdb)") == ("imdb", "study-imdb")
    assert family_and_part("mnist") == ("mnist", "")


def test_each_criterion_has_its_known_verdict(result):
    table = result.table.set_index(["family", "controller"])
    expected = {  # (i) verdict, (ii) pass, (iii) verdict, all three
        ("alpha", "feedback_wsd"): ("equivalent", True, "better", True),
        ("alpha", "only_i"): ("worse", True, "equivalent", False),
        ("alpha", "only_ii"): ("equivalent", False, "better", False),
        ("beta", "feedback_wsd"): ("worse", True, "worse", False),
        ("beta", "only_iii"): ("equivalent", True, "worse", False),
        ("beta", "noisy"): ("inconclusive", True, "inconclusive", False),
    }
    assert set(table.index) == set(expected)  # lrfree logged no decision: not a controller
    for key, (first, second, third, passes) in expected.items():
        row = table.loc[key]
        assert (row["i_verdict"], bool(row["ii_pass"]), row["iii_verdict"], bool(row["passes"])) == (
            first, second, third, passes), key
        assert bool(row["i_pass"]) == (first in ("better", "equivalent"))
        assert bool(row["iii_pass"]) == (third in ("better", "equivalent"))
        assert bool(row["i_paired"]) and bool(row["iii_paired"])  # same seeds, same data checksums
    # the region: cosine 1 point (0.5 decades); 3 points is exactly one decade wider, which passes; 2 do not
    assert table.loc[("alpha", "feedback_wsd"), "width_gain"] == pytest.approx(1.0)
    assert table.loc[("alpha", "only_ii"), "width_gain"] == pytest.approx(0.5)
    assert table.loc[("alpha", "only_i"), "i_difference"] == pytest.approx(0.900 - 0.905)
    # Holm over every comparison of the section: 2 per controller and 2 ablation rows per family
    assert result.comparisons == 2 * 6 + 2 * 2
    assert result.tracks.problems == {} and sorted(result.tracks.pairs) == ["alpha", "beta"]


def test_the_ablation_compares_feedback_wsd_with_wsd_on_each_track(result):
    ablation = result.ablation.set_index(["family", "track"])
    assert ablation.loc[("alpha", "tuned"), "verdict"] == "equivalent"
    assert ablation.loc[("alpha", "untuned"), "verdict"] == "better"
    assert ablation.loc[("beta", "untuned"), "verdict"] == "worse"
    assert ablation.loc[("alpha", "tuned"), "a_lr"] == "0.001" and ablation.loc[("alpha", "tuned"), "b_lr"] == "0.003"


def test_the_bar_is_met_only_on_enough_families(result):
    passing, line = met(result)
    assert passing == ["alpha"]
    assert line.startswith("**The bar is not met on the families reported so far**") and "1 of the 2" in line
    assert met(result, Bar(families_needed=1))[1].startswith("**The bar is met**")
    assert "cannot make up" in met(result, Bar(families_needed=3, families_planned=3))[1]
    final = met(result, Bar(families_needed=2, families_planned=2))[1]  # every family in: nothing left to wait for
    assert final.startswith("**The bar is not met**") and "every planned family is reported" in final
    assert "cannot make up" not in final
    assert BAR.families_needed == 3 and BAR.families_planned == 5 and BAR.min_width_gain == 1.0


def test_the_report_from_the_bundle_carries_the_bar_section(bundle, tmp_path):
    report = write_report_from_bundle(bundle, tmp_path, now=NOW).read_text(encoding="utf-8")
    section = report.split("## The bar", 1)[1].split("\n## ", 1)[0]
    assert "**The bar is not met on the families reported so far**" in section
    assert "### alpha (tuned: study-alpha; untuned: study-alpha-untuned)" in section
    assert "### beta (tuned: study-beta; untuned: study-beta-untuned)" in section
    assert "- gamma: not evaluated" not in section  # one part only: not a family of the bar
    alpha = section.split("### alpha", 1)[1].split("###", 1)[0]
    assert [line.split(" | ")[0] for line in alpha.splitlines() if line.startswith("| ") and "---" not in line][1:] \
        == ["| feedback_wsd", "| only_i", "| only_ii"]
    assert "Holm's correction runs across all 16 comparisons" in section
    assert "### Ablation: feedback_wsd against wsd" in section


def test_a_report_with_one_track_has_no_bar_section(tmp_path):
    b = Builder()
    b.column("mnist", "cosine", 0.9, NOISE[0])
    b.column("mnist", "heuristic", 0.9, NOISE[1], adaptive=True, decides=True)
    folder = write_bundle(b.data(), tmp_path / "bundle", {})
    assert "## The bar" not in write_report_from_bundle(folder, tmp_path / "out", now=NOW).read_text()


def test_transfer_table_judges_warm_against_scratch(tmp_path):
    b = Builder()
    b.column("digits", "rl_qlearning", 0.90, NOISE[0], adaptive=True, decides=True)
    b.column("digits", "rl_qlearning +warm", 0.95, NOISE[1], adaptive=True, decides=True)
    b.column("xor", "rl_qlearning", 0.90, NOISE[0], adaptive=True, decides=True)
    b.column("xor", "rl_qlearning +warm", 0.9001, NOISE[1], adaptive=True, decides=True)
    b.column("xor", "rl_bandit +warm", 0.9, NOISE[1], adaptive=True, decides=True)  # no cold column: no row
    for r in b.runs:
        if r["scheduler"].endswith("+warm"):
            r["warm_start"] = f"/somewhere/meta-q-without-{r['task']}-abc/policy.pt"
    ctx = compute(read_bundle(write_bundle(b.data(), tmp_path / "bundle", {})), {}, NOW)
    table = transfer_table(ctx.per_run, ctx.data.runs, ctx.alpha).set_index("a_task")
    assert list(table.index) == ["digits", "xor"]
    assert table.loc["digits", "verdict"] == "better" and table.loc["xor", "verdict"] == "equivalent"
    assert table.loc["digits", "policy"] == "meta-q-without-digits-abc"
