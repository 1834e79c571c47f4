"""Write the markdown comparison report of one experiment from its logged runs (never retrains).

`write_report` creates `reports_root/<experiment>/<YYYYmmdd-HHMMSS>[-k]/` (a new folder each call, never
overwriting; `-1`, `-2`, ... is added when the timestamp folder exists) holding:

- `report.md`: summary per task, one table per task, failed/incomplete runs, protocol; links every PNG.
- `summary.csv`: one row per task x scheduler, sorted by task then scheduler, floats written with 6
  significant digits so that re-running on the same store gives an identical file. Columns:
    task, scheduler, adaptive   -- identity; adaptive is the run's `adaptive` tag
    metric, mode                -- base metric name and "max"/"min"
    final_mean, final_std       -- final val metric, mean and sample std over seeds (NaN if a seed's is NaN)
    best_mean                   -- best val metric over epochs (mode-aware), mean over seeds
    epochs_to_threshold_mean    -- first epoch reaching the threshold, never reached = max_epochs, mean
    reached                     -- number of seeds that reached the threshold
    generalization_gap          -- final train metric minus final val metric, mean over seeds
    stability                   -- std of epoch-to-epoch val_loss changes, mean over seeds (lower = smoother)
    test_mean                   -- final test metric, mean over seeds
    n_seeds, n_diverged         -- finished runs, and how many of them logged a non-finite epoch metric
- `<task>_val_<metric>.png`: validation curves per scheduler, mean over seeds with a min-max band.
- `<task>_lr.png`: LR trajectories (`lr` against step / steps_per_epoch, log y axis), one line per run.

Metric definitions are in `adaptive_lr.reporting.metrics`.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from adaptive_lr.reporting.collect import RunData, load_runs
from adaptive_lr.reporting.metrics import aggregate, best_schedulers, compare_adaptive, per_run_metrics

CSV_FLOAT_FORMAT = "%.6g"
TABLE_DIGITS = 4  # significant digits in report tables
TIMESTAMP_FORMAT = "%Y%m%d-%H%M%S"
TABLE_HEADER = [
    "scheduler", "final val (mean ± std)", "best val", "epochs to threshold", "gen. gap", "stability", "test",
    "seeds",
]  # fmt: skip


def write_report(experiment: str, tracking_uri: str, reports_root: Path, now: datetime | None = None) -> Path:
    """Write report.md, summary.csv and plots for `experiment`; return the path of report.md.

    Raises `NoRunsError` if the experiment does not exist or has no FINISHED run.
    """
    now = now or datetime.now()
    data = load_runs(experiment, tracking_uri)
    summary = aggregate(per_run_metrics(data))
    out = _new_folder(Path(reports_root) / _slug(experiment), now.strftime(TIMESTAMP_FORMAT))

    summary.to_csv(out / "summary.csv", index=False, float_format=CSV_FLOAT_FORMAT, na_rep="nan")
    plots = {task: _plot_task(task, data, rows, out) for task, rows in summary.groupby("task", sort=True)}
    report = out / "report.md"
    report.write_text(render_markdown(data, summary, plots, now), encoding="utf-8")
    return report


def render_markdown(data: RunData, summary: pd.DataFrame, plots: dict[str, list[str]], now: datetime) -> str:
    finished, unfinished = data.finished, data.unfinished
    lines = [
        f"# Report: {data.experiment}",
        "",
        f"Generated {now.isoformat(sep=' ', timespec='seconds')} from tracking store `{data.tracking_uri}`: "
        f"{len(data.runs)} runs ({len(finished)} finished, {len(unfinished)} failed or incomplete).",
        "",
        "## Summary",
        "",
    ]
    best = best_schedulers(summary)
    comparisons = compare_adaptive(summary)
    for task, rows in summary.groupby("task", sort=True):
        lines += _task_summary(task, rows, best[task], comparisons[comparisons["task"] == task]) + [""]

    lines += ["## Results", ""]
    for task, rows in summary.groupby("task", sort=True):
        runs = finished[finished["task"] == task]
        metric, mode, threshold = (_values(runs[c]) for c in ("metric", "mode", "threshold"))
        lines += [f"### {task}: val {metric} ({mode}), threshold {threshold}", "", *_table(rows), ""]
        lines += [f"![{Path(p).stem}]({p})" for p in plots[task]]
        if not any(p.endswith("_lr.png") for p in plots[task]):
            lines.append("(No `lr` history logged for this task, so no LR plot.)")
        lines.append("")

    lines += ["## Failed or incomplete runs", ""]
    if unfinished.empty:
        lines += ["None.", ""]
    else:
        lines += _row(["run id", "task", "scheduler", "seed", "status", "error"])
        lines += _row(["---"] * 6)
        for run in unfinished.itertuples(index=False):
            seed = "" if pd.isna(run.seed) else run.seed
            lines += _row(
                [run.run_id, run.task, run.scheduler, seed, run.status, run.error or "(no error tag)"]
            )
        lines += ["", "These runs are excluded from every table, plot and summary above.", ""]

    lines += ["## Protocol", ""]
    for task, runs in finished.groupby("task", sort=True):
        lines.append(
            f"- {task}: val {_values(runs['metric'])} ({_values(runs['mode'])}), "
            f"threshold {_values(runs['threshold'])}, max epochs {_values(runs['max_epochs'])}, "
            f"seeds {_values(runs['seed'])}, schedulers {_values(runs['scheduler'])}."
        )
    lines += [
        "- Epochs to threshold: first epoch whose val metric is >= threshold (max) or <= threshold (min); "
        "a run that never reaches it counts as max epochs. Gen. gap: final train minus final val metric. "
        "Stability: std of epoch-to-epoch val_loss changes (lower is smoother). "
        "Mean ± sample std over seeds.",
        "",
    ]
    return "\n".join(lines)


def _task_summary(task: str, rows: pd.DataFrame, best: str | None, comparisons: pd.DataFrame) -> list[str]:
    metric, mode = rows["metric"].iloc[0], rows["mode"].iloc[0]
    if best is None:
        lines = [f"- **{task}**: no scheduler has a finite mean final val {metric}; see the table."]
    else:
        winner = rows[rows["scheduler"] == best].iloc[0]
        lines = [
            f"- **{task}**: best scheduler by mean final val {metric} "
            f"({'higher' if mode == 'max' else 'lower'} is better): "
            f"**{best}** ({_fmt(winner.final_mean)} over {winner.n_seeds} seeds)."
        ]
    unranked = rows.loc[~rows["final_mean"].map(math.isfinite), "scheduler"]
    if not unranked.empty:
        lines.append(
            f"  - Not ranked (a seed ended on NaN, so the mean is undefined): {', '.join(unranked)}."
        )
    if comparisons.empty:
        lines.append("  - No adaptive scheduler ran on this task.")
    for c in comparisons.itertuples(index=False):
        seeds = (
            f"{c.n_seeds} seeds"
            if c.n_seeds == c.baseline_n_seeds
            else f"{c.n_seeds} vs {c.baseline_n_seeds} seeds"
        )
        if pd.isna(c.baseline):
            lines.append(f"  - Adaptive {c.scheduler}: no baseline with a finite mean to compare against.")
        elif not math.isfinite(c.final_mean):
            lines.append(
                f"  - Adaptive {c.scheduler} did not beat the best baseline {c.baseline} "
                f"({_fmt(c.baseline_mean)}): its mean final val {metric} is undefined "
                "(a seed ended on NaN; see the table)."
            )
        else:
            verdict = "beat" if c.beats else "did not beat"
            lines.append(
                f"  - Adaptive {c.scheduler} {verdict} the best baseline {c.baseline}: "
                f"{_fmt(c.final_mean)} vs {_fmt(c.baseline_mean)} "
                f"(difference {_fmt(c.difference, signed=True)}; "
                f"difference of means over {seeds}, no significance test)."
            )
    return lines


def _table(rows: pd.DataFrame) -> list[str]:
    # tasks that log a reference forecast on the test targets (test_naive_<metric>) show it beside each result
    baseline = bool(np.isfinite(rows["test_baseline_mean"].to_numpy(dtype=float)).any())
    header = [*TABLE_HEADER[:-1], "test naive baseline", TABLE_HEADER[-1]] if baseline else TABLE_HEADER
    lines = _row(header) + _row(["---"] + ["---:"] * (len(header) - 1))
    for r in rows.itertuples(index=False):
        seeds = f"{r.n_seeds}" + (f" ({r.n_diverged} diverged)" if r.n_diverged else "")
        cells = [
            f"{r.scheduler} (adaptive)" if r.adaptive else r.scheduler,
            f"{_fmt(r.final_mean)} ± {_fmt(r.final_std)}",
            _fmt(r.best_mean),
            f"{r.epochs_to_threshold_mean:.1f} (reached {r.reached}/{r.n_seeds})",
            _fmt(r.generalization_gap, signed=True),
            _fmt(r.stability),
            _fmt(r.test_mean),
            *([_fmt(r.test_baseline_mean)] if baseline else []),
            seeds,
        ]  # fmt: skip
        lines += _row(cells)
    return lines


def _row(cells: list[object]) -> list[str]:
    """One markdown table row; pipes and newlines inside cells are escaped so the table stays intact."""
    clean = [str(c).replace("|", "\\|").replace("\n", " ") for c in cells]
    return ["| " + " | ".join(clean) + " |"]


def _fmt(x: float, signed: bool = False) -> str:
    if not math.isfinite(x):
        return str(x)  # "nan", "inf", "-inf"
    return f"{x:{'+' if signed else ''}.{TABLE_DIGITS}g}"


def _values(column: pd.Series) -> str:
    """Distinct values of a column, comma separated: a task mixing settings shows it, not hides it."""
    return ", ".join(str(v) for v in sorted(column.dropna().unique()))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "unnamed"


def _new_folder(parent: Path, stamp: str) -> Path:
    """Create parent/stamp, or parent/stamp-1, -2, ... if taken; mkdir without exist_ok claims atomically."""
    parent.mkdir(parents=True, exist_ok=True)
    for k in range(10_000):
        folder = parent / (stamp if k == 0 else f"{stamp}-{k}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise FileExistsError(f"no free report folder for {parent / stamp} after 10000 suffixes")


def _plot_task(task: str, data: RunData, summary: pd.DataFrame, out: Path) -> list[str]:
    """Write the PNGs of one task into `out`; return their file names (relative to the report)."""
    # deferred import; Figure + savefig renders with Agg and touches no pyplot (global) state
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    runs = data.finished[data.finished["task"] == task]
    metric, threshold = runs["metric"].iloc[0], runs["threshold"].iloc[0]
    colors = {s: f"C{i}" for i, s in enumerate(sorted(data.finished["scheduler"].unique()))}
    names = []

    # 1) validation curves: mean over seeds per scheduler (NaN skipped, so the legend counts diverged seeds),
    #    shaded min-max band, threshold as a dashed line
    diverged = summary.set_index("scheduler")["n_diverged"]
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    val = data.epochs[data.epochs["name"] == f"val_{metric}"]
    for scheduler, group in runs.groupby("scheduler", sort=True):
        wide = val[val["run_id"].isin(group["run_id"])].pivot(index="epoch", columns="run_id", values="value")
        if wide.empty:
            continue
        color = colors[scheduler]
        note = f", {diverged[scheduler]} diverged" if diverged[scheduler] else ""
        ax.plot(wide.index, wide.mean(axis=1), color=color, label=f"{scheduler} (n={wide.shape[1]}{note})")
        ax.fill_between(wide.index, wide.min(axis=1), wide.max(axis=1), color=color, alpha=0.2, linewidth=0)
    if math.isfinite(threshold):
        ax.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set(
        xlabel="epoch", ylabel=f"val {metric}", title=f"{task}: val {metric}, mean over seeds, min-max band"
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    names.append(f"{_slug(task)}_val_{_slug(metric)}.png")
    fig.savefig(out / names[-1], dpi=100)

    # 2) LR trajectories of every run: x = global step / steps_per_epoch, log y (non-positive LR dropped)
    lr = data.lr.merge(runs[["run_id", "scheduler", "steps_per_epoch"]], on="run_id")
    lr = lr[(lr["value"] > 0) & (lr["steps_per_epoch"].fillna(0) > 0)]
    if not lr.empty:
        fig = Figure(figsize=(7, 4.5))
        ax = fig.add_subplot()
        labelled = set()
        for (scheduler, _), points in lr.groupby(["scheduler", "run_id"], sort=True):
            label = None if scheduler in labelled else scheduler
            labelled.add(scheduler)
            epochs = points["step"] / points["steps_per_epoch"].astype(float)
            ax.plot(epochs, points["value"], color=colors[scheduler], alpha=0.7, linewidth=1, label=label)
        ax.set_yscale("log")
        ax.set(
            xlabel="epoch (global step / steps per epoch)",
            ylabel="learning rate",
            title=f"{task}: LR, every run",
        )
        ax.legend()
        names.append(f"{_slug(task)}_lr.png")
        fig.savefig(out / names[-1], dpi=100)
    return names
