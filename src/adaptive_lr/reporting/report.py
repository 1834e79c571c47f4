"""Write the markdown comparison report of one experiment from its logged runs or a bundle (never retrains).

`write_report` (from an MLflow store) and `write_report_from_bundle` (from a report's `bundle/`, no store needed)
create `reports_root/<experiment>/<YYYYmmdd-HHMMSS>[-k]/` (a new folder each call, never overwriting) holding:
- `bundle/`: the per-run bundle (`bundle.py`). The report is always computed from the bundle it has just
  written, so a report rebuilt from that bundle elsewhere has byte-identical CSV files.
- `report.md`: a list of sections (`SECTIONS`), each a function of one `ReportContext`: the verdicts, one table
  per task with its plots, the performance profiles, failed runs, the protocol and the links.
- `summary.csv`: one row per task x scheduler (`metrics.SUMMARY_COLUMNS`): identity, every declared metric row's
  aggregation (`metrics.METRIC_ROWS`), the verdict columns and the time-to-target columns; floats with 6
  significant digits.
- `comparisons.csv`: every adaptive scheduler against each best baseline of its task on the test metric
  (`metrics.COMPARISON_COLUMNS`), with raw and Holm-adjusted p-values.
- `across.csv`: per track and adaptive method, the probability of beating each task's best baseline, averaged over
  tasks, with rliable's stratified-bootstrap interval (`across.COLUMNS`).
- `links.csv`: every run's MLflow run ID and TensorBoard log dir, for a report of more than `LINKS_INLINE_MAX`
  runs (a smaller one lists them in report.md).
- `profile.csv`: per clock (epochs, wall) and scheduler: the performance-profile score with its bootstrap
  interval over seeds, rho at tau = 1 and at tau_max.
- PNGs: `<task>_val_<metric>.png`, `<task>_lr.png`, `<task>_actions.png` (when logged) and
  `performance_profile_<clock>.png`.

Links are relative (or MLflow UI URLs when the store is a server); no absolute path of the machine that ran the
runs is written. Re-running reproduces the same files; the only time-dependent text is the "Generated" line.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import pandas as pd

from adaptive_lr.reporting import plots
from adaptive_lr.reporting.across import across_section, across_table
from adaptive_lr.reporting.bar import bar_section
from adaptive_lr.reporting.bundle import (
    BundleError,
    code_trees,
    describe_source,
    read_bundle,
    read_manifest,
    write_bundle,
)
from adaptive_lr.reporting.collect import ANYTIME, FINISHED, RunData, load_runs
from adaptive_lr.reporting.fmt import md_row
from adaptive_lr.reporting.metrics import (
    METRIC_ROWS,
    MetricRow,
    aggregate,
    per_run_metrics,
    profile_targets,
)
from adaptive_lr.reporting.profiles import (
    TAU_MAX,
    median_times,
    performance_ratios,
    profile,
    score_intervals,
)
from adaptive_lr.reporting.sensitivity import good_regions, sweep_points
from adaptive_lr.reporting.stats import (
    ALPHA,
    BETTER,
    CONFIDENCE,
    EQUIVALENT,
    INCONCLUSIVE,
    UNTESTED,
    WORSE,
    bootstrap_mean_ci,
)
from adaptive_lr.reporting.transfer import transfer_section

CSV_FLOAT_FORMAT = "%.6g"
TIMESTAMP_FORMAT = "%Y%m%d-%H%M%S"
GENERATED_PREFIX = "Generated "  # the one line of report.md that depends on when it was written
BUNDLE = "bundle"
PROJECT_ROOT = Path(__file__).resolve().parents[3]
PROFILE_COLUMNS = ["clock", "scheduler", "score", "score_low", "score_high", "rho_at_1", "rho_at_tau_max",
                   "tau_max", "n_tasks"]  # fmt: skip
CLOCKS = ("epochs", "wall")


@dataclass
class ReportContext:
    """Everything the sections read: the data, the computed tables and the report's settings."""

    data: RunData
    per_run: pd.DataFrame
    summary: pd.DataFrame
    comparisons: pd.DataFrame
    profiles: pd.DataFrame
    ratios: dict[str, pd.DataFrame]
    code: dict[str, dict[str, str]]
    now: datetime
    tau_max: float = TAU_MAX
    alpha: float = ALPHA
    points: pd.DataFrame = field(default_factory=pd.DataFrame)
    regions: pd.DataFrame = field(default_factory=pd.DataFrame)
    across: pd.DataFrame = field(default_factory=pd.DataFrame)  # `across.across_table`
    figures: dict[str, list[str]] = field(default_factory=dict)
    profile_pngs: dict[str, str] = field(default_factory=dict)
    report_dir: Path | None = None


def write_report(experiment: str, tracking_uri: str, reports_root: Path, now: datetime | None = None,
                 tau_max: float = TAU_MAX, alpha: float = ALPHA) -> Path:
    """Report `experiment` from the store at `tracking_uri`; return the path of report.md. Raises
    `NoRunsError` if the experiment does not exist or has no FINISHED result run."""
    data = load_runs(experiment, tracking_uri)
    code = code_trees(list(data.runs["git_commit"]), PROJECT_ROOT)
    data = replace(data, tracking_uri=describe_source(tracking_uri))
    return _write(data, code, reports_root, now, tau_max, alpha)


