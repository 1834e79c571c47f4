"""Write the markdown comparison report of one experiment from its logged runs (never retrains).

`write_report` creates `reports_root/<experiment>/<YYYYmmdd-HHMMSS>[-k]/` (a new folder each call, never
overwriting; `-1`, `-2`, ... is added when the timestamp folder exists) holding:

- `report.md`, in this order: the **summary verdict** (which adaptive schedulers beat the task's best
  baseline, with 95% confidence intervals and Welch p-values, and plainly where none did; best scheduler per
  task; profile scores), one **table per task** with its plots (validation curves, LR trajectories, controller
  actions), the **performance profile** across tasks, failed/incomplete runs, the **protocol** (budget,
  tuning, seeds, hardware, git commits, data checksums, definitions) and the **links** appendix (MLflow run ID
  and TensorBoard log dir of every run, collapsible).
- `summary.csv`: one row per task x scheduler (`metrics.SUMMARY_COLUMNS`), sorted by task then scheduler,
  floats written with 6 significant digits:
    task, scheduler, adaptive  -- identity; adaptive is the run's `adaptive` tag
    metric, mode               -- base metric name, "max"/"min"
    final_mean, final_std      -- final val metric, mean and sample std over seeds (NaN if a seed's is NaN)
    final_ci_low, _ci_high     -- its 95% Student-t interval (NaN with one seed)
    best_mean                  -- best val metric over epochs (mode-aware), mean over seeds
    test_mean, _ci_low/_high   -- final test metric, mean and 95% interval
    test_baseline_mean         -- the task's naive test baseline (test_naive_<metric>), when logged
    epochs_to_threshold_mean, _ci_low/_high -- first epoch at the threshold, never reached = max_epochs
    reached                    -- number of seeds that reached the threshold
    wall_to_threshold_mean, _ci_low/_high   -- wall-clock seconds to the threshold, unreached = budget time
    generalization_gap         -- final train metric minus final val metric, mean over seeds
    stability                  -- std of epoch-to-epoch val_loss changes, mean over seeds (lower = smoother)
    baseline                   -- the task's best baseline (best non-adaptive mean final val metric)
    p_value, verdict           -- adaptive rows: Welch p vs the best baseline; beat / no significant
                                  difference / worse / untested. Baselines: NaN; best baseline / baseline
    verdict_note               -- why a comparison is untested
    perf_ratio                 -- time to target / the fastest scheduler's on the task (inf = never reached)
    n_seeds, n_diverged        -- result runs, and those with a non-finite epoch metric or training step or
                                  a `diverged` tag (last, where they were before the columns grew)
- `profile.csv`: per scheduler its performance-profile score, rho at tau = 1 and at tau_max, and the number of
  tasks.
- PNGs: `<task>_val_<metric>.png`, `<task>_lr.png`, `<task>_actions.png` (when the task's runs logged
  `controller_action`) and `performance_profile.png`.

Re-running on the same store reproduces the same files: every table is sorted by task, scheduler, seed and run
ID, numbers are rounded for print, and the only time-dependent text is the "Generated ..." line under the
title. Metric definitions are in `metrics`, statistics in `stats`, profiles in `profiles`.
"""

from __future__ import annotations

import math
import os
import platform
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from adaptive_lr.reporting import plots
from adaptive_lr.reporting.collect import RunData, load_runs
from adaptive_lr.reporting.metrics import BEST_BASELINE, aggregate, best_schedulers, per_run_metrics
from adaptive_lr.reporting.profiles import (
    TAU_MAX,
    performance_ratios,
    profile,
    profile_scores,
    time_to_target,
)
from adaptive_lr.reporting.stats import ALPHA, BEAT, CONFIDENCE, UNTESTED

CSV_FLOAT_FORMAT = "%.6g"
TABLE_DIGITS = 4  # significant digits in report tables
TIMESTAMP_FORMAT = "%Y%m%d-%H%M%S"
GENERATED_PREFIX = "Generated "  # the one line of report.md that depends on when it was written
TABLE_HEADER = [
    "scheduler", "final val mean [95% CI]", "best val", "test mean [95% CI]", "epochs to threshold [95% CI]",
    "wall-clock to threshold, s [95% CI]", "reached", "p vs best baseline", "verdict", "gen. gap",
    "stability", "seeds", "diverged",
]  # fmt: skip
PROFILE_COLUMNS = ["scheduler", "score", "rho_at_1", "rho_at_tau_max", "tau_max", "n_tasks"]


