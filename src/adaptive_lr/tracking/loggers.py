"""Lean Lightning loggers: MLflow metrics go out in batches from a writer thread, TensorBoard queues its events.

Measured here (SQLite store, resolved config as params): one `log_batch` costs a fixed part (DEVELOPERS.md) plus
~0.12-0.2 ms per metric (~130-230 ms for a full batch of 1000), and Lightning's stock loggers write on every
`log_metrics`/`save` call. A TensorBoard `add_scalar` cost ~0.1 ms with SummaryWriter's default 10-event queue,
where the training thread waits for the event writer thread. These keep every value but keep the writes off the
training thread's critical path.
"""

from __future__ import annotations

import time
from argparse import Namespace
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from adaptive_lr.compat import event_file_writer

MLFLOW_BATCH_LIMIT = 1000  # MLflow's cap on metrics per log_batch call
TB_MAX_QUEUE = 1000  # TensorBoard events queued before `add_scalar` waits for the event writer thread
TB_HAND_OVER = 100  # TensorBoard events built before they go to the event writer thread together
#: TensorBoard groups charts by a tag's first `/` part: `<group>_<name>` is written as `<group>/<name>`
TB_GROUPS = ("train", "val", "test", "controller")
#: metrics whose TensorBoard tag is not `<group>/<rest of the name>`
TB_TAGS = {"lr": "lr/pg0", "epoch_lr": "lr/epoch_start", "human_lr": "controller/human_lr", "epoch": "train/epoch",
           "epoch_time_s": "train/epoch_time_s", "nonfinite_steps": "train/nonfinite_steps",
           "diverged_epoch": "train/diverged_epoch"}


def tensorboard_tag(name: str) -> str:
    """The TensorBoard tag of a logged metric, grouped: `lr/pg<i>` (`lr` is group 0's), `lr/epoch_start`,
    `train/loss`, `train/acc`, `train/epoch_time_s`, `val/loss`, `test/acc`, `controller/action`, ...; a name that
    already holds a `/` (`lr/pg1`) or belongs to no group is kept. The views write under `views/` themselves."""
    if name in TB_TAGS:
        return TB_TAGS[name]
    group, _, rest = name.partition("_")
    return f"{group}/{rest}" if group in TB_GROUPS and rest and "/" not in name else name


