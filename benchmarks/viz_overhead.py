"""Training-time overhead of every view (`viz=[params,latent]`) on the MNIST MLP (784-128-64-10, batch 64).

Run with `make bench` (or `python benchmarks/viz_overhead.py`). Through the real harness (TensorBoard + MLflow on)
it trains the same run `--epochs` epochs (10) with views off (no `viz` in the config: the runner constructs no view
callback, so "off" is exactly the code path of a run without this feature) and with every view on at its default
settings, except the latent view's schedule: t-SNE every `--epochs` epochs (`viz_every`, the issue's "t-SNE every
10 epochs"; no milestones), so its one snapshot is the last epoch's, which nothing overlaps: the run waits for it.

    overhead = view time on the training thread / (fit time - that view time), median over the views-on runs

View time is the summed wall time of every hook of every view on the training thread (wrapped with
`perf_counter`, as `controller_overhead.py` does), the wait at train end for the last snapshot included: the
latent view's background job (t-SNE, figure, PNG; timed on its own) has nothing to overlap with in these runs, so
all of it is in that wait. Fit time is `trainer.fit` of the same run (setup, epochs, train-end work). Measured
within one run, this resolves a few-percent effect that two wall times on a shared CPU cannot: the machine's
speed drifts between runs by more than the effect. The wall-time ratio of back-to-back (off, on) pairs, fit time on
/ fit time off - 1, is shown beside it (median, lowest and highest pair). Uses real MNIST when `ADAPTIVE_LR_DATA_DIR` holds it, else MNIST-shaped synthetic tensors (60k
samples: the same number of steps). Writes benchmarks/viz_overhead.md, the `viz/` entries of results.json and
benchmarks/summary.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from pathlib import Path

import torch
from results_io import Timer, entry, merge, mnist_task, write_summary

from adaptive_lr.config import compose
from adaptive_lr.runner import run
from adaptive_lr.runtime import configure_runtime

ROOT = Path(__file__).resolve().parents[1]
TARGET_ON, TARGET_OFF = 0.10, 0.01  # the bounds: <= 10% with views on, < 1% with views off
HOOKS = ("on_train_start", "on_train_batch_start", "on_before_optimizer_step", "on_train_batch_end",
         "on_train_epoch_end", "on_train_end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs per run; t-SNE once, at the last")
    parser.add_argument("--pairs", type=int, default=3, help="interleaved (off, on) pairs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    args = parser.parse_args()
    import lightning  # noqa: F401

    from adaptive_lr.callbacks.views import LatentView, ParamView

    configure_runtime()
    timer = Timer()
    for cls, view in ((ParamView, "params"), (LatentView, "latent")):
        for hook in HOOKS:
            timer.wrap(cls, hook, f"{view}.{hook}")
    timer.wrap(LatentView, "_embed_and_draw", "latent.background_job")  # on the view's background thread
    task = mnist_task()
    views = ["viz=params", "+viz@viz.latent=latent", "viz.latent.milestones=[]", f"viz.latent.viz_every={args.epochs}"]
    load = [os.getloadavg()[0]]
    offs, ons, ratios, shares = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        base = [*task, f"trainer.max_epochs={args.epochs}", "experiment=bench", f"paths.root={tmp}"]
        off_cfg = compose(base)
        assert off_cfg.get("viz") is None, "views off must construct no view callback"
        # warm-up: first-call costs (imports of sklearn and matplotlib, kernels); 32 batches of MNIST
        run(compose([*base, *views, "trainer.max_epochs=1", "+trainer.limit_train_batches=32"]))
        totals: dict[str, float] = {}
        for i in range(args.pairs):
            off = run(off_cfg)
            timer.reset()
            on = run(compose([*base, *views]))
            main_thread = sum(v for k, v in timer.seconds.items() if k != "latent.background_job")
            for k, v in timer.seconds.items():
                totals[k] = totals.get(k, 0.0) + v
            offs.append(off.fit_seconds)
            ons.append(on.fit_seconds)
            ratios.append(on.fit_seconds / off.fit_seconds - 1)
            shares.append(main_thread / (on.fit_seconds - main_thread))
            load.append(os.getloadavg()[0])
            print(f"pair {i + 1}: views {main_thread:.2f} s of a {on.fit_seconds:.1f} s fit: {shares[-1]:+.2%}; "
                  f"wall: off {off.fit_seconds:.1f} s, on {on.fit_seconds:.1f} s: {ratios[-1]:+.2%}", flush=True)
    s = {k: v / args.pairs for k, v in totals.items()}  # per views-on run
    calls = dict(timer.calls)  # of the last views-on run
    overhead = statistics.median(shares)
    epoch_off = statistics.median(offs) / args.epochs
    params_main = sum(v for k, v in s.items() if k.startswith("params.")) / args.epochs
    latent_main = sum(v for k, v in s.items() if k.startswith("latent.on_")) / args.epochs
    job = s.get("latent.background_job", 0.0) / max(calls.get("latent.background_job", 1), 1)
    print(f"views on: {overhead:+.2%} (runs {min(shares):+.2%} to {max(shares):+.2%}; wall pairs "
          f"{statistics.median(ratios):+.2%}, {min(ratios):+.2%} to {max(ratios):+.2%}); off "
          f"{epoch_off:.2f} s/epoch; parameter view {params_main * 1e3:.0f} ms/epoch, latent view "
          f"{latent_main * 1e3:.0f} ms/epoch on the training thread, t-SNE snapshot job {job:.2f} s", flush=True)
    results = [
        entry("viz/views_on_overhead", round(overhead, 5), "fraction of training time", TARGET_ON, "lower"),
        entry("viz/views_on_overhead_lowest_run", round(min(shares), 5), "fraction of training time", None, "lower"),
        entry("viz/views_on_overhead_highest_run", round(max(shares), 5), "fraction of training time", None, "lower"),
        entry("viz/views_on_wall_ratio", round(statistics.median(ratios), 5), "fraction of fit time", None, "lower"),
        entry("viz/views_on_wall_ratio_lowest_pair", round(min(ratios), 5), "fraction of fit time", None, "lower"),
        entry("viz/views_on_wall_ratio_highest_pair", round(max(ratios), 5), "fraction of fit time", None, "lower"),
        entry("viz/views_off_overhead", 0.0, "fraction of train time", TARGET_OFF, "lower"),
        entry("viz/epoch_s_views_off", round(epoch_off, 3), "s", None, "lower"),
        entry("viz/params_view_s_per_epoch", round(params_main, 4), "s", None, "lower"),
        entry("viz/latent_view_main_thread_s_per_epoch", round(latent_main, 4), "s", None, "lower"),
        entry("viz/tsne_snapshot_s", round(job, 3), "s", None, "lower"),
        entry("viz/load_average", round(statistics.median(load), 2), "1-min load", None, "lower"),
    ]
    merge(results, ["viz/"], args.out / "results.json")
    write_summary(args.out / "summary.md", args.out / "results.json")
    command = f"python benchmarks/viz_overhead.py --epochs {args.epochs} --pairs {args.pairs}"
    rows = "\n".join(f"| `{k}` | {calls[k]} | {v * 1e3:.1f} |" for k, v in sorted(s.items()))
    lines = [
        "# View overhead",
        "",
        f"Measured by `{command}` (part of `make bench`) on {platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, CPU only, 1-minute load average "
        f"{min(load):.1f}-{max(load):.1f} during the runs: `{task[0]}`, {args.epochs} epochs per run, TensorBoard "
        "+ MLflow on. Views on: `viz=[params,latent]` at their default settings (parameter scalars every 100 "
        "steps, histograms every 500, a panel every 1000; t-SNE of 500 train + 300 validation samples, 450 "
        f"iterations from PCA, in the view's background thread), t-SNE once per {args.epochs} epochs (at the last "
        "epoch, so the run waits for it). Views off: no `viz` entry, so no view callback is constructed and the run "
        "executes exactly the code of a run without views (0 by construction). Overhead: the views' time on the "
        "training thread (every hook, the wait for the last snapshot included) over the rest of that run's "
        f"`trainer.fit` time, median of {args.pairs} views-on runs; beside it the wall-time ratio of back-to-back "
        "(off, on) pairs, which the machine's drift between runs blurs.",
        "",
        "| measure | value | target | met |",
        "| --- | ---: | ---: | :---: |",
        f"| **views all-on overhead** (`{command}`) | **{overhead:+.2%}** | <= {TARGET_ON:.0%} | "
        f"{'yes' if overhead <= TARGET_ON else 'NO'} |",
        f"| runs, lowest to highest | {min(shares):+.2%} to {max(shares):+.2%} | | |",
        f"| wall time on / off - 1, median pair (lowest, highest) | {statistics.median(ratios):+.2%} "
        f"({min(ratios):+.2%}, {max(ratios):+.2%}) | | |",
        f"| views off | 0 (no callback) | < {TARGET_OFF:.0%} | yes |",
        f"| fit time per epoch, views off (median run) | {epoch_off:.2f} s | | |",
        f"| parameter view, training thread, per epoch | {params_main * 1e3:.0f} ms | | |",
        f"| latent view, training thread, per epoch (subset features, the wait for the last snapshot) | "
        f"{latent_main * 1e3:.0f} ms | | |",
        f"| one t-SNE snapshot in the background thread (t-SNE, figure, PNG) | {job:.2f} s | | |",
        "",
        "Hook times (mean per views-on run; `latent.background_job` runs on the view's thread):",
        "",
        "| hook | calls | ms |",
        "| --- | ---: | ---: |",
        rows,
    ]
    (args.out / "viz_overhead.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'viz_overhead.md'}")


if __name__ == "__main__":
    main()
