"""Optimizers: `RescaledSGD` (per-element LRs rescaled by the gradient magnitude, mean pinned to `lr`)."""

from adaptive_lr.optim.rescaled_sgd import RescaledSGD

__all__ = ["RescaledSGD"]
