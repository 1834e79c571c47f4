"""Build every component of one run from its config, train, test, and record it. No string dispatch: objects
come from `_target_`s in the config."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from adaptive_lr.config import ConfigError, to_container
from adaptive_lr.runtime import configure_runtime


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    status: str
    metrics: dict[str, float]
    seconds: float       # the whole run: setup, fit, test, tracking
    fit_seconds: float   # trainer.fit: its setup plus the epochs
    train_seconds: float  # the epochs alone (training, validation, callbacks), from train start to the last epoch


def config_hash(cfg: DictConfig) -> str:
    """Identity of what a run computes: the resolved config without paths, experiment name or logging knobs."""
    data = to_container(cfg)
    for key in ("paths", "experiment", "logger", "data_dir", "report", "live_control"):
        data.pop(key, None)
    for key in ("data_dir", "cache_dir"):  # where the data lives does not change what a run computes
        data.get("data", {}).pop(key, None)
    for key in ("margin", "margin_relative"):  # the verdicts' equivalence margin is read by reports only
        data.get("task", {}).pop(key, None)
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


def provenance() -> dict[str, Any]:
    """Where a run ran: host and process (a grid marks RUNNING runs of dead processes as KILLED), versions, device."""
    import os
    import platform

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({platform.machine()})"
    return {"host": platform.node(), "pid": os.getpid(), "cpu_count": os.cpu_count(),
            "torch_version": torch.__version__, "python_version": platform.python_version(), "device": device,
            "load_avg_start": _load_average()}


def _load_average() -> str:
    """The machine's 1-minute load average, so a report can say when wall-clock columns shared the machine."""
    import os

    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:  # not available on this platform
        return ""


def hparams_of(cfg: DictConfig) -> dict[str, Any]:
    """The settings a grid varies, for TensorBoard's HParams tab."""
    return {"task": cfg.task.name, "scheduler": cfg.scheduler.name, "seed": cfg.seed, "lr": cfg.lr,
            "optimizer": cfg.optimizer._target_, "max_epochs": cfg.trainer.max_epochs,
            "batch_size": cfg.data.get("batch_size", -1)}


