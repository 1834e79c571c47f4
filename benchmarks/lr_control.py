"""Synthetic LR control: can a learned controller rescue a badly chosen starting LR?

The problem is noisy, ill-conditioned least squares trained with plain minibatch SGD, where the LR matters in
both directions: features have variances log-spaced from 1 down to 1/`condition`, labels carry Gaussian noise, a
fresh minibatch is drawn every step, and the weights start at zero. Too high an LR diverges (the stiff directions
blow up, and the minibatch noise spreads the blow-up into every direction); too low an LR crawls along the flat
directions. The loss that counts is the MSE on a fixed held-out set, which is also what the controllers watch:
every `decide_every` steps the loop calls `PolicyLR.step(val_loss)`, exactly as a user's plain PyTorch loop would.

For each controller (`rl.ThompsonBandit`, `rl.QLearning`, library defaults) and each bad start (10x above and
100x below the good LR, found by the sweep printed first), over 10 seeds, the figure is
`fixed / controller`: the final loss with the starting LR held fixed, divided by the controller's final loss on
the same data. A final loss that is non-finite or above the loss at initialisation (w = 0) is capped at the loss at
initialisation, for both sides: a diverged run is worth no more than not training at all. The requirement is
a ratio of at least 2 on every seed. The evaluation seeds (1000+) were not used while choosing the controllers'
defaults (those were tuned on other seeds of the same problem).

Run with `make bench` or `python benchmarks/lr_control.py` (about a minute on 2 CPU cores). Writes
benchmarks/lr_control.md and the `lr_control/` entries of benchmarks/results.json.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from results_io import entry, merge

from adaptive_lr.schedulers import Fixed, LRPolicy, PolicyLR
from adaptive_lr.schedulers.rl import QLearning, ThompsonBandit

ROOT = Path(__file__).resolve().parents[1]
GOOD_LR = 0.1  # geometric middle of the flat optimum of the sweep (0.03 .. 0.3); 1.0 already diverges
STARTS = {"high10x": 10.0, "low100x": 0.01}  # multiples of GOOD_LR the runs start from
STARTS_TEXT = {"high10x": "10x too high", "low100x": "100x too low"}
SWEEP = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
TARGET = 2.0  # the controller must end with a loss at least 2x lower than the fixed start LR
SEED0 = 1000  # evaluation seeds: SEED0 .. SEED0 + seeds - 1 (tuning used other seeds)
SWEEP_SEED0 = 2000


@dataclass(frozen=True)
class Problem:
    """Noisy least squares: y = x.w* + noise * eps, x ~ N(0, diag(logspace(0, -log10(condition), dim)))."""

    dim: int = 20
    condition: float = 100.0
    noise: float = 0.1
    batch: int = 16
    steps: int = 3000
    decide_every: int = 10
    n_val: int = 1000


@dataclass
class Data:
    x: torch.Tensor  # (steps, batch, dim): one fresh minibatch per step
    y: torch.Tensor  # (steps, batch, 1)
    x_val: torch.Tensor
    y_val: torch.Tensor

    @property
    def initial_loss(self) -> float:
        """Held-out MSE of the starting point w = 0: the cap of a diverged run."""
        return float((self.y_val**2).mean())


@dataclass
class RunResult:
    final_loss: float  # held-out MSE at the end; inf if it became non-finite
    lrs: list[float] = field(default_factory=list)  # LR after every decision
    decision_seconds: float = 0.0  # CPU time spent in PolicyLR.step (the policy's decisions)


def make_data(problem: Problem, seed: int) -> Data:
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(0, -math.log10(problem.condition), problem.dim).sqrt()
    w_star = torch.randn(problem.dim, 1, generator=g)
    x = torch.randn(problem.steps, problem.batch, problem.dim, generator=g) * scales
    y = x @ w_star + problem.noise * torch.randn(problem.steps, problem.batch, 1, generator=g)
    x_val = torch.randn(problem.n_val, problem.dim, generator=g) * scales
    y_val = x_val @ w_star + problem.noise * torch.randn(problem.n_val, 1, generator=g)
    return Data(x, y, x_val, y_val)


def train(data: Data, lr: float, policy: LRPolicy, decide_every: int) -> RunResult:
    """Plain SGD on the minibatch MSE, the LR driven by `policy` through `PolicyLR` every `decide_every` steps."""
    w = torch.zeros(data.x.shape[-1], 1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=lr, foreach=False)
    sched = PolicyLR(opt, policy)
    scale = 2.0 / data.x.shape[1]
    result = RunResult(math.inf)
    with torch.no_grad():  # the MSE gradient is written out: autograd would only add overhead to a linear model
        for t in range(data.x.shape[0]):
            xb = data.x[t]
            w.grad = xb.T @ (xb @ w - data.y[t]) * scale
            opt.step()
            if (t + 1) % decide_every == 0:
                val = float(torch.nn.functional.mse_loss(data.x_val @ w, data.y_val))  # one host sync per decision
                if not math.isfinite(val):
                    return result  # NaN/inf weights never recover: the run has diverged
                t0 = time.process_time()  # CPU time: the dev machine is shared, wall time would count others
                sched.step(val)
                result.decision_seconds += time.process_time() - t0
                result.lrs.append(opt.param_groups[0]["lr"])
        result.final_loss = float(torch.nn.functional.mse_loss(data.x_val @ w, data.y_val))
    if not math.isfinite(result.final_loss):
        result.final_loss = math.inf
    return result


def capped(loss: float, cap: float) -> float:
    """A non-finite loss, or one above the loss at initialisation, counts as the loss at initialisation."""
    return cap if not math.isfinite(loss) or loss > cap else loss


def controllers(problem: Problem) -> dict[str, Callable[[int], LRPolicy]]:
    """Library defaults, plus what only the loop knows: the horizon in decisions, and wide LR bounds."""
    horizon = problem.steps // problem.decide_every
    common = dict(horizon=horizon, min_lr=1e-5, max_lr=10.0)
    return {
        "rl_bandit": lambda seed: ThompsonBandit(seed=seed, **common),
        "rl_qlearning": lambda seed: QLearning(seed=seed, **common),
    }


def run_case(problem: Problem, data: Data, start_lr: float, make_policy: Callable[[int], LRPolicy] | None,
             seed: int) -> tuple[float, RunResult]:
    """(capped final loss, run) of one seed from one starting LR, the LR fixed (`make_policy=None`) or controlled."""
    policy = Fixed() if make_policy is None else make_policy(seed)
    result = train(data, start_lr, policy, problem.decide_every)
    return capped(result.final_loss, data.initial_loss), result


def fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    problem = Problem()
    t_start, cpu_start = time.perf_counter(), time.process_time()

    # 1) the sweep that places GOOD_LR: fixed LRs on 3 separate seeds
    sweep_data = [make_data(problem, SWEEP_SEED0 + s) for s in range(3)]
    sweep = {lr: [train(d, lr, Fixed(), problem.decide_every).final_loss for d in sweep_data] for lr in SWEEP}
    for lr, losses in sweep.items():
        print(f"fixed lr={lr:g}: held-out MSE {', '.join(fmt(v) for v in losses)}", flush=True)

    # 2) every controller from every bad start, on the evaluation seeds
    datas = [make_data(problem, SEED0 + s) for s in range(args.seeds)]
    fixed = {start: [run_case(problem, d, GOOD_LR * multiple, None, SEED0 + s)[0] for s, d in enumerate(datas)]
             for start, multiple in STARTS.items()}
    rows, results = [], []
    for name, make_policy in controllers(problem).items():
        for start, multiple in STARTS.items():
            start_lr = GOOD_LR * multiple
            ratios, fixed_losses, learned_losses, final_lrs, per_decision = [], [], [], [], []
            for s, data in enumerate(datas):
                fixed_loss = fixed[start][s]
                learned_loss, run = run_case(problem, data, start_lr, make_policy, SEED0 + s)
                ratios.append(fixed_loss / learned_loss)
                fixed_losses.append(fixed_loss)
                learned_losses.append(learned_loss)
                final_lrs.append(run.lrs[-1] if run.lrs else math.nan)
                per_decision.append(run.decision_seconds / max(len(run.lrs), 1))
            diverged_fixed = sum(f >= d.initial_loss for f, d in zip(fixed_losses, datas, strict=True))
            diverged_learned = sum(v >= d.initial_loss for v, d in zip(learned_losses, datas, strict=True))
            row = {
                "controller": name, "start": start, "start_lr": start_lr,
                "median_ratio": statistics.median(ratios), "worst_ratio": min(ratios),
                "met": sum(r >= TARGET for r in ratios), "ratios": ratios,
                "fixed_median": statistics.median(fixed_losses), "learned_median": statistics.median(learned_losses),
                "learned_worst": max(learned_losses), "diverged_fixed": diverged_fixed,
                "diverged_learned": diverged_learned, "final_lr_median": statistics.median(final_lrs),
                "decision_us": statistics.median(per_decision) * 1e6,
            }
            rows.append(row)
            print(f"{name} from {STARTS_TEXT[start]} (lr={start_lr:g}): fixed/controller median "
                  f"{row['median_ratio']:.1f} worst {row['worst_ratio']:.2f}, {row['met']}/{len(datas)} >= {TARGET:g}",
                  flush=True)
            results.append(entry(f"lr_control/{name}/{start}_ratio_median", round(row["median_ratio"], 3), "x",
                                 TARGET, "higher"))
            results.append(entry(f"lr_control/{name}/{start}_ratio_worst", round(row["worst_ratio"], 3), "x",
                                 TARGET, "higher"))
        decision_us = statistics.median(r["decision_us"] for r in rows if r["controller"] == name)
        results.append(entry(f"lr_control/{name}/decision_us", round(decision_us, 1), "us", None, "lower"))
    elapsed, cpu = time.perf_counter() - t_start, time.process_time() - cpu_start
    merge(results, ["lr_control/"], args.out / "results.json")
    write_markdown(args.out / "lr_control.md", problem, sweep, rows, len(datas), elapsed, cpu)
    print(f"wrote {args.out / 'lr_control.md'} ({elapsed:.0f} s)")


def write_markdown(path: Path, problem: Problem, sweep: dict[float, list[float]], rows: list[dict], seeds: int,
                   elapsed: float, cpu: float) -> None:
    p = problem
    lines = [
        "# Synthetic LR control",
        "",
        f"Measured by `make bench` (`python benchmarks/lr_control.py`) on {platform.machine()}, torch "
        f"{torch.__version__}, 1 torch thread, CPU; {elapsed:.0f} s wall, {cpu:.0f} s CPU (load average "
        f"{os.getloadavg()[0]:.1f} at the end). Decision times are CPU time per `PolicyLR.step`.",
        "",
        f"Problem: noisy least squares, {p.dim} features with variances log-spaced from 1 to 1/{p.condition:g}, "
        f"label noise std {p.noise:g}, plain SGD (no momentum) on fresh minibatches of {p.batch}, {p.steps} steps "
        f"from w = 0. Every {p.decide_every} steps the loop computes the held-out MSE ({p.n_val} samples) and calls "
        f"`PolicyLR.step(val_loss)`: {p.steps // p.decide_every} decisions per run. Controllers run with their "
        "library defaults (factors 0.5/0.8/1/1.25/2, relative-improvement reward minus the recent trend, blow-up "
        "shield), `horizon` = decisions per run, LR bounds [1e-5, 10].",
        "",
        f"A final loss that is non-finite or above the loss at initialisation (w = 0, MSE about 4) counts as the "
        f"loss at initialisation, for the fixed runs and the controllers alike (a diverged run is worth no more "
        f"than not training). Ratio = fixed-LR final loss / controller final loss on the same data, "
        f"{seeds} evaluation seeds ({SEED0}..{SEED0 + seeds - 1}, not used while tuning the defaults). "
        f"Target: ratio >= {TARGET:g} on every seed.",
        "",
        "## Where the good LR is (fixed LR, 3 other seeds, final held-out MSE; the noise floor is 0.01)",
        "",
        "| fixed LR | " + " | ".join(f"seed {SWEEP_SEED0 + i}" for i in range(3)) + " |",
        "| ---: | " + " | ".join("---:" for _ in range(3)) + " |",
    ]
    for lr, losses in sweep.items():
        mark = " (good LR)" if lr == GOOD_LR else ""
        lines.append(f"| {lr:g}{mark} | " + " | ".join(fmt(v) for v in losses) + " |")
    lines += [
        "",
        f"Good LR = {GOOD_LR:g}, the geometric middle of the flat optimum; the bad starts are "
        f"{GOOD_LR * STARTS['high10x']:g} (10x) and {GOOD_LR * STARTS['low100x']:g} (1/100).",
        "",
        "## Controller vs the fixed LR it started from",
        "",
        "| controller | start | fixed final MSE (median) | fixed runs diverged | controller final MSE (median / "
        "worst) | controller runs diverged | ratio median | ratio worst | seeds >= 2x | met | final LR (median) "
        "| decision (us) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['controller']} | {STARTS_TEXT[r['start']]} (lr {r['start_lr']:g}) | {fmt(r['fixed_median'])} | "
            f"{r['diverged_fixed']}/{seeds} | {fmt(r['learned_median'])} / {fmt(r['learned_worst'])} | "
            f"{r['diverged_learned']}/{seeds} | {r['median_ratio']:.1f} | {r['worst_ratio']:.2f} | "
            f"{r['met']}/{seeds} | {'yes' if r['met'] == seeds else 'NO'} | {r['final_lr_median']:.3g} | "
            f"{r['decision_us']:.0f} |"
        )
    lines += ["", "Per-seed ratios:", ""]
    for r in rows:
        lines.append(f"- {r['controller']}, {STARTS_TEXT[r['start']]}: " + ", ".join(f"{x:.2f}" for x in r["ratios"]))
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
