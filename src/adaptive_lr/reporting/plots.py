"""The report's PNGs, drawn from the frames of `collect.RunData` and the summary: one file per function.

Figures are built with `matplotlib.figure.Figure` (Agg canvas, no pyplot global state) and matplotlib is
imported inside the functions, so importing the reporting package stays cheap. Every function returns the file
name it wrote (relative to the report folder) or None when there is nothing to draw, and draws schedulers in
sorted order with colors from `colors` (one color per scheduler across the whole report).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from adaptive_lr.reporting.profiles import TAU_MAX, profile_scores, step_points

FIGSIZE = (7, 4.5)
DPI = 100


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "unnamed"


# matplotlib's tab20 (dark then light of each hue): distinct colours for up to 20 methods in one plot
TAB20 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
         "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
         "#dbdb8d", "#9edae5")


def scheduler_colors(schedulers: list[str]) -> dict[str, str]:
    """One colour per scheduler across a report: matplotlib's default cycle up to 10, tab20 beyond."""
    names = sorted(set(schedulers))
    palette = [f"C{i}" for i in range(10)] if len(names) <= 10 else list(TAB20)
    return {s: palette[i % len(palette)] for i, s in enumerate(names)}


def validation_curves(
    task: str,
    runs: pd.DataFrame,
    epochs: pd.DataFrame,
    summary: pd.DataFrame,
    colors: dict[str, str],
    out: Path,
) -> str | None:
    """Val metric per scheduler: mean over seeds with a shaded mean ± sample std band; threshold dashed.

    At each epoch mean and std use the seeds with a finite value there (a diverged seed drops out of later
    epochs; the legend counts diverged seeds); one seed gives no band."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    metric, threshold = runs["metric"].iloc[0], runs["threshold"].iloc[0]
    diverged = summary.set_index("scheduler")["diverged_count"]
    val = epochs[(epochs["name"] == f"val_{metric}") & epochs["run_id"].isin(runs["run_id"])]
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot()
    drawn = False
    for scheduler, group in runs.groupby("scheduler", sort=True):
        wide = val[val["run_id"].isin(group["run_id"])].pivot(index="epoch", columns="run_id", values="value")
        if wide.empty:
            continue
        wide = wide.where(np.isfinite(wide))
        mean, std = wide.mean(axis=1), wide.std(axis=1, ddof=1)
        note = f", {diverged[scheduler]} diverged" if diverged.get(scheduler, 0) else ""
        color = colors[scheduler]
        ax.plot(wide.index, mean, color=color, label=f"{scheduler} (n={wide.shape[1]}{note})")
        ax.fill_between(wide.index, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
        drawn = True
    if not drawn:
        return None
    if math.isfinite(threshold):
        ax.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set(xlabel="epoch", ylabel=f"val {metric}", title=f"{task}: val {metric}, mean over seeds ± std band")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    name = f"{slug(task)}_val_{slug(metric)}.png"
    fig.savefig(out / name, dpi=DPI)
    return name


def applied_lr(steps: pd.Series, values: pd.Series, epochs_trained: float | None,
               steps_per_epoch: float) -> tuple[list[float], list[float]]:
    """(epoch, LR) points of one run's LR as applied: the values logged before the end of training (step <
    epochs_trained x steps_per_epoch), then the last of them again at the end, for a `steps-post` line. Without a
    known length the points are kept as logged."""
    x, y = [float(s) / steps_per_epoch for s in steps], [float(v) for v in values]
    if epochs_trained is None or pd.isna(epochs_trained) or epochs_trained <= 0:
        return x, y
    end = float(epochs_trained)
    kept = [(e, v) for e, v in zip(x, y, strict=True) if e < end]
    if not kept:
        return x, y
    return [e for e, _ in kept] + [end], [v for _, v in kept] + [kept[-1][1]]


def lr_trajectories(
    task: str, runs: pd.DataFrame, lr: pd.DataFrame, colors: dict[str, str], out: Path,
    epochs: pd.DataFrame | None = None,
) -> str | None:
    """LR of every run: x = global step / steps_per_epoch, log y (non-positive LR dropped), drawn as steps.

    The `lr` logged at step s is the LR of update s (0-based) until the next logged point. A run's last update is
    T - 1, T = epochs trained (the run's last epoch in `epochs`, else `max_epochs`) x steps_per_epoch, so a value
    logged at step >= T (the controller's decision after the last epoch) was never applied: it is left out, and the
    line holds the last LR applied until T."""
    from matplotlib.figure import Figure

    lr = lr.merge(runs[["run_id", "scheduler", "steps_per_epoch", "max_epochs"]], on="run_id")
    lr = lr[(lr["value"] > 0) & (lr["steps_per_epoch"].fillna(0) > 0)]
    if lr.empty:
        return None
    trained = epochs.groupby("run_id")["epoch"].max() if epochs is not None and not epochs.empty else \
        pd.Series(dtype=float)
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot()
    labelled = set()
    for (scheduler, run_id), points in lr.groupby(["scheduler", "run_id"], sort=True):
        label = None if scheduler in labelled else scheduler
        labelled.add(scheduler)
        spe = float(points["steps_per_epoch"].iloc[0])
        x, y = applied_lr(points["step"], points["value"], trained.get(run_id, points["max_epochs"].iloc[0]), spe)
        ax.plot(x, y, color=colors[scheduler], alpha=0.7, linewidth=1, label=label, drawstyle="steps-post")
    ax.set_yscale("log")
    ax.set(
        xlabel="epoch (global step / steps per epoch)", ylabel="learning rate applied", title=f"{task}: LR, every run"
    )
    ax.legend()
    name = f"{slug(task)}_lr.png"
    fig.savefig(out / name, dpi=DPI)
    return name


def controller_actions(
    task: str, runs: pd.DataFrame, actions: pd.DataFrame, colors: dict[str, str], out: Path
) -> str | None:
    """Controller decisions over time: one panel per scheduler that logged `controller_action`, x = epoch
    (global step / steps_per_epoch), y = action name (with its count over all seeds); seeds sit at small
    vertical offsets so that they do not hide each other."""
    from matplotlib.figure import Figure

    points = actions.merge(runs[["run_id", "scheduler", "seed", "steps_per_epoch"]], on="run_id")
    points = points[points["steps_per_epoch"].fillna(0) > 0]
    if points.empty:
        return None
    codes = sorted(points["code"].dropna().unique())
    names = points.drop_duplicates("code").set_index("code")["action"]
    rows = {code: i for i, code in enumerate(codes)}
    panels = sorted(points["scheduler"].unique())
    fig = Figure(figsize=(FIGSIZE[0], 1.5 + 0.35 * len(codes) * len(panels) + 0.6 * len(panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, scheduler in zip(axes, panels, strict=True):
        mine = points[points["scheduler"] == scheduler]
        seeds = sorted(mine["seed"].dropna().unique())
        spread = 0.5 / max(len(seeds), 1)
        for k, (_, group) in enumerate(mine.groupby("seed", sort=True, dropna=False)):
            offset = (k - (len(seeds) - 1) / 2) * spread
            y = group["code"].map(rows).astype(float) + offset
            ax.scatter(group["step"] / group["steps_per_epoch"].astype(float), y, s=60, marker="|",
                       color=colors[scheduler], alpha=0.8)  # fmt: skip
        counts = mine["code"].value_counts()
        ax.set_yticks(range(len(codes)), [f"{names[c]} ({int(counts.get(c, 0))})" for c in codes])
        ax.set_ylim(-0.6, len(codes) - 0.4)
        ax.set_title(f"{scheduler} ({len(seeds)} seeds)", fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel("epoch (global step / steps per epoch)")
    fig.suptitle(f"{task}: controller actions per decision (count over seeds)")
    fig.tight_layout()
    name = f"{slug(task)}_actions.png"
    fig.savefig(out / name, dpi=DPI)
    return name


def sensitivity(task: str, points: pd.DataFrame, colors: dict[str, str], out: Path) -> str | None:
    """Final val metric against the initial LR relative to the centre of each method's sweep (log x), one line
    per method; diverged points marked with an x at the axis' edge."""
    from matplotlib.figure import Figure

    mine = points[points["task"] == task]
    if mine.empty:
        return None
    metric = mine["metric"].iloc[0]
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot()
    for scheduler, group in mine.groupby("scheduler", sort=True):
        group = group.sort_values("factor")
        color = colors.get(scheduler, "k")
        ax.plot(group["factor"], group["value"], marker="o", markersize=3, color=color, label=scheduler)
        bad = group[group["n_diverged"] > 0]
        if len(bad):
            ax.scatter(bad["factor"], np.full(len(bad), np.nanmin(mine["value"]) if mine["value"].notna().any()
                                              else 0.0), marker="x", color=color, s=40)  # fmt: skip
    ax.set_xscale("log")
    ax.set(xlabel="initial LR / centre of the method's sweep (learning-rate-free: multiplier)",
           ylabel=f"final val {metric}", title=f"{task}: sensitivity to the initial LR (x = diverged)")
    ax.legend(fontsize=7, ncol=2)
    name = f"{slug(task)}_sensitivity.png"
    fig.savefig(out / name, dpi=DPI)
    return name


CLOCKS = {"epochs": "epochs", "wall": "wall-clock"}


def performance_profile(
    ratios: pd.DataFrame, colors: dict[str, str], out: Path, tau_max: float = TAU_MAX, clock: str = "wall"
) -> str:
    """Step curves rho_s(tau) over [1, tau_max] (log-2 x axis), one per scheduler, for time measured in `clock`
    ("epochs" or "wall"); scores in the legend."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import ScalarFormatter

    scores = profile_scores(ratios, tau_max)
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot()
    for scheduler in sorted(ratios.columns):
        taus, rho = step_points(ratios[scheduler], tau_max)
        ax.step(taus, rho, where="post", color=colors[scheduler], linewidth=1.5, alpha=0.85,
                label=f"{scheduler} (score {scores[scheduler]:.3f})")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlim(1, tau_max)
    ax.set_ylim(-0.03, 1.03)
    ax.set(
        xlabel="tau (time to target / fastest scheduler's)",
        ylabel="fraction of tasks within tau",
        title=f"Performance profile over {len(ratios)} task(s), {CLOCKS[clock]} to target",
    )
    ax.legend(loc="lower right", fontsize=8)
    name = f"performance_profile_{clock}.png"
    fig.savefig(out / name, dpi=DPI)
    return name