def write_report_from_bundle(bundle: Path | Sequence[Path], reports_root: Path, now: datetime | None = None,
                             tau_max: float = TAU_MAX, alpha: float = ALPHA, name: str | None = None) -> Path:
    """Report the runs of one bundle folder, or of several merged into one report named `name` (a study built from
    each part's committed bundle); no store needed. Return the path of report.md."""
    bundles = [Path(bundle)] if isinstance(bundle, (str, Path)) else [Path(b) for b in bundle]
    parts = [read_bundle(b) for b in bundles]
    code = {commit: trees for b in bundles for commit, trees in read_manifest(b)["code"].items()}
    data = parts[0] if len(parts) == 1 and name is None else merge(parts, name)
    return _write(data, code, reports_root, now, tau_max, alpha)


def merge(parts: Sequence[RunData], name: str | None = None) -> RunData:
    """One RunData from several experiments' (one study's parts): when they are different experiments, each task is
    labelled with its experiment (`mnist (study-mnist-untuned)`), so tracks of one task never mix in a verdict."""
    experiments = [p.experiment for p in parts]
    if len(set(experiments)) != len(experiments):
        raise BundleError(f"the same experiment twice among the bundles: {', '.join(experiments)}")
    runs = []
    for part in parts:
        part_runs = part.runs.copy()
        if len(parts) > 1:
            part_runs["task"] = part_runs["task"] + f" ({part.experiment})"
        runs.append(part_runs)
    frames = {f: pd.concat([getattr(p, f) for p in parts], ignore_index=True) for f in ("epochs", "lr", "actions")}
    sources = sorted({p.tracking_uri for p in parts})
    return RunData(experiment=name or "+".join(experiments), tracking_uri=", ".join(sources),
                   runs=pd.concat(runs, ignore_index=True), **frames)


def _write(data: RunData, code: dict, reports_root: Path, now: datetime | None, tau_max: float,
           alpha: float) -> Path:
    now = now or datetime.now()
    out = _new_folder(Path(reports_root) / plots.slug(data.experiment), now.strftime(TIMESTAMP_FORMAT))
    try:
        data = read_bundle(write_bundle(data, out / BUNDLE, code))  # computed from what the bundle holds
        ctx = compute(data, code, now, tau_max, alpha)
        ctx.report_dir = out
        for name, frame in (("summary", ctx.summary), ("comparisons", ctx.comparisons),
                            ("profile", ctx.profiles), ("sweep", ctx.points), ("across", ctx.across)):  # fmt: skip
            frame.to_csv(out / f"{name}.csv", index=False, float_format=CSV_FLOAT_FORMAT, na_rep="nan")
        if len(data.runs) > LINKS_INLINE_MAX:  # too many to list in report.md: there instead, never in both
            links_table(data).to_csv(out / "links.csv", index=False)
        colors = plots.scheduler_colors([*data.finished["scheduler"], *ctx.points["scheduler"]])
        ctx.figures = {task: _plot_task(task, data, rows, colors, out)
                       for task, rows in ctx.summary.groupby("task", sort=True)}  # fmt: skip
        for task in sorted(set(ctx.points["task"])):
            name = plots.sensitivity(task, ctx.points, colors, out)
            if name:
                ctx.figures.setdefault(task, []).append(name)
        ctx.profile_pngs = {clock: plots.performance_profile(ctx.ratios[clock], colors, out, tau_max, clock)
                            for clock in CLOCKS}  # fmt: skip
        report = out / "report.md"
        report.write_text(render_markdown(ctx), encoding="utf-8")
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # a failed report leaves nothing behind
        raise
    return report


def compute(data: RunData, code: dict, now: datetime, tau_max: float = TAU_MAX,
            alpha: float = ALPHA) -> ReportContext:
    """Every table of the report from `data` (pure: no files)."""
    per_run = per_run_metrics(data)
    summary, comparisons = aggregate(per_run, data.runs, alpha)
    ratios, tables = {}, []
    for clock in CLOCKS:
        ratios[clock] = performance_ratios(median_times(per_run, f"{clock}_to_target"))
        tables.append(profile_table(per_run, ratios[clock], clock, tau_max))
    points = sweep_points(data.runs)
    regions = good_regions(points, data.runs)
    return ReportContext(data, per_run, summary, comparisons, pd.concat(tables, ignore_index=True), ratios, code,
                         now, tau_max, alpha, points, regions, across_table(per_run, comparisons))


