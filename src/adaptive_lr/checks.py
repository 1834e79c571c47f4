"""Argument checks every part shares (configs, grids, policies, models, the meta config).

Each `require_*` returns the value it checked or raises the caller's error class (a `UserError` subclass such as
`ConfigError` or `PolicyConfigError`, or a plain ValueError) with one line that names the argument, what is allowed
and the value it got. Python counts a bool as an int (`isinstance(True, int)`), so every check here refuses bools
where a number is asked for: `frequency: true` is a mistake, not 1.
"""

from __future__ import annotations

import math
import numbers
from typing import Any


def is_int(value: Any) -> bool:
    """An integer (a Python or numpy int), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def require_int(name: str, value: Any, *, minimum: int, maximum: int | None = None,
                error: type[Exception] = ValueError, allowed: str | None = None) -> int:
    """An int (not a bool, not 1.5, not "abc") in `[minimum, maximum]`; the message says `allowed` when given,
    else `an int >= minimum` or `an int in [minimum, maximum]`."""
    if not (is_int(value) and value >= minimum and (maximum is None or value <= maximum)):
        allowed = allowed or (f"an int in [{minimum}, {maximum}]" if maximum is not None else f"an int >= {minimum}")
        raise error(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def require_positive(name: str, value: Any, *, error: type[Exception] = ValueError) -> float:
    """A finite number > 0."""
    if not (is_number(value) and value > 0):
        raise error(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def require_bool(name: str, value: Any, *, error: type[Exception] = ValueError) -> bool:
    """`True` or `False` (not 0/1, not "false")."""
    if not isinstance(value, bool):
        raise error(f"{name} must be a bool, got {value!r}")
    return value
