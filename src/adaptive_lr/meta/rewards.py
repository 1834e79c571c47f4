"""Whole-run rewards for meta-training a learned controller: one number per run, credited to every decision of it.

A run is scored by a function of its validation curve (`FinalValue`: the last epoch's value; `AreaUnderCurve`: the
mean over its epochs, i.e. the area under the curve per epoch), and `RunReturn` turns that into the return of the
run by comparing it with a reference run of the same family, seed and starting LR under a fixed LR:

    G = clip(s * (score(run) - score(reference)) / max(|score(reference)|, eps) / scale, -1, 1)

with s = +1 when larger is better (accuracy) and -1 when smaller is (a loss, MSE). Measuring against the reference
removes what the family, the seed and the starting LR alone decide (a digits run scores higher than a noisy XOR run
whatever the controller does), so the return credits the controller's decisions, not the draw of the episode. A
run whose score is not finite (it diverged) earns -1; against a reference that diverged, any finite run earns +1.
Only validation values enter: the test split is never seen while training a policy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from adaptive_lr.schedulers.base import PolicyConfigError, require_mode, require_positive

_EPS = 1e-12


def _finite_curve(curve: Sequence[float]) -> np.ndarray | None:
    """The curve as an array, or None when it is empty or holds a non-finite value (a diverged run)."""
    values = np.asarray(list(curve), dtype=float)
    return values if values.size and np.isfinite(values).all() else None


class FinalValue:
    """The validation metric at the last epoch of the run."""

    description = "final validation value"

    def __call__(self, curve: Sequence[float]) -> float:
        values = _finite_curve(curve)
        return math.nan if values is None else float(values[-1])


class AreaUnderCurve:
    """The mean of the validation curve over the run's epochs (the area under it, per epoch)."""

    description = "mean of the validation curve over epochs (area under it)"

    def __call__(self, curve: Sequence[float]) -> float:
        values = _finite_curve(curve)
        return math.nan if values is None else float(values.mean())


class RunReturn:
    """The return of one run against its reference run (module docstring).

    Args:
        score: a function of a validation curve (`FinalValue`, `AreaUnderCurve`).
        scale: the relative improvement that earns the full return 1; > 0.
        clip: the bound of the return; > 0.
    """

    def __init__(self, score: FinalValue | AreaUnderCurve, scale: float = 0.05, clip: float = 1.0) -> None:
        if not callable(score):
            raise PolicyConfigError(f"score must be a function of a validation curve, got {score!r}")
        self.score = score
        self.scale = require_positive("scale", scale)
        self.clip = require_positive("clip", clip)

    def __call__(self, curve: Sequence[float], reference: Sequence[float], mode: str) -> float:
        mine, theirs = self.score(curve), self.score(reference)
        if not math.isfinite(mine):
            return -self.clip
        if not math.isfinite(theirs):
            return self.clip
        sign = 1.0 if require_mode(mode) == "max" else -1.0
        relative = sign * (mine - theirs) / max(abs(theirs), _EPS)
        return min(max(relative / self.scale, -self.clip), self.clip)

    def describe(self) -> str:
        """The definition in words, for a policy's provenance."""
        what = getattr(self.score, "description", type(self.score).__name__)
        return (f"whole-run return: clip(relative improvement of the {what} over a fixed-LR reference run (same "
                f"family, seed, starting LR) / {self.scale:g}, -{self.clip:g}, {self.clip:g}), -{self.clip:g} for "
                "a non-finite run; credited to every decision of the run (Monte-Carlo, undiscounted)")