def write_report(
    experiment: str,
    tracking_uri: str,
    reports_root: Path,
    now: datetime | None = None,
    tau_max: float = TAU_MAX,
    alpha: float = ALPHA,
) -> Path:
    """Write report.md, summary.csv, profile.csv and plots for `experiment`; return the path of report.md.

    `tau_max` bounds the performance profile, `alpha` is the significance level of the verdicts. Raises
    `NoRunsError` if the experiment does not exist or has no FINISHED result run.
    """
    now = now or datetime.now()
    data = load_runs(experiment, tracking_uri)
    per_run = per_run_metrics(data)
    summary = aggregate(per_run, alpha)
    ratios = performance_ratios(time_to_target(summary))
    out = _new_folder(Path(reports_root) / plots.slug(experiment), now.strftime(TIMESTAMP_FORMAT))

    summary.to_csv(out / "summary.csv", index=False, float_format=CSV_FLOAT_FORMAT, na_rep="nan")
    profile_table(ratios, tau_max).to_csv(
        out / "profile.csv", index=False, float_format=CSV_FLOAT_FORMAT, na_rep="nan"
    )
    colors = plots.scheduler_colors(list(data.finished["scheduler"]))
    figures = {
        task: _plot_task(task, data, rows, colors, out) for task, rows in summary.groupby("task", sort=True)
    }
    profile_png = plots.performance_profile(ratios, colors, out, tau_max)
    report = out / "report.md"
    text = render_markdown(
        data, summary, figures, now, ratios=ratios, profile_png=profile_png, tau_max=tau_max, alpha=alpha,
        report_dir=out,
    )
    report.write_text(text, encoding="utf-8")
    return report


def profile_table(ratios: pd.DataFrame, tau_max: float = TAU_MAX) -> pd.DataFrame:
    """PROFILE_COLUMNS per scheduler, best score first (ties by name)."""
    scores = profile_scores(ratios, tau_max)
    rho = profile(ratios, [1.0, tau_max])
    table = pd.DataFrame({
        "scheduler": ratios.columns, "score": scores.to_numpy(), "rho_at_1": rho.iloc[0].to_numpy(),
        "rho_at_tau_max": rho.iloc[1].to_numpy(), "tau_max": float(tau_max), "n_tasks": len(ratios),
    })  # fmt: skip
    table = table.sort_values(["score", "scheduler"], ascending=[False, True], kind="stable")
    return table.reset_index(drop=True)


