"""The bar of issue 15, stated before the runs, as a report section: does one adaptive controller earn its place?

On at least `families_needed` (3) of the `families_planned` (5) CPU families, one adaptive controller started
untuned (the plan's Adam at lr 0.01) must meet all three criteria:
  (i)   on the test metric it is **better than or equivalent to tuned cosine** (cosine at its best sweep point):
        the verdict of the untuned controller against tuned cosine is better or equivalent (TOST within the task's
        margin); inconclusive does not pass;
  (ii)  its **good-LR region is at least one decade wider** than cosine's (`sensitivity.good_regions` of the tuned
        track's sweep: initial LRs whose final validation metric is within the margin of the best of all methods);
  (iii) it is **no worse than open-loop `wsd`** with the same cooldown at the same (untuned) track: the verdict
        against untuned wsd is better or equivalent (no worse shown within the margin); inconclusive does not pass.
Never moved, never tuned on test: criteria (i) and (iii) are verdicts on test of runs chosen on validation.

Where the data come from (bundles only): the study's parts are merged into one report (`report --from ... --from
...`), which labels each task with its part (`mnist (study-mnist)`, `mnist (study-mnist-untuned)`, see
`report.merge`). A *family* is the task without that label; its **tuned** part is the one whose runs include a
sweep phase and a `cosine` column, its **untuned** part the one without a sweep that has a `wsd` column. The
*controllers* are the untuned part's adaptive columns whose runs logged controller decisions (the feedback
controllers; the learning-rate-free optimizers run a fixed schedule and log none). Every comparison of this section
(criteria (i) and (iii) per controller, and the ablation below) is one Holm family, separately for the difference
tests and the TOSTs.

The section also carries the ablation that decides whether feedback adds anything to a terminal anneal:
`feedback_wsd` against `wsd` (the same cooldown, open loop) on each track, at the tuned LRs (each its own best
sweep point) and at the untuned LR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from adaptive_lr.reporting.collect import SWEEP
from adaptive_lr.reporting.contrasts import contrast, judge
from adaptive_lr.reporting.fmt import md_interval, md_number, md_row
from adaptive_lr.reporting.stats import BETTER, CONFIDENCE, EQUIVALENT

if TYPE_CHECKING:
    from adaptive_lr.reporting.report import ReportContext

PASSING = (BETTER, EQUIVALENT)
_WIDTH_TOLERANCE = 1e-9  # region widths are sums of grid spacings: 1.0 must not read as 0.9999999999


@dataclass(frozen=True)
class Bar:
    """The bar's definition (module docstring); the defaults are issue 15's."""

    reference: str = "cosine"  # tuned-track reference schedule of criterion (i) and (ii)
    open_loop: str = "wsd"  # the open-loop schedule with the same cooldown, criterion (iii)
    min_width_gain: float = 1.0  # decades wider than the reference's good region, criterion (ii)
    families_needed: int = 3
    families_planned: int = 5
    ablation: tuple[str, str] = ("feedback_wsd", "wsd")


BAR = Bar()


def family_and_part(task: str) -> tuple[str, str]:
    """`mnist (study-mnist-untuned)` -> ("mnist", "study-mnist-untuned"); a task without a part label -> (task, "")."""
    if task.endswith(")") and " (" in task:
        family, part = task[:-1].rsplit(" (", 1)
        return family, part
    return task, ""


@dataclass(frozen=True)
class Tracks:
    """Per family, the task labels of its tuned and untuned parts; families that have no clear pair, with why."""

    pairs: dict[str, tuple[str, str]]
    problems: dict[str, str]


def tracks(runs: pd.DataFrame, per_run: pd.DataFrame, bar: Bar = BAR) -> Tracks:
    """The tuned and untuned part of each family (module docstring)."""
    labels: dict[str, list[str]] = {}
    for task in sorted(set(per_run["task"])):
        family, part = family_and_part(task)
        if part:
            labels.setdefault(family, []).append(task)
    swept = set(runs.loc[runs["phase"] == SWEEP, "task"])
    pairs, problems = {}, {}
    for family, tasks in labels.items():
        columns = {t: set(per_run.loc[per_run["task"] == t, "scheduler"]) for t in tasks}
        tuned = [t for t in tasks if t in swept and bar.reference in columns[t]]
        untuned = [t for t in tasks if t not in swept and bar.open_loop in columns[t]]
        if len(tuned) == 1 and len(untuned) == 1:
            pairs[family] = (tuned[0], untuned[0])
        elif tuned or untuned:
            problems[family] = (f"needs one tuned part (a sweep and a {bar.reference} column) and one untuned part "
                                f"(no sweep, a {bar.open_loop} column); found {len(tuned)} and {len(untuned)}")
    return Tracks(pairs, problems)


def controllers(data_runs: pd.DataFrame, actions: pd.DataFrame, per_run: pd.DataFrame, task: str) -> list[str]:
    """The adaptive columns of `task` whose result runs logged controller decisions."""
    mine = per_run[(per_run["task"] == task) & per_run["adaptive"].astype(bool)]
    deciding = set(actions["run_id"])
    return sorted(s for s, group in mine.groupby("scheduler") if deciding & set(group["run_id"]))


def _width(regions: pd.DataFrame, task: str, scheduler: str) -> float:
    row = regions[(regions["task"] == task) & (regions["scheduler"] == scheduler)]
    return float(row["width_decades"].iloc[0]) if len(row) else math.nan


def _lrs(per_run: pd.DataFrame, runs: pd.DataFrame, task: str, scheduler: str) -> str:
    ids = set(per_run.loc[(per_run["task"] == task) & (per_run["scheduler"] == scheduler), "run_id"])
    values = sorted({float(v) for v in runs.loc[runs["run_id"].isin(ids), "lr"] if math.isfinite(float(v))})
    return ", ".join(f"{v:g}" for v in values) or "?"


@dataclass(frozen=True)
class BarResult:
    table: pd.DataFrame  # one row per family x controller: the three criteria
    ablation: pd.DataFrame  # one row per family x track: feedback_wsd vs wsd
    tracks: Tracks
    comparisons: int  # the size of the Holm family


def evaluate(per_run: pd.DataFrame, runs: pd.DataFrame, actions: pd.DataFrame, regions: pd.DataFrame,
             alpha: float, bar: Bar = BAR, confidence: float = CONFIDENCE) -> BarResult:
    """Every criterion of every controller on every family with both tracks, and the ablation (pure)."""
    found = tracks(runs, per_run, bar)
    records, keys = [], []
    for family, (tuned, untuned) in sorted(found.pairs.items()):
        for name in controllers(runs, actions, per_run, untuned):
            records.append(contrast(per_run, runs, (untuned, name), (tuned, bar.reference), confidence))
            keys.append(("i", family, name, ""))
            records.append(contrast(per_run, runs, (untuned, name), (untuned, bar.open_loop), confidence))
            keys.append(("iii", family, name, ""))
        for track, task in (("tuned", tuned), ("untuned", untuned)):
            records.append(contrast(per_run, runs, (task, bar.ablation[0]), (task, bar.ablation[1]), confidence))
            keys.append(("ablation", family, bar.ablation[0], track))
    judged = judge(records, alpha)
    for i, column in enumerate(("criterion", "family", "controller", "track")):
        judged[column] = [key[i] for key in keys]
    rows = []
    for family, (tuned, untuned) in sorted(found.pairs.items()):
        reference_width = _width(regions, tuned, bar.reference)
        for name in controllers(runs, actions, per_run, untuned):
            first = judged[(judged["criterion"] == "i") & (judged["family"] == family) & (judged["controller"] == name)]
            third = judged[(judged["criterion"] == "iii") & (judged["family"] == family)
                           & (judged["controller"] == name)]
            c1, c3 = first.iloc[0], third.iloc[0]
            width = _width(regions, tuned, name)
            gain = width - reference_width
            rows.append({
                "family": family, "tuned_part": tuned, "untuned_part": untuned, "controller": name,
                "metric": c1["metric"], "mode": c1["mode"], "untuned_mean": c1["a_mean"],
                "untuned_ci_low": c1["a_ci_low"], "untuned_ci_high": c1["a_ci_high"], "n_seeds": c1["n_a"],
                "reference_mean": c1["b_mean"],
                "i_difference": c1["difference"], "i_ci_low": c1["difference_ci_low"],
                "i_ci_high": c1["difference_ci_high"], "i_paired": c1["paired"], "i_margin": c1["margin"],
                "i_p_difference_holm": c1["p_difference_holm"], "i_p_equivalence_holm": c1["p_equivalence_holm"],
                "i_verdict": c1["verdict"], "i_pass": c1["verdict"] in PASSING,
                "width": width, "reference_width": reference_width, "width_gain": gain,
                "ii_pass": bool(math.isfinite(gain) and gain >= bar.min_width_gain - _WIDTH_TOLERANCE),
                "open_loop_mean": c3["b_mean"], "iii_difference": c3["difference"], "iii_ci_low":
                c3["difference_ci_low"], "iii_ci_high": c3["difference_ci_high"], "iii_paired": c3["paired"],
                "iii_p_difference_holm": c3["p_difference_holm"], "iii_p_equivalence_holm":
                c3["p_equivalence_holm"], "iii_verdict": c3["verdict"], "iii_pass": c3["verdict"] in PASSING,
            })  # fmt: skip
    table = pd.DataFrame(rows)
    if len(table):
        table["passes"] = table["i_pass"] & table["ii_pass"] & table["iii_pass"]
    ablation = judged[judged["criterion"] == "ablation"].reset_index(drop=True)
    if len(ablation):
        ablation["a_lr"] = [_lrs(per_run, runs, r.a_task, r.a_scheduler) for r in ablation.itertuples(index=False)]
        ablation["b_lr"] = [_lrs(per_run, runs, r.b_task, r.b_scheduler) for r in ablation.itertuples(index=False)]
    return BarResult(table, ablation, found, len(judged))


def met(result: BarResult, bar: Bar = BAR) -> tuple[list[str], str]:
    """(families where one controller passes all three criteria, the one-line statement of the outcome)."""
    table = result.table
    evaluated = sorted(result.tracks.pairs)
    passing = sorted(set(table.loc[table["passes"], "family"])) if len(table) else []
    k, n = len(passing), len(evaluated)
    left = max(bar.families_planned - n, 0)
    where = f" ({', '.join(passing)})" if passing else ""
    count = (f"{k} of the {n} families reported with both tracks{where} ({', '.join(evaluated) or 'none'}; "
             f"{bar.families_needed} of {bar.families_planned} needed")
    if k >= bar.families_needed:
        return passing, f"**The bar is met**: one controller passes all three criteria on {count})."
    if k + left < bar.families_needed:
        rest = (f", and the {left} families not yet reported cannot make up the difference" if left else
                "; every planned family is reported")
        return passing, f"**The bar is not met**: one controller passes all three criteria on {count}{rest})."
    return passing, (f"**The bar is not met on the families reported so far**: one controller passes all three "
                     f"criteria on {count}; {left} families not yet reported).")


# -- the report section ------------------------------------------------------------------------------------------
def _mark(ok: bool) -> str:
    return "**yes**" if ok else "no"


def _counts(table: pd.DataFrame, family: str) -> str:
    mine = table[table["family"] == family]
    return (f"(i) {int(mine['i_pass'].sum())}/{len(mine)}, (ii) {int(mine['ii_pass'].sum())}/{len(mine)}, "
            f"(iii) {int(mine['iii_pass'].sum())}/{len(mine)}")


def _intro(bar: Bar, comparisons: int, alpha: float) -> list[str]:
    """The section's title and the bar as stated before the runs."""
    return [
        "## The bar: a feedback controller that earns its place", "",
        f"Stated before the runs (issue 15); never moved. On at least {bar.families_needed} of the "
        f"{bar.families_planned} CPU families, one adaptive controller started **untuned** (the plan's Adam at lr "
        "0.01) must pass all three: **(i)** on the test metric, better than or equivalent to **tuned "
        f"{bar.reference}** (its best sweep point); **(ii)** a good-LR region (tuned sweep, validation) at least "
        f"{bar.min_width_gain:g} decade wider than {bar.reference}'s; **(iii)** no worse than open-loop "
        f"**{bar.open_loop}** (the same cooldown) on the same untuned track. (i) and (iii) pass only on a verdict of "
        "better or equivalent (TOST within the task's margin): *inconclusive* has not shown it. Untuned and tuned "
        "runs come from different parts of the study; they are paired by seed when both ran the same seeds on the "
        f"same data checksum, Welch otherwise. Holm's correction runs across all {comparisons} comparisons "
        "of this section (the (i) and (iii) verdicts and the ablation), separately for the difference tests and "
        f"the TOSTs; level {alpha:g}. Controllers: the untuned part's adaptive columns that logged "
        "controller decisions.", "",
    ]  # fmt: skip


