"""Load the logged runs of one experiment from an MLflow tracking store into tidy DataFrames.

Reads exactly what the training side logs (one MLflow experiment per grid, one run per task x scheduler x
seed): tags (task, scheduler, seed, metric, metric_mode, threshold, max_epochs, steps_per_epoch, adaptive,
run_dir, error, diverged; the grid's phase and tuning_budget; provenance: git_commit, data_checksum, host,
cpu_count, torch_version, python_version, device), epoch-indexed metrics, step-indexed `lr` / `controller_*`
(step = global optimizer step) and the final `test_*` values. Nothing is retrained and nothing is written back.

Epoch metrics come in two conventions, both read here (`epoch_of_step`): runs logged since the UI conventions
(issue 17) put every metric on the global step and log the epoch number as the metric `epoch` at the same step;
older runs, imported bundles and the stores of studies started before put epoch metrics at step = epoch number and
log no `epoch`. A run resumed across the change holds both: its steps that carry an `epoch` value are read through
it, the others as epoch numbers (a new-convention step is a global step >= its epoch, larger than any epoch logged
before it, so the two never collide). The frames hold epoch numbers either way, so bundles and reports do not
depend on the convention.

Result runs are the FINISHED runs that are not `phase=tune`: a grid with a tuning protocol first runs tune
runs (phase `tune`), then reruns the chosen setting (phase `final`); only the final runs are results, a run
without a phase tag counts as final (as the grid's resume logic reads it). A cell (task, scheduler, seed) that was
run again (its config changed, so the grid did not skip it) has one result: the run that started last; the older
ones are `superseded`, counted in the report but never mixed into its numbers. Histories are fetched for result
runs only, one `get_metric_history` call per run per metric that the run actually logged (the run's
latest-value dict tells which exist).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from adaptive_lr.errors import UserError
from adaptive_lr.schedulers.base import ACTIONS as POLICY_ACTIONS
from adaptive_lr.tracking import schema

FINISHED = "FINISHED"
# epoch-indexed metrics read from every run, besides its train_<metric> and val_<metric>
EPOCH_METRICS = (schema.TRAIN_LOSS, "val_loss", schema.EPOCH_TIME_S, schema.EPOCH_LR, "nonfinite_steps")
EPOCH_KEY = schema.EPOCH  # the epoch number, logged at the global step of the epoch's end (runs since issue 17)
# code -> name, inverted from the one table the controllers log with (so a new action is never "unknown" here)
ACTIONS = {code: name for name, code in POLICY_ACTIONS.items()}
TUNE, SWEEP = "tune", "sweep"  # phases whose runs choose settings and are never results
ANYTIME = "anytime"  # runs with a fraction of the budget: their own table, never mixed into results
PROVENANCE_TAGS = (
    schema.GIT_COMMIT, schema.DATA_CHECKSUM, schema.HOST, "cpu_count", "torch_version", "python_version", "device",
    schema.CONFIG_HASH,
    "grid_jobs", "load_avg_start", "load_avg_end", "lr_bounds",
)  # fmt: skip

RUN_COLUMNS = [
    "run_id", "run_name", "status", "task", "scheduler", "seed", "adaptive", "metric", "mode", "threshold",
    "max_epochs", "steps_per_epoch", "test_loss", "test_metric", "test_baseline", "warm_start", "error", "run_dir",
    "diverged_tag", "phase", "tuning_budget", "start_time", "superseded", "equivalence_margin", "margin_relative",
    "lr", "lr_param", "final_val", "budget_fraction", "end_time",
    *PROVENANCE_TAGS,
]  # fmt: skip


class NoRunsError(UserError, LookupError):
    """The experiment does not exist or has no FINISHED run; the message names experiment and store."""


@dataclass(frozen=True)
class RunData:
    """Everything a report needs from one experiment, as tidy frames.

    runs:    one row per run of any status and phase (RUN_COLUMNS), sorted by task, scheduler, seed, phase,
             run_id; missing tags read as "" (text), NaN (numbers) or None (integers).
    epochs:  long frame run_id, epoch, name, value for the epoch-indexed metrics of the result runs.
    lr:      run_id, step, value of the step-indexed `lr` of the result runs.
    actions: run_id, step, code, action, factor of the controller decisions of the result runs.
    """

    experiment: str
    tracking_uri: str
    runs: pd.DataFrame
    epochs: pd.DataFrame
    lr: pd.DataFrame
    actions: pd.DataFrame

    @property
    def finished(self) -> pd.DataFrame:
        """The result runs: FINISHED, not phase=tune and not superseded by a later run of the same cell."""
        return self.runs[_results(self.runs)]

    @property
    def superseded(self) -> pd.DataFrame:
        """FINISHED final runs of a cell that was run again later (another config): never results."""
        return self.runs[self.runs["superseded"]]

    @property
    def unfinished(self) -> pd.DataFrame:
        """FAILED, RUNNING, KILLED (not FINISHED, any phase): excluded from results, listed in the report."""
        return self.runs[self.runs["status"] != FINISHED]

    @property
    def tune(self) -> pd.DataFrame:
        """Runs of the tuning and sweep phases (any status): they chose the final runs' settings and draw the
        sensitivity plots, never results."""
        return self.runs[self.runs["phase"].isin([TUNE, SWEEP])]

    @property
    def has_phases(self) -> bool:
        """True when any run carries a `phase` tag (a grid with a tuning protocol)."""
        return bool((self.runs["phase"] != "").any())


def _final(runs: pd.DataFrame) -> pd.Series:
    """FINISHED runs outside the tuning, sweep and anytime phases: results unless superseded."""
    return (runs["status"] == FINISHED) & ~runs["phase"].isin([TUNE, SWEEP, ANYTIME])


def _results(runs: pd.DataFrame) -> pd.Series:
    return _final(runs) & ~runs["superseded"]


def _superseded(runs: pd.DataFrame) -> pd.Series:
    """True for a FINISHED final run whose cell (task, scheduler, seed) has a FINISHED final run started later."""
    final = runs[_final(runs)]
    latest = final.sort_values("start_time", kind="stable").groupby(
        ["task", "scheduler", "seed"], dropna=False, sort=False).tail(1).index
    return runs.index.isin(final.index) & ~runs.index.isin(latest)


def require_results(runs: pd.DataFrame, experiment: str, source: str) -> pd.Series:
    """The mask of result runs; NoRunsError naming experiment and source when there is none."""
    finished = _results(runs)
    if not finished.any():
        tune = int((runs["phase"] == TUNE).sum())
        tuning = f", {tune} tune-phase runs, never results" if tune else ""
        raise NoRunsError(
            f"experiment {experiment!r} in tracking store {source!r} has no FINISHED runs "
            f"({len(runs) - tune} runs in other states{tuning})"
        )
    return finished


def action_name(code: float) -> str:
    """Name of a controller action code; codes outside the table read as `unknown(<code>)`, never fail."""
    if not math.isfinite(code):
        return "unknown(nan)"
    return ACTIONS.get(int(code), f"unknown({int(code)})") if code == int(code) else f"unknown({code})"


def load_runs(experiment: str, tracking_uri: str, results_required: bool = True) -> RunData:
    """Read all runs of `experiment` from the store at `tracking_uri`; raise NoRunsError if none FINISHED (with
    `results_required`; without, an experiment of tuning/sweep runs only, as a study part in progress, loads too)."""
    from mlflow.tracking import MlflowClient  # deferred: importing mlflow costs seconds

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise NoRunsError(f"experiment {experiment!r} not found in tracking store {tracking_uri!r}")
    # a grid's parent run (tag grid_parent) only groups the cell runs in the MLflow UI: it is not a result
    mlflow_runs = [r for r in schema.search_all(client, [found.experiment_id])
                   if not r.data.tags.get(schema.PARENT_TAG)]
    runs = pd.DataFrame([_run_row(r) for r in mlflow_runs], columns=RUN_COLUMNS)
    runs = runs.astype({"seed": "Int64", "max_epochs": "Int64", "steps_per_epoch": "Int64", "adaptive": bool})
    order = ["task", "scheduler", "seed", "phase", "run_id"]
    runs = runs.sort_values(order, kind="stable").reset_index(drop=True)
    runs["superseded"] = _superseded(runs)
    finished = require_results(runs, experiment, tracking_uri) if results_required else _results(runs)

    results = set(runs.loc[finished, "run_id"])
    epoch_rows, lr_rows, action_rows = [], [], []
    for run in mlflow_runs:
        if run.info.run_id not in results:
            continue
        run_id, logged = run.info.run_id, run.data.metrics.keys()
        metric = run.data.tags.get("metric", "")
        epoch_names = [*EPOCH_METRICS, f"train_{metric}", f"val_{metric}", f"train_eval_{metric}"]
        epochs = dict(_history(client, run_id, EPOCH_KEY)) if EPOCH_KEY in logged else {}
        for name in (n for n in epoch_names if n in logged):
            points = _points(client, run_id, name)
            epoch_rows += [(run_id, epoch, name, value) for epoch, value in by_epoch(points, epochs)]
        if schema.LR in logged:
            lr_rows += [(run_id, step, value) for step, value in _history(client, run_id, schema.LR)]
        if schema.CONTROLLER_ACTION in logged:
            factors = (
                dict(_history(client, run_id, schema.CONTROLLER_FACTOR)) if schema.CONTROLLER_FACTOR in logged else {}
            )
            action_rows += [
                (run_id, step, code, action_name(code), factors.get(step, math.nan))
                for step, code in _history(client, run_id, schema.CONTROLLER_ACTION)
            ]

    return RunData(
        experiment=experiment,
        tracking_uri=tracking_uri,
        runs=runs,
        epochs=_frame(epoch_rows, ["run_id", "epoch", "name", "value"], sort_by=["run_id", "name", "epoch"]),
        lr=_frame(lr_rows, ["run_id", "step", "value"], sort_by=["run_id", "step"]),
        actions=_frame(
            action_rows, ["run_id", "step", "code", "action", "factor"], sort_by=["run_id", "step"]
        ),
    )


def _points(client: Any, run_id: str, key: str) -> list[tuple[int, int, float]]:
    """(step, timestamp, value) of every logged value of `key`."""
    return [(m.step, m.timestamp, float(m.value)) for m in client.get_metric_history(run_id, key)]


def _history(client: Any, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) sorted by step; if a step was logged twice (e.g. a resumed run) the latest write wins."""
    return by_epoch(_points(client, run_id, key), {})