def render_markdown(
    data: RunData,
    summary: pd.DataFrame,
    figures: dict[str, list[str]],
    now: datetime,
    ratios: pd.DataFrame | None = None,
    profile_png: str | None = None,
    tau_max: float = TAU_MAX,
    alpha: float = ALPHA,
    report_dir: Path | None = None,
) -> str:
    finished, unfinished = data.finished, data.unfinished
    ratios = performance_ratios(time_to_target(summary)) if ratios is None else ratios
    never = f", {len(data.tune)} of the tuning phase (never results)" if data.has_phases else ""
    superseded = data.superseded
    if len(superseded):  # cells run again after a config change: only their latest run is a result
        cells = sorted({f"{r.task}/{r.scheduler}" for r in superseded.itertuples(index=False)})
        never += (f", {len(superseded)} superseded by a later run of the same cell (never results: "
                 f"{', '.join(cells)})")
    lines = [
        f"# Report: {data.experiment}",
        "",
        f"{GENERATED_PREFIX}{now.isoformat(sep=' ', timespec='seconds')} from tracking store "
        f"`{data.tracking_uri}`.",
        "",
        f"{len(data.runs)} runs: {len(finished)} finished results, {len(unfinished)} failed or incomplete"
        f"{' (any phase)' if data.has_phases else ''}{never}.",
        "",
        *_verdict_section(summary, ratios, tau_max, alpha),
        "## Results per task",
        "",
        f"Mean over seeds with its {CONFIDENCE:.0%} Student-t interval [low, high] (nan with a single seed: "
        "no spread estimate). p: Welch's t-test of the adaptive scheduler's per-seed final val metric "
        "against the best baseline's. Wall-clock: seconds of training (validation and controller overhead "
        "included) until the first epoch at the threshold; a seed that never reached it counts with its "
        "budget time. Plots: validation curves are the mean over seeds with a band of ± 1 sample std (over "
        "the seeds with a finite value at that epoch); controller actions show every decision of every seed.",
        "",
    ]
    for task, rows in summary.groupby("task", sort=True):
        runs = finished[finished["task"] == task]
        metric, mode, threshold = (_values(runs[c]) for c in ("metric", "mode", "threshold"))
        lines += [f"### {task}: val {metric} ({mode}), threshold {threshold}", "", *_table(rows), ""]
        notes = [f"  - {r.scheduler}: untested, {r.verdict_note}." for r in rows.itertuples(index=False)
                 if r.verdict == UNTESTED]  # fmt: skip
        if notes:
            lines += ["Untested comparisons:", *notes, ""]
        names = figures.get(task, [])
        lines += [f"![{Path(p).stem}]({p})" for p in names]
        if not any(p.endswith("_lr.png") for p in names):
            lines.append("(No `lr` history logged for this task, so no LR plot.)")
        if not any(p.endswith("_actions.png") for p in names):
            lines.append("(No `controller_action` logged for this task, so no controller-actions plot.)")
        lines += ["", *_watched(runs, report_dir)]

    lines += _profile_section(ratios, profile_png, tau_max)

    lines += ["## Failed or incomplete runs", ""]
    if unfinished.empty:
        lines += ["None.", ""]
    else:
        phase = ["phase"] if data.has_phases else []
        lines += _row(["run id", "task", "scheduler", "seed", *phase, "status", "error"])
        lines += _row(["---"] * (6 + len(phase)))
        for run in unfinished.itertuples(index=False):
            seed = "" if pd.isna(run.seed) else run.seed
            cells = [run.run_id, run.task, run.scheduler, seed, *([run.phase or "final"] if phase else []),
                     run.status, run.error or "(no error tag)"]  # fmt: skip
            lines += _row(cells)
        lines += ["", "These runs are excluded from every table, plot and summary above.", ""]

    lines += _protocol(data, alpha, tau_max)
    lines += _links(data)
    return "\n".join(lines)


def _watched(runs: pd.DataFrame, report_dir: Path | None) -> list[str]:
    """Links to the animated views (latent-space and decision-boundary GIFs) of one run per scheduler."""
    lines = []
    for scheduler, group in runs.groupby("scheduler", sort=True):
        for run in group.sort_values(["seed", "run_id"]).itertuples(index=False):
            gifs = sorted(Path(run.run_dir).glob("viz/*/*/*.gif")) if run.run_dir else []
            if gifs:
                links = ", ".join(
                    f"[{g.parent.parent.name}]({os.path.relpath(g, report_dir) if report_dir else g})" for g in gifs
                )
                lines.append(f"- {scheduler} (seed {run.seed}, run `{run.run_id}`): {links}")
                break
    return ["Watched runs (animated views, one run per scheduler):", "", *lines, ""] if lines else []


# -- summary verdict -----------------------------------------------------------------------------------------
def _verdict_section(summary: pd.DataFrame, ratios: pd.DataFrame, tau_max: float, alpha: float) -> list[str]:
    adaptive = summary[summary["adaptive"]]
    winners = adaptive[adaptive["verdict"] == BEAT]
    n_tasks = summary["task"].nunique()
    lines = [
        "## Summary verdict",
        "",
        "Rule: an adaptive scheduler **beat** the task's best baseline (the non-adaptive scheduler with the "
        "best mean final val metric) when its mean final val metric is better AND Welch's t-test on the "
        f"per-seed final values gives p < {alpha:g}; **worse** when its mean is worse AND p < {alpha:g}; "
        "otherwise **no significant difference**, or **untested** when no p-value exists (fewer than 2 "
        "seeds, a non-finite final value, or zero variance on both sides).",
        "",
    ]
    if adaptive.empty:
        lines.append("**No adaptive scheduler ran in this experiment**, so nothing can beat a baseline.")
    elif winners.empty:
        lines.append(f"**No adaptive scheduler beat the best baseline on any task** ({n_tasks} task(s)).")
    else:
        tasks = winners["task"].unique()
        where = "; ".join(
            f"{task} ({', '.join(winners.loc[winners['task'] == task, 'scheduler'])})" for task in tasks
        )
        won = f"{len(tasks)} of {n_tasks} task(s)"
        lines.append(f"**Adaptive schedulers beat the best baseline on {won}**: {where}.")
    lines.append("")
    for task, rows in summary.groupby("task", sort=True):
        lines += _task_verdict(task, rows)
    lines.append("")

    best = best_schedulers(summary)
    named = "; ".join(f"{task}: {name if name else 'none (no finite mean)'}" for task, name in best.items())
    lines.append(f"Best scheduler per task by mean final val metric: {named}.")
    table = profile_table(ratios, tau_max)
    scores = ", ".join(f"{r.scheduler} {_fmt(r.score)}" for r in table.itertuples(index=False))
    weak = " One task only: weak evidence." if len(ratios) == 1 else ""
    lines += [
        "",
        f"Performance-profile scores (wall-clock to threshold, tau_max {tau_max:g}; 1 = fastest on every "
        f"task): {scores}.{weak}",
        "",
    ]
    return lines