def profile_table(per_run: pd.DataFrame, ratios: pd.DataFrame, clock: str, tau_max: float = TAU_MAX) -> pd.DataFrame:
    """PROFILE_COLUMNS for one clock, best score first (ties by name)."""
    scores = score_intervals(per_run, f"{clock}_to_target", tau_max).set_index("scheduler")
    rho = profile(ratios, [1.0, tau_max])
    table = pd.DataFrame({
        "clock": clock, "scheduler": ratios.columns, "score": scores.loc[ratios.columns, "score"].to_numpy(),
        "score_low": scores.loc[ratios.columns, "score_low"].to_numpy(),
        "score_high": scores.loc[ratios.columns, "score_high"].to_numpy(),
        "rho_at_1": rho.iloc[0].to_numpy(), "rho_at_tau_max": rho.iloc[1].to_numpy(), "tau_max": float(tau_max),
        "n_tasks": len(ratios),
    }, columns=PROFILE_COLUMNS)  # fmt: skip
    table = table.sort_values(["score", "scheduler"], ascending=[False, True], kind="stable")
    return table.reset_index(drop=True)


# -- sections ------------------------------------------------------------------------------------------------
def render_markdown(ctx: ReportContext) -> str:
    return "\n".join(line for section in SECTIONS for line in section(ctx))


def _header(ctx: ReportContext) -> list[str]:
    data = ctx.data
    other = []
    if data.has_phases and len(data.tune):
        other.append(f"{len(data.tune)} of tuning or sweep phases (never results)")
    anytime = int((data.runs["phase"] == ANYTIME).sum())
    if anytime:
        other.append(f"{anytime} with a fraction of the budget (the anytime table, never results)")
    if len(data.superseded):
        cells = sorted({f"{r.task}/{r.scheduler}" for r in data.superseded.itertuples(index=False)})
        other.append(f"{len(data.superseded)} superseded by a later run of the same cell (never results: "
                     f"{', '.join(cells)})")  # fmt: skip
    return [
        f"# Report: {data.experiment}", "",
        f"{GENERATED_PREFIX}{ctx.now.isoformat(sep=' ', timespec='seconds')} from {data.tracking_uri} "
        f"(per-run bundle: [`{BUNDLE}/`]({BUNDLE}/); rebuild with `adaptive-lr report --from {BUNDLE}`).", "",
        f"{len(data.runs)} runs: {len(data.finished)} finished results, {len(data.unfinished)} failed or "
        f"incomplete" + "".join(f", {o}" for o in other) + ".", "",
    ]  # fmt: skip


VERDICT_WORDS = {
    BETTER: "better", WORSE: "worse", EQUIVALENT: "equivalent", INCONCLUSIVE: "inconclusive", UNTESTED: "untested",
}  # fmt: skip


def _verdicts(ctx: ReportContext) -> list[str]:
    c, alpha = ctx.comparisons, ctx.alpha
    lines = [
        "## Verdicts", "",
        "Rule, fixed before the runs: per task the **best baseline** is the non-adaptive scheduler with the best "
        "mean final *validation* metric (exact ties are all best baselines and named as a tie). Each adaptive "
        "scheduler is judged against it on the held-out *test* metric: the difference of means with its "
        f"{CONFIDENCE:.0%} interval (paired by seed when both ran the same seeds on the same data checksum, "
        "Welch otherwise), a two-sided test of no difference, and two one-sided tests (TOST) of equivalence "
        "within the task's declared margin. Holm's correction runs across all "
        f"{len(c)} comparisons of this report, separately for the difference tests and the TOSTs. Outcome at "
        f"level {alpha:g}: **better** / **worse** when the adjusted difference test rejects (direction from the "
        "metric), else **equivalent** when the adjusted TOST rejects, else **inconclusive** (the data cannot "
        "tell); **untested** when no test is possible (fewer than 2 seeds, a non-finite value, no spread).", "",
    ]  # fmt: skip
    if c.empty:
        return lines + ["**No adaptive scheduler ran in this experiment**, so there is nothing to judge.", ""]
    counts = c["verdict"].value_counts()
    tally = ", ".join(f"{counts.get(v, 0)} {VERDICT_WORDS[v]}" for v in (BETTER, EQUIVALENT, INCONCLUSIVE, WORSE,
                                                                         UNTESTED) if counts.get(v, 0))  # fmt: skip
    better = c[c["verdict"] == BETTER]
    head = ("**No adaptive scheduler was better than the best baseline on any task**"
            if better.empty else
            "**Better than the best baseline**: " + "; ".join(f"{r.task}: {r.scheduler}"
                                                              for r in better.itertuples(index=False)))
    lines += [f"{head} ({len(c)} comparisons: {tally}).", ""]
    for task, rows in c.groupby("task", sort=True):
        lines += _task_verdicts(ctx, task, rows)
    return lines + [""]


