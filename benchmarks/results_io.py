"""What the benchmark scripts share: `benchmarks/results.json`, where each one replaces only its own entries, and
the check that a real dataset is here (`missing_data`), which also picks the MNIST task they time, and the
`Timer` that sums the wall time of wrapped methods (the overhead benchmarks).

An entry is {"name", "value", "unit", "target", "better": "higher"|"lower"}; a script owns the names that start
with its prefixes, so `make bench` can run the scripts in any order (or one alone) without losing the others.
"""

from __future__ import annotations

import functools
import json
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"
SUMMARY = Path(__file__).resolve().parent / "summary.md"
#: the headline rows of benchmarks/summary.md: results.json entry -> (row, the command that measures it, unit)
HEADLINES = {
    "viz/views_on_overhead": ("views all-on overhead (`viz=[params,latent]`, t-SNE every 10 epochs, MNIST)",
                              "python benchmarks/viz_overhead.py", "%"),
    "cold/train_ratio": ("cold train ratio (`adaptive-lr train task=digits`: wall / training time)",
                         "python benchmarks/cold_start.py", "x"),
}


def entry(name: str, value: float, unit: str, target: float | None = None, better: str = "higher") -> dict:
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")
    return {"name": name, "value": value, "unit": unit, "target": target, "better": better}


def merge(entries: Iterable[dict], prefixes: Sequence[str], path: Path = RESULTS) -> None:
    """Replace the entries of `path` whose name starts with one of `prefixes` by `entries` (kept in order)."""
    old = json.loads(path.read_text()) if path.exists() else []
    kept = [e for e in old if not e["name"].startswith(tuple(prefixes))]
    path.write_text(json.dumps([*kept, *entries], indent=2) + "\n")


def read(path: Path = RESULTS) -> dict[str, dict]:
    """The entries of `path` by name (empty when it does not exist yet)."""
    return {e["name"]: e for e in json.loads(path.read_text())} if path.exists() else {}


def missing_data(overrides: Sequence[str]) -> str | None:
    """Why the run composed from `overrides` cannot use its real dataset here, or None when it can (or when its
    data is embedded or generated: a task config without `data.data_dir`).

    The one presence check of the benchmarks, by the loaders' own rules (`adaptive_lr.data.source`): the data
    directory (`$ADAPTIVE_LR_DATA_DIR`, or a `data_dir=` override) must be set, and the task's DataModule must load
    its data from there (or from the decoded-tensor cache) without downloading. The reason given is the loader's
    `DataNotFoundError` message, which names the dataset, the folders searched and the files expected. Loading
    fills the cache (`paths.cache`), so runs composed from the same overrides then read the data from there.
    """
    from hydra.utils import instantiate

    from adaptive_lr.config import compose
    from adaptive_lr.data.source import ENV_DATA_DIR, DataNotFoundError

    cfg = compose(overrides)
    if "data_dir" not in cfg.data:
        return None
    if cfg.data.data_dir in (None, ""):
        return f"{cfg.task.name}: no data directory ({ENV_DATA_DIR} is not set)"
    try:
        instantiate(cfg.data, download=False).setup("fit")
    except DataNotFoundError as err:
        return str(err)
    return None


def mnist_task() -> list[str]:
    """`task=mnist` when the data directory holds MNIST (`missing_data`), else MNIST-shaped synthetic tensors (same
    model and batch; per-step costs do not depend on the pixels)."""
    return ["task=mnist"] if missing_data(["task=mnist"]) is None else ["task=synthetic_mnist"]


class Timer:
    """Wraps methods on their classes so every call's wall time is summed per label."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, cls: type, name: str, label: str) -> None:
        original = getattr(cls, name)

        @functools.wraps(original)
        def timed(*args, __original=original, **kwargs):
            t0 = time.perf_counter()
            try:
                return __original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - t0
                self.calls[label] += 1

        setattr(cls, name, timed)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


def write_summary(path: Path = SUMMARY, results: Path = RESULTS) -> None:
    """benchmarks/summary.md: the headline rows measured so far (`HEADLINES`), each with its target and command."""
    saved = read(results)
    lines = ["# Headline rows", "", "Rendered from results.json by the script of each row (`make bench` runs them "
             "all); the machine, its load and the details are in each script's table.", "",
             "| row | value | target | met | command |", "| --- | ---: | ---: | :---: | --- |"]
    for name, (label, command, unit) in HEADLINES.items():
        if name not in saved:
            continue
        value, target, better = (saved[name].get(k) for k in ("value", "target", "better"))
        shown = (lambda v: f"{v:.1%}") if unit == "%" else (lambda v: f"{v:.2f}x")
        met = "-" if target is None else "yes" if (value <= target if better == "lower" else value >= target) else "NO"
        bound = "" if target is None else ("<= " if better == "lower" else ">= ") + shown(target)
        lines.append(f"| {label} | {shown(value)} | {bound} | {met} | `{command}` |")
    path.write_text("\n".join(lines) + "\n")
