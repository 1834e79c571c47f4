"""What the benchmark scripts share: `benchmarks/results.json`, where each one replaces only its own entries, and
the choice of the MNIST task they time.

An entry is {"name", "value", "unit", "target", "better": "higher"|"lower"}; a script owns the names that start
with its prefixes, so `make bench` can run the scripts in any order (or one alone) without losing the others.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"


def entry(name: str, value: float, unit: str, target: float | None = None, better: str = "higher") -> dict:
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")
    return {"name": name, "value": value, "unit": unit, "target": target, "better": better}


def merge(entries: Iterable[dict], prefixes: Sequence[str], path: Path = RESULTS) -> None:
    """Replace the entries of `path` whose name starts with one of `prefixes` by `entries` (kept in order)."""
    old = json.loads(path.read_text()) if path.exists() else []
    kept = [e for e in old if not e["name"].startswith(tuple(prefixes))]
    path.write_text(json.dumps([*kept, *entries], indent=2) + "\n")


def mnist_task() -> list[str]:
    """`task=mnist` when `ADAPTIVE_LR_DATA_DIR` holds MNIST, else MNIST-shaped synthetic tensors (same model and
    batch; per-step costs do not depend on the pixels)."""
    data_dir = os.environ.get("ADAPTIVE_LR_DATA_DIR")
    return ["task=mnist"] if data_dir and (Path(data_dir) / "mnist").is_dir() else ["task=synthetic_mnist"]
