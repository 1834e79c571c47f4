"""Synthetic runs for a temporary MLflow store, logged exactly per the training-side logging contract.

Experiment "demo", two tasks, 3 seeds (0, 1, 2) per task x scheduler, no phase or provenance tags:
- digits (acc, max, threshold 0.9, 5 epochs, 4 steps/epoch): fixed, cosine (baselines), heuristic (adaptive);
  plus one FAILED heuristic run (seed 3) with an `error` tag.
- xor_clean (mse, min, threshold 0.1, 4 epochs, 2 steps/epoch): fixed (baseline), heuristic (adaptive) whose
  seed 2 diverges (NaN from epoch 3); plus one fixed run (seed 3) left RUNNING.
Experiment "verdicts", a tuned grid (every run has a `phase` tag, `tuning_budget` 2 and provenance tags):
- flat (acc, max, threshold 0.8, 3 epochs, 1 step/epoch): fixed (baseline), heuristic (adaptive, equivalent
  within the margin), bandit (adaptive, significantly worse); no controller actions logged. Plus two
  tune-phase runs of fixed (one FINISHED with a curve that would top every table, one FAILED).
  flat declares an absolute equivalence margin of 0.05 (tag `equivalence_margin`); every final run carries
  `data_checksum` md5:<task>01 and the same seeds, so its comparisons are paired by seed.
- solo (mse, min, threshold 0.5, 3 epochs): fixed only, one seed (no adaptive scheduler, no interval).
Experiment "ties": one task `tie` (mse, min, threshold 0.2, 3 epochs, relative margin 0.1 = 10% of the best
baseline's mean final val MSE) where three baselines (cosine, fixed, step) end at the same per-seed values in
another seed order, so their mean final val MSEs are exactly equal (dyadic numbers: sums are exact), and one
adaptive scheduler (heuristic); one data checksum and the same seeds: each comparison is paired by seed, so the
three tied baselines give three different comparisons.
train_<metric> is val + train_offset (the running train-mode mean); digits runs also log `train_eval_acc`
(eval-mode pass over a train subset) = val + TRAIN_EVAL[task][seed], so their generalization gap is that offset;
the other tasks log no `train_eval_*` (gap NaN). test_<metric> is final val - 0.01. `epoch_time_s` at epoch e is
EPOCH_SECONDS[scheduler] * e (adaptive controllers are slower per epoch).
"""

from __future__ import annotations

import math

NAN = math.nan
VAL_LOSS_SMOOTH = [1.0, 0.8, 0.7, 0.65, 0.6]
VAL_LOSS_HALVING = [1.0, 0.5, 0.25, 0.125]

