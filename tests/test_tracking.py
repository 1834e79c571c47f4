"""Tracking: `MLflowRunLogger` writes metrics in few batches, off the training thread, and loses none; where the
MLflow store lives."""

from __future__ import annotations

import threading
import types

import pytest

from adaptive_lr.tracking import loggers
from adaptive_lr.tracking.loggers import MLFLOW_BATCH_LIMIT, MLflowRunLogger
from adaptive_lr.tracking.run import resolve_tracking_uri


class SpyClient:
    """Stands in for MlflowClient: records every log_batch call."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self.batches: list[tuple[str, list]] = []

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        self.batches.append((run_id, list(metrics)))

    def logged(self) -> list[tuple[str, int, float]]:
        return [(m.key, m.step, m.value) for _, batch in self.batches for m in batch]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    fake_time = types.SimpleNamespace(monotonic=clock.monotonic, time=lambda: 1.7e9)
    monkeypatch.setattr(loggers, "time", fake_time)
    return clock


@pytest.fixture
def make_logger(monkeypatch):
    monkeypatch.setattr("mlflow.tracking.MlflowClient", SpyClient)

    def make(flush_every_s: float = 10.0) -> MLflowRunLogger:
        logger = MLflowRunLogger("sqlite:///unused.db", "run-1", flush_every_s)
        assert isinstance(logger.client, SpyClient)
        return logger

    return make


def test_many_small_logs_become_few_full_batches(make_logger, clock):
    logger = make_logger()
    sent = [("loss", step, float(step)) for step in range(2500)]

    for key, step, value in sent:
        logger.log_metrics({key: value}, step=step)

    logger.wait()  # the full batches went to the writer thread; the rest stays buffered
    assert [len(b) for _, b in logger.client.batches] == [MLFLOW_BATCH_LIMIT, MLFLOW_BATCH_LIMIT]
    logger.flush()
    assert [len(b) for _, b in logger.client.batches] == [1000, 1000, 500]
    assert logger.client.logged() == sent  # every value, in order, with its step
    assert {run_id for run_id, _ in logger.client.batches} == {"run-1"}
    logger.flush()
    assert len(logger.client.batches) == 3  # an empty buffer is not written


def test_one_large_log_is_split_into_batches_of_at_most_the_limit(make_logger, clock):
    logger = make_logger()
    record = {f"m{i}": float(i) for i in range(2 * MLFLOW_BATCH_LIMIT + 1)}

    logger.log_metrics(record, step=7)

    logger.wait()
    assert [len(b) for _, b in logger.client.batches] == [1000, 1000, 1]
    assert logger.client.logged() == [(k, 7, v) for k, v in record.items()]


def test_save_flushes_only_after_flush_every_s(make_logger, clock):
    logger = make_logger(flush_every_s=10.0)
    logger.log_metrics({"lr": 0.1, "val_loss": 0.5}, step=1)

    logger.save()
    clock.now += 9.9
    logger.save()
    logger.wait()
    assert logger.client.batches == []

    clock.now += 0.2
    logger.save()
    logger.wait()
    assert logger.client.logged() == [("lr", 1, 0.1), ("val_loss", 1, 0.5)]

    logger.log_metrics({"lr": 0.2}, step=2)
    clock.now += 5
    logger.save()  # the interval restarts at every flush
    logger.wait()
    assert len(logger.client.batches) == 1
    logger.finalize("success")
    assert logger.client.logged()[-1] == ("lr", 2, 0.2)
    assert len(logger.client.batches) == 2


class GatedClient(SpyClient):
    """A store whose writes block until `gate` opens (a slow SQLite or a remote server), or fail with `error`."""

    def __init__(self, tracking_uri: str) -> None:
        super().__init__(tracking_uri)
        self.gate, self.error = threading.Event(), None
        self.threads: set[str] = set()

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        self.threads.add(threading.current_thread().name)
        assert self.gate.wait(timeout=30)
        if self.error is not None:
            raise self.error
        super().log_batch(run_id, metrics)


def test_a_full_batch_is_written_by_the_writer_thread_while_training_goes_on(monkeypatch, clock):
    monkeypatch.setattr("mlflow.tracking.MlflowClient", GatedClient)
    logger = MLflowRunLogger("sqlite:///unused.db", "run-1")
    sent = [("loss", step, float(step)) for step in range(MLFLOW_BATCH_LIMIT + 5)]

    for key, step, value in sent:  # returns although the store has not written anything yet
        logger.log_metrics({key: value}, step=step)
    assert logger.client.batches == []

    logger.client.gate.set()
    logger.flush()  # waits for the batch in flight, then writes the last 5
    assert logger.client.logged() == sent
    assert [len(b) for _, b in logger.client.batches] == [MLFLOW_BATCH_LIMIT, 5]
    assert logger.client.threads and threading.current_thread().name not in logger.client.threads


def test_a_failed_write_raises_at_the_next_flush_instead_of_losing_metrics(monkeypatch, clock):
    monkeypatch.setattr("mlflow.tracking.MlflowClient", GatedClient)
    logger = MLflowRunLogger("sqlite:///unused.db", "run-1")
    logger.client.error = RuntimeError("database is locked")
    logger.client.gate.set()
    logger.log_metrics({f"m{i}": 1.0 for i in range(MLFLOW_BATCH_LIMIT)}, step=1)  # handed over, fails there

    with pytest.raises(RuntimeError, match="database is locked"):
        logger.flush()


def test_step_none_is_logged_as_step_zero(make_logger, clock):
    logger = make_logger()
    logger.log_metrics({"test_acc": 0.9})
    logger.finalize("failed")  # a failing run still gets what was buffered
    assert logger.client.logged() == [("test_acc", 0, 0.9)]


def test_tracking_uri_explicit_then_env_then_project_sqlite(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_tracking_uri("file:///explicit", tmp_path / "a") == "file:///explicit"
    assert resolve_tracking_uri(None, tmp_path / "b") == "http://env:5000"
    assert not (tmp_path / "b").exists()

    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_tracking_uri(None, tmp_path / "c") == f"sqlite:///{(tmp_path / 'c').resolve()}/mlflow.db"
    assert (tmp_path / "c").is_dir()


def test_tensorboard_records_are_one_event_each_and_all_reach_the_file(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from adaptive_lr.tracking.loggers import TB_HAND_OVER, LeanTensorBoardLogger

    logger = LeanTensorBoardLogger(str(tmp_path))
    n = TB_HAND_OVER + 3  # one hand-over to the event writer, three left for finalize
    for step in range(n):
        logger.log_metrics({"controller_action": 3.0, "controller_factor": 1.0 + step / 100}, step=step)
    assert len(logger._events) == 3
    logger.finalize("success")

    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [e.step for e in acc.Scalars("controller/factor")] == list(range(n))  # TensorBoard's grouped tags
    assert [e.value for e in acc.Scalars("controller/factor")] == pytest.approx([1 + s / 100 for s in range(n)])
    assert len(acc.Scalars("controller/action")) == n
    wall = [e.wall_time for e in acc.Scalars("controller/factor")]
    assert wall == sorted(wall)  # each event keeps the time it was logged at


def test_tensorboard_tags_are_grouped_by_what_they_measure():
    from adaptive_lr.tracking.loggers import tensorboard_tag

    assert {name: tensorboard_tag(name) for name in (
        "lr", "lr/pg1", "epoch_lr", "train_loss", "train_acc", "train_eval_acc", "val_loss", "val_naive_mse",
        "test_acc", "controller_action", "controller_factor", "human_lr", "epoch", "epoch_time_s",
        "nonfinite_steps", "something")} == {
        "lr": "lr/pg0", "lr/pg1": "lr/pg1", "epoch_lr": "lr/epoch_start", "train_loss": "train/loss",
        "train_acc": "train/acc", "train_eval_acc": "train/eval_acc", "val_loss": "val/loss",
        "val_naive_mse": "val/naive_mse", "test_acc": "test/acc", "controller_action": "controller/action",
        "controller_factor": "controller/factor", "human_lr": "controller/human_lr", "epoch": "train/epoch",
        "epoch_time_s": "train/epoch_time_s", "nonfinite_steps": "train/nonfinite_steps", "something": "something"}


def test_one_line_per_epoch_when_stdout_is_not_a_terminal():
    import io

    from adaptive_lr.callbacks.epoch_metrics import EpochMetrics
    from adaptive_lr.tracking.progress import EpochLines, RunProgressBar, epoch_line, progress_callback

    record = {"epoch": 3.0, "train_loss": 0.21137, "val_loss": 0.19321, "train_acc": 0.94021, "val_acc": 0.94991,
              "epoch_time_s": 1.234, "epoch_lr": 0.01}
    assert epoch_line(record, 20, 0.005) == ("epoch 3/20 · train_loss 0.2114 · val_loss 0.1932 · train_acc 0.9402 "
                                             "· val_acc 0.9499 · lr 0.005 · 1.2 s")
    assert isinstance(progress_callback(EpochMetrics(), 17, io.StringIO()), EpochLines)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    bar = progress_callback(EpochMetrics(), 340, Terminal())
    assert isinstance(bar, RunProgressBar) and bar.refresh_rate == 17  # about 20 updates an epoch


def test_git_commit_names_the_repository_of_the_running_code_not_the_working_folder(tmp_path, monkeypatch):
    from adaptive_lr.config import PROJECT_ROOT
    from adaptive_lr.tracking.run import git_commit

    expected = git_commit(PROJECT_ROOT)
    monkeypatch.chdir(tmp_path)  # a folder outside any git repository (a grid driven from elsewhere)
    assert git_commit() == expected
    if (PROJECT_ROOT / ".git").exists():
        assert expected != "unknown"