def epoch_of_step(step: int, epochs: dict[int, float]) -> int:
    """The epoch an epoch metric logged at `step` belongs to: the run's `epoch` metric at that step (the global-step
    convention), else the step itself (runs logged with step = epoch number)."""
    return int(epochs[step]) if step in epochs else step


def by_epoch(points: Iterable[tuple[int, int, float]], epochs: dict[int, float]) -> list[tuple[int, float]]:
    """(epoch, value) sorted by epoch from (step, timestamp, value) points, steps read through `epoch_of_step`; an
    epoch logged twice (a resumed run replaying it) keeps its latest write (then the last logged, on equal times)."""
    ordered = sorted(((epoch_of_step(step, epochs), ts, value) for step, ts, value in points),
                     key=lambda p: (p[0], p[1]))
    return list({epoch: value for epoch, _, value in ordered}.items())


def _run_row(run: Any) -> dict[str, Any]:
    tags, values = run.data.tags, run.data.metrics
    metric = tags.get("metric", "")
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name or "",
        "status": run.info.status,
        "task": tags.get(schema.TASK, ""),
        # a learned controller warm-started from another run's policy is a different treatment: label it apart
        "scheduler": tags.get(schema.SCHEDULER, "") + (" +warm" if tags.get("warm_start") else ""),
        "seed": _number(tags.get(schema.SEED), int),
        "adaptive": tags.get("adaptive", "").strip().lower() == "true",
        "metric": metric,
        "mode": tags.get("metric_mode", ""),
        "threshold": _number(tags.get("threshold"), float),
        "max_epochs": _number(tags.get("max_epochs"), int),
        "steps_per_epoch": _number(tags.get("steps_per_epoch"), int),
        "test_loss": values.get("test_loss", math.nan),
        "test_metric": values.get(f"test_{metric}", math.nan),
        # a task's reference forecast on the same test targets (e.g. seasonal naive), when the task logs one
        "test_baseline": values.get(f"test_naive_{metric}", math.nan),
        "warm_start": tags.get("warm_start", ""),
        "error": tags.get("error", ""),
        "run_dir": tags.get("run_dir", ""),
        "diverged_tag": tags.get("diverged", "").strip().lower() == "true",  # the runner's own verdict
        "phase": tags.get(schema.PHASE, ""),
        "tuning_budget": tags.get("tuning_budget", ""),
        "start_time": run.info.start_time or 0,  # ms since the epoch
        "end_time": _end_time(run),
        "superseded": False,  # set across runs by `load_runs`
        # the verdicts' equivalence margin the task declared (absolute, or relative to the best baseline)
        "equivalence_margin": _number(tags.get("equivalence_margin"), float),
        "margin_relative": tags.get("margin_relative", "").strip().lower() == "true",
        # the initial LR (or a learning-rate-free optimizer's multiplier) and the last validation value: what a
        # sweep's sensitivity plot needs of every run, histories or not
        "lr": _number(run.data.params.get(_lr_param(run.data.params)), float),
        "lr_param": _lr_param(run.data.params),
        "final_val": values.get(f"val_{metric}", math.nan),
        "budget_fraction": _number(tags.get(schema.BUDGET_FRACTION), float),  # anytime runs: their share of the budget
        **{name: tags.get(name, "") for name in PROVENANCE_TAGS},
    }


def _end_time(run: Any) -> float:
    """When the run ended (ms since the epoch), NaN if unknown: still running, or imported from a bundle that did not
    record it (an imported run's own end is the moment of the import; `import_bundle` keeps the original end in the
    tag `source_end_time`)."""
    if "imported_from" in run.data.tags:
        return _number(run.data.tags.get("source_end_time"), float)
    return float(run.info.end_time) if run.info.end_time else math.nan


def _lr_param(params: dict[str, str]) -> str:
    """The parameter that sets a run's step size: a learning-rate-free optimizer's `lr_multiplier`, else `lr`."""
    return "lr_multiplier" if "lr_multiplier" in params else schema.LR


def _number(text: str | None, kind: type) -> Any:
    try:
        return kind(text)
    except (TypeError, ValueError):
        return None if kind is int else math.nan


def _frame(rows: Iterable[tuple], columns: list[str], sort_by: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=columns)
    return frame.sort_values(sort_by, kind="stable").reset_index(drop=True)
