"""Training-time overhead of the views (`viz=[params,latent]`) on the MNIST MLP (784-128-64-10, batch 64).

Run with `python benchmarks/viz_overhead.py` (part of `make bench`). Through the real harness (TensorBoard + MLflow
on) it trains the same run twice for `--epochs` epochs: views off (no `viz` in the config: the runner constructs
no view callback, so "off" is exactly the code path of a run without this feature) and views on, with the default
view settings except the latent view's schedule: its only t-SNE snapshot is the one every run takes at the last
epoch. Its cost is amortised as one snapshot per `--tsne-every` epochs (the issue's "t-SNE every 10 epochs", the
default `viz_every`):

    per-epoch view cost = (view hook time - snapshot time) / epochs + snapshot time / tsne_every
    overhead with views on = per-epoch view cost / per-epoch training time with views off

View hook time is the summed wall time of every hook of every view (wrapped with `perf_counter`, as
`controller_overhead.py` does), which resolves a few-percent effect that two noisy wall times on a shared CPU
could not; the plain wall-time ratio of the two runs is reported beside it. The latent view's last-epoch work
(GIF, projector) runs after training ends and is reported separately. Uses real MNIST when
`ADAPTIVE_LR_DATA_DIR` holds it, else MNIST-shaped synthetic tensors (60k samples: the same number of steps).
Writes benchmarks/viz_overhead.md and the `viz/` entries of benchmarks/results.json.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import torch
from results_io import Timer, entry, merge, mnist_task

from adaptive_lr.config import compose
from adaptive_lr.runner import run
from adaptive_lr.runtime import configure_runtime

ROOT = Path(__file__).resolve().parents[1]
TARGET_ON, TARGET_OFF = 0.10, 0.01  # the bounds: <= 10% with views on, < 1% with views off
HOOKS = ("on_train_start", "on_train_batch_start", "on_before_optimizer_step", "on_train_batch_end",
         "on_train_epoch_end", "on_train_end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--tsne-every", type=int, default=10, help="epochs per t-SNE snapshot to amortise over")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    args = parser.parse_args()
    import lightning  # noqa: F401

    from adaptive_lr.callbacks.views import LatentView, ParamView

    configure_runtime()
    timer = Timer()
    for cls, view in ((ParamView, "params"), (LatentView, "latent")):
        for hook in HOOKS:
            timer.wrap(cls, hook, f"{view}.{hook}")
    timer.wrap(LatentView, "_snapshot", "latent.snapshot")  # nested inside on_train_epoch_end / on_train_end
    task = mnist_task()
    # `+viz@viz.latent=latent` adds a second view beside `viz=params` (the same as `viz=[params,latent]`)
    views = ["viz=params", "+viz@viz.latent=latent", "viz.latent.milestones=[]", "viz.latent.viz_every=1000000"]
    with tempfile.TemporaryDirectory() as tmp:
        base = [*task, f"trainer.max_epochs={args.epochs}", "experiment=bench", f"paths.root={tmp}"]
        off_cfg = compose(base)
        assert off_cfg.get("viz") is None, "views off must construct no view callback"
        # warm-up: first-call costs; 32 batches (~2k samples) of either MNIST task
        run(compose([*base, *views, "trainer.max_epochs=1", "+trainer.limit_train_batches=32"]))
        off = run(off_cfg)
        timer.reset()
        on = run(compose([*base, *views]))
    s = dict(timer.seconds)
    snapshot = s.get("latent.snapshot", 0.0)
    after_training = s.get("params.on_train_end", 0.0) + s.get("latent.on_train_end", 0.0)
    in_training = sum(v for k, v in s.items() if k != "latent.snapshot") - after_training
    epoch_off = off.train_seconds / args.epochs
    per_epoch = (in_training - snapshot) / args.epochs + snapshot / args.tsne_every
    share_on = per_epoch / epoch_off
    wall_ratio = on.train_seconds / off.train_seconds - 1
    params_cost = sum(v for k, v in s.items() if k.startswith("params.")) / args.epochs
    print(f"off: {epoch_off:.2f} s/epoch; on: {on.train_seconds / args.epochs:.2f} s/epoch; view hooks "
          f"{in_training:.2f} s (t-SNE snapshot {snapshot:.2f} s); amortised overhead {share_on:.2%}; "
          f"wall ratio {wall_ratio:+.2%}", flush=True)
    results = [
        entry("viz/views_on_overhead", round(share_on, 5), "fraction of train time", TARGET_ON, "lower"),
        entry("viz/views_off_overhead", 0.0, "fraction of train time", TARGET_OFF, "lower"),
        entry("viz/views_on_wall_ratio", round(wall_ratio, 5), "fraction of train time", None, "lower"),
        entry("viz/tsne_snapshot_s", round(snapshot, 3), "s", None, "lower"),
        entry("viz/params_view_s_per_epoch", round(params_cost, 4), "s", None, "lower"),
    ]
    merge(results, ["viz/"], args.out / "results.json")
    rows = "\n".join(f"| `{k}` | {timer.calls[k]} | {v * 1e3:.1f} |" for k, v in sorted(s.items()))
    lines = [
        "# View overhead",
        "",
        f"Measured by `python benchmarks/viz_overhead.py` on {platform.machine()}, {torch.get_num_threads()} torch "
        f"threads, torch {torch.__version__}, CPU only: `{task[0]}`, {args.epochs} epoch(s) per run, TensorBoard + "
        "MLflow on. Views on: `viz=[params,latent]` with the default settings (parameter histograms every 100 "
        "steps, a panel every 1000; t-SNE of 500 train + 300 validation samples), the t-SNE snapshot amortised "
        f"as one per {args.tsne_every} epochs. Views off: no `viz` entry, so no view callback is constructed and "
        "the run executes exactly the code of a run without views (0 by construction).",
        "",
        "| measure | value | target | met |",
        "| --- | ---: | ---: | :---: |",
        f"| training time per epoch, views off | {epoch_off:.2f} s | | |",
        f"| training time per epoch, views on (incl. this run's one t-SNE) | {on.train_seconds / args.epochs:.2f} s "
        "| | |",
        f"| view hooks during training (incl. the t-SNE) | {in_training:.2f} s | | |",
        f"| one t-SNE snapshot (features, t-SNE, figure) | {snapshot:.2f} s | | |",
        f"| parameter view per epoch | {params_cost:.3f} s | | |",
        f"| **overhead with views on** (per-epoch view cost / epoch time) | **{share_on:.2%}** | <= {TARGET_ON:.0%} "
        f"| {'yes' if share_on <= TARGET_ON else 'NO'} |",
        f"| overhead with views off | 0 (no callback) | < {TARGET_OFF:.0%} | yes |",
        f"| wall-time ratio on/off - 1 (noisy; includes the unamortised t-SNE) | {wall_ratio:+.2%} | | |",
        f"| after training: GIF, projector, metadata | {after_training:.2f} s | | |",
        "",
        "Hook times (views on run):",
        "",
        "| hook | calls | ms |",
        "| --- | ---: | ---: |",
        rows,
    ]
    (args.out / "viz_overhead.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'viz_overhead.md'}")


if __name__ == "__main__":
    main()
