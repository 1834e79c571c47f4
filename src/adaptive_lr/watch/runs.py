"""Which run the page watches, and reading its metrics from its MLflow store as they arrive."""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adaptive_lr.checks import is_number
from adaptive_lr.config import ConfigError
from adaptive_lr.tracking import schema
from adaptive_lr.watch import readers
from adaptive_lr.watch.readers import Points

DECISION_KEYS = (schema.CONTROLLER_ACTION, schema.CONTROLLER_FACTOR, readers.HUMAN_KEY)


@dataclass(frozen=True)
class WatchedRun:
    """A run the page follows: its MLflow identity, its folder on this machine (None if elsewhere), its tags and
    its stored config (`config.json`; empty when the folder is not here)."""

    run_id: str
    tracking_uri: str
    run_dir: Path | None
    name: str
    tags: dict[str, str]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def metric(self) -> str:
        return self.tags.get("metric", "acc")

    @property
    def steps_per_epoch(self) -> int:
        value = self.tags.get("steps_per_epoch", "")
        return int(value) if value.isdigit() else 0

    @property
    def optimizer(self) -> str:
        target = str(self.config.get("optimizer", {}).get("_target_", "?"))
        return target.rsplit(".", 1)[-1]

    @property
    def label(self) -> str:
        t = self.tags
        return (f"{t.get('task', '?')} · {t.get('scheduler', '?')} · {self.optimizer} · seed {t.get('seed', '?')}"
                + (f" · grid {t['experiment']}" if t.get("experiment", "adhoc") != "adhoc" else ""))

    @property
    def start_lr(self) -> float:
        """The starting LR the policy's relative bounds refer to: the optimizer's configured `lr`, else the run's."""
        for value in (self.config.get("optimizer", {}).get("lr"), self.config.get("lr")):
            if is_number(value) and value > 0:
                return float(value)
        return 0.01

    def lr_range(self) -> tuple[float, float]:
        """The slider's range (`readers.slider_bounds`)."""
        live = self.config.get("live_control", {})
        return readers.slider_bounds(self.tags.get("lr_bounds", ""), self.start_lr, float(live.get("min_lr", 1e-7)),
                             float(live.get("max_lr", 10.0)))

    @property
    def controllable(self) -> bool:
        """Whether the run was started with live control (`live_control.enabled`, the default)."""
        return bool(self.config.get("live_control", {}).get("enabled", True))


def resolve(ref: str, uri_for_ids: Callable[[], str]) -> WatchedRun:
    """The run named by a run folder or an MLflow run ID (looked up in `uri_for_ids()`, the configured store).
    An unknown run, or a grid's parent run (which has no curves of its own), is a ConfigError."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from adaptive_lr.tracking.run import stored_identity

    run_id, uri = stored_identity(Path(ref)) if Path(ref).is_dir() else (ref, uri_for_ids())
    try:
        record = MlflowClient(uri).get_run(run_id)
    except MlflowException as err:
        raise ConfigError(f"{ref!r} is neither a run folder nor a run ID in {uri}") from err
    tags = dict(record.data.tags)
    if tags.get(schema.PARENT_TAG):
        raise ConfigError(f"run {run_id} is the parent run of grid {tags.get('experiment', '?')!r}: watch one of "
                          "its cells (a run folder under runs/<grid>/ or a cell's run ID)")
    folder = Path(tags["run_dir"]) if tags.get("run_dir") and Path(tags["run_dir"]).is_dir() else None
    config: dict[str, Any] = {}
    if folder is not None and (folder / "config.json").is_file():
        config = json.loads((folder / "config.json").read_text())
    return WatchedRun(run_id, uri, folder, record.info.run_name or run_id, tags, config)


@dataclass
class Progress:
    """One poll of a run: its MLflow status and every history the page plots."""

    status: str
    histories: dict[str, Points]
    alive: bool = True  # False: marked RUNNING but its process on this host has ended
    changed: bool = True  # the histories differ from the previous poll's
    epochs_on_steps: bool = False  # the run logs `epoch` as a metric: its epoch metrics are on the global step


class MlflowFeed:
    """Reads a run's histories from its store. A poll is one `get_run`; only when the run's latest metric values
    changed (the run writes at every epoch end, `epoch_time_s` included, which always moves) is every plotted
    history read again, one `get_metric_history` per key."""

    def __init__(self, run: WatchedRun) -> None:
        from mlflow.tracking import MlflowClient

        self.run = run
        self.client = MlflowClient(run.tracking_uri)
        wanted = [k for pair in readers.metric_keys(run.metric).values() for k in pair]
        self._wanted = {*wanted, *DECISION_KEYS}
        self._latest: dict[str, float] | None = None
        self._histories: dict[str, Points] = {}

    def poll(self) -> Progress:
        from adaptive_lr.tracking.run import process_alive

        record = self.client.get_run(self.run.run_id)
        latest = dict(record.data.metrics)
        changed = latest != self._latest
        if changed:
            keys = set(latest)
            histories = {}
            for key in sorted(keys & self._wanted | set(readers.lr_keys(keys))):
                history = self.client.get_metric_history(self.run.run_id, key)
                histories[key] = readers.ordered([(m.step, m.value) for m in history])
            self._latest, self._histories = latest, histories
        tags, status = record.data.tags, record.info.status
        pid = tags.get(schema.PID, "")
        alive = not (status == "RUNNING" and tags.get(schema.HOST) == platform.node() and pid.isdigit()
                     and not process_alive(int(pid)))
        return Progress(status, self._histories, alive, changed, readers.EPOCH_KEY in latest)
