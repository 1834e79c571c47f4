"""The tracking schema: the names of the tags and metrics every run carries in the MLflow store, written by the
runner, the callbacks and the grid runner and read by the reports and the watch page, and the one query that
reads a store's runs (`search_all`). A name written or read in more than one module lives here, so a writer and
its readers cannot drift apart. Action codes (the values of `CONTROLLER_ACTION`) are `schedulers.base.ACTIONS`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# Run tags: identity of a run (what it trained) -------------------------------------------------------------------
TASK = "task"
SCHEDULER = "scheduler"
SEED = "seed"
PHASE = "phase"  # a grid cell's phase: "final", or tune/sweep/anytime runs that are never results
CELL = "cell"  # a grid cell's key
CONFIG_HASH = "config_hash"  # hash of the resolved config (`runner.config_hash`): a grid cell's identity
BUDGET_FRACTION = "budget_fraction"  # anytime runs: their share of the training budget
PARENT_TAG = "grid_parent"  # a grid's parent run: it has no process of its own, so it is never an orphan

# Run tags: provenance (where and from what it ran) ---------------------------------------------------------------
GIT_COMMIT = "git_commit"
DATA_CHECKSUM = "data_checksum"
HOST = "host"  # the machine the run's process ran on
PID = "pid"  # that process, on `HOST`: checked to find orphaned runs

# Metric keys: per optimizer step (at the global step) ------------------------------------------------------------
LR = "lr"  # the step size of the first parameter group (`lr/pg<i>` for the others); also the LR param's name
CONTROLLER_ACTION = "controller_action"  # a decision's code, from `schedulers.base.ACTIONS`
CONTROLLER_FACTOR = "controller_factor"  # the factor the decision applied to the LR
HUMAN_LR = "human_lr"  # an LR set by hand from the watch page

# Metric keys: per epoch (at the global step of the epoch's end, `callbacks.epoch_metrics.EpochMetrics`) -----------
EPOCH = "epoch"  # the epoch number, 1-based
EPOCH_TIME_S = "epoch_time_s"
EPOCH_LR = "epoch_lr"
TRAIN_LOSS = "train_loss"

PAGE_SIZE = 1000  # runs per page of a store query


def search_all(client: Any, experiment_ids: list[str], filter_string: str = "") -> Iterator[Any]:
    """Every run matching `filter_string` (MLflow's search syntax; every run if empty) in these experiments,
    page by page, from an `MlflowClient`."""
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string, max_results=PAGE_SIZE, page_token=token)
        yield from page
        token = page.token
        if not token:
            return
