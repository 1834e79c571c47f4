"""The private internals of Lightning, torch and the standard library this project relies on, behind one door.

Each is one small function or constant here, and `tests/test_compat.py` has a test per attribute against the
installed versions (Lightning is pinned to its minor version in pyproject.toml), so an upgrade that moves one fails
loudly in one place instead of silently changing a training step:
- `_ManualOptimization._on_before_step` / `_on_after_step` (`trainer.fit_loop.epoch_loop.manual_optimization`):
  Lightning's step counter (`global_step`, the checkpointed `optim_step_progress`), which the direct training step
  (`tasks/base.py`) advances itself. Lightning hands these two methods to every `LightningOptimizer` (its
  `_on_before_step` / `_on_after_step`) around each `training_step` and puts no-ops back after it, so they are
  taken from the loop, once per fit, not from the optimizer;
- `LightningModule._current_fx_name`: the hook name Lightning sets around every hook call (`self.log` reads it);
- `Trainer.callback_metrics` being the logger connector's own dict, updated in place (there is no setter): a run
  restored from a checkpoint puts back the epoch metrics published before it (`tracking/checkpoint.py`);
- `SummaryWriter._get_file_writer`: the event-file writer `LeanTensorBoardLogger` hands batched summaries to;
- `ProcessPoolExecutor._processes`: a grid runner's worker processes, terminated when the runner stops;
- `import_lightning` / `import_mlflow`: the first import of Lightning and of MLflow without optional packages they
  would import with them, which relies on how torchmetrics, lightning_utilities and MLflow decide that a package
  is installed (`RequirementCache` reads its metadata, `package_available` asks `find_spec`, MLflow's dataset
  registry tries the import) and on Lightning's `RequirementCache` answers being lazy and resettable;
  tests/test_cold_start_imports.py checks both ways (withheld during, importable and seen by Lightning after).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

#: LightningModule attribute: the hook being run, a str or None; a plain instance attribute, which the direct
#: training step sets around the hooks it calls itself (tasks/base.py)
HOOK_NAME = "_current_fx_name"


def step_counter(trainer: Any) -> tuple[Any, Any]:
    """(before, after): the callables Lightning's `LightningOptimizer.step` runs around the torch optimizer's step
    during a manual-optimisation `training_step` (the same two for the whole fit)."""
    loop = trainer.fit_loop.epoch_loop.manual_optimization
    return loop._on_before_step, loop._on_after_step


def publish_metrics(trainer: Any, metrics: dict[str, Any]) -> None:
    """Put `metrics` into `trainer.callback_metrics`, where the task's own `self.log(..., logger=False)` puts them
    (read by controllers and `EpochMetrics`); later logging of the same names replaces them as usual."""
    trainer.callback_metrics.update(metrics)


def event_file_writer(summary_writer: Any) -> Any:
    """The `FileWriter` under a torch `SummaryWriter` (created on first use)."""
    return summary_writer._get_file_writer()


def pool_processes(pool: Any) -> list[Any]:
    """The worker processes of a `concurrent.futures.ProcessPoolExecutor` (the pool exposes no public handle)."""
    return list((pool._processes or {}).values())


#: set to 1 to import Lightning and MLflow with every optional package they find installed (`import_lightning`,
#: `import_mlflow`): for a task of one's own that uses torchmetrics' image, detection, text or audio metrics
FULL_IMPORTS_ENV = "ADAPTIVE_LR_FULL_IMPORTS"
#: installed packages that torchmetrics' package `__init__` imports for metrics this project never uses (image and
#: detection metrics: torchvision, and through it its models and detection ops; BERTScore/CLIP: transformers;
#: audio: scipy.signal; plots: matplotlib). Lightning imports torchmetrics unconditionally (`LightningModule.log`
#: accepts its metrics). The project itself imports them later, normally (MNIST/CIFAR loaders, BERT, reports).
WITHHELD = ("torchvision", "transformers", "scipy", "matplotlib")
#: what `import mlflow` imports only to register its pandas dataset constructor (`mlflow.data.from_pandas`)
MLFLOW_WITHHELD = ("pandas",)


def _dist_key(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


class WithheldPackages:
    """A `sys.meta_path` entry that makes `names` look not installed while it is installed (`install` /
    `remove`): `import name` raises ModuleNotFoundError and `importlib.util.find_spec(name)` answers None (a None
    in `sys.modules`: Python's documented import block), and `importlib.metadata.version(name)` raises
    PackageNotFoundError (this finder, first on the meta path, answers the distribution lookup first: the
    `RequirementCache` checks of torchmetrics and Lightning read the installed metadata). A name already imported
    is not withheld (it costs nothing more)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = tuple(n for n in names if n not in sys.modules)
        self._keys = frozenset(_dist_key(n) for n in self.names)

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        return None  # imports are blocked by the None entries in sys.modules

    def find_distributions(self, context: Any = None) -> Any:
        name = getattr(context, "name", None)
        if name and _dist_key(name) in self._keys:
            from importlib.metadata import PackageNotFoundError

            raise PackageNotFoundError(name)
        return iter(())

    def install(self) -> None:
        for name in self.names:
            sys.modules[name] = None  # type: ignore[assignment]
        sys.meta_path.insert(0, self)

    def remove(self) -> None:
        while self in sys.meta_path:
            sys.meta_path.remove(self)
        for name in self.names:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def _forget_lightning_answers(withheld: tuple[str, ...]) -> None:
    """Drop what Lightning cached while `withheld` looked absent, so that its later checks see them: the lru caches
    of lightning_utilities' `package_available` / `module_available` (whole; they refill on use) and the answer
    of every Lightning `RequirementCache` about them that was asked during the import (they are lazy: asked
    again on next use). torchmetrics keeps its own answers: its modules were imported without those packages,
    so its image, detection, text and audio metrics report them missing (`FULL_IMPORTS_ENV` for those)."""
    keys = {_dist_key(n) for n in withheld}
    try:
        from lightning_utilities.core import imports
    except ImportError:
        return
    for helper in ("package_available", "module_available"):
        getattr(getattr(imports, helper, None), "cache_clear", lambda: None)()
    requirement_cache = getattr(imports, "RequirementCache", None)
    if requirement_cache is None:
        return
    for module_name, module in list(sys.modules.items()):
        if module is None or not module_name.startswith(("lightning", "pytorch_lightning")):
            continue
        for value in list(vars(module).values()):
            if not isinstance(value, requirement_cache) or "available" not in vars(value):
                continue
            asked = getattr(value, "requirement", None) or getattr(value, "module", None) or ""
            if _dist_key(re.split(r"[^A-Za-z0-9_.-]", asked, maxsplit=1)[0].split(".")[0]) in keys:
                vars(value).pop("available", None)
                vars(value).pop("message", None)


def _import_withholding(modules: tuple[str, ...], withheld: tuple[str, ...], packages: tuple[str, ...],
                        forget: Any = None) -> ModuleType:
    """Import `modules` (the first is returned) with `withheld` looking not installed during the import only.
    Plain when the first is already imported or $ADAPTIVE_LR_FULL_IMPORTS=1; when the withheld import fails (a
    release that needs one of them after all), the modules it added under `packages` are dropped and `modules`
    are imported again as they are."""
    import importlib

    if modules[0] in sys.modules or os.environ.get(FULL_IMPORTS_ENV, "") not in ("", "0"):
        for name in modules:
            importlib.import_module(name)
        return sys.modules[modules[0]]
    before = set(sys.modules)
    scope = WithheldPackages(withheld)
    scope.install()
    failed: Exception | None = None
    try:
        for name in modules:
            importlib.import_module(name)
    except Exception as err:  # noqa: BLE001  (any failure: the plain import below decides)
        failed = err
    finally:
        scope.remove()
        if forget is not None:
            forget(scope.names)
    if failed is not None:
        log.debug("%s imported with %s after all: %s", modules[0], ", ".join(scope.names), failed)
        for name in set(sys.modules) - before:
            if name.split(".")[0] in packages:
                del sys.modules[name]
        for name in modules:
            importlib.import_module(name)
    return sys.modules[modules[0]]


def import_lightning() -> ModuleType:
    """`import lightning` (and `lightning.pytorch`) with torchmetrics' optional integrations (`WITHHELD`) looking
    not installed during it: measured here, they were most of Lightning's import time (benchmarks/cold_start.md).
    Afterwards they import normally and Lightning's own availability checks answer truly. torch is imported first,
    outside the scope (it is never withheld from, nor dropped by the fallback)."""
    import torch  # noqa: F401

    return _import_withholding(("lightning", "lightning.pytorch"), WITHHELD,
                               ("lightning", "lightning_fabric", "pytorch_lightning", "torchmetrics",
                                "lightning_utilities"), _forget_lightning_answers)


def import_mlflow() -> ModuleType:
    """`import mlflow` (and its tracking client) without pandas (`MLFLOW_WITHHELD`), which its package `__init__`
    imports only to register `mlflow.data.from_pandas`; the project logs its dataset input as an entity
    (`tracking/datasets.py`) and imports pandas itself where it needs it (reports). In this process
    `mlflow.data.from_pandas` is then missing ($ADAPTIVE_LR_FULL_IMPORTS=1 for it); pandas imports normally."""
    return _import_withholding(("mlflow", "mlflow.tracking"), MLFLOW_WITHHELD, ("mlflow",))
