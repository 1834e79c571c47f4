"""Optimizers: `RescaledSGD` (per-element LRs rescaled by the gradient magnitude, mean pinned to `lr`),
`AveragedDoG` (DoG with the iterate average its authors require), and `effective_lr` (the step size an
optimizer's next update applies, for logging)."""

from adaptive_lr.optim.averaged_dog import AveragedDoG
from adaptive_lr.optim.effective_lr import effective_lr
from adaptive_lr.optim.rescaled_sgd import RescaledSGD

__all__ = ["AveragedDoG", "RescaledSGD", "effective_lr"]