def _instantiate(node: Any, what: str, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, with a component's own validation error surfaced as a one-line ConfigError."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise ConfigError(f"{what}: {str(cause).splitlines()[0]}") from err


def build(cfg: DictConfig) -> dict[str, Any]:
    """Datamodule, task module and LR policy for `cfg`; raises ConfigError before anything is trained."""
    from adaptive_lr.callbacks import LRControl
    from adaptive_lr.schedulers import Warmup

    datamodule = _instantiate(cfg.data, "data")
    model = _instantiate(cfg.model, "model")
    loss = _instantiate(cfg.loss, "loss")
    multi_start = None
    if cfg.multi_start.k > 1:  # keep the best of k initialisations (by the loss on the first training batches)
        from itertools import islice

        from adaptive_lr.tasks.multi_start import choose_init

        datamodule.setup("fit")  # a fresh loader: the trainer's own shuffle order is untouched
        batches = list(islice(iter(datamodule.train_dataloader()), cfg.multi_start.batches))
        model, losses, best = choose_init(lambda: _instantiate(cfg.model, "model"), loss, batches,
                                          cfg.multi_start.k, cfg.seed)
        multi_start = {"losses": losses, "best": best}
    optimizer = _instantiate(cfg.optimizer, "optimizer")
    module = _instantiate(cfg.module, "module", model=model, optimizer=optimizer, loss=loss)
    if getattr(module, "metric", cfg.task.metric) != cfg.task.metric:
        raise ConfigError(f"task.metric={cfg.task.metric!r} but {type(module).__name__} logs {module.metric!r}")
    policy = _instantiate(cfg.scheduler.policy, "scheduler.policy")
    if cfg.scheduler.warmup.ticks > 0:
        policy = Warmup(policy, warmup=cfg.scheduler.warmup.ticks, start_factor=cfg.scheduler.warmup.start_factor)
    allowed = LRControl.monitorable(module.logged_metrics, cfg.scheduler.interval)
    if policy.monitor is not None and policy.monitor not in allowed:
        raise ConfigError(
            f"scheduler.policy.monitor={policy.monitor!r} is never logged by task {cfg.task.name!r}; "
            f"allowed: {', '.join(allowed)}"
        )
    return {"datamodule": datamodule, "module": module, "policy": policy, "multi_start": multi_start}


def run(cfg: DictConfig, tags: dict[str, Any] | None = None, ckpt_path: str | None = None) -> RunResult:
    """Train and test one configured run, tracked in MLflow and TensorBoard. Exceptions mark the run FAILED."""
    import lightning as L

    from adaptive_lr.callbacks import LRControl
    from adaptive_lr.tracking.epoch_metrics import EpochMetrics
    from adaptive_lr.tracking.loggers import LeanTensorBoardLogger, MLflowRunLogger
    from adaptive_lr.tracking.run import TrackedRun, resolve_tracking_uri
    from adaptive_lr.trainer import NoProfiler

    configure_runtime()
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # model init depends on the seed alone
    parts = build(cfg)  # config errors surface here, before any run is created
    datamodule, module, policy = parts["datamodule"], parts["module"], parts["policy"]

    paths = cfg.paths
    tracking_uri = resolve_tracking_uri(cfg.logger.tracking_uri, Path(paths.mlruns))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    run_name = f"{cfg.task.name}-{cfg.scheduler.name}-s{cfg.seed}"
    run_dir = Path(paths.runs) / cfg.experiment / f"{run_name}-{stamp}"
    datamodule.setup("fit")
    tags = {
        "experiment": cfg.experiment, "task": cfg.task.name, "scheduler": cfg.scheduler.name, "seed": cfg.seed,
        "metric": cfg.task.metric, "metric_mode": cfg.task.mode, "threshold": cfg.task.threshold,
        "equivalence_margin": cfg.task.get("margin", ""),
        "margin_relative": str(bool(cfg.task.get("margin_relative", False))).lower(),
        "max_epochs": cfg.trainer.max_epochs, "steps_per_epoch": datamodule.steps_per_epoch(),
        "adaptive": str(bool(cfg.scheduler.adaptive)).lower(), "config_hash": config_hash(cfg),
        "data_checksum": datamodule.fingerprint(),
        **(tags or {}),
    }
    tags.update(provenance())
    warm_start = cfg.scheduler.policy.get("warm_start")
    if warm_start:  # a learned controller started from another run's policy: reports mark such runs
        tags["warm_start"] = warm_start
    t0 = time.perf_counter()
    with TrackedRun(tracking_uri, cfg.experiment, run_name, tags, to_container(cfg), run_dir,
                    Path(paths.mlruns) / "artifacts") as tracked:
        mlflow_logger = MLflowRunLogger(tracking_uri, tracked.run_id, cfg.logger.mlflow_flush_every_s)
        loggers: list[Any] = [mlflow_logger]
        if parts["multi_start"]:
            ms = parts["multi_start"]
            tracked.set_tags({"multi_start_k": len(ms["losses"]), "multi_start_best": ms["best"]})
            for i, value in enumerate(ms["losses"]):
                mlflow_logger.log_metrics({"multi_start_initial_loss": value}, step=i)
        if cfg.logger.tensorboard:
            loggers.append(LeanTensorBoardLogger(str(run_dir / "tensorboard")))
        epoch_metrics = EpochMetrics(stop_on_nonfinite=cfg.stop_on_nonfinite)
        live = None
        if cfg.live_control.enabled:
            from adaptive_lr.schedulers.live import CONTROL_FILE, LiveOverride

            live = LiveOverride(run_dir / CONTROL_FILE, cfg.live_control.min_lr, cfg.live_control.max_lr,
                                cfg.live_control.every_n_steps)
        callbacks = [
            epoch_metrics,
            LRControl(policy, interval=cfg.scheduler.interval, frequency=cfg.scheduler.frequency,
                      log_every_n_steps=cfg.logger.log_every_n_steps, live=live),
        ]
        # views switched on from config (`viz=[latent,param_views]`): each writes under run_dir/viz
        callbacks += [_instantiate(spec, f"viz.{name}") for name, spec in (cfg.get("viz") or {}).items()]
        trainer_kwargs = dict(cfg.trainer)
        if trainer_kwargs.get("enable_checkpointing"):
            from lightning.pytorch.callbacks import ModelCheckpoint

            callbacks.append(ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True, every_n_epochs=1,
                                             save_top_k=-1))
        trainer_kwargs.setdefault("profiler", NoProfiler())  # unless the config asks for one (`trainer.profiler=`)
        trainer = L.Trainer(**trainer_kwargs, logger=loggers, callbacks=callbacks, use_distributed_sampler=False,
                            default_root_dir=str(run_dir))
        t_fit = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        fit_seconds = time.perf_counter() - t_fit
        trainer.test(module, datamodule=datamodule, verbose=False)
        epochs = trainer.current_epoch
        final = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test_")}
        mlflow_logger.log_metrics(final, step=epochs)
        mlflow_logger.flush()
        for logger in loggers[1:]:
            logger.log_metrics(final, step=epochs)
            if isinstance(logger, LeanTensorBoardLogger):
                logger.log_hparams_summary(hparams_of(cfg), final)
            logger.finalize("success")
        tracked.set_tags({"epochs_trained": epochs, "diverged": epoch_metrics.diverged_epoch is not None,
                         "load_avg_end": _load_average()})
        if (run_dir / "viz").is_dir():
            tracked.add_artifact(run_dir / "viz")
        if policy.learns:  # a learning controller: keep what it learned, for warm starts
            learned = run_dir / "policy_learned.pt"
            policy.save_learned(learned)
            tracked.add_artifact(learned)
        run_id = tracked.run_id
    return RunResult(run_id, run_dir, "FINISHED", final, time.perf_counter() - t0, fit_seconds,
                     epoch_metrics.elapsed_s)