def _task_verdict(task: str, rows: pd.DataFrame) -> list[str]:
    metric, mode = rows["metric"].iloc[0], rows["mode"].iloc[0]
    direction = "higher" if mode == "max" else "lower"
    base = rows[rows["verdict"] == BEST_BASELINE]
    adaptive = rows[rows["adaptive"]]
    if base.empty:
        head = (
            f"- **{task}** (val {metric}, {direction} is better): no baseline with a finite mean final value"
        )
        if adaptive.empty:
            return [head + " and no adaptive scheduler."]
        return [head + "; adaptive schedulers untested: " + ", ".join(adaptive["scheduler"]) + "."]
    b = base.iloc[0]
    head = (f"- **{task}** (val {metric}, {direction} is better): best baseline **{b.scheduler}** "
            f"{_ci(b.final_mean, b.final_ci_low, b.final_ci_high)} over {b.n_seeds} seed(s).")  # fmt: skip
    if adaptive.empty:
        return [head + " No adaptive scheduler ran on this task."]
    lines = [head]
    for r in adaptive.itertuples(index=False):
        seeds = f"{r.n_seeds} vs {b.n_seeds} seeds"
        stats = (f"{_ci(r.final_mean, r.final_ci_low, r.final_ci_high)}, difference "
                 f"{_fmt(r.final_mean - b.final_mean, signed=True)}")  # fmt: skip
        if r.verdict == UNTESTED:
            lines.append(f"  - {r.scheduler}: **untested** ({r.verdict_note}): {stats}; {seeds}.")
        else:
            lines.append(f"  - {r.scheduler}: **{r.verdict}** ({stats}, p = {_fmt(r.p_value)}; {seeds}).")
    if not (adaptive["verdict"] == BEAT).any():
        lines.append("  - No adaptive scheduler beat the best baseline on this task.")
    return lines


# -- per-task table ------------------------------------------------------------------------------------------
def _table(rows: pd.DataFrame) -> list[str]:
    # tasks that log a reference forecast on the test targets (test_naive_<metric>) show it beside each result
    baseline = bool(np.isfinite(rows["test_baseline_mean"].to_numpy(dtype=float)).any())
    header = list(TABLE_HEADER)
    if baseline:
        header.insert(header.index("test mean [95% CI]") + 1, "test naive baseline")
    lines = _row(header) + _row(["---"] + ["---:"] * (len(header) - 1))
    for r in rows.itertuples(index=False):
        cells = [
            f"{r.scheduler} (adaptive)" if r.adaptive else r.scheduler,
            _ci(r.final_mean, r.final_ci_low, r.final_ci_high),
            _fmt(r.best_mean),
            _ci(r.test_mean, r.test_ci_low, r.test_ci_high),
            *([_fmt(r.test_baseline_mean)] if baseline else []),
            _ci(r.epochs_to_threshold_mean, r.epochs_to_threshold_ci_low, r.epochs_to_threshold_ci_high),
            _ci(r.wall_to_threshold_mean, r.wall_to_threshold_ci_low, r.wall_to_threshold_ci_high),
            f"{r.reached}/{r.n_seeds}",
            _fmt(r.p_value) if r.adaptive else "—",
            r.verdict,
            _fmt(r.generalization_gap, signed=True),
            _fmt(r.stability),
            r.n_seeds,
            r.n_diverged,
        ]  # fmt: skip
        lines += _row(cells)
    return lines


