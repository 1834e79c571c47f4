"""The parameter view's snapshot of one small layer, the data behind the watch page's bar view.

While a watch page is open on a run, it touches `<run>/watching` at every poll (its heartbeat). At each of its
logging steps (`viz.params.every_n_steps`) `ParamView` checks that file (one `stat`) and, if it was touched within
`WATCH_TTL_S`, replaces `<run>/viz/params/NNN/layer.npz` (atomically: the page never reads half a file) with the
panel layer's values before the update, the update about to be applied at that step and the per-element
effective LR of that update, flattened. One file, overwritten: nothing grows over a run. Unwatched, the view
writes nothing more than it did before; with the view off there is nothing at all.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LAYER_FILE = "layer.npz"
PARAMS_VIEW_DIR = Path("viz") / "params"
WATCH_FILE = "watching"  # in the run folder: touched by an open watch page at every poll
WATCH_TTL_S = 30.0  # a heartbeat older than this: no page is watching any more


@dataclass(frozen=True)
class LayerSnapshot:
    step: int  # the update's index (0: the first update)
    name: str  # parameter name, e.g. `model.net.2.weight`
    shape: tuple[int, ...]
    values: np.ndarray  # before the update, flattened
    update: np.ndarray  # the update applied at `step`
    effective_lr: np.ndarray | None  # per element; None when the optimizer defines none


def watched(run_dir: Path, ttl_s: float = WATCH_TTL_S) -> bool:
    """Whether a watch page touched the run's heartbeat within `ttl_s` (one `stat`; the view's side)."""
    try:
        return time.time() - (Path(run_dir) / WATCH_FILE).stat().st_mtime < ttl_s
    except OSError:
        return False


def heartbeat(run_dir: Path) -> None:
    """Tell the run's views that a page is watching (the page's side, at every poll)."""
    (Path(run_dir) / WATCH_FILE).touch()


def _flat(tensor: object) -> np.ndarray:
    """A torch tensor (any device) or an array as a flat float32 array."""
    detach = getattr(tensor, "detach", None)
    if detach is not None:
        tensor = detach().float().cpu().numpy()  # host sync, at the view's logging cadence only
    return np.asarray(tensor, dtype=np.float32).reshape(-1)


def write_layer(path: Path, step: int, name: str, values: object, update: object,
                effective_lr: object | None) -> None:
    """Replace `path` with the snapshot (the view's side)."""
    path = Path(path)
    shape = np.asarray(tuple(getattr(values, "shape", np.shape(values))), dtype=np.int64)
    arrays = {"step": np.int64(step), "name": np.str_(name), "shape": shape, "values": _flat(values),
              "update": _flat(update)}
    if effective_lr is not None:
        arrays["effective_lr"] = _flat(effective_lr)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_layer(path: Path) -> LayerSnapshot | None:
    """The snapshot in `path`; None when there is none (not written yet, or unreadable)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            lr = data["effective_lr"] if "effective_lr" in data.files else None
            return LayerSnapshot(int(data["step"]), str(data["name"]), tuple(int(n) for n in data["shape"]),
                                 data["values"].copy(), data["update"].copy(), None if lr is None else lr.copy())
    except (OSError, ValueError, KeyError, EOFError):
        return None


def latest_layer_file(run_dir: Path) -> Path | None:
    """The snapshot of the run's latest fit (`viz/params/NNN/`, highest NNN that has one; a resumed run opens a new
    NNN), or None when the run has no parameter view."""
    parent = Path(run_dir) / PARAMS_VIEW_DIR
    if not parent.is_dir():
        return None
    folders = sorted((p for p in parent.iterdir() if p.name.isdigit() and (p / LAYER_FILE).is_file()),
                     key=lambda p: int(p.name))
    return folders[-1] / LAYER_FILE if folders else None
