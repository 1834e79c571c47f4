"""Statistics written out by hand, the independent side of the reporting tests."""

from __future__ import annotations


def holm_by_hand(p):
    """Holm's step-down adjustment written out: sort, multiply by m - i, running maximum, cap at 1."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    adjusted, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted
