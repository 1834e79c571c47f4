import math
import re
from datetime import datetime

import pandas as pd
import pytest

from adaptive_lr.reporting import NoRunsError, aggregate, collect, load_runs, per_run_metrics, write_report

NOW = datetime(2025, 1, 2, 3, 4, 5)
COLUMNS = [
    "task", "scheduler", "adaptive", "metric", "mode", "final_mean", "final_std", "best_mean",
    "epochs_to_threshold_mean", "reached", "generalization_gap", "stability", "test_mean",
    "test_baseline_mean", "n_seeds", "n_diverged",
]  # fmt: skip
NAN = math.nan
# Hand-computed from the curves in conftest.py (std = sample std over the 3 seeds).
EXPECTED = {
    # key: (final_mean, final_std, best_mean, ett_mean, reached, gap, stability, test_mean, n_diverged)
    ("digits", "cosine"): (0.94, 0.0, 0.94, 3.0, 3, 0.05, 0.0707107, 0.93, 0),
    ("digits", "fixed"): (0.916667, 0.0305505, 0.92, 10 / 3, 2, 0.05, 0.0707107, 0.906667, 0),
    ("digits", "heuristic"): (0.97, 0.01, 0.97, 7 / 3, 3, 0.05, 0.170783, 0.96, 0),
    ("xor_clean", "fixed"): (0.09, 0.0556776, 0.09, 3.0, 2, -0.02, 0.190941, 0.08, 0),
    ("xor_clean", "heuristic"): (NAN, NAN, 0.35 / 3, 8 / 3, 2, NAN, NAN, NAN, 1),
}


@pytest.fixture(scope="module")
def reports(store, tmp_path_factory):
    uri, _ = store
    root = tmp_path_factory.mktemp("reports")
    return write_report("demo", uri, root, now=NOW), write_report("demo", uri, root, now=NOW)


def test_summary_csv_has_exact_numbers_and_excludes_unfinished_runs(reports):
    table = pd.read_csv(reports[0].parent / "summary.csv")
    assert list(table.columns) == COLUMNS
    assert list(zip(table.task, table.scheduler, strict=False)) == list(EXPECTED)
    for row in table.itertuples(index=False):
        expected = EXPECTED[(row.task, row.scheduler)]
        got = (row.final_mean, row.final_std, row.best_mean, row.epochs_to_threshold_mean, row.reached,
               row.generalization_gap, row.stability, row.test_mean, row.n_diverged)  # fmt: skip
        assert got == pytest.approx(expected, rel=1e-5, nan_ok=True), (row.task, row.scheduler)
        assert row.n_seeds == 3  # FAILED (digits/heuristic) and RUNNING (xor_clean/fixed) seed 3 left out
    assert table.set_index("scheduler").loc["heuristic", "adaptive"].all()
    assert set(table["mode"]) == {"max", "min"}


def test_report_states_results_plainly_and_lists_unfinished_runs(reports, store):
    _, special = store
    text = reports[0].read_text()
    assert "Adaptive heuristic beat the best baseline cosine: 0.97 vs 0.94 (difference +0.03" in text
    assert "Adaptive heuristic did not beat the best baseline fixed (0.09)" in text  # diverged seed: NaN mean
    assert "difference of means over 3 seeds, no significance test" in text
    assert "best scheduler by mean final val mse (lower is better): **fixed**" in text
    assert "Not ranked (a seed ended on NaN, so the mean is undefined): heuristic." in text
    assert "| fixed | 0.9167 ± 0.03055 | 0.92 | 3.3 (reached 2/3) | +0.05 | 0.07071 | 0.9067 | 3 |" in text
    assert (
        "| heuristic (adaptive) | nan ± nan | 0.1167 | 2.7 (reached 2/3) | nan | nan | nan | 3 (1 diverged) |"
        in text
    )

    unfinished = text.split("## Failed or incomplete runs")[1].split("## Protocol")[0]
    assert (
        f"| {special['failed']} | digits | heuristic | 3 | FAILED | CUDA out of memory \\| at step 12 |"
        in unfinished
    )
    assert f"| {special['running']} | xor_clean | fixed | 3 | RUNNING | (no error tag) |" in unfinished
    results = text.split("## Results")[1].split("## Failed")[0]
    assert special["failed"] not in results and special["running"] not in results
    assert "17 runs (15 finished, 2 failed or incomplete)" in text
    assert (
        "- digits: val acc (max), threshold 0.9, max epochs 5, seeds 0, 1, 2, schedulers cosine, fixed,"
        in text
    )


def test_every_plot_exists_and_is_linked(reports):
    folder = reports[0].parent
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", reports[0].read_text())
    assert sorted(links) == [
        "digits_lr.png",
        "digits_val_acc.png",
        "xor_clean_lr.png",
        "xor_clean_val_mse.png",
    ]
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(links)
    assert all((folder / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for link in links)


def test_rerun_writes_a_new_folder_with_identical_results(reports):
    first, second = reports
    assert first.parent.name == "20250102-030405" and second.parent.name == "20250102-030405-1"
    assert first.parent.parent.name == "demo"
    assert (first.parent / "summary.csv").read_bytes() == (second.parent / "summary.csv").read_bytes()
    assert first.read_text() == second.read_text()


def test_load_runs_pages_through_search_and_decodes_histories(store, monkeypatch):
    uri, special = store
    monkeypatch.setattr(collect, "_PAGE_SIZE", 4)
    data = load_runs("demo", uri)
    assert len(data.runs) == 17 and len(data.finished) == 15
    assert set(data.epochs["run_id"]) == set(
        data.finished["run_id"]
    )  # no histories fetched for unfinished runs
    heuristic = data.finished.query(
        "task == 'digits' and scheduler == 'heuristic' and seed == 0"
    ).run_id.iloc[0]
    actions = data.actions[data.actions["run_id"] == heuristic]
    assert list(actions["action"]) == ["hold", "cut_plateau", "unknown(99)"]
    assert list(actions["factor"]) == [1.0, 0.5, 1.0]
    lr = data.lr[data.lr["run_id"] == heuristic]
    assert list(lr["step"]) == list(range(1, 21, 2))
    val = data.epochs.query("run_id == @heuristic and name == 'val_acc'")
    assert list(val["epoch"]) == [1, 2, 3, 4, 5]
    per_run = per_run_metrics(data)
    assert per_run["diverged"].sum() == 1
    assert aggregate(per_run).shape == (5, len(COLUMNS))


@pytest.mark.parametrize("experiment", ["empty", "only_failed", "missing"])
def test_no_finished_runs_raises_naming_experiment_and_store(store, tmp_path, experiment):
    uri, _ = store
    with pytest.raises(NoRunsError, match=re.escape(f"experiment '{experiment}'")) as err:
        write_report(experiment, uri, tmp_path, now=NOW)
    assert uri in str(err.value)
    assert not (tmp_path / experiment).exists()  # nothing written
