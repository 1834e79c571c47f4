"""`compat.import_lightning` and `compat.import_mlflow`: the first imports of Lightning and MLflow without the
optional packages they would import with them (the cold start of `adaptive-lr train`, benchmarks/cold_start.py). Each test runs in a fresh interpreter:
the test process has imported Lightning and those packages long before."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, sys
from adaptive_lr import compat
{setup}
compat.import_lightning()
compat.import_mlflow()
import lightning.pytorch
import torchmetrics.functional.detection as detection
seen = {{
    "after_import": {{n: n in sys.modules for n in ("torchvision", "torchvision.ops", "transformers", "scipy.signal",
                                                  "matplotlib", "torchmetrics", "pandas", "mlflow")}},
    "detection_metrics": hasattr(detection, "intersection_over_union"),
    "finders_left": [type(f).__name__ for f in sys.meta_path if isinstance(f, compat.WithheldPackages)],
    "blocks_left": [n for n in (*compat.WITHHELD, *compat.MLFLOW_WITHHELD) if n in sys.modules and sys.modules[n] is None],
}}
import torchvision, torchvision.ops, transformers, scipy.signal, matplotlib, pandas  # all import normally afterwards
from importlib.metadata import version
from lightning_utilities.core.imports import RequirementCache, module_available, package_available
from lightning.pytorch.utilities.imports import _TORCHVISION_AVAILABLE
seen["afterwards"] = {{
    "lightning_torchvision": bool(_TORCHVISION_AVAILABLE),
    "requirement_cache": bool(RequirementCache("torchvision")) and bool(RequirementCache("transformers>=4.0")),
    "package_available": package_available("scipy") and module_available("matplotlib.pyplot"),
    "version": bool(version("torchvision")) and bool(version("pandas")),
}}
print(json.dumps(seen))
"""


def probe(setup: str = "", **env: str) -> dict:
    environment = {k: v for k, v in os.environ.items() if k != "ADAPTIVE_LR_FULL_IMPORTS"}
    done = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup)], env={**environment, **env},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


AFTERWARDS = {"lightning_torchvision": True, "requirement_cache": True, "package_available": True, "version": True}


def test_lightning_is_imported_without_torchmetrics_optional_packages_which_import_normally_afterwards():
    seen = probe()
    assert seen["after_import"] == {"torchvision": False, "torchvision.ops": False, "transformers": False,
                                    "scipy.signal": False, "matplotlib": False, "torchmetrics": True,
                                    "pandas": False, "mlflow": True}
    assert not seen["detection_metrics"]  # torchmetrics was imported as if torchvision were not installed
    assert seen["finders_left"] == [] and seen["blocks_left"] == []  # nothing of the scope outlives the import
    assert seen["afterwards"] == AFTERWARDS  # Lightning's own checks see the packages again


def test_the_opt_out_imports_lightning_with_everything_installed():
    seen = probe(ADAPTIVE_LR_FULL_IMPORTS="1")
    assert seen["after_import"]["torchvision"] and seen["after_import"]["scipy.signal"]
    assert seen["after_import"]["pandas"]
    assert seen["detection_metrics"]
    assert seen["finders_left"] == [] and seen["blocks_left"] == []
    assert seen["afterwards"] == AFTERWARDS


def test_a_withheld_import_that_fails_falls_back_to_the_plain_import_and_leaves_nothing_installed():
    # a torchmetrics/Lightning release that needs a withheld package: here torchmetrics itself, which Lightning
    # imports unconditionally, so the scoped import fails and the plain one follows
    seen = probe(setup='compat.WITHHELD = ("torchmetrics", "torchvision")')
    assert seen["after_import"]["torchmetrics"] and seen["after_import"]["torchvision"]
    assert seen["detection_metrics"]
    assert seen["finders_left"] == [] and seen["blocks_left"] == []
    assert seen["afterwards"] == AFTERWARDS