def _controller_row(r: Any) -> list[str]:
    """One controller's row of a family's table: its test metric, criteria (i) to (iii) and the outcome."""
    return md_row([
        r.controller, md_interval(r.untuned_mean, r.untuned_ci_low, r.untuned_ci_high),
        md_interval(r.i_difference, r.i_ci_low, r.i_ci_high, signed=True) + (" paired" if r.i_paired else " Welch"),
        f"{r.i_verdict} ({md_number(r.i_p_difference_holm, '.2g')} / {md_number(r.i_p_equivalence_holm, '.2g')}): "
        f"{_mark(r.i_pass)}",
        f"{md_number(r.width, '.2g')} ({md_number(r.width_gain, '.2g', signed=True)}): {_mark(r.ii_pass)}",
        md_interval(r.iii_difference, r.iii_ci_low, r.iii_ci_high, signed=True)
        + (" paired" if r.iii_paired else " Welch"),
        f"{r.iii_verdict} ({md_number(r.iii_p_difference_holm, '.2g')} / {md_number(r.iii_p_equivalence_holm, '.2g')}): "
        f"{_mark(r.iii_pass)}",
        _mark(bool(r.passes)),
    ])  # fmt: skip


def _family(family: str, tuned: str, untuned: str, table: pd.DataFrame, bar: Bar) -> list[str]:
    """One family's subsection: its two parts, the references, and a row per controller."""
    mine = table[table["family"] == family] if len(table) else table
    _, tuned_part = family_and_part(tuned)
    _, untuned_part = family_and_part(untuned)
    lines = [f"### {family} (tuned: {tuned_part}; untuned: {untuned_part})", ""]
    if mine.empty:
        return lines + ["No controller column in the untuned part.", ""]
    first = mine.iloc[0]
    direction = "higher" if first["mode"] == "max" else "lower"
    lines += [f"Test {first['metric']} ({direction} is better); equivalence margin {md_number(first['i_margin'])} "
              f"(vs {bar.reference}); tuned {bar.reference} test {md_number(first['reference_mean'])}, good region "
              f"{md_number(first['reference_width'], '.2g')} decades; untuned {bar.open_loop} test "
              f"{md_number(first['open_loop_mean'])}.", ""]
    lines += md_row(["controller (untuned)", "test [95% CI]", f"(i) vs tuned {bar.reference}: difference [95% CI]",
                   "(i) verdict (Holm p diff / TOST)", "(ii) good region, decades (gain)",
                   f"(iii) vs untuned {bar.open_loop}: difference [95% CI]", "(iii) verdict (Holm p diff / TOST)",
                   "all three"])  # fmt: skip
    lines += md_row(["---"] + ["---:"] * 7)
    for r in mine.itertuples(index=False):
        lines += _controller_row(r)
    lines.append("")
    return lines