def _task_verdicts(ctx: ReportContext, task: str, rows: pd.DataFrame) -> list[str]:
    first = rows.iloc[0]
    direction = "higher" if first["mode"] == "max" else "lower"
    names = [n for n in dict.fromkeys(rows["baseline"]) if n]
    if not names:
        return [f"- **{task}**: no baseline with a finite mean final val metric; "
                f"untested: {', '.join(rows['scheduler'])}."]  # fmt: skip
    base = ctx.summary[(ctx.summary["task"] == task) & ctx.summary["scheduler"].isin(names)]
    tie = f"a tie of {' = '.join(names)}" if len(names) > 1 else f"**{names[0]}**"
    means = ", ".join(f"{r.scheduler} test {_ci(r.test_mean, r.test_ci_low, r.test_ci_high)}"
                      for r in base.itertuples(index=False))  # fmt: skip
    margin = rows["margin"].astype(float).iloc[0]
    lines = [f"- **{task}** (test {first['metric']}, {direction} is better; equivalence margin "
             f"{_fmt(margin) if math.isfinite(margin) else 'not declared'}): best baseline {tie} ({means})."]
    for r in rows.itertuples(index=False):
        if not r.baseline:
            continue
        versus = f" vs {r.baseline}" if len(names) > 1 else ""
        how = "paired" if r.paired else "Welch"
        stats = (f"difference {_fmt(r.difference, signed=True)} [{_fmt(r.difference_ci_low, signed=True)}, "
                 f"{_fmt(r.difference_ci_high, signed=True)}] ({how}, {r.n_seeds} vs {r.baseline_n_seeds} seeds)")
        if r.verdict == UNTESTED:
            lines.append(f"  - {r.scheduler}{versus}: **untested** ({r.verdict_note}); {stats}.")
        else:
            lines.append(f"  - {r.scheduler}{versus}: **{r.verdict}**: {stats}; Holm-adjusted p "
                         f"{_fmt(r.p_difference_holm)} (difference), {_fmt(r.p_equivalence_holm)} (TOST).")
    return lines


def _results(ctx: ReportContext) -> list[str]:
    lines = [
        "## Results per task", "",
        f"Mean over seeds with a {CONFIDENCE:.0%} percentile bootstrap interval (scipy.stats.bootstrap over the "
        "seeds; it stays inside the metric's range; nan with one seed). Times to threshold: reached k/n seeds with "
        "a Wilson interval of that share, then the mean and interval over the seeds that reached it (a miss is "
        "never counted as the budget). "
        "Gen. gap: final eval-mode metric on a fixed train subset of the validation set's size minus the final "
        "val metric. Diverged: count with a Wilson interval of the rate. Plots: validation curves are the mean "
        "over seeds with a band of ± 1 sample std; controller actions show every decision of every seed.", "",
    ]  # fmt: skip
    finished = ctx.data.finished
    for task, rows in ctx.summary.groupby("task", sort=True):
        runs = finished[finished["task"] == task]
        metric, mode, threshold = (_values(runs[c]) for c in ("metric", "mode", "threshold"))
        lines += [f"### {task}: {metric} ({mode}), threshold {threshold}", "", *_table(rows), ""]
        lines += _code_note(ctx, runs)
        names = ctx.figures.get(task, [])
        lines += [f"![{Path(p).stem}]({p})" for p in names]
        if not any(p.endswith("_lr.png") for p in names):
            lines.append("(No `lr` history logged for this task, so no LR plot.)")
        if not any(p.endswith("_actions.png") for p in names):
            lines.append("(No `controller_action` logged for this task, so no controller-actions plot.)")
        lines += ["", *_watched(runs, ctx.report_dir)]
    return lines


def _watched(runs: pd.DataFrame, report_dir: Path | None) -> list[str]:
    """Links (relative to the report) to the animated views of one run per scheduler, where they exist here."""
    lines = []
    for scheduler, group in runs.groupby("scheduler", sort=True):
        for run in group.sort_values(["seed", "run_id"]).itertuples(index=False):
            gifs = sorted(Path(run.run_dir).glob("viz/*/*/*.gif")) if run.run_dir else []
            if gifs:
                links = ", ".join(f"[{g.parent.parent.name}]({os.path.relpath(g, report_dir) if report_dir else g})"
                                  for g in gifs)  # fmt: skip
                lines.append(f"- {scheduler} (seed {run.seed}, run `{run.run_id}`): {links}")
                break
    return ["Watched runs (animated views, one run per scheduler):", "", *lines, ""] if lines else []


def _cell(row: MetricRow, r: object) -> str:
    name, spec = row.name, row.fmt
    if row.aggregation == "mean":
        return _ci(getattr(r, f"{name}_mean"), getattr(r, f"{name}_ci_low"), getattr(r, f"{name}_ci_high"), spec)
    if row.aggregation == "reached":
        reached = getattr(r, f"{name}_reached")
        share = (f"{reached}/{r.n_seeds} [{_fmt(getattr(r, f'{name}_reached_low'), spec='.2g')}, "
                 f"{_fmt(getattr(r, f'{name}_reached_high'), spec='.2g')}]")
        if not reached:
            return share
        interval = _ci(getattr(r, f"{name}_mean"), getattr(r, f"{name}_ci_low"), getattr(r, f"{name}_ci_high"), spec)
        return f"{share}: {interval}"
    if row.aggregation == "spread":
        return _fmt(getattr(r, name), spec=spec)
    count = getattr(r, f"{name}_count")
    return f"{count}/{r.n_seeds} [{_fmt(getattr(r, f'{name}_rate_low'))}, {_fmt(getattr(r, f'{name}_rate_high'))}]"


