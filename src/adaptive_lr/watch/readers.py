"""From what a run writes to what the watch page plots: pure functions of metric histories and snapshots.

A history is a list of `(step, value)` in logging order, as `MlflowFeed` reads it from the run's MLflow store:
- `lr`, `lr/pg1`, ...: the LR each parameter group applies, on the global step (`LRControl`, every
  `logger.log_every_n_steps` steps and after every decision);
- epoch metrics (`train_loss`, `val_loss`, `train_<metric>`, `val_<metric>`): once per epoch, on the epoch number
  (1-based), or on the global step when the run also logs `epoch` as a metric; the page puts every curve on the
  global step, so an epoch's value sits at the step that ended it;
- `controller_action` (a code of `schedulers.base.ACTIONS`), `controller_factor` and, for a person's command,
  `human_lr`: one value per decision, on the global step.
The run's MLflow logger writes these at every epoch end (`EpochMetrics` flushes it), so the page, polling every
second, sees an epoch's values within about a second of that epoch's end.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from adaptive_lr.tracking import schema
from adaptive_lr.watch.layer_file import LayerSnapshot

Points = list[tuple[int, float]]  # (step, value), in logging order

EPOCH_KEY = schema.EPOCH  # a run that logs its epoch as a metric puts epoch metrics on the global step
HUMAN_KEY = schema.HUMAN_LR
_GROUP = re.compile(r"^lr/pg(\d+)$")


def lr_keys(keys: Iterable[str]) -> list[str]:
    """The LR keys among a run's metric keys, one per parameter group, in group order: `lr`, `lr/pg1`, ..."""
    keys = set(keys)
    groups = sorted((int(m.group(1)), k) for k in keys if (m := _GROUP.match(k)))
    return (["lr"] if "lr" in keys else []) + [k for _, k in groups]


def group_label(key: str) -> str:
    """`lr` -> `group 0`, `lr/pg3` -> `group 3`."""
    m = _GROUP.match(key)
    return f"group {m.group(1)}" if m else "group 0"


def metric_keys(metric: str) -> dict[str, tuple[str, str]]:
    """The epoch curves of each plot: losses, and the task metric (`acc`, `mse`, ...) on train and validation."""
    return {"loss": ("train_loss", "val_loss"), "metric": (f"train_{metric}", f"val_{metric}")}


def on_global_steps(points: Points, steps_per_epoch: int, epochs_on_steps: bool) -> Points:
    """Epoch-metric points on the global step: an epoch number `e` becomes `e * steps_per_epoch` (the step count
    at that epoch's end); points already on the global step (`epochs_on_steps`) are kept as they are."""
    if epochs_on_steps or steps_per_epoch <= 0:
        return list(points)
    return [(step * steps_per_epoch, value) for step, value in points]


def ordered(points: Sequence[tuple[int, float]]) -> Points:
    """By step, logging order kept among equal steps (MLflow returns a history in no promised order)."""
    return [(int(s), float(v)) for s, v in sorted(points, key=lambda p: p[0])]


def columns(points: Points, x: str = "step", y: str = "value") -> dict[str, list[Any]]:
    """A ColumnDataSource's data for a curve; non-finite values (a diverged loss) become NaN, a gap in the line."""
    return {x: [s for s, _ in points], y: [v if math.isfinite(v) else float("nan") for _, v in points]}


def tail(shown: Mapping[str, Sequence[Any]], new: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]] | None:
    """What to `stream` into a source that shows `shown` so that it shows `new`: the rows past the shown ones, or
    None when `new` does not extend `shown` (other columns, fewer rows, or a changed last row: the caller then
    replaces the data)."""
    n, m = _length(shown), _length(new)
    if set(shown) != set(new) or m < n:
        return None
    if n and not all(_same(shown[k][n - 1], new[k][n - 1]) for k in new):
        return None
    return {k: list(v[n:]) for k, v in new.items()}


def _length(data: Mapping[str, Sequence[Any]]) -> int:
    return len(next(iter(data.values()), []))


