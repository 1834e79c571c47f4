"""Does a quick budget rank methods like a longer one? (issue 14: the study's budgets must be shown to preserve the
ordering of methods on at least one family before its verdicts are trusted.)

Reads two per-run bundles of the same grid design run at two budgets (e.g. `study-electricity` and
`study-electricity-long`) and, per task present in both, compares:
- the methods' ranking by mean test metric (the verdict metric): Kendall's tau-b with its two-sided p-value and
  Spearman's rho (scipy.stats), over the methods both ran;
- the best method and the best fixed schedule (chosen on validation, as the report does) at each budget;
- each adaptive method's verdict against the best baseline (the project's verdict rules, `metrics.aggregate`), and
  how many verdicts are the same at both budgets;
- each method's chosen initial LR (the sweep's best point) and the distance between the two in decades.
Nothing is trained; the output folder holds rank_check.md and rank_check.csv.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
from scipy import stats

from adaptive_lr.reporting.bundle import BundleError, read_bundle
from adaptive_lr.reporting.collect import RunData
from adaptive_lr.reporting.metrics import aggregate, best_baselines, per_run_metrics

TIMESTAMP_FORMAT = "%Y%m%d-%H%M%S"
METHOD_COLUMNS = ["task", "scheduler", "adaptive", "quick_test", "long_test", "quick_rank", "long_rank",
                  "quick_verdict", "long_verdict", "quick_lr", "long_lr", "lr_decades_apart"]  # fmt: skip


@dataclass(frozen=True)
class TaskAgreement:
    """The agreement of the two budgets' rankings on one task."""

    task: str
    n_methods: int
    kendall_tau: float
    kendall_p: float
    spearman_rho: float
    quick_best: str
    long_best: str
    quick_best_baseline: str
    long_best_baseline: str
    verdicts_same: int
    verdicts_compared: int


def _summary(data: RunData) -> pd.DataFrame:
    per_run = per_run_metrics(data)
    summary, _ = aggregate(per_run, data.runs)
    lrs = data.finished.groupby(["task", "scheduler"])["lr"].median()  # NaN where no run recorded its LR
    summary["chosen_lr"] = [lrs.get((r.task, r.scheduler), math.nan) for r in summary.itertuples(index=False)]
    summary["best_baseline"] = summary["task"].map({t: ", ".join(n) for t, n in best_baselines(per_run).items()})
    return summary


def _ranks(values: pd.Series, mode: str) -> pd.Series:
    """Rank 1 = best; ties share their mean rank."""
    return values.rank(ascending=(mode == "min"), method="average")


def compare_budgets(quick: RunData, long: RunData) -> tuple[pd.DataFrame, list[TaskAgreement]]:
    """(one row per task x method in both, METHOD_COLUMNS; one TaskAgreement per task in both)."""
    a, b = _summary(quick), _summary(long)
    tasks = sorted(set(a["task"]) & set(b["task"]))
    if not tasks:
        raise BundleError(f"{quick.experiment} and {long.experiment} share no task: nothing to compare")
    rows, agreements = [], []
    for task in tasks:
        qa = a[a["task"] == task].set_index("scheduler")
        lb = b[b["task"] == task].set_index("scheduler")
        methods = sorted(set(qa.index) & set(lb.index))
        mode = str(qa["mode"].iloc[0])
        q_test, l_test = qa.loc[methods, "test_mean"].astype(float), lb.loc[methods, "test_mean"].astype(float)
        q_rank, l_rank = _ranks(q_test, mode), _ranks(l_test, mode)
        tau, p = stats.kendalltau(q_test, l_test) if len(methods) > 1 else (math.nan, math.nan)
        rho = stats.spearmanr(q_test, l_test).statistic if len(methods) > 1 else math.nan
        same = compared = 0
        for m in methods:
            adaptive = bool(qa.loc[m, "adaptive"])
            qv, lv = str(qa.loc[m, "verdict"]), str(lb.loc[m, "verdict"])
            if adaptive:
                compared += 1
                same += qv == lv
            ql, ll = float(qa.loc[m, "chosen_lr"]), float(lb.loc[m, "chosen_lr"])
            apart = abs(math.log10(ll / ql)) if ql > 0 and ll > 0 else math.nan
            rows.append([task, m, adaptive, q_test[m], l_test[m], q_rank[m], l_rank[m], qv, lv, ql, ll, apart])
        agreements.append(TaskAgreement(
            task, len(methods), float(tau), float(p), float(rho), str(q_rank.idxmin()), str(l_rank.idxmin()),
            str(qa["best_baseline"].iloc[0]), str(lb["best_baseline"].iloc[0]), same, compared))  # fmt: skip
    return pd.DataFrame(rows, columns=METHOD_COLUMNS), agreements


