"""Lightning callbacks: the LR controller driver."""
from adaptive_lr.callbacks.lr_control import LRControl, LRControlConfigError

__all__ = ["LRControl", "LRControlConfigError"]
