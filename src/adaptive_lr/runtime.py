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
    """Quiet Lightning's console chatter and undo two per-step costs on the CPU.

    1. `import lightning` sets PYTORCH_NVML_BASED_CUDA_CHECK=1 (to keep fork safe). With that set, every
       `torch.cuda.is_available()` tries to load NVML; Adam and friends call it on every `step()` through
       `torch.accelerator.current_accelerator(check_available=True)`. Without a GPU the load fails each time:
       measured here, Adam.step on a 100x100 tensor took 4.2 ms with the flag and 1.2 ms without. With no CUDA
       device there is no fork poisoning to avoid, so the flag is turned off.
    2. Denormal (subnormal) floats are flushed to zero on the CPU (`torch.set_flush_denormal`: the x86 FTZ/DAZ
       bits, for this thread and the threads it starts later, such as torch's intra-op pool). Arithmetic on
       denormals takes a slow microcode path, and a model driven into saturation produces them in bulk: the
       electricity LSTM at Adam lr=1 (`adaptive-lr train task=electricity lr=1 trainer.max_epochs=1
       data.stride=8 data.eval_stride=8`, OMP_NUM_THREADS=1, this 2-core machine under load) ran 17.6 s with
       denormals and 2.8 s flushed, with the same test metrics to 4 digits. Values below ~1e-38 (float32) become
       0, far below any loss or step size a run reports. No effect on GPUs, or on CPUs without SSE3.
    """
    import torch

    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1" and not torch.cuda.is_available():
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "0"
    torch.set_flush_denormal(True)  # 2.
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*log_every_n_steps.*", ".*LeafSpec.*", ".*does not have many workers.*",
                    ".*litlogger.*", ".*GPU available.*", ".*overridden `transfer_batch_to_device`.*",
                    # tasks reduce their epoch sums across ranks themselves (tasks/epoch_mean.py), once per epoch
                    ".*when logging on epoch level in distributed setting.*"):
        warnings.filterwarnings("ignore", pattern)