def _table(rows: pd.DataFrame) -> list[str]:
    header = ["scheduler", *(row.header for row in METRIC_ROWS), "verdict (test, vs best baseline)"]
    lines = md_row(header) + md_row(["---"] + ["---:"] * (len(header) - 2) + ["---"])
    for r in rows.itertuples(index=False):
        name = f"{r.scheduler} (adaptive)" if r.adaptive else r.scheduler
        lines += md_row([name, *(_cell(row, r) for row in METRIC_ROWS), r.verdict])
    return lines


def _code_note(ctx: ReportContext, runs: pd.DataFrame) -> list[str]:
    """Beside a table: a note when its runs come from commits whose training code (src/, configs/) differs."""
    commits = sorted(set(runs["git_commit"]))
    versions = {tuple(sorted(ctx.code.get(c, {}).items())) or (c,) for c in commits}
    unknown = [c for c in commits if not all(ctx.code.get(c, {}).values())]
    if len(commits) <= 1 or (len(versions) == 1 and not unknown):
        return []
    what = ("training code (src/, configs/) differs between them" if len(versions) > 1
            else "their training code could not be compared")
    return [f"Note: these runs come from {len(commits)} commits ({', '.join(f'`{c}`' for c in commits)}) and "
            f"{what}; see Protocol.", ""]  # fmt: skip


def _profiles(ctx: ReportContext) -> list[str]:
    targets = profile_targets(ctx.per_run)
    lines = [
        "## Performance profiles", "",
        "As AlgoPerf scores them: per task the target is the best baseline's median final validation metric ("
        + "; ".join(f"{t}: {_fmt(v)}" for t, v in targets.items()) + "). A run's time is the epochs (or "
        "wall-clock seconds) until its validation metric first reaches the target, infinite if it never does; a "
        "scheduler's time on a task is the median over its seeds (infinite when the median run misses). Ratio = "
        f"time / the task's fastest; rho_s(tau) = share of tasks with ratio <= tau; score = area under rho_s over "
        f"[1, {ctx.tau_max:g}] / {ctx.tau_max - 1:g}, with a {CONFIDENCE:.0%} bootstrap interval over seeds.", "",
        _sharing(ctx.data.finished), "",
    ]  # fmt: skip
    for clock in CLOCKS:
        ratios, table = ctx.ratios[clock], ctx.profiles[ctx.profiles["clock"] == clock]
        tasks = list(ratios.index)
        lines += [f"### {plots.CLOCKS[clock]} to target", ""]
        lines += md_row(["scheduler", *[f"ratio on {t}" for t in tasks], "score [95% CI]"])
        lines += md_row(["---"] + ["---:"] * (len(tasks) + 1))
        for r in table.itertuples(index=False):
            lines += md_row([r.scheduler, *[_fmt(ratios.loc[t, r.scheduler]) for t in tasks],
                           _ci(r.score, r.score_low, r.score_high, ".3f")])  # fmt: skip
        lines.append("")
        if clock in ctx.profile_pngs:
            lines += [f"![performance_profile_{clock}]({ctx.profile_pngs[clock]})", ""]
    n = len(ctx.ratios["wall"])
    if n < 5:
        lines += [f"With {n} task(s) each task moves a profile by {1 / max(n, 1):.2g}: read it as indicative.", ""]
    return lines


def _sharing(runs: pd.DataFrame) -> str:
    """Whether the wall-clock columns come from runs that shared the machine (grid jobs, load average)."""
    jobs = _values(runs.loc[runs["grid_jobs"] != "", "grid_jobs"])
    loads = pd.to_numeric(runs["load_avg_start"], errors="coerce").dropna()
    cpus = _values(runs.loc[runs["cpu_count"] != "", "cpu_count"])
    if not jobs and loads.empty:
        return "Machine sharing: not recorded by these runs (no `grid_jobs`/`load_avg_start` tags)."
    load = (f"1-minute load average at run start: median {loads.median():.2f}, range {loads.min():.2f}-"
            f"{loads.max():.2f}" if len(loads) else "load not recorded")
    return (f"Machine sharing: runs ran {jobs or '?'} at a time on {cpus or '?'} CPUs; {load}. Wall-clock "
            "times of runs that shared the machine include that contention.")


def _failed(ctx: ReportContext) -> list[str]:
    data = ctx.data
    lines = ["## Failed or incomplete runs", ""]
    if data.unfinished.empty:
        return lines + ["None.", ""]
    lines += md_row(["run id", "task", "scheduler", "seed", "phase", "status", "error"]) + md_row(["---"] * 7)
    for run in data.unfinished.itertuples(index=False):
        seed = "" if pd.isna(run.seed) else run.seed
        lines += md_row([run.run_id, run.task, run.scheduler, seed, run.phase or "final", run.status,
                       run.error or "(no error tag)"])  # fmt: skip
    return lines + ["", "These runs are excluded from every table, plot and statistic above.", ""]


