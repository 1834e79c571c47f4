"""The page's LR controls as commands in the run's control file: the same check and the same file as
`adaptive-lr set-lr / scale-lr / release-lr` (`adaptive_lr.live_control`), so the run applies them at its next poll
(`live_control.every_n_steps`) and logs each as a `human` decision.

    slider     set <value>     hold the LR at the slider's value
    x0.5, x2   scale 0.5 / 2   hold it at half / twice what it is
    hold       scale 1         hold it where it is (the scheduler keeps deciding, unapplied)
    release    release         hand it back to the scheduler
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from adaptive_lr.config import ConfigError
from adaptive_lr.errors import UserError, one_line


@dataclass(frozen=True)
class Control:
    label: str
    op: str
    value: float | None


BUTTONS = (Control("x0.5", "scale", 0.5), Control("x2", "scale", 2.0), Control("hold", "scale", 1.0),
           Control("release", "release", None))


def slider_to_lr(position: float) -> float:
    """The slider moves over log10(LR)."""
    return float(10.0 ** position)


def lr_to_slider(lr: float, low: float, high: float) -> float:
    """The slider position of `lr`, kept inside [log10 low, log10 high] (the middle for an unknown LR)."""
    lo, hi = math.log10(low), math.log10(high)
    if not (math.isfinite(lr) and lr > 0):
        return (lo + hi) / 2
    return min(max(math.log10(lr), lo), hi)


def send(run_dir: Path | None, run_id: str, op: str, value: float | None = None) -> str:
    """Write one command for a running run; returns what the page says. A run that is not running (or whose
    folder is not on this machine) is refused with the same ConfigError as `adaptive-lr set-lr`."""
    # the check `set-lr` makes: RUNNING, its process alive, its folder here
    from adaptive_lr.cli import _running_folder
    from adaptive_lr.live_control import write_command

    if run_dir is None:
        raise ConfigError(f"run {run_id} has no run folder on this machine: its LR can be steered only where it runs")
    folder = _running_folder(str(run_dir), [])
    command = write_command(folder, op, value)
    what = "released to its scheduler" if op == "release" else (
        f"held at {value:.4g}" if op == "set" else f"held at {value:g} x its current LR")
    return f"command {command.seq}: LR {what} (applied at the run's next poll)"


def outcome(run_dir: Path | None, run_id: str, op: str, value: float | None = None) -> tuple[bool, str]:
    """`send`, its refusal turned into the CLI's one-line `error: ...` message: (ok, message)."""
    try:
        return True, send(run_dir, run_id, op, value)
    except UserError as err:
        return False, f"error: {one_line(err)}"