class MLflowRunLogger(Logger):
    """Logs metrics into an existing MLflow run (created and closed by `tracking.run.TrackedRun`).

    Metrics are buffered and handed, in batches of at most `MLFLOW_BATCH_LIMIT`, to one writer thread that calls
    `log_batch` (in order), when the buffer holds a full batch or when `flush_every_s` seconds have passed at a
    `save()` point: `log_metrics` never waits for the store. `flush()` (and `finalize`) writes the rest and waits
    until MLflow holds every metric logged so far; a write that failed raises there (or at the next hand-over), so
    no metric is lost silently. It never sets the run's status: the owner of the run marks it FINISHED only after
    everything (test metrics, artifacts) is written and flushed. `EpochMetrics` flushes it at every epoch end, before
    that epoch's checkpoint is written, so a killed run keeps every epoch it finished.

    A resumed run replays, identically, what was logged between its checkpoint and the interruption: `skip_stored`
    makes the logger drop those values instead of storing them twice.
    """

    def __init__(self, tracking_uri: str, run_id: str, flush_every_s: float = 10.0) -> None:
        super().__init__()
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri)
        self.run_id = run_id
        self.flush_every_s = flush_every_s
        self._buffer: list[Any] = []
        self._last_flush = time.monotonic()
        self._writer: ThreadPoolExecutor | None = None  # started at the first hand-over
        self._pending: list[Future] = []
        self._stored: Counter[tuple[str, int]] = Counter()  # (key, step) values already in the store (resume)

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str:
        return self.run_id

    @property
    def experiment(self) -> Any:
        return self.client

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Params are the resolved config, logged once by the run owner; Lightning's copy would duplicate them."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        ts, step = int(time.time() * 1000), step or 0
        if self._stored:
            metrics = {k: v for k, v in metrics.items() if not self._already_stored(k, step)}
        self._buffer.extend(Metric(key=k, value=float(v), timestamp=ts, step=step) for k, v in metrics.items())
        if len(self._buffer) >= MLFLOW_BATCH_LIMIT:
            self._hand_over()

    def skip_stored(self) -> int:
        """Count the values the run already holds per (key, step); as many values logged again at that key and step
        are dropped (a resumed run logs the same values as the interrupted one did). Returns the count."""
        for key in self.client.get_run(self.run_id).data.metrics:
            self._stored.update((key, m.step) for m in self.client.get_metric_history(self.run_id, key))
        return self._stored.total()

    def _already_stored(self, key: str, step: int) -> bool:
        left = self._stored.pop((key, step), 0)
        if left > 1:
            self._stored[(key, step)] = left - 1
        return left > 0

    @rank_zero_only
    def save(self) -> None:
        if self._buffer and time.monotonic() - self._last_flush >= self.flush_every_s:
            self._hand_over()

    @rank_zero_only
    def flush(self) -> None:
        """Write every buffered metric and wait until the writer thread has stored all of them."""
        self._hand_over()
        self.wait()

    def wait(self) -> None:
        """Block until every batch handed over so far is stored; re-raise the first failed write."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def _hand_over(self) -> None:
        """Queue the buffer for the writer thread in batches (returns at once), after reporting failed writes."""
        done = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if not f.done()]
        for future in done:
            future.result()  # a failed earlier write raises here, on the training thread
        if self._buffer and self._writer is None:  # one thread: batches are stored in the order they were logged
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-writer")
        while self._buffer:
            chunk, self._buffer = self._buffer[:MLFLOW_BATCH_LIMIT], self._buffer[MLFLOW_BATCH_LIMIT:]
            self._pending.append(self._writer.submit(self.client.log_batch, self.run_id, metrics=chunk))
        self._last_flush = time.monotonic()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.flush()


class LeanTensorBoardLogger(TensorBoardLogger):
    """TensorBoardLogger whose `save()` (called by Lightning after every log) does not rewrite hparams.yaml.

    The SummaryWriter already flushes in the background; `finalize` flushes and closes it. Its event queue holds
    `TB_MAX_QUEUE` events (SummaryWriter's default, 10, made the training thread wait for the writer thread).
    `log_metrics` makes one event per record (a summary with one value per metric, as TensorBoard's own writers
    do for several tags at one step) instead of Lightning's one per metric, and hands events to the writer thread
    `TB_HAND_OVER` at a time (and at `finalize`), each with the wall time it was logged at. Measured on the MNIST
    MLP, a 4-metric record handed over as it was logged cost the training thread ~0.2 ms, handed over in batches
    ~0.1 ms (the writer thread, woken for every event, runs Python while holding the GIL: its checksum alone is
    ~10 us per event); building one costs ~0.02 ms.
    TensorBoard itself only flushes the event file every 2 minutes, so the hand-over adds no visible delay.
    """

    def __init__(self, save_dir: str, **kwargs: Any) -> None:
        kwargs.setdefault("max_queue", TB_MAX_QUEUE)
        super().__init__(save_dir=save_dir, name="", version="", default_hp_metric=False, **kwargs)
        self._events: list[tuple[Any, int | None, float]] = []  # (summary, step, wall time), not yet handed over
        self._tags: dict[str, str] = {}  # metric name -> its TensorBoard tag (`tensorboard_tag`), once per name

    def _tag(self, name: str) -> str:
        tag = self._tags.get(name)
        if tag is None:
            tag = self._tags[name] = tensorboard_tag(name)
        return tag

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        if any(isinstance(v, Mapping) for v in metrics.values()):  # grouped scalars: Lightning's add_scalars path
            self._hand_over()  # in order
            super().log_metrics(metrics, step)
            return
        # float(): tensors too
        values = [Summary.Value(tag=self._tag(k), simple_value=float(v)) for k, v in metrics.items()]
        self._events.append((Summary(value=values), step, time.time()))
        if len(self._events) >= TB_HAND_OVER:
            self._hand_over()

    def _hand_over(self) -> None:
        writer = event_file_writer(self.experiment)
        for summary, step, wall_time in self._events:
            writer.add_summary(summary, global_step=step, walltime=wall_time)
        self._events = []

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self._hand_over()
        super().finalize(status)

    @rank_zero_only
    def save(self) -> None:
        pass

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: Any = None) -> None:
        """The resolved config is stored beside the run; skip Lightning's hparams.yaml and hparams event."""

    @rank_zero_only
    def log_hparams_summary(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        """Write the run's HParams-plugin record (its settings and final metrics, e.g. the last validation and the
        test values, under their TensorBoard tags `val/acc`, `test/acc`, ...) into this run's event file, so
        TensorBoard's HParams tab lines up every run of a grid (`make tensorboard`)."""
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        self._hand_over()
        clean = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in hparams.items()}
        logged = set(self._tags)  # names already written as scalars
        tagged = {self._tag(k): float(v) for k, v in metrics.items()}
        experiment, start, end = hparams_summary(clean, tagged)
        writer = self.experiment.file_writer
        for summary in (experiment, start, end):
            writer.add_summary(summary)
        for name, value in metrics.items():  # the HParams tab reads each metric from a scalar of the same tag
            if name not in logged:
                self.experiment.add_scalar(self._tag(name), value)
        writer.flush()


@dataclass(frozen=True)
class LoggerParts:
    """What a `_partial_` entry of the `loggers` group (configs/loggers/default.yaml) is completed with: what exists
    only once the run does."""

    tracking_uri: str  # the run's MLflow store
    tracked: Any  # the open `TrackedRun` (its ID, its tags, flush on close)
    run_dir: Path  # the run's folder (a new one, or a resumed run's own)
    resumed: bool  # continuing a stored run: what it already logged is not logged twice


def mlflow_logger(run: LoggerParts, *, flush_every_s: float) -> MLflowRunLogger:
    """The run's MLflow logger, the store of record (first in the group): flushed when the run is closed, however it
    ends; a resumed run skips the steps it already stored."""
    made = MLflowRunLogger(run.tracking_uri, run.tracked.run_id, flush_every_s)
    run.tracked.flush_on_close(made)
    if run.resumed:
        made.skip_stored()
    return made


def tensorboard_logger(run: LoggerParts, *, enabled: bool, links: str | None, root: str, experiment: str, task: str,
                       scheduler: str, seed: int) -> LeanTensorBoardLogger | None:
    """With `enabled`, TensorBoard events in the run folder, linked under `links` (None: `<root>/tensorboard`) as
    `<experiment>/<task>/<scheduler>/seed<N>` (tracking.tb_names) so TensorBoard shows short run names."""
    if not enabled:
        return None
    from adaptive_lr.tracking import schema
    from adaptive_lr.tracking.tb_names import EVENTS, link_run, run_name

    tags = run.tracked.tags
    link_run(Path(links or Path(root) / "tensorboard"), experiment,
             run_name(task, scheduler, seed, tags.get(schema.CELL, ""), tags.get(schema.PHASE, "")),
             run.run_dir / EVENTS)
    return LeanTensorBoardLogger(str(run.run_dir / EVENTS))