def _protocol(ctx: ReportContext) -> list[str]:
    finished = ctx.data.finished
    lines = ["## Protocol", ""]
    for task, runs in finished.groupby("task", sort=True):
        steps = runs["max_epochs"].astype(float) * runs["steps_per_epoch"].astype(float)
        margin = _values(runs["equivalence_margin"].dropna())
        kind = "relative" if runs["margin_relative"].any() else "absolute"
        lines.append(
            f"- {task}: {_values(runs['metric'])} ({_values(runs['mode'])}), threshold {_values(runs['threshold'])}, "
            f"equivalence margin {margin + ' (' + kind + ')' if margin else 'not declared'}, max epochs "
            f"{_values(runs['max_epochs'])}, seeds {_values(runs['seed'])}, schedulers {_values(runs['scheduler'])}; "
            f"budget {_values(steps.dropna().astype(int)) or 'not recorded'} optimizer steps per run."
        )
    bounds = finished[finished["lr_bounds"] != ""].drop_duplicates(["scheduler", "lr_bounds"])
    if len(bounds):
        lines.append("- Controllers' LR bounds (tag `lr_bounds`): " + "; ".join(
            f"{r.scheduler} {r.lr_bounds}" for r in bounds.sort_values(["scheduler", "lr_bounds"]).itertuples()) + ".")
    lines.append("- Selection and testing: " + _tuning(ctx.data))
    lines.append("- Hardware: " + _hardware(finished))
    lines.append("- Compute (every run of every phase, from its start and end times): " + _compute(ctx.data.runs))
    lines.append("- Code: " + _commits(ctx, finished) + ".")
    checksums = [f"{task}: " + _counted(runs, "data_checksum", "checksum", "not recorded")
                 for task, runs in finished.groupby("task", sort=True)]  # fmt: skip
    lines.append("- Data checksums (tag `data_checksum`): " + "; ".join(checksums) + ".")
    lines += [
        f"- Statistics: statsmodels (paired t / Welch intervals and tests, TOST, Holm), scipy.stats.bootstrap "
        f"(percentile, {CONFIDENCE:.0%}, fixed seed) for per-scheduler intervals, Wilson intervals for counts; "
        f"significance level {ctx.alpha:g}; performance profiles up to tau_max {ctx.tau_max:g}. Every number comes "
        "from the logged runs; nothing was retrained.", "",
    ]  # fmt: skip
    return lines


def _tuning(data: RunData) -> str:
    if not data.has_phases:
        return ("no tuning phase: every finished run is a result; the best baseline is chosen on validation and "
                "the verdicts are drawn on test.")
    tune = data.tune
    budget = _values(data.runs.loc[data.runs["tuning_budget"] != "", "tuning_budget"])
    done = int((tune["status"] == "FINISHED").sum())
    return (f"{len(tune)} tuning/sweep-phase runs ({done} finished; tuning budget {budget or 'not recorded'} per "
            "task x scheduler) chose each scheduler's setting on validation and never enter a table or verdict; "
            f"the {len(data.finished)} final runs are judged on test.")