TASKS = {
    "digits": dict(
        metric="acc", mode="max", threshold="0.9", max_epochs=5, steps_per_epoch=4, train_offset=0.05
    ),
    "xor_clean": dict(
        metric="mse", mode="min", threshold="0.1", max_epochs=4, steps_per_epoch=2, train_offset=-0.02
    ),
    "flat": dict(
        metric="acc", mode="max", threshold="0.8", max_epochs=3, steps_per_epoch=1, train_offset=0.0
    ),
    "solo": dict(
        metric="mse", mode="min", threshold="0.5", max_epochs=3, steps_per_epoch=1, train_offset=0.0
    ),
    "tie": dict(metric="mse", mode="min", threshold="0.2", max_epochs=3, steps_per_epoch=1, train_offset=0.0),
}
TRAIN_EVAL = {"digits": [0.01, 0.015, 0.02]}  # task -> per seed: train_eval_<metric> - val_<metric>
EPOCH_SECONDS = {"fixed": 1.0, "cosine": 1.0, "step": 1.0, "heuristic": 1.5, "bandit": 2.0}
# (task, scheduler, adaptive) -> per seed: (val metric curve, val_loss curve)
CURVES = {
    ("digits", "fixed", False): [
        ([0.5, 0.7, 0.85, 0.88, 0.89], VAL_LOSS_SMOOTH),  # never reaches 0.9
        ([0.6, 0.8, 0.9, 0.92, 0.91], VAL_LOSS_SMOOTH),  # epoch 3 (exactly 0.9)
        ([0.7, 0.9, 0.93, 0.94, 0.95], VAL_LOSS_SMOOTH),  # epoch 2
    ],
    ("digits", "cosine", False): [([0.6, 0.85, 0.9, 0.93, 0.94], VAL_LOSS_SMOOTH)] * 3,
    ("digits", "heuristic", True): [
        ([0.6, 0.85, 0.92, 0.95, 0.96], [1.0, 0.6, 0.4, 0.3, 0.3]),
        ([0.7, 0.9, 0.94, 0.96, 0.97], [1.0, 0.6, 0.4, 0.3, 0.3]),
        ([0.8, 0.91, 0.95, 0.97, 0.98], [1.0, 0.6, 0.4, 0.3, 0.3]),
    ],
    ("xor_clean", "fixed", False): [
        ([0.5, 0.3, 0.2, 0.15], VAL_LOSS_HALVING),  # never reaches 0.1
        ([0.4, 0.2, 0.1, 0.08], VAL_LOSS_HALVING),  # epoch 3 (exactly 0.1)
        ([0.3, 0.1, 0.05, 0.04], VAL_LOSS_HALVING),  # epoch 2
    ],
    ("xor_clean", "heuristic", True): [
        ([0.4, 0.1, 0.05, 0.02], VAL_LOSS_HALVING),
        ([0.3, 0.09, 0.04, 0.03], VAL_LOSS_HALVING),
        ([0.5, 0.3, NAN, NAN], [1.0, 0.8, NAN, NAN]),  # diverges
    ],
}
VAL_LOSS_FLAT = [1.0, 0.8, 0.7]
VERDICT_CURVES = {
    ("flat", "fixed", False): [
        ([0.7, 0.75, 0.80], VAL_LOSS_FLAT),  # epoch 3
        ([0.7, 0.78, 0.82], VAL_LOSS_FLAT),  # epoch 3
        ([0.75, 0.8, 0.84], VAL_LOSS_FLAT),  # epoch 2
    ],
    ("flat", "heuristic", True): [
        ([0.7, 0.76, 0.81], VAL_LOSS_FLAT),  # epoch 3
        ([0.72, 0.8, 0.83], VAL_LOSS_FLAT),  # epoch 2
        ([0.7, 0.82, 0.86], VAL_LOSS_FLAT),  # epoch 2
    ],
    ("flat", "bandit", True): [
        ([0.5, 0.55, 0.60], VAL_LOSS_FLAT),
        ([0.5, 0.6, 0.62], VAL_LOSS_FLAT),
        ([0.55, 0.58, 0.61], VAL_LOSS_FLAT),
    ],
    ("solo", "fixed", False): [([0.9, 0.6, 0.4], VAL_LOSS_FLAT)],  # epoch 3
}
FLAT_MARGIN = "0.05"
TIE_MARGIN = "0.1"  # relative: 10% of the best baseline's mean final val MSE
TIE_FINALS = [0.125, 0.25, 0.375]  # mean 0.25 exactly, whatever the order
TIE_CURVES = {
    ("tie", "cosine", False): [([0.5, 0.25, f], VAL_LOSS_FLAT) for f in TIE_FINALS],
    ("tie", "fixed", False): [([0.5, 0.25, f], VAL_LOSS_FLAT) for f in [0.375, 0.125, 0.25]],
    ("tie", "step", False): [([0.5, 0.25, f], VAL_LOSS_FLAT) for f in [0.25, 0.375, 0.125]],
    ("tie", "heuristic", True): [([0.4, 0.2, f], VAL_LOSS_FLAT) for f in [0.125, 0.125, 0.25]],
}
PROVENANCE = {
    "git_commit": "abc1234", "host": "node-a", "device": "cpu (x86_64)", "cpu_count": "2",
    "torch_version": "2.14.0", "python_version": "3.12.1", "grid_jobs": "2", "load_avg_start": "1.5",
}  # fmt: skip


