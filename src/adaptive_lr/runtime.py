"""Process-wide settings: the environment (telemetry, library caches) before heavy imports, and once before
training the logging and device settings."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

ENV_HOME, ENV_CACHE_DIR = "ADAPTIVE_LR_HOME", "ADAPTIVE_LR_CACHE_DIR"
#: set unless already set: no usage reports leave the machine, and no library writes under $HOME
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_DISABLE_TELEMETRY": "1"}
CACHE_VARS = {"MPLCONFIGDIR": "matplotlib", "HF_HOME": "huggingface"}  # variable -> folder in the cache


def default_cache_dir() -> Path:
    """The project's cache folder from the environment alone (configs/train.yaml `paths.cache` without
    overrides): $ADAPTIVE_LR_CACHE_DIR, else $ADAPTIVE_LR_HOME/.cache/adaptive-lr, else
    ./.cache/adaptive-lr."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]).expanduser()
    return (Path(os.environ.get(ENV_HOME) or ".") / ".cache" / "adaptive-lr").expanduser()


def configure_environment(cache_dir: Path | str | None = None) -> None:
    """Telemetry off (MLflow's, which otherwise writes an installation ID to ~/.config/mlflow, and the
    Hugging Face hub's) and the caches of matplotlib and Hugging Face under the project's cache folder, so a
    run writes nothing outside its home and cache folders. A variable the user set is kept. Must run before
    mlflow or matplotlib is first imported (both read it then): the CLI calls it first, the runner before
    `import lightning` (which imports matplotlib).
    """
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    for name, value in TELEMETRY_OFF.items():
        os.environ.setdefault(name, value)
    for name, folder in CACHE_VARS.items():
        os.environ.setdefault(name, str((cache / folder).resolve()))


def configure_runtime() -> None:
    """Quiet Lightning's console chatter and undo a per-step cost that Lightning's import adds on GPU-less hosts.

    `import lightning` sets PYTORCH_NVML_BASED_CUDA_CHECK=1 (to keep fork safe). With that set, every
    `torch.cuda.is_available()` tries to load NVML; Adam and friends call it on every `step()` through
    `torch.accelerator.current_accelerator(check_available=True)`. Without a GPU the load fails each time: measured
    here, Adam.step on a 100x100 tensor took 4.2 ms with the flag and 1.2 ms without. With no CUDA device there is
    no fork poisoning to avoid, so the flag is turned off.
    """
    import torch

    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1" and not torch.cuda.is_available():
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "0"
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*log_every_n_steps.*", ".*LeafSpec.*", ".*does not have many workers.*",
                    ".*litlogger.*", ".*GPU available.*", ".*overridden `transfer_batch_to_device`.*",
                    # tasks reduce their epoch sums across ranks themselves (tasks/epoch_mean.py), once per epoch
                    ".*when logging on epoch level in distributed setting.*"):
        warnings.filterwarnings("ignore", pattern)
