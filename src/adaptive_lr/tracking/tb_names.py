"""Short TensorBoard run names: `<experiment>/<task>/<scheduler>/seed<N>`.

TensorBoard names a run by the path of its event folder under the served folder. A run's events stay in its run
folder (`runs/<experiment>/<run>-<timestamp>/tensorboard`, where the run's resume, its report row and its tests
find them), and a link to that folder is made under the names tree (`paths.tensorboard`, default
`<home>/tensorboard`):

    tensorboard/<experiment>/<task>/<scheduler>/seed<N>              a run, or a grid's final cell
    tensorboard/<experiment>/<task>/<scheduler>/seed<N>-lr=0.01      a sweep cell (its swept setting)
    tensorboard/<experiment>/<task>/<scheduler>/seed<N>-tune         a run of another phase without a setting
    tensorboard/<experiment>/<task>/<scheduler>/seed<N>-2            a second run of a name already taken

`make tensorboard` serves the names tree (TensorBoard follows the links), so its run selector reads
`demo/digits/cosine/seed0`, and first links the run folders that have no name yet (`link_all`: runs made before
the names existed, or with another home), so every run is listed once. Names are links (relative, so a home can be
moved): a leaf is never a folder, so no name is a prefix of another.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

EVENTS = "tensorboard"  # a run folder's TensorBoard folder


def run_name(task: str, scheduler: str, seed: object, cell: str = "", phase: str = "") -> str:
    """`<task>/<scheduler>/seed<N>`, from a grid's cell key (`task/scheduler/seedN[/point]`) when given: its setting
    is joined to the seed (`seed0-lr=0.01`), and a phase other than final without one is named (`seed0-tune`)."""
    parts = cell.split("/") if cell else [str(task), str(scheduler), f"seed{seed}"]
    head, rest = parts[:3], [p for p in parts[3:] if p]
    if not rest and phase not in ("", "final"):
        rest = [phase]
    return "/".join([*head[:-1], "-".join([head[-1], *rest])])


def link_run(names_root: Path, experiment: str, name: str, events: Path) -> Path:
    """Link `names_root/<experiment>/<name>` to the event folder `events` (made if missing); a name taken by another
    run gets `-2`, `-3`, ...; a link that already points at `events` (a resumed run) is kept. Returns the link."""
    events.mkdir(parents=True, exist_ok=True)
    base = names_root / experiment / name
    base.parent.mkdir(parents=True, exist_ok=True)
    target = events.resolve()
    n = 1
    while True:
        link = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            link.symlink_to(os.path.relpath(target, link.parent), target_is_directory=True)
            return link
        except FileExistsError:  # taken (possibly at this moment, by another worker): is it ours?
            if link.is_symlink() and link.resolve() == target:
                return link
            n += 1


def linked_targets(names_root: Path) -> set[Path]:
    """The event folders the names tree already links to."""
    if not names_root.is_dir():
        return set()
    return {p.resolve() for p in names_root.rglob("*") if p.is_symlink()}


def link_all(runs_root: Path, names_root: Path) -> int:
    """Name every run folder under `runs_root` (`<experiment>/<run>/` with `config.json` and a `tensorboard/`
    folder) that the tree does not link to yet, in the order the runs started (the folders' timestamps); returns
    how many were linked. Reads each run's stored config for its experiment, task, scheduler and seed."""
    done, n = linked_targets(names_root), 0
    for config in sorted(runs_root.glob("*/*/config.json"), key=lambda p: p.parent.name):
        events = config.parent / EVENTS
        if not events.is_dir() or events.resolve() in done:
            continue
        try:
            cfg = json.loads(config.read_text())
            name = run_name(cfg["task"]["name"], cfg["scheduler"]["name"], cfg["seed"])
            experiment = str(cfg.get("experiment") or config.parent.parent.name)
        except (OSError, ValueError, KeyError, TypeError):  # not a run folder this code wrote
            continue
        link_run(names_root, experiment, name, events)
        n += 1
    return n


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="link run folders without a TensorBoard name into the names tree")
    parser.add_argument("runs", type=Path, help="the runs folder (paths.runs)")
    parser.add_argument("names", type=Path, help="the names tree (paths.tensorboard)")
    args = parser.parse_args(argv)
    n = link_all(args.runs, args.names)
    if n:
        print(f"named {n} earlier run(s) under {args.names}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