# -- performance profile -------------------------------------------------------------------------------------
def _profile_section(ratios: pd.DataFrame, png: str | None, tau_max: float) -> list[str]:
    n = len(ratios)
    lines = [
        "## Performance profile",
        "",
        "Time to target per task = mean wall-clock seconds to the task's threshold over seeds (a seed that "
        "never reached it counts with its budget time); inf when no seed reached it or the scheduler did not "
        "run on the task. Ratio = time / the fastest scheduler's time on that task (inf on a task nobody "
        f"solved). rho_s(tau) = fraction of tasks with ratio <= tau, tau in [1, {tau_max:g}]; score = area "
        f"under rho_s over [1, {tau_max:g}] / {tau_max - 1:g} (1 = fastest on every task, 0 = never within "
        f"{tau_max:g}x).",
        "",
    ]
    table = profile_table(ratios, tau_max)
    tasks = list(ratios.index)
    lines += _row(["scheduler", *[f"ratio on {t}" for t in tasks], "score"])
    lines += _row(["---"] + ["---:"] * (len(tasks) + 1))
    for r in table.itertuples(index=False):
        lines += _row([r.scheduler, *[_fmt(ratios.loc[t, r.scheduler]) for t in tasks], _fmt(r.score)])
    lines.append("")
    unsolved = [t for t in tasks if not np.isfinite(ratios.loc[t].to_numpy(dtype=float)).any()]
    if unsolved:
        lines += [
            f"No scheduler reached the threshold on: {', '.join(unsolved)} (counts as failed for all).",
            "",
        ]
    if n == 1:
        lines += ["With a single task every rho is 0 or 1: the profile is weak evidence.", ""]
    elif n < 5:
        lines += [f"With {n} tasks each task moves a profile by {1 / n:.2g}: read it as indicative only.", ""]
    if png:
        lines += [f"![{Path(png).stem}]({png})", ""]
    return lines


# -- protocol and links --------------------------------------------------------------------------------------
def _protocol(data: RunData, alpha: float, tau_max: float) -> list[str]:
    finished = data.finished
    lines = ["## Protocol", ""]
    for task, runs in finished.groupby("task", sort=True):
        steps = runs["max_epochs"].astype(float) * runs["steps_per_epoch"].astype(float)
        lines.append(
            f"- {task}: val {_values(runs['metric'])} ({_values(runs['mode'])}), "
            f"threshold {_values(runs['threshold'])}, max epochs {_values(runs['max_epochs'])}, "
            f"seeds {_values(runs['seed'])}, schedulers {_values(runs['scheduler'])}; "
            f"steps per epoch {_values(runs['steps_per_epoch']) or 'not recorded'}, "
            f"budget {_values(steps.dropna().astype(int)) or 'not recorded'} optimizer steps per run."
        )
    lines.append("- Tuning: " + _tuning(data))
    lines.append("- Hardware: " + _hardware(finished))
    lines.append(
        "- Code: " + _counted(finished, "git_commit", "git commit", "no run carries a `git_commit` tag") + "."
    )
    checksums = [
        f"{task}: " + _counted(runs, "data_checksum", "checksum", "not recorded")
        for task, runs in finished.groupby("task", sort=True)
    ]
    lines.append("- Data checksums (tag `data_checksum`): " + "; ".join(checksums) + ".")
    lines += [
        "- Definitions: final = val metric at the last epoch; best = best over epochs; epochs to threshold = "
        "first epoch whose val metric is >= threshold (max) or <= threshold (min), never reached = max "
        "epochs; wall-clock to threshold = `epoch_time_s` at that epoch, never reached = the run's last "
        "`epoch_time_s` scaled to max epochs (its total time when it used the whole budget); gen. gap = "
        "final train minus final val metric; stability = std of epoch-to-epoch val_loss changes (lower is "
        "smoother); diverged = a non-finite epoch metric, non-finite training steps or the run's `diverged` "
        "tag.",
        f"- Statistics: {CONFIDENCE:.0%} Student-t intervals with n-1 degrees of freedom; Welch's t-test "
        f"(two-sided, unequal variances), significance level {alpha:g}; performance profile up to tau_max "
        f"{tau_max:g}. Every number comes from the logged runs; nothing was retrained.",
        "",
    ]
    return lines


def _tuning(data: RunData) -> str:
    if not data.has_phases:
        return "no run carries a `phase` tag, so no tuning phase is recorded; every finished run is a result."
    tune = data.tune
    budget = _values(data.runs.loc[data.runs["tuning_budget"] != "", "tuning_budget"])
    finished = int((tune["status"] == "FINISHED").sum())
    return (
        f"{len(tune)} tune-phase runs ({finished} finished; tuning budget {budget or 'not recorded'} per "
        "task x scheduler, tag `tuning_budget`) chose each scheduler's setting; tables, plots and statistics "
        f"use only the {len(data.finished)} finished phase=final runs."
    )


