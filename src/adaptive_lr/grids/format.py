"""The grid format: a grid file (experiments/<name>.yaml) read into its cells (`load_grid`), with the fair tuning
protocol's and the learning-rate sweep's cells. Reads no store."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from adaptive_lr.checks import is_int, is_number, require_int
from adaptive_lr.config import EXPERIMENTS_DIR, ConfigError, available, compose
from adaptive_lr.errors import one_line
from adaptive_lr.tracking import schema

GRID_KEYS = ("name", "description", "tasks", "schedulers", "seeds", "overrides", "task_overrides",
             "scheduler_overrides", "variants", "views", "include", "tuning", "extends", "sweep", "anytime")
TUNING_KEYS = ("param", "values", "low", "high", "n", "method", "seeds", "sample_seed")
SWEEP_KEYS = ("param", "center", "decades", "points", "seeds")
MULTIPLIER = "lr_multiplier"  # the global key learning-rate-free optimizer configs read as their LR multiplier


@dataclass(frozen=True)
class Cell:
    task: str
    scheduler: str
    seed: int
    overrides: tuple[str, ...]
    phase: str = "final"
    point: str = ""  # a sweep cell's swept setting (`lr=0.001`), part of its key
    tags: tuple[tuple[str, str], ...] = ()  # run tags of the cell beyond task/scheduler/seed/phase

    @property
    def key(self) -> str:
        return f"{self.task}/{self.scheduler}/seed{self.seed}" + (f"/{self.point}" if self.point else "")


@dataclass(frozen=True)
class Tuning:
    """The same base-LR budget for every scheduler: `values` (explicit), or `n` points in [low, high] on a log grid
    (`method: log_grid`) or drawn log-uniformly (`method: random`, seeded by `sample_seed`), each run with `seeds`."""

    param: str
    values: tuple[float, ...]
    seeds: tuple[int, ...]
    method: str

    @classmethod
    def from_spec(cls, grid: str, spec: dict[str, Any]) -> Tuning:
        unknown = set(spec) - set(TUNING_KEYS)
        if unknown:
            raise ConfigError(f"experiment {grid!r}: unknown tuning keys {sorted(unknown)}; "
                              f"allowed: {', '.join(TUNING_KEYS)}")
        method = spec.get("method", "log_grid")
        if "values" in spec:
            values, method = [float(v) for v in spec["values"]], "values"
        else:
            low, high, n = float(spec.get("low", 1e-4)), float(spec.get("high", 1.0)), int(spec.get("n", 5))
            if not (0 < low < high and n >= 1):
                raise ConfigError(f"experiment {grid!r}: tuning needs 0 < low < high and n >= 1, "
                                  f"got low={low}, high={high}, n={n}")
            if method == "log_grid":
                values = [low * (high / low) ** (i / max(n - 1, 1)) for i in range(n)] if n > 1 else [low]
            elif method == "random":
                rng = random.Random(int(spec.get("sample_seed", 0)))
                values = sorted(math.exp(rng.uniform(math.log(low), math.log(high))) for _ in range(n))
            else:
                raise ConfigError(f"experiment {grid!r}: tuning.method must be one of ['log_grid', 'random'], "
                                  f"got {method!r}")
        if not values or any(not (math.isfinite(v) and v > 0) for v in values):
            raise ConfigError(f"experiment {grid!r}: tuning values must be positive numbers, got {values}")
        seeds = tuple(int(s) for s in spec.get("seeds", [0]))
        return cls(str(spec.get("param", "lr")), tuple(float(f"{v:.6g}") for v in values), seeds, method)

    @property
    def budget(self) -> str:
        return f"{len(self.values)} {self.param} values ({self.method}) x {len(self.seeds)} seed(s)"


def _positive_number(value: Any) -> bool:
    return is_number(value) and value > 0


@dataclass(frozen=True)
class Sweep:
    """The learning-rate sweep (issue 14): every task x scheduler x seed of the grid runs at the same `points`
    initial LRs, log-spaced over `decades` decades and centred on the task's usual rate: `center` (one value for
    every task, or a map from task to value; tasks it leaves out use their default), by default the `lr` that the
    task's config sets under this grid's `overrides` and `task_overrides`. A cell whose config defines
    `lr_multiplier` (the learning-rate-free optimizers' configs) sweeps that multiplier over the same factors around
    1.0, the packages' recommended value, instead of the LR.

    Sweep cells have phase `sweep`, the swept override last (it wins over any other setting of the LR), and tags
    `sweep_lr` or `sweep_multiplier` (the value) and `sweep_factor` (value / centre, shared by both kinds), so a
    report can draw every method on one axis; like tuning runs, they are never results. A sweep applies to the
    grid's own cells (an included grid brings its own), and a grid with a sweep has no `tuning`.

    With `seeds` (the sweep's own seeds) the sweep is the tuned track's first phase: every point runs with those
    seeds, then every task x scheduler runs once per grid seed (phase `final`) at its best point, the one with the
    best mean final validation metric over the sweep seeds (a point with a non-finite value never wins); those final
    runs are the results a report judges on test. Without `seeds`, the grid's seeds run every point and nothing else.
    """

    param: str
    decades: float
    points: int
    center: float | None = None
    centers: tuple[tuple[str, float], ...] = ()  # per task, over `center`
    seeds: tuple[int, ...] = ()  # the sweep's own seeds: then a final phase at the best point (class docstring)

    @classmethod
    def from_spec(cls, grid: str, spec: Any) -> Sweep:
        where = f"experiment {grid!r}: sweep"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where} must be a mapping with keys among {', '.join(SWEEP_KEYS)}, got {spec!r}")
        unknown = set(spec) - set(SWEEP_KEYS)
        if unknown:
            raise ConfigError(f"{where} has unknown keys {sorted(unknown)}; allowed: {', '.join(SWEEP_KEYS)}")
        param, decades, points = spec.get("param", "lr"), spec.get("decades", 4), spec.get("points", 9)
        if not (isinstance(param, str) and param):
            raise ConfigError(f"{where}.param must be a config key such as lr, got {param!r}")
        if not _positive_number(decades):
            raise ConfigError(f"{where}.decades must be a positive number, got {decades!r}")
        require_int(f"{where}.points", points, minimum=2, error=ConfigError)
        seeds = spec.get("seeds", [])
        if not (isinstance(seeds, list) and all(is_int(x) for x in seeds)):
            raise ConfigError(f"{where}.seeds must be a list of ints, got {seeds!r}")
        center = spec.get("center")
        values = center.values() if isinstance(center, dict) else [] if center is None else [center]
        if not all(_positive_number(v) for v in values):
            raise ConfigError(f"{where}.center must be a positive number or a map from task to positive number, "
                              f"got {center!r}")
        if isinstance(center, dict):
            return cls(param, float(decades), points, None, tuple((str(t), float(v)) for t, v in center.items()),
                       tuple(seeds))
        return cls(param, float(decades), points, None if center is None else float(center), (), tuple(seeds))

    @property
    def factors(self) -> tuple[float, ...]:
        """10^(decades * (i / (points - 1) - 1/2)) for i = 0 .. points - 1: the same for every method and task."""
        return tuple(10 ** (self.decades * (i / (self.points - 1) - 0.5)) for i in range(self.points))

    def expand(self, grid: str, cells: Sequence[Cell], task_overrides: dict[str, tuple[str, ...]]) -> list[Cell]:
        """Every cell at every sweep point (class docstring); `task_overrides[task]` set the task's default centre.
        Composes one config per task x scheduler (which optimizer it uses) and per task without a given centre."""
        unknown = {t for t, _ in self.centers} - {c.task for c in cells}
        if unknown:
            raise ConfigError(f"experiment {grid!r}: sweep.center names tasks {sorted(unknown)} that the grid does "
                              f"not run; its tasks: {', '.join(dict.fromkeys(c.task for c in cells))}")
        centers, lr_free = dict(self.centers), {}
        swept = []
        for cell in cells:
            if (cell.task, cell.scheduler) not in lr_free:
                lr_free[cell.task, cell.scheduler] = MULTIPLIER in compose(cell.overrides)
            if lr_free[cell.task, cell.scheduler]:
                param, tag, center = MULTIPLIER, "sweep_multiplier", 1.0
            else:
                if cell.task not in centers:
                    centers[cell.task] = self.center or float(compose(task_overrides[cell.task]).lr)
                param, tag, center = self.param, "sweep_lr", centers[cell.task]
            for factor in self.factors:
                value = float(f"{center * factor:.6g}")
                swept.append(replace(cell, overrides=(*cell.overrides, f"{param}={value}"), phase="sweep",
                                     point=f"{param}={value}",
                                     tags=((tag, f"{value:g}"), ("sweep_factor", f"{factor:.6g}"))))
        return swept


@dataclass
class Grid:
    name: str
    description: str
    cells: list[Cell]
    tuning: Tuning | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    sweep: Sweep | None = None
    sweep_cells: list[Cell] = field(default_factory=list)  # phase 1 of a sweep with its own seeds


def grid_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    path = EXPERIMENTS_DIR / f"{name}.yaml"
    if not path.exists():
        names = sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown experiment {name!r}; allowed: {', '.join(names)}")
    return path


def _spec_cells(name: str, spec: dict[str, Any], grid_name: str, extra: Sequence[str]) -> list[Cell]:
    unknown = set(spec) - set(GRID_KEYS)
    if unknown:
        raise ConfigError(f"experiment {name!r} has unknown keys {sorted(unknown)}; allowed: {', '.join(GRID_KEYS)}")
    # a variant is a named column of the comparison built from a scheduler config plus overrides, e.g. an
    # optimizer under the fixed schedule: {rescaled_sgd: [scheduler=fixed, optimizer=rescaled_sgd]}
    variants = {v: _variant(name, v, o) for v, o in spec.get("variants", {}).items()}
    for choice in spec.get("tasks", []):
        if choice not in available("task"):
            raise ConfigError(f"experiment {name!r}: unknown task {choice!r}; allowed: {', '.join(available('task'))}")
    for choice in spec.get("schedulers", []):
        if choice not in variants and choice not in available("scheduler"):
            raise ConfigError(f"experiment {name!r}: unknown scheduler {choice!r}; allowed: "
                              f"{', '.join(available('scheduler'))} or a variant ({', '.join(variants) or 'none'})")
    common = [*spec.get("overrides", []), *extra]
    # views (configs/viz) to switch on for the first seed of every task x scheduler: one watched run per column
    views = spec.get("views", {})
    seeds = spec.get("seeds", [])
    if not isinstance(seeds, list) or not all(is_int(s) for s in seeds):
        raise ConfigError(f"experiment {name!r}: seeds must be a list of ints, got {seeds!r}")

    def shown(task: str, seed: int) -> tuple[str, ...]:
        return (f"viz=[{','.join(views[task])}]",) if task in views and seeds and seed == seeds[0] else ()

    return [
        Cell(task, sched, int(seed),
             (f"task={task}", *variants.get(sched, (f"scheduler={sched}",)), f"seed={seed}",
              f"experiment={grid_name}", *spec.get("task_overrides", {}).get(task, []),
              *spec.get("scheduler_overrides", {}).get(sched, []), *shown(task, seed), *common))
        for task in spec.get("tasks", []) for sched in spec.get("schedulers", []) for seed in seeds
    ]


def _variant(grid: str, name: str, overrides: Sequence[str]) -> tuple[str, ...]:
    """`scheduler=<base>` first, then the variant's overrides, then its name as the scheduler label."""
    base = [o for o in overrides if o.startswith("scheduler=")]
    if len(base) != 1 or base[0].removeprefix("scheduler=") not in available("scheduler"):
        raise ConfigError(f"experiment {grid!r}: variant {name!r} needs exactly one `scheduler=<config>` override "
                          f"naming one of {', '.join(available('scheduler'))}; got {list(overrides)}")
    if name in available("scheduler"):
        raise ConfigError(f"experiment {grid!r}: variant {name!r} shadows the scheduler config of that name")
    rest = [o for o in overrides if o not in base]
    return (base[0], *rest, f"scheduler.name={name}")


def load_grid(name: str, extra_overrides: Sequence[str] = (), _seen: tuple[str, ...] = ()) -> Grid:
    """The grid's cells (its own, then those of each `include`d grid, renamed into this grid's experiment)."""
    path = grid_path(name)
    if path.stem in _seen:
        raise ConfigError(f"experiment {name!r} includes itself (through {' -> '.join(_seen)})")
    import yaml
    from omegaconf.errors import OmegaConfBaseException

    try:
        spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except (yaml.YAMLError, OmegaConfBaseException) as err:  # a YAML syntax error, a bad interpolation
        raise ConfigError(f"{path} is not a valid grid file: {one_line(err)}") from err
    if not isinstance(spec, dict):
        raise ConfigError(f"experiment {name!r}: {path} is not a mapping")
    spec = _extended(name, spec, (*_seen, path.stem))
    grid_name = spec.get("name", path.stem)
    cells = _spec_cells(name, spec, grid_name, extra_overrides)
    sweep = Sweep.from_spec(name, spec["sweep"]) if "sweep" in spec else None
    if sweep is not None:
        if spec.get("tuning"):
            raise ConfigError(f"experiment {name!r}: a grid has either a sweep or tuning, not both")
        if not spec.get("seeds"):
            raise ConfigError(f"experiment {name!r}: a sweep needs at least one seed per point; seeds is empty")
        defaults = {t: (f"task={t}", *spec.get("task_overrides", {}).get(t, []), *spec.get("overrides", []),
                        *extra_overrides) for t in spec.get("tasks", [])}  # fmt: skip
        if sweep.seeds:  # sweep with its own seeds first, then the grid's seeds at each column's best point
            sweep_cells = sweep.expand(name, _reseeded(cells, sweep.seeds), defaults)
        else:
            cells = sweep.expand(name, cells, defaults)
    for included in spec.get("include", []):
        sub = load_grid(included, extra_overrides, (*_seen, path.stem))
        cells += [replace(c, overrides=tuple(f"experiment={grid_name}" if o.startswith("experiment=") else o
                                             for o in c.overrides)) for c in sub.cells]
    keys = [c.overrides for c in cells]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"experiment {name!r}: the same cell appears twice (check includes)")
    tuning = Tuning.from_spec(name, spec["tuning"]) if spec.get("tuning") else None
    cells += _anytime_cells(name, spec.get("anytime", []), [c for c in cells if c.phase == "final"])
    return Grid(grid_name, spec.get("description", ""), cells, tuning, sweep=sweep,
                sweep_cells=sweep_cells if sweep is not None and sweep.seeds else [])


def _extended(name: str, spec: dict[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    """`extends: <grid>`: the named grid's keys, each replaced by this file's value of it (null removes the key), so
    the parts of one study share one list of methods and budget instead of copies."""
    base = spec.get("extends")
    if base is None:
        return spec
    if not isinstance(base, str) or Path(base).stem in seen:
        raise ConfigError(f"experiment {name!r}: extends must name another grid file, got {base!r}")
    import yaml
    from omegaconf.errors import OmegaConfBaseException

    try:
        parent = OmegaConf.to_container(OmegaConf.load(grid_path(base)), resolve=True)
    except (yaml.YAMLError, OmegaConfBaseException) as err:
        raise ConfigError(f"experiment {name!r}: extends {base!r}, which cannot be read: {one_line(err)}") from err
    merged = {**_extended(base, parent, (*seen, Path(base).stem)), **spec}
    merged.pop("extends")
    return {k: v for k, v in merged.items() if v is not None}


def _anytime_cells(name: str, fractions: Any, cells: Sequence[Cell]) -> list[Cell]:
    """`anytime: [0.25, 0.5]`: every final cell again as a real run with that fraction of its epoch budget
    (`trainer.max_epochs` = the rounded fraction, at least 1), so a schedule that needs its horizon (cosine, the
    cooldowns) gets the shorter one, not a truncated curve of the longer run. Phase `anytime`, tag
    `budget_fraction`; tuned grids run them at the same chosen setting as the final cells; never results."""
    if not isinstance(fractions, list) or not all(_positive_number(f) and f < 1 for f in fractions):
        raise ConfigError(f"experiment {name!r}: anytime must be a list of budget fractions in (0, 1), got "
                          f"{fractions!r}")
    epochs: dict[tuple[str, str], int] = {}
    extra = []
    for cell in cells:
        if (cell.task, cell.scheduler) not in epochs:
            epochs[cell.task, cell.scheduler] = int(compose(cell.overrides).trainer.max_epochs)
        for fraction in sorted(set(fractions)):
            budget = max(1, round(epochs[cell.task, cell.scheduler] * fraction))
            extra.append(replace(cell, overrides=(*cell.overrides, f"trainer.max_epochs={budget}"), phase="anytime",
                                 point=f"budget={fraction:g}",
                                 tags=(*cell.tags, (schema.BUDGET_FRACTION, f"{fraction:g}"))))
    return extra


def _reseeded(cells: Sequence[Cell], seeds: Sequence[int]) -> list[Cell]:
    """One cell per task x scheduler x `seeds` (the grid's seeds replaced), in the cells' order."""
    columns = dict.fromkeys((c.task, c.scheduler, tuple(o for o in c.overrides if o != f"seed={c.seed}"))
                            for c in cells)  # fmt: skip
    return [Cell(task, sched, seed, (*rest, f"seed={seed}")) for (task, sched, rest) in columns for seed in seeds]


def tune_cells(grid: Grid) -> list[Cell]:
    """Phase 1 of the tuning protocol: every (task, scheduler) x tuning value x tuning seed."""
    assert grid.tuning is not None
    t = grid.tuning
    def without_seed(cell: Cell) -> tuple[str, ...]:
        return tuple(o for o in cell.overrides if o != f"seed={cell.seed}")

    pairs = dict.fromkeys((c.task, c.scheduler, without_seed(c)) for c in grid.cells
                          if c.phase == "final")  # keep order, drop seeds (anytime cells reuse the choice)
    return [
        Cell(task, sched, seed, (*rest, f"seed={seed}", f"{t.param}={value}"), phase="tune")
        for (task, sched, rest) in pairs for value in t.values for seed in t.seeds
    ]