def _fmt(x: float, spec: str = ".4g") -> str:
    return format(x, spec) if isinstance(x, float) and math.isfinite(x) else "nan"


def render(quick: RunData, long: RunData, methods: pd.DataFrame, agreements: list[TaskAgreement]) -> str:
    lines = [f"# Budget check: {quick.experiment} against {long.experiment}", "",
             "Does the quick budget rank methods like the longer one? Mean test metric (the verdict metric) per "
             "method at each budget; Kendall's tau-b and Spearman's rho over the methods both ran (scipy.stats); the "
             "verdicts are each budget's own (best baseline chosen on validation, Holm within each budget's runs).",
             ""]  # fmt: skip
    for ag in agreements:
        lines += [f"## {ag.task}", "",
                  f"- {ag.n_methods} methods; Kendall tau-b **{_fmt(ag.kendall_tau, '.3f')}** (p {_fmt(ag.kendall_p, '.2g')}), "
                  f"Spearman rho {_fmt(ag.spearman_rho, '.3f')}.",
                  f"- Best method by test: {ag.quick_best} (quick), {ag.long_best} (long). Best fixed schedule "
                  f"(validation): {ag.quick_best_baseline} (quick), {ag.long_best_baseline} (long).",
                  f"- Verdicts against the best baseline identical for {ag.verdicts_same} of {ag.verdicts_compared} "
                  "adaptive methods.", "",
                  "| method | test quick | test long | rank quick | rank long | verdict quick | verdict long | LR quick "
                  "| LR long | decades apart |",
                  "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in methods[methods["task"] == ag.task].sort_values("long_rank").itertuples(index=False):
            lines.append(f"| {r.scheduler} | {_fmt(r.quick_test)} | {_fmt(r.long_test)} | {r.quick_rank:g} | "
                         f"{r.long_rank:g} | {r.quick_verdict} | {r.long_verdict} | {_fmt(r.quick_lr, '.3g')} | "
                         f"{_fmt(r.long_lr, '.3g')} | {_fmt(r.lr_decades_apart, '.2g')} |")
        lines.append("")
    return "\n".join(lines)


def write_rank_check(quick_bundle: Path, long_bundle: Path, reports_root: Path, title: str | None = None,
                     now: datetime | None = None) -> Path:
    """Compare the two bundles; write <reports_root>/<title>/<timestamp>/rank_check.md (+ .csv); return the .md."""
    from adaptive_lr.reporting.report import _new_folder

    quick, long = read_bundle(Path(quick_bundle)), read_bundle(Path(long_bundle))
    methods, agreements = compare_budgets(quick, long)  # before creating anything: bad input writes nothing
    name = title or f"{quick.experiment}-vs-{long.experiment}"
    out = _new_folder(Path(reports_root) / name, (now or datetime.now()).strftime(TIMESTAMP_FORMAT))
    try:
        methods.to_csv(out / "rank_check.csv", index=False, float_format="%.6g", na_rep="nan")
        report = out / "rank_check.md"
        report.write_text(render(quick, long, methods, agreements), encoding="utf-8")
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return report