def _hardware(runs: pd.DataFrame) -> str:
    keys = ["host", "device", "cpu_count", "torch_version", "python_version"]
    tagged = runs[(runs[keys] != "").any(axis=1)]
    if tagged.empty:
        try:
            torch = version("torch")
        except PackageNotFoundError:
            torch = "not installed"
        return (
            "not recorded by the runs (no `host`/`device`/`torch_version` tags); the process that wrote "
            f"this report ran on {platform.platform()}, {os.cpu_count()} CPUs, torch {torch}, Python "
            f"{platform.python_version()}."
        )
    groups = tagged.groupby(keys, sort=True).size()
    parts = [
        f"{n} run(s) on host {host or '?'}, device {device or '?'}, {cpus or '?'} CPUs, "
        f"torch {torch or '?'}, Python {python or '?'}"
        for (host, device, cpus, torch, python), n in groups.items()
    ]
    missing = len(runs) - len(tagged)
    return "; ".join(parts) + (f"; {missing} run(s) without hardware tags" if missing else "") + "."


def _counted(runs: pd.DataFrame, column: str, what: str, none: str) -> str:
    counts = runs.loc[runs[column] != "", column].value_counts().sort_index()
    if counts.empty:
        return none
    text = ", ".join(f"`{value}` ({n} run{'s' if n != 1 else ''})" for value, n in counts.items())
    missing = int((runs[column] == "").sum())
    dirty = (
        " (a `-dirty` commit had uncommitted changes)"
        if any(v.endswith("-dirty") for v in counts.index)
        else ""
    )
    return text + (f", {missing} without a {what}" if missing else "") + dirty


def _links(data: RunData) -> list[str]:
    phase = ["phase"] if data.has_phases else []
    lines = [
        "## Links",
        "",
        f"<details><summary>MLflow run IDs and TensorBoard log dirs ({len(data.runs)} runs)</summary>",
        "",
        "TensorBoard dir = the run's `run_dir` tag + `/tensorboard` (present when TensorBoard logging was "
        "on).",
        "",
        *_row(["run id", "task", "scheduler", "seed", *phase, "status", "TensorBoard log dir"]),
        *_row(["---"] * (6 + len(phase))),
    ]
    for run in data.runs.itertuples(index=False):
        seed = "" if pd.isna(run.seed) else run.seed
        board = f"{run.run_dir}/tensorboard" if run.run_dir else "(no run_dir tag)"
        lines += _row([run.run_id, run.task, run.scheduler, seed, *([run.phase or "final"] if phase else []),
                       run.status, board])  # fmt: skip
    lines += ["", "</details>", ""]
    return lines


# -- formatting and files ------------------------------------------------------------------------------------
def _row(cells: list[object]) -> list[str]:
    """One markdown table row; pipes and newlines inside cells are escaped so the table stays intact."""
    clean = [str(c).replace("|", "\\|").replace("\n", " ") for c in cells]
    return ["| " + " | ".join(clean) + " |"]


def _fmt(x: float, signed: bool = False) -> str:
    if not math.isfinite(x):
        return str(float(x))  # "nan", "inf", "-inf"
    return f"{x:{'+' if signed else ''}.{TABLE_DIGITS}g}"


def _ci(mean: float, low: float, high: float) -> str:
    return f"{_fmt(mean)} [{_fmt(low)}, {_fmt(high)}]"


def _values(column: pd.Series) -> str:
    """Distinct values of a column, comma separated: a task mixing settings shows it, not hides it."""
    return ", ".join(str(v) for v in sorted(column.dropna().unique()))


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


def _plot_task(task: str, data: RunData, rows: pd.DataFrame, colors: dict[str, str], out: Path) -> list[str]:
    """Write the PNGs of one task into `out`; return their file names (relative to the report)."""
    runs = data.finished[data.finished["task"] == task]
    names = [
        plots.validation_curves(task, runs, data.epochs, rows, colors, out),
        plots.lr_trajectories(task, runs, data.lr, colors, out),
        plots.controller_actions(task, runs, data.actions, colors, out),
    ]
    return [n for n in names if n]
