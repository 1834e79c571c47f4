"""How the report sections write numbers and table rows in markdown (one place, so every section reads alike)."""

from __future__ import annotations

import math


def md_number(x: object, spec: str = ".4g", signed: bool = False) -> str:
    """`x` with `spec` (a leading `+` when `signed`); "nan" for None, a non-number or a non-finite value."""
    try:
        value = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "nan"
    return format(value, ("+" if signed else "") + spec) if math.isfinite(value) else "nan"


def md_interval(mean: float, low: float, high: float, signed: bool = False) -> str:
    """`mean [low, high]`; the mean alone when either bound is not finite."""
    if not (math.isfinite(float(low)) and math.isfinite(float(high))):
        return md_number(mean, signed=signed)
    return f"{md_number(mean, signed=signed)} [{md_number(low, signed=signed)}, {md_number(high, signed=signed)}]"


def md_row(cells: list[object]) -> list[str]:
    """One markdown table row; pipes and newlines inside cells are escaped so the table stays intact."""
    return ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"]