def busy_seconds(starts: Sequence[float], ends: Sequence[float]) -> float:
    """Length of the union of the intervals [start, end] (seconds if given in seconds): the wall time during which
    at least one run was executing, so parallel runs count once and the idle time between sessions not at all."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(zip(starts, ends, strict=True)):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def _hours(runs: pd.DataFrame) -> tuple[float, float]:
    """(busy wall time, summed run time) of runs with a known end, in hours."""
    start, end = runs["start_time"].astype(float) / 1000, runs["end_time"].astype(float) / 1000
    return busy_seconds(start.tolist(), end.tolist()) / 3600, float((end - start).sum()) / 3600


def _compute(runs: pd.DataFrame) -> str:
    timed = runs[runs["end_time"].astype(float).notna()]
    if timed.empty:
        return "not recorded (the runs carry no end time: a bundle written before it was kept)."
    parts = []
    for task, group in runs.groupby("task", sort=True):
        known = group[group.index.isin(timed.index)]
        if known.empty:
            parts.append(f"{task}: {len(group)} runs, no end time recorded (a bundle written before it was kept)")
            continue
        busy, total = _hours(known)
        untimed = len(group) - len(known)
        parts.append(f"{task}: {len(group)} runs, {busy:.2f} h busy, {total:.2f} h of run time"
                     + (f" ({untimed} without an end time)" if untimed else ""))
    busy, total = _hours(timed)
    return "; ".join(parts) + (f". In all, over the {len(timed)} of {len(runs)} runs with an end time: {busy:.2f} h "
                               f"of wall time with at least one run executing, {total:.2f} h of run time (runs in "
                               "parallel count once in the first, each in the second).")


def _hardware(runs: pd.DataFrame) -> str:
    keys = ["host", "device", "cpu_count", "torch_version", "python_version"]
    tagged = runs[(runs[keys] != "").any(axis=1)]
    if tagged.empty:
        return "not recorded by the runs (no `host`/`device`/`torch_version` tags)."
    groups = tagged.groupby(keys, sort=True).size()
    parts = [f"{n} run(s) on host {host or '?'}, device {device or '?'}, {cpus or '?'} CPUs, torch {torch or '?'}, "
             f"Python {python or '?'}" for (host, device, cpus, torch, python), n in groups.items()]  # fmt: skip
    missing = len(runs) - len(tagged)
    return "; ".join(parts) + (f"; {missing} run(s) without hardware tags" if missing else "") + "."


def _commits(ctx: ReportContext, runs: pd.DataFrame) -> str:
    text = _counted(runs, "git_commit", "git commit", "no run carries a `git_commit` tag")
    commits = sorted(c for c in set(runs["git_commit"]) if c)
    trees = {c: tuple(sorted(ctx.code.get(c, {}).items())) for c in commits}
    known = {c: t for c, t in trees.items() if t and all(v for _, v in t)}
    if len(commits) > 1:
        if len(known) == len(commits) and len(set(known.values())) == 1:
            text += "; their training code (git trees of src/ and configs/) is identical"
        elif len(set(known.values())) > 1:
            text += "; their training code (src/, configs/) DIFFERS between commits"
        unknown = [c for c in commits if c not in known]
        if unknown:
            text += f"; training code of {', '.join(f'`{c}`' for c in unknown)} unknown to this repository"
    return text


LINKS_INLINE_MAX = 300  # runs listed in report.md itself; a larger report lists them in links.csv only


def links_table(data: RunData) -> pd.DataFrame:
    """One row per run: its MLflow run ID (a link when the store is a server), task, scheduler, seed, phase, status
    and TensorBoard log dir relative to the home folder (`links.csv`)."""
    server = _server(data)
    rows = [{"run id": f"[{run.run_id}]({server}/#/runs/{run.run_id})" if server else run.run_id,
             "task": run.task, "scheduler": run.scheduler, "seed": "" if pd.isna(run.seed) else run.seed,
             "phase": run.phase or "final", "status": run.status, "TensorBoard log dir": _home_relative(run.run_dir)}
            for run in data.runs.itertuples(index=False)]  # fmt: skip
    return pd.DataFrame(rows, columns=LINK_COLUMNS)


LINK_COLUMNS = ["run id", "task", "scheduler", "seed", "phase", "status", "TensorBoard log dir"]


def _server(data: RunData) -> str:
    """The MLflow server's address when the runs came from one (run IDs then link to it), else ""."""
    return data.tracking_uri if data.tracking_uri.startswith(("http://", "https://")) else ""


def _links(ctx: ReportContext) -> list[str]:
    data = ctx.data
    note = ("TensorBoard dir: relative to the home folder that ran the grid (`ADAPTIVE_LR_HOME`)."
            + (" Run IDs link to the MLflow server." if _server(data) else ""))
    if len(data.runs) > LINKS_INLINE_MAX:
        return ["## Links", "", f"MLflow run IDs and TensorBoard log dirs of the {len(data.runs)} runs: "
                "[`links.csv`](links.csv) (one row per run: " + ", ".join(LINK_COLUMNS) + "). " + note, ""]
    lines = ["## Links", "", f"<details><summary>MLflow run IDs and TensorBoard log dirs ({len(data.runs)} runs)"
             "</summary>", "", note, "", *md_row(LINK_COLUMNS), *md_row(["---"] * len(LINK_COLUMNS))]
    for row in links_table(data).itertuples(index=False):
        lines += md_row(list(row))
    return lines + ["", "</details>", ""]


def _home_relative(run_dir: str) -> str:
    """`runs/<experiment>/<run>/tensorboard` from an absolute run_dir tag (the home folder's own path dropped)."""
    if not run_dir:
        return "(no run_dir tag)"
    parts = Path(run_dir).parts
    tail = parts[parts.index("runs"):] if "runs" in parts else parts[-1:]
    return str(Path(*tail) / "tensorboard")


def _sensitivity(ctx: ReportContext) -> list[str]:
    """The good-region table per task, when the grid had a tuning or sweep phase (its plot is with the task)."""
    if ctx.regions.empty:
        return []
    lines = [
        "## Sensitivity to the initial learning rate", "",
        "From the tuning/sweep phase (validation only; never in a verdict). Good region: initial LRs (for "
        "learning-rate-free optimizers, multipliers) whose final validation metric did not diverge and is within "
        "the task's equivalence margin of the best over all methods; its width in decades is the number of good "
        "grid points times the grid's spacing in decades. Plots: `<task>_sensitivity.png` with each task.", "",
    ]  # fmt: skip
    for task, rows in ctx.regions.groupby("task", sort=True):
        lines += [f"### {task} (margin {_fmt(rows['margin'].iloc[0])})", ""]
        lines += md_row(["method", "best LR", "best val", "good points", "good region, decades", "diverged"])
        lines += md_row(["---"] + ["---:"] * 5)
        for r in rows.sort_values(["width_decades", "scheduler"], ascending=[False, True]).itertuples(index=False):
            lines += md_row([r.scheduler, _fmt(r.best_lr), _fmt(r.best_value), f"{r.good_points}/{r.n_points}",
                           _fmt(r.width_decades, spec=".2g"), r.n_diverged])  # fmt: skip
        lines.append("")
    return lines


