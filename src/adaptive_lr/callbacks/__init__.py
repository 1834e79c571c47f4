"""Lightning callbacks: the LR controller driver, the per-epoch record, and what a run's callbacks from config are
completed with (`RunParts`, configs/callbacks/)."""
from adaptive_lr.callbacks.epoch_metrics import EpochMetrics
from adaptive_lr.callbacks.lr_control import LRControl, LRControlConfigError
from adaptive_lr.callbacks.run_parts import RunParts

__all__ = ["EpochMetrics", "LRControl", "LRControlConfigError", "RunParts"]