def log_run(
    client, experiment_id, task, scheduler, adaptive, seed, val, val_loss, status="FINISHED", error=None,
    extra_tags=None, actions=True, start_time=None,
):  # fmt: skip
    """Log one run per the contract (plus `extra_tags`; controller decisions of adaptive runs if `actions`);
    returns its run id."""
    from mlflow.entities import Metric, RunTag

    spec = TASKS[task]
    m, spe = spec["metric"], spec["steps_per_epoch"]
    offsets = TRAIN_EVAL.get(task, [])
    train_eval = offsets[seed] if seed < len(offsets) else None
    run = client.create_run(experiment_id, run_name=f"{task}-{scheduler}-{seed}", start_time=start_time)
    run_id = run.info.run_id
    base_tags = {
        "experiment": "demo", "task": task, "scheduler": scheduler, "seed": str(seed), "metric": m,
        "metric_mode": spec["mode"], "threshold": spec["threshold"], "max_epochs": str(spec["max_epochs"]),
        "steps_per_epoch": str(spe), "adaptive": str(adaptive).lower(), "run_dir": f"/runs/{run_id}",
    }  # fmt: skip
    tags = {**base_tags, **(extra_tags or {})}
    if error:
        tags["error"] = error
    ts = 1_700_000_000_000
    metrics = []
    for epoch, (v, loss) in enumerate(zip(val, val_loss, strict=False), start=1):
        lr = 0.1 * (0.5 ** (epoch - 1) if adaptive else 1.0)
        for name, value in [
            (f"val_{m}", v), (f"train_{m}", v + spec["train_offset"]), ("val_loss", loss),
            ("train_loss", loss * 0.9), ("epoch_time_s", EPOCH_SECONDS[scheduler] * epoch), ("epoch_lr", lr),
        ]:  # fmt: skip
            metrics.append(Metric(name, value, ts + epoch, epoch))
        if train_eval is not None:
            metrics.append(Metric(f"train_eval_{m}", v + train_eval, ts + epoch, epoch))
        for step in range((epoch - 1) * spe + 1, epoch * spe + 1, 2):  # `lr` every 2 optimizer steps
            metrics.append(Metric("lr", lr, ts + step, step))
    if adaptive and actions:  # controller decisions; 99 is not in the action table
        for step, code, factor in [(spe, 0, 1.0), (2 * spe, 3, 0.5), (3 * spe, 99, 1.0)]:
            metrics += [
                Metric("controller_action", code, ts, step),
                Metric("controller_factor", factor, ts, step),
            ]
    if status == "FINISHED":
        metrics += [Metric(f"test_{m}", val[-1] - 0.01, ts, 0), Metric("test_loss", val_loss[-1], ts, 0)]
    client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])
    if status != "RUNNING":
        client.set_terminated(run_id, status=status)
    return run_id


def build(root):
    """Create the store in folder `root`; return (tracking_uri, {"failed", "running", "tune_finished",
    "tune_failed": run_id})."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("demo", artifact_location=(root / "artifacts").as_uri())
    for (task, scheduler, adaptive), seeds in CURVES.items():
        for seed, (val, val_loss) in enumerate(seeds):
            log_run(client, exp, task, scheduler, adaptive, seed, val, val_loss)
    special = {
        "failed": log_run(
            client,
            exp,
            "digits",
            "heuristic",
            True,
            3,
            [0.5, 0.6],
            [1.0, 0.9],
            status="FAILED",
            error="CUDA out of memory | at step 12",
        ),  # fmt: skip
        "running": log_run(client, exp, "xor_clean", "fixed", False, 3, [0.5], [1.0], status="RUNNING"),
    }
    failed_only = client.create_experiment("only_failed", artifact_location=(root / "of").as_uri())
    log_run(client, failed_only, "digits", "fixed", False, 0, [0.5], [1.0], status="FAILED")
    client.create_experiment("empty", artifact_location=(root / "empty").as_uri())

    verdicts = client.create_experiment("verdicts", artifact_location=(root / "verdicts").as_uri())
    final = {**PROVENANCE, "phase": "final", "tuning_budget": "2"}
    for (task, scheduler, adaptive), seeds in VERDICT_CURVES.items():
        for seed, (val, val_loss) in enumerate(seeds):
            tags = {**final, "data_checksum": f"md5:{task}01"}
            if task == "flat":
                tags |= {"equivalence_margin": FLAT_MARGIN, "margin_relative": "false"}
            log_run(
                client,
                verdicts,
                task,
                scheduler,
                adaptive,
                seed,
                val,
                val_loss,
                extra_tags=tags,
                actions=False,
            )
    tune = {**PROVENANCE, "phase": "tune", "tuning_budget": "2", "data_checksum": "md5:flat01"}
    special["tune_finished"] = log_run(
        client, verdicts, "flat", "fixed", False, 0, [0.99, 0.99, 0.99], VAL_LOSS_FLAT, extra_tags=tune
    )
    special["tune_failed"] = log_run(
        client,
        verdicts,
        "flat",
        "fixed",
        False,
        1,
        [0.5],
        [1.0],
        status="FAILED",
        error="boom",
        extra_tags=tune,
    )
    only_tune = client.create_experiment("only_tune", artifact_location=(root / "ot").as_uri())
    log_run(client, only_tune, "flat", "fixed", False, 0, [0.5], [1.0], extra_tags={"phase": "tune"})

    ties = client.create_experiment("ties", artifact_location=(root / "ties").as_uri())
    margin = {"equivalence_margin": TIE_MARGIN, "margin_relative": "true", "data_checksum": "md5:tie01"}
    for (task, scheduler, adaptive), seeds in TIE_CURVES.items():
        for seed, (val, val_loss) in enumerate(seeds):
            log_run(
                client, ties, task, scheduler, adaptive, seed, val, val_loss, extra_tags=margin, actions=False
            )
    return uri, special
