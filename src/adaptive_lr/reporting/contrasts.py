"""Named two-column comparisons outside the best-baseline rule, under the project's verdict rules: pure functions.

The verdict section compares every adaptive column with its task's best baseline. Some questions name both sides
instead (an untuned controller against tuned cosine, a transferred policy against the same controller from
scratch); `contrast` answers one such question exactly like `metrics.compare_to_baselines` answers its own: on the
test metric, the difference a - b with its interval (paired by seed when both sides ran the same seeds on the same
data checksum, Welch otherwise), the two-sided test and the TOST within the margin the side `b`'s task declares
(relative margins scale with b's mean final validation metric); `judge` applies Holm's correction across a table of
contrasts (difference tests and TOSTs separately) and the four-outcome `stats.verdict`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from adaptive_lr.reporting.metrics import _clip, _difference_range, _margin, _paired
from adaptive_lr.reporting.stats import ALPHA, CONFIDENCE, UNTESTED, bootstrap_mean_ci, compare, holm, verdict

CONTRAST_COLUMNS = [
    "a_task", "a_scheduler", "b_task", "b_scheduler", "metric", "mode", "n_a", "n_b", "a_mean", "a_ci_low",
    "a_ci_high", "b_mean", "b_ci_low", "b_ci_high", "difference", "difference_ci_low", "difference_ci_high",
    "paired", "margin", "p_difference", "p_equivalence", "note",
]  # fmt: skip


def _side(per_run: pd.DataFrame, task: str, scheduler: str) -> pd.DataFrame:
    return per_run[(per_run["task"] == task) & (per_run["scheduler"] == scheduler)]


def contrast(per_run: pd.DataFrame, runs: pd.DataFrame, a: tuple[str, str], b: tuple[str, str],
             confidence: float = CONFIDENCE) -> dict:
    """CONTRAST_COLUMNS for (task, scheduler) `a` against `b` on the test metric (module docstring); a side without
    result runs gives NaN statistics and a note saying which."""
    mine, base = _side(per_run, *a), _side(per_run, *b)
    record = {"a_task": a[0], "a_scheduler": a[1], "b_task": b[0], "b_scheduler": b[1], "n_a": len(mine),
              "n_b": len(base), "paired": False, "margin": math.nan}  # fmt: skip
    either = mine if len(mine) else base
    record.update(metric=either["metric"].iloc[0] if len(either) else "", mode=either["mode"].iloc[0] if len(either)
                  else "max")
    if mine.empty or base.empty:
        missing = " and ".join(f"{t}/{s}" for (t, s), side in ((a, mine), (b, base)) if side.empty)
        return {**record, "note": f"no result runs of {missing}"}
    margin, how = _margin(runs, b[0], float(base["final"].mean()))
    paired = _paired(mine, base)
    if paired:
        base = base.set_index("seed").loc[mine["seed"]].reset_index()
    c = compare(mine["test"].to_numpy(dtype=float), base["test"].to_numpy(dtype=float), margin, paired, confidence)
    low, high = _clip(c.ci_low, c.ci_high, _difference_range(record["metric"]))
    a_stats = bootstrap_mean_ci(mine["test"].to_numpy(dtype=float), confidence)
    b_stats = bootstrap_mean_ci(base["test"].to_numpy(dtype=float), confidence)
    return {**record, "a_mean": a_stats[0], "a_ci_low": a_stats[1], "a_ci_high": a_stats[2], "b_mean": b_stats[0],
            "b_ci_low": b_stats[1], "b_ci_high": b_stats[2], "difference": c.difference, "difference_ci_low": low,
            "difference_ci_high": high, "paired": paired, "margin": margin, "p_difference": c.p_difference,
            "p_equivalence": c.p_equivalence, "note": "; ".join(n for n in (c.note, how) if n)}  # fmt: skip


def judge(records: Sequence[dict], alpha: float = ALPHA) -> pd.DataFrame:
    """The contrasts as a frame with Holm-adjusted p-values across all of them and each one's verdict."""
    frame = pd.DataFrame(list(records), columns=CONTRAST_COLUMNS)
    frame["p_difference_holm"] = holm(frame["p_difference"].astype(float)) if len(frame) else []
    frame["p_equivalence_holm"] = holm(frame["p_equivalence"].astype(float)) if len(frame) else []
    frame["verdict"] = [
        UNTESTED if not np.isfinite(float(r.p_difference)) else
        verdict(float(r.difference), float(r.p_difference_holm), float(r.p_equivalence_holm), r.mode, alpha)
        for r in frame.itertuples(index=False)
    ]  # fmt: skip
    return frame
