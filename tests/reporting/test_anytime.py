"""Runs with a fraction of the budget (phase `anytime`) get their own table and never enter the results."""

from __future__ import annotations

import pandas as pd
import pytest
from fake_store import log_run

from adaptive_lr.reporting import write_report


def test_anytime_runs_are_tabulated_apart_and_never_results(store, tmp_path):
    from mlflow.tracking import MlflowClient

    uri, _ = store
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("anytime", artifact_location=(tmp_path / "a").as_uri())
    full = {"fixed": [0.80, 0.84], "heuristic": [0.82, 0.86]}  # final val per seed; test = val - 0.01
    half = {"fixed": [0.60, 0.70], "heuristic": [0.75, 0.79]}
    for scheduler, finals in full.items():
        for seed, final in enumerate(finals):
            log_run(client, exp, "flat", scheduler, scheduler != "fixed", seed, [0.5, 0.7, final], [1.0, 0.8, 0.7],
                    extra_tags={"phase": "final"}, actions=False)
            log_run(client, exp, "flat", scheduler, scheduler != "fixed", seed, [0.5, half[scheduler][seed]],
                    [1.0, 0.8], extra_tags={"phase": "anytime", "budget_fraction": "0.5"}, actions=False)
    report = write_report("anytime", uri, tmp_path / "reports")
    summary = pd.read_csv(report.parent / "summary.csv").set_index("scheduler")
    assert summary["n_seeds"].tolist() == [2, 2]  # the half-budget runs are not results
    assert summary.loc["fixed", "test_mean"] == pytest.approx(0.81)
    text = report.read_text()
    assert "4 with a fraction of the budget" in text
    table = text.split("## Anytime", 1)[1].split("\n## ", 1)[0]
    assert "| scheduler | 50% of the budget | 100% (results) |" in table
    assert "| fixed | 0.64 [0.59, 0.69] | 0.81 [0.79, 0.83] |" in table  # test = val - 0.01, bootstrap of 2 seeds
    assert "| heuristic | 0.76 [0.74, 0.78] | 0.83 [0.81, 0.85] |" in table


def test_rank_agreement_of_a_shorter_budget_with_the_full_one(store, tmp_path):
    from mlflow.tracking import MlflowClient

    uri, _ = store
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("anytime-ranks", artifact_location=(tmp_path / "a").as_uri())
    full = {"fixed": 0.70, "cosine": 0.80, "heuristic": 0.90}  # full budget: fixed < cosine < heuristic
    half = {"fixed": 0.65, "cosine": 0.60, "heuristic": 0.55}  # half budget: the reverse order
    for scheduler in full:
        for seed in (0, 1):
            log_run(client, exp, "flat", scheduler, scheduler == "heuristic", seed, [0.5, full[scheduler]], [1.0, 0.8],
                    extra_tags={"phase": "final"}, actions=False)
            log_run(client, exp, "flat", scheduler, scheduler == "heuristic", seed, [0.5, half[scheduler]],
                    [1.0, 0.9], extra_tags={"phase": "anytime", "budget_fraction": "0.5"}, actions=False)
    text = write_report("anytime-ranks", uri, tmp_path / "reports").read_text()
    table = text.split("## Anytime", 1)[1].split("\n## ", 1)[0]
    assert "Rank agreement with the full budget: 50%: tau-b -1.00 (p 0.33, 3 methods)." in table