def bar_section(ctx: ReportContext, bar: Bar = BAR) -> list[str]:
    """`## The bar` (module docstring); nothing when no family has both tracks in this report."""
    data = ctx.data
    result = evaluate(ctx.per_run, data.runs, data.actions, ctx.regions, ctx.alpha, bar)
    if not result.tracks.pairs and not result.tracks.problems:
        return []
    lines = _intro(bar, result.comparisons, ctx.alpha)
    passing, statement = met(result, bar)
    table = result.table
    closest = "; ".join(f"{f}: {_counts(table, f)} controllers pass" for f in sorted(result.tracks.pairs))
    lines += [statement + (f" Per family, criteria passed: {closest}." if closest else ""), ""]
    for family, problem in sorted(result.tracks.problems.items()):
        lines += [f"- {family}: not evaluated ({problem}).", ""]
    for family, (tuned, untuned) in sorted(result.tracks.pairs.items()):
        lines += _family(family, tuned, untuned, table, bar)
    lines += _ablation(result, bar)
    return lines

def _ablation(result: BarResult, bar: Bar) -> list[str]:
    frame = result.ablation
    if frame.empty:
        return []
    a, b = bar.ablation
    lines = [
        f"### Ablation: {a} against {b} (the same cooldown, open loop)", "",
        f"Does feedback add anything to the terminal anneal? Each track compares {a} with {b} on the test metric: "
        "at the tuned LRs (each at its own best sweep point) and at the untuned LR. Verdicts as above (same Holm "
        "family).", "",
    ]  # fmt: skip
    lines += md_row(["family", "track", f"{a}: LR, test [95% CI]", f"{b}: LR, test [95% CI]", "difference [95% CI]",
                   "Holm p (difference / TOST)", "verdict"])  # fmt: skip
    lines += md_row(["---", "---"] + ["---:"] * 5)
    for r in frame.itertuples(index=False):
        lines += md_row([r.family, r.track, f"{r.a_lr}: {md_interval(r.a_mean, r.a_ci_low, r.a_ci_high)}",
                       f"{r.b_lr}: {md_interval(r.b_mean, r.b_ci_low, r.b_ci_high)}",
                       md_interval(r.difference, r.difference_ci_low, r.difference_ci_high, signed=True)
                       + (" paired" if r.paired else " Welch"),
                       f"{md_number(r.p_difference_holm, '.2g')} / {md_number(r.p_equivalence_holm, '.2g')}",
                       f"**{r.verdict}**" + (f" ({r.note})" if r.verdict == "untested" and r.note else "")])
    return lines + [""]