def _anytime(ctx: ReportContext) -> list[str]:
    """Test metric at fractions of the budget, from real runs with that budget (phase `anytime`), beside the full
    budget's results; when the grid ran any."""
    runs = ctx.data.runs
    short = runs[(runs["phase"] == ANYTIME) & (runs["status"] == FINISHED)]
    if short.empty:
        return []
    fractions = sorted(short["budget_fraction"].dropna().unique())
    lines = [
        "## Anytime: the test metric at fractions of the budget", "",
        "Each fraction is a run of its own with that share of the epoch budget (horizon-aware schedules such as "
        "cosine and the cooldowns anneal over the shorter horizon; a feedback controller needs no horizon), at the "
        f"same setting as the full-budget runs; mean over seeds with a {CONFIDENCE:.0%} bootstrap interval. Never "
        "in a verdict. Rank agreement: does the shorter budget order the methods (by mean test metric) as the full "
        "one does? Kendall's tau-b with its two-sided p-value (scipy.stats.kendalltau) over the methods run at both.",
        "",
    ]  # fmt: skip
    for task, group in short.groupby("task", sort=True):
        full = ctx.per_run[ctx.per_run["task"] == task]
        lines += [f"### {task}", "", _rank_agreement(group, full, fractions), ""]
        lines += md_row(["scheduler", *[f"{f:.0%} of the budget" for f in fractions], "100% (results)"])
        lines += md_row(["---"] + ["---:"] * (len(fractions) + 1))
        for scheduler in sorted(set(group["scheduler"]) | set(full["scheduler"])):
            cells = []
            for f in fractions:
                values = group[(group["scheduler"] == scheduler) & (group["budget_fraction"] == f)]["test_metric"]
                cells.append(_ci(*bootstrap_mean_ci(values.to_numpy(dtype=float))) if len(values) else "—")
            values = full.loc[full["scheduler"] == scheduler, "test"]
            cells.append(_ci(*bootstrap_mean_ci(values.to_numpy(dtype=float))) if len(values) else "—")
            lines += md_row([scheduler, *cells])
        lines.append("")
    return lines


def _rank_agreement(short: pd.DataFrame, full: pd.DataFrame, fractions: list[float]) -> str:
    """`Rank agreement with the full budget: 25%: tau-b 0.05 (p 0.75, 19 methods); ...` for one task."""
    from scipy import stats

    sign = -1.0 if (full["mode"] == "min").any() else 1.0
    at_full = full.groupby("scheduler")["test"].mean() * sign
    parts = []
    for f in fractions:
        at_f = short[short["budget_fraction"] == f].groupby("scheduler")["test_metric"].mean() * sign
        both = at_f.index.intersection(at_full.index)
        if len(both) < 3:
            parts.append(f"{f:.0%}: fewer than 3 methods at both budgets")
            continue
        tau = stats.kendalltau(at_f[both], at_full[both])
        parts.append(f"{f:.0%}: tau-b {_fmt(tau.statistic, spec='.2f')} (p {_fmt(tau.pvalue, spec='.2g')}, "
                     f"{len(both)} methods)")
    return "Rank agreement with the full budget: " + "; ".join(parts) + "."


SECTIONS: tuple[Callable[[ReportContext], list[str]], ...] = (
    _header, _verdicts, across_section, bar_section, transfer_section, _results, _anytime, _sensitivity, _profiles,
    _failed, _protocol, _links,
)


# -- formatting and files ------------------------------------------------------------------------------------
def _fmt(x: float, signed: bool = False, spec: str = ".4g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return str(float(x)) if x is not None else "nan"
    if signed and not spec.startswith("+"):
        spec = "+" + spec
    return format(float(x), spec)


def _ci(mean: float, low: float, high: float, spec: str = ".4g") -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return _fmt(mean, spec=spec)
    return f"{_fmt(mean, spec=spec)} [{_fmt(low, spec=spec)}, {_fmt(high, spec=spec)}]"


def _values(column: pd.Series) -> str:
    """Distinct values of a column, comma separated: a task mixing settings shows it, not hides it."""
    return ", ".join(str(v) for v in sorted(column.dropna().unique()))


def _counted(runs: pd.DataFrame, column: str, what: str, none: str) -> str:
    counts = runs.loc[runs[column] != "", column].value_counts().sort_index()
    if counts.empty:
        return none
    text = ", ".join(f"`{value}` ({n} run{'s' if n != 1 else ''})" for value, n in counts.items())
    missing = int((runs[column] == "").sum())
    dirty = " (a `-dirty` commit had uncommitted changes)" if any(v.endswith("-dirty") for v in counts.index) else ""
    return text + (f", {missing} without a {what}" if missing else "") + dirty


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
        plots.lr_trajectories(task, runs, data.lr, colors, out, data.epochs),
        plots.controller_actions(task, runs, data.actions, colors, out),
    ]
    return [n for n in names if n]
