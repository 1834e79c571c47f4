"""The transfer table as a report section: a learned controller started from a saved policy against the same
controller learning from scratch, per task, under the project's verdict rules.

Runs of a learned controller with a `warm_start` are labelled `<controller> +warm` by `collect` (never mixed with
the cold runs). `adaptive-lr meta-train --leave-one-out` (`meta.transfer`) runs, per held-out family, the policy
meta-trained on the other families, frozen (no learning, no exploration), beside the controller learning from
scratch with the same seeds. Per task and controller with both columns: `+warm` - scratch on the test metric,
paired by seed on the same data checksum (Welch otherwise), TOST within the task's margin, Holm's correction across
the comparisons of this table, four outcomes (`contrasts`). The policy column names the folder its file came from
(for a meta-trained policy, `<name>-without-<family>-<config hash>`), never a machine's path.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import TYPE_CHECKING

import pandas as pd

from adaptive_lr.reporting.contrasts import contrast, judge
from adaptive_lr.reporting.fmt import md_interval, md_number

if TYPE_CHECKING:
    from adaptive_lr.reporting.report import ReportContext

WARM = " +warm"  # the label suffix `collect` gives warm-started runs


def transfer_pairs(per_run: pd.DataFrame) -> list[tuple[str, str]]:
    """(task, controller) for every task that has both `<controller> +warm` and `<controller>` result runs."""
    columns = per_run.groupby("task")["scheduler"].agg(set)
    return [(task, name.removesuffix(WARM)) for task, names in sorted(columns.items()) for name in sorted(names)
            if name.endswith(WARM) and name.removesuffix(WARM) in names]


def transfer_table(per_run: pd.DataFrame, runs: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """The judged contrasts `+warm` vs scratch (module docstring), with the policy folders of the warm runs."""
    pairs = transfer_pairs(per_run)
    frame = judge([contrast(per_run, runs, (task, name + WARM), (task, name)) for task, name in pairs], alpha)
    frame["policy"] = [_policy(per_run, runs, task, name + WARM) for task, name in pairs]
    return frame


def _policy(per_run: pd.DataFrame, runs: pd.DataFrame, task: str, scheduler: str) -> str:
    ids = set(per_run.loc[(per_run["task"] == task) & (per_run["scheduler"] == scheduler), "run_id"])
    paths = sorted(set(runs.loc[runs["run_id"].isin(ids), "warm_start"]))
    return ", ".join(PurePath(p.strip("'\"")).parent.name or "?" for p in paths)


def transfer_section(ctx: ReportContext) -> list[str]:
    """`## Transfer` (module docstring); nothing when no task ran a controller both warm-started and cold."""
    frame = transfer_table(ctx.per_run, ctx.data.runs, ctx.alpha)
    if frame.empty:
        return []
    counts = frame["verdict"].value_counts()
    tally = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    lines = [
        "## Transfer: a saved policy against the same controller learning from scratch", "",
        "Per task, `<controller> +warm` (started from a saved policy; from `adaptive-lr meta-train --leave-one-out`:"
        " the policy meta-trained on the other families, frozen) against `<controller>` learning from scratch on "
        "the test metric: difference +warm - scratch with its 95% interval (paired by seed on the same data "
        "checksum, Welch otherwise), TOST within the task's margin, Holm's correction across the "
        f"{len(frame)} comparisons of this table; level {ctx.alpha:g}. Outcomes: {tally}.", "",
        "| task | controller | policy | from scratch [95% CI] | +warm [95% CI] | difference [95% CI] | "
        "Holm p (difference / TOST) | verdict |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]  # fmt: skip
    for r in frame.itertuples(index=False):
        how = "paired" if r.paired else "Welch"
        verdict = f"**{r.verdict}**" + (f" ({r.note})" if r.verdict == "untested" and r.note else "")
        lines.append(f"| {r.a_task} | {r.b_scheduler} | {r.policy} | {md_interval(r.b_mean, r.b_ci_low, r.b_ci_high)} | "
                     f"{md_interval(r.a_mean, r.a_ci_low, r.a_ci_high)} | "
                     f"{md_interval(r.difference, r.difference_ci_low, r.difference_ci_high, signed=True)} {how} | "
                     f"{md_number(r.p_difference_holm, '.2g')} / {md_number(r.p_equivalence_holm, '.2g')} | {verdict} |")
    return lines + [""]
