"""Live LR control: a person steers a running run through a small control file in its run folder.

    adaptive-lr set-lr <run> 0.01       # hold the LR at 0.01 (clamped to the bounds)
    adaptive-lr scale-lr <run> 0.5      # hold it at half of what it is now
    adaptive-lr release-lr <run>        # hand control back to the run's scheduler

Each command rewrites `<run folder>/control.json` atomically with an increasing sequence number. The driver
(`LRControl`) polls the file's modification time before every optimizer step (one `stat`, microseconds) and reads
it only when it changed, so a command takes effect at the next step. An override wins over the automatic policy
until released: the policy keeps observing and deciding (its state stays consistent), but the applied LR is the
person's. Every override and release is logged as a `human` decision beside the automatic ones.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adaptive_lr.checks import require_int, require_positive
from adaptive_lr.errors import UserError

CONTROL_FILE = "control.json"
OPS = ("set", "scale", "release")


class LiveControlError(UserError, ValueError):
    """A bad command (its operation or value, a run folder that does not exist) or bad override bounds."""


@dataclass(frozen=True)
class Command:
    seq: int
    op: str
    value: float | None = None


def write_command(run_dir: Path, op: str, value: float | None = None) -> Command:
    """Append a command for the run in `run_dir` (the CLI's side); returns it with its sequence number."""
    if op not in OPS:
        raise LiveControlError(f"op must be one of {list(OPS)}, got {op!r}")
    if op != "release":
        require_positive("value", value, error=LiveControlError)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise LiveControlError(f"run folder {str(run_dir)!r} does not exist")
    path = run_dir / CONTROL_FILE
    seq = (read_command(path).seq if path.exists() else 0) + 1
    command = Command(seq, op, None if value is None else float(value))
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=CONTROL_FILE, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump({"seq": command.seq, "op": command.op, "value": command.value}, f)
    os.replace(tmp, path)  # atomic: the run never reads a half-written file
    return command


def read_command(path: Path) -> Command:
    data = json.loads(Path(path).read_text())
    return Command(int(data["seq"]), str(data["op"]), None if data.get("value") is None else float(data["value"]))


class LiveOverride:
    """The run's side: polls the control file, turns commands into an LR override within [min_lr, max_lr].

    `lr` is the overriding LR of the first param group (None: no override); further groups keep their ratio to the
    first. State (`applied_seq`, `lr`) is checkpointed by the driver, so a resumed run keeps a held LR. A driver
    polls before every `every_n_steps`-th step (one `stat()` each: ~5 us while the file does not exist, timeit;
    compare with the MNIST-MLP step time in `benchmarks/results.md` if done at every step).
    """

    def __init__(self, path: str | os.PathLike[str], min_lr: float = 1e-7, max_lr: float = 10.0,
                 every_n_steps: int = 1) -> None:
        self.path = Path(path)
        self.min_lr = require_positive("min_lr", min_lr, error=LiveControlError)
        self.max_lr = require_positive("max_lr", max_lr, error=LiveControlError)
        if self.max_lr <= self.min_lr:
            raise LiveControlError(f"max_lr must be above min_lr={min_lr:g}, got {max_lr!r}")
        self.every_n_steps = require_int("every_n_steps", every_n_steps, minimum=1, error=LiveControlError)
        self.applied_seq = 0
        self.lr: float | None = None
        self._mtime: int | None = None

    def poll(self, current_lr: float) -> Command | None:
        """The new command since the last poll (None if the file did not change), already applied to `lr`."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        if mtime == self._mtime:
            return None
        self._mtime = mtime
        try:
            command = read_command(self.path)
        except (OSError, ValueError, KeyError):
            return None  # not a command file (a person edited it by hand?): ignore, keep the last state
        if command.seq <= self.applied_seq or command.op not in OPS:
            return None
        self.applied_seq = command.seq
        if command.op == "release":
            self.lr = None
        else:
            target = command.value if command.op == "set" else current_lr * float(command.value)
            self.lr = min(max(float(target), self.min_lr), self.max_lr)
        return command

    def state_dict(self) -> dict[str, Any]:
        return {"applied_seq": self.applied_seq, "lr": self.lr}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.applied_seq = int(state["applied_seq"])
        self.lr = None if state["lr"] is None else float(state["lr"])
