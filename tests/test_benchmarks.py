"""The benchmark scripts' shared pieces, at tiny sizes (the measurements themselves run in `make bench`, never here):
the plain-loop reference does a task's own batch work for every task kind, and the real-data check names what is
missing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from adaptive_lr.config import compose
from tasks.test_forecasting import write_vic_elec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import cold_start  # noqa: E402
import controller_overhead  # noqa: E402
import results_io  # noqa: E402
import throughput  # noqa: E402


@pytest.mark.parametrize("overrides", [
    ["task=digits"],
    ["task=electricity", "data.lookback=8", "data.horizon=4", "data.stride=2", "model.hidden=8"],
], ids=["classification", "forecasting"])
def test_plain_loop_trains_on_the_tasks_own_batches(overrides, tmp_path, home, monkeypatch):
    (tmp_path / "electricity").mkdir()
    write_vic_elec(tmp_path / "electricity")
    cfg = compose([*overrides, f"data_dir={tmp_path}", "data.batch_size=16", "seed=0"])
    built, original = [], throughput.build

    def recording_build(c):
        built.append(original(c))
        built.append([p.detach().clone() for p in built[-1]["module"].model.parameters()])
        return built[0]

    monkeypatch.setattr(throughput, "build", recording_build)
    seconds, samples = throughput.plain_loop(cfg, epochs=2, max_batches=3)

    assert seconds > 0 and samples == 2 * 3 * 16  # every batch of every epoch, full batches only here
    parts, initial = built
    trained = list(parts["module"].model.parameters())
    assert all(torch.isfinite(p).all() for p in trained)
    assert any(not torch.equal(p, q) for p, q in zip(trained, initial, strict=True))  # the optimizer stepped


def test_missing_data_names_the_dataset_and_the_folder_searched(tmp_path, monkeypatch, home):
    monkeypatch.delenv("ADAPTIVE_LR_DATA_DIR", raising=False)
    assert results_io.missing_data(["task=digits"]) is None  # embedded: nothing to find
    assert "not set" in results_io.missing_data(["task=mnist"])
    reason = results_io.missing_data(["task=mnist", f"data_dir={tmp_path}"])
    assert "mnist" in reason.lower() and str(tmp_path) in reason
    assert results_io.mnist_task() == ["task=synthetic_mnist"]


def test_overhead_table_has_a_row_per_measured_scheduler_and_judges_the_share():
    def row(name, ms, calls, train, share, target=0.02):
        key = f"overhead/{name}"
        return {f"{key}_callback_ms": {"value": ms}, f"{key}_hook_calls": {"value": calls},
                f"{key}_train_s": {"value": train}, f"{key}_callback_share": {"value": share, "target": target}}

    saved = {**row("fixed", 60.0, 3445, 5.0, 0.012),
             **row("hypergradient_scheduler.frequency=1", 900.0, 5633, 6.0, 0.15, target=None),  # not judged
             "overhead/older_callback_share": {"value": 0.015, "target": 0.02},
             **row("hypergradient", 300.0, 5633, 6.0, 0.05)}  # a row measured before details were recorded

    table = controller_overhead.report(saved, "task=mnist", 2).splitlines()

    rows = [line for line in table if line.startswith("| ") and not line.startswith(("| scheduler", "| ---"))]
    assert rows == ["| fixed | 60.0 | 3445 | 5.0 | 1.20% | yes |",
                    "| hypergradient scheduler.frequency=1 | 900.0 | 5633 | 6.0 | 15.00% | — |",
                    "| older | — | — | — | 1.50% | yes |",
                    "| hypergradient | 300.0 | 5633 | 6.0 | 5.00% | NO |"]  # a shipped config over the target


def test_timer_sums_each_wrapped_methods_calls_under_its_label():
    class Work:
        def step(self, x):
            return x + 1

    timer = results_io.Timer()
    timer.wrap(Work, "step", "work")
    assert [Work().step(1), Work().step(2)] == [2, 3]  # the wrapped method still returns its result
    assert timer.calls["work"] == 2 and timer.seconds["work"] > 0
    timer.reset()
    assert timer.calls["work"] == 0 and timer.seconds["work"] == 0


def test_throughput_table_judges_the_median_pair_ratio_and_shows_the_pair_range():
    saved = {"mnist/plain_loop_samples_per_s": {"value": 20000.0}, "mnist/harness_samples_per_s": {"value": 15000.0},
             "mnist/harness_vs_plain": {"value": 0.79, "target": 0.8},
             "mnist/harness_vs_plain_lowest_pair": {"value": 0.7}, "mnist/harness_vs_plain_highest_pair": {"value": 0.91}}

    rows = [line for line in throughput.report(saved, "heuristic", 3, {}).splitlines() if line.startswith("| MNIST MLP")]

    assert len(rows) == 1 and rows[0].endswith("| 20,000 | 15,000 | 0.790 | 0.700-0.910 | >= 0.8 | NO |")


def test_bare_lightning_trains_the_task_without_logger_or_lr_callback(home, monkeypatch):
    cfg = compose(["task=xor_clean", "trainer.max_epochs=2", "data.n_samples=80", "seed=0"])
    seen = {}
    original = throughput.build

    def recording_build(c):
        seen["parts"] = original(c)
        seen["initial"] = [p.detach().clone() for p in seen["parts"]["module"].parameters()]
        return seen["parts"]

    monkeypatch.setattr(throughput, "build", recording_build)
    seconds = throughput.bare_lightning(cfg)
    module = seen["parts"]["module"]
    assert seconds > 0
    assert module.trainer.current_epoch == 2 and module.trainer.loggers == []
    assert [type(cb).__name__ for cb in module.trainer.callbacks if type(cb).__name__ == "LRControl"] == []
    assert any(not torch.equal(p, q) for p, q in zip(module.parameters(), seen["initial"], strict=True))


def test_report_shows_the_bare_lightning_table_only_for_rows_that_measured_it():
    base = {"mnist/plain_loop_samples_per_s": {"value": 100.0}, "mnist/harness_samples_per_s": {"value": 90.0},
            "mnist/harness_vs_plain": {"value": 0.9, "target": 0.8}}
    assert "bare Lightning" not in throughput.report(base, "heuristic", 5, {})
    bare = {**base, "mnist/bare_lightning_vs_plain": {"value": 0.93},
            "mnist/bare_lightning_vs_plain_lowest_pair": {"value": 0.91},
            "mnist/bare_lightning_vs_plain_highest_pair": {"value": 0.95}}
    mnist = next(c for c in throughput.CASES if c.name == "mnist")
    assert f"| {mnist.label} | 0.930 | 0.910-0.950 |" in throughput.report(bare, "heuristic", 5, {}).splitlines()


def test_cold_start_groups_the_import_times_of_the_top_level_imports():
    stderr = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:       100 |     2000000 |     torch",
        "import time:        50 |     3000000 |         torchmetrics.functional",
        "import time:        10 |     4000000 |   lightning.fabric",
        "import time:        20 |     5000000 | lightning",
        "import time:        30 |     1500000 | mlflow.tracking",
        "import time:        40 |      250000 | hydra",
        "import time:         5 |      100000 | json",
        "some other line",
    ])
    groups, nested, total = cold_start.import_times(stderr)
    assert groups == pytest.approx({"Lightning": 5.0, "MLflow": 1.5, "Hydra/OmegaConf": 0.25, "other": 0.1})
    assert nested == {"torch": 2.0, "torchmetrics.functional": 3.0} and total == pytest.approx(6.85)


def test_summary_lists_the_headline_rows_with_their_targets_and_commands(tmp_path):
    results = tmp_path / "results.json"
    results_io.merge([results_io.entry("viz/views_on_overhead", 0.072, "fraction", 0.10, "lower"),
                      results_io.entry("cold/train_ratio", 5.5, "x", 2.0, "lower")], [], results)
    results_io.write_summary(tmp_path / "summary.md", results)
    rows = [line for line in (tmp_path / "summary.md").read_text().splitlines() if line.startswith("| ")][2:]
    assert rows[0].startswith("| views all-on overhead") and "| 7.2% | <= 10.0% | yes | " in rows[0]
    assert "`python benchmarks/viz_overhead.py`" in rows[0]
    assert "| 5.50x | <= 2.00x | NO | `python benchmarks/cold_start.py` |" in rows[1]