def _same(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def action_names(actions: Mapping[str, int]) -> dict[int, str]:
    """Code -> name of `schedulers.base.ACTIONS`."""
    return {code: name for name, code in actions.items()}


def lr_at(lrs: Points, step: int) -> float:
    """The LR logged last at or before `step` (the first logged one before any), NaN when none is logged."""
    if not lrs:
        return float("nan")
    steps = [s for s, _ in lrs]
    i = bisect.bisect_right(steps, step) - 1
    return lrs[max(i, 0)][1]


def decision_markers(actions: Points, factors: Points, lrs: Points, human: Points,
                     names: Mapping[int, str]) -> dict[str, list[Any]]:
    """One marker per controller decision: its step, the LR it left (a person's LR for a `human` command, else
    the group-0 LR logged at or before that step, which an epoch decision logs right after deciding), its action
    name and factor. The k-th factor belongs to the k-th action (they are logged in one record)."""
    human_steps = dict(human)
    rows: dict[str, list[Any]] = {"step": [], "lr": [], "action": [], "factor": []}
    for (step, code), (_, factor) in zip(actions, _padded(factors, len(actions)), strict=True):
        name = names.get(int(code), f"action {int(code)}")
        rows["step"].append(step)
        rows["lr"].append(human_steps.get(step, lr_at(lrs, step)) if name == "human" else lr_at(lrs, step))
        rows["action"].append(name)
        rows["factor"].append(factor)
    return rows


def _padded(points: Points, n: int) -> Points:
    return list(points[:n]) + [(0, float("nan"))] * (n - len(points))


def parse_bounds(text: str, start_lr: float) -> tuple[float, float] | None:
    """A run's `lr_bounds` tag (`[1e-06, 1]`, `[start x 0.0001, start x 100]`, or mixed) as numbers, relative
    sides taken against `start_lr`; None for an empty or unreadable tag (a policy without bounds)."""
    text = (text or "").strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    sides = [s.strip() for s in text[1:-1].split(",")]
    if len(sides) != 2:
        return None
    try:
        low, high = (start_lr * float(s.split("x", 1)[1]) if s.startswith("start") else float(s) for s in sides)
    except (ValueError, IndexError):
        return None
    return (low, high) if 0 < low < high else None


def slider_bounds(lr_bounds: str, start_lr: float, live_min: float, live_max: float) -> tuple[float, float]:
    """The LR range the page's slider spans: the run's policy bounds (`lr_bounds`) within the range a person's LR
    is clamped to (`live_control.min_lr/max_lr`); the latter alone for a policy without bounds (a fixed
    schedule)."""
    bounds = parse_bounds(lr_bounds, start_lr)
    if bounds is None:
        return live_min, live_max
    low, high = max(bounds[0], live_min), min(bounds[1], live_max)
    return (low, high) if low < high else (live_min, live_max)


def bar_columns(snapshot: LayerSnapshot, max_bars: int) -> dict[str, list[float]]:
    """The bar view's columns for the first `max_bars` elements of the layer: element index, value before the
    update, the update about to be applied, and the effective LR (NaN where the optimizer defines none) with the
    base its bars rise from on a log axis (half the smallest positive one)."""
    n = min(len(snapshot.values), max_bars)
    lr = snapshot.effective_lr[:n] if snapshot.effective_lr is not None else np.full(n, np.nan)
    positive = lr[np.isfinite(lr) & (lr > 0)]
    base = float(positive.min()) / 2 if positive.size else 1e-12
    return {"index": list(range(n)), "value": snapshot.values[:n].tolist(), "update": snapshot.update[:n].tolist(),
            "lr": lr.tolist(), "lr_base": [base] * n}


def bar_title(snapshot: LayerSnapshot, max_bars: int) -> str:
    shown = "" if len(snapshot.values) <= max_bars else f", first {max_bars} of {len(snapshot.values)} elements"
    return f"{snapshot.name} {tuple(snapshot.shape)} at step {snapshot.step}{shown}"


def last_step(histories: Mapping[str, Points]) -> int | None:
    """The highest step any LR history reached (the run's progress in optimizer steps)."""
    steps = [points[-1][0] for key, points in histories.items() if key in lr_keys(histories) and points]
    return max(steps) if steps else None
