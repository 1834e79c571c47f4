"""Build every component of one run from its config, train, test, and record it. No string dispatch: objects
come from `_target_`s in the config."""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from adaptive_lr.checks import require_int
from adaptive_lr.config import ConfigError, to_container, upgrade_stored
from adaptive_lr.runtime import configure_environment, configure_runtime
from adaptive_lr.tracking import schema

if TYPE_CHECKING:
    from adaptive_lr.callbacks.run_parts import RunParts
    from adaptive_lr.tracking.loggers import LoggerParts


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    status: str
    metrics: dict[str, float]
    seconds: float       # the whole run: setup, fit, test, tracking
    fit_seconds: float   # trainer.fit: its setup plus the epochs
    train_seconds: float  # the epochs alone (training, validation, callbacks), from train start to the last epoch


#: `_target_`s as the configs spelled them before every config named its class by module (issue 18: one style),
#: through its package (`adaptive_lr.schedulers.Cosine`, `adaptive_lr.models.MLP`): a config hashes with these
#: spellings, so the runs and grid cells hashed before keep their identity. Frozen: a new class needs no entry.
HASHED_AS = {f"adaptive_lr.{package}.{module}.{name}": f"adaptive_lr.{package}.{name}" for package, module, name in (
    ("schedulers", "baselines", "Cosine"), ("schedulers", "baselines", "Fixed"), ("schedulers", "baselines", "StepDecay"),
    ("schedulers", "heuristic", "Heuristic"), ("schedulers", "plateau", "Plateau"),
    ("schedulers", "plateau_feedback", "PlateauFeedback"), ("schedulers", "anneal", "TerminalAnneal"),
    ("schedulers", "schedules", "LinearDecay"), ("schedulers", "schedules", "OneCycle"),
    ("schedulers", "schedules", "WSD"), ("models", "mlp", "MLP"), ("models", "cnn", "SmallCNN"),
    ("tasks", "classification", "ClassificationTask"))}


def _hashed_targets(node: Any) -> Any:
    """`node` with every `_target_` spelled as `HASHED_AS` says."""
    if isinstance(node, dict):
        return {k: HASHED_AS.get(v, v) if k == "_target_" else _hashed_targets(v) for k, v in node.items()}
    return [_hashed_targets(v) for v in node] if isinstance(node, list) else node


#: configs/scheduler/_base_.yaml's `scheduler.build`: the policy behind its warmup
WITH_WARMUP = "adaptive_lr.schedulers.warmup.with_warmup"


def _restates(scheduler: dict[str, Any]) -> bool:
    """Whether `scheduler.build` is `_base_.yaml`'s, which only restates `policy` and `warmup` (no information)."""
    warmup = scheduler.get("warmup", {})
    return scheduler.get("build") == {"_target_": WITH_WARMUP, "policy": scheduler.get("policy"),
                                      "ticks": warmup.get("ticks"), "start_factor": warmup.get("start_factor")}


def config_hash(cfg: DictConfig) -> str:
    """Identity of what a run computes: the resolved config without paths, experiment name, logging knobs or the
    callbacks and loggers groups (their arguments are those of hashed keys, such as `stop_on_nonfinite`, or of
    logging knobs), nor `scheduler.build`
    when it restates `scheduler.policy` and `scheduler.warmup` (any other build is kept)."""
    data = _hashed_targets(to_container(cfg))
    for key in ("paths", "experiment", "logger", "data_dir", "report", "live_control", "checkpoint", "callbacks",
                "loggers"):
        data.pop(key, None)
    if _restates(data.get("scheduler", {})):
        data["scheduler"].pop("build")
    fed = data.get("data", {})
    for key in ("data_dir", "cache_dir", "hf"):  # where the data come from does not change a run
        fed.pop(key, None)
    if isinstance(fed.get("source"), str):  # `auto`, `hf` or a folder: where from (the data checksum says what);
        fed.pop("source")  # a forecasting task's `source` mapping (file, columns) is what it computes on: kept,
    elif isinstance(fed.get("source"), dict):  # but for where its series come from (`location`, `hf`)
        for key in ("location", "hf"):
            fed["source"].pop(key, None)
    for key in ("margin", "margin_relative"):  # the verdicts' equivalence margin is read by reports only
        data.get("task", {}).pop(key, None)
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


def provenance() -> dict[str, Any]:
    """Where a run ran: host and process (a grid marks RUNNING runs of dead processes as KILLED), versions, device."""
    import os
    import platform

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({platform.machine()})"
    return {schema.HOST: platform.node(), schema.PID: os.getpid(), "cpu_count": os.cpu_count(),
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
    from omegaconf.errors import MissingMandatoryValue

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise ConfigError(f"{what}: {str(cause).splitlines()[0]}") from err
    except MissingMandatoryValue as err:  # a `???` the config leaves to the user, such as a forecast's file
        raise ConfigError(f"{err.full_key} must be set: add {err.full_key}=<value>") from err


FIT_CHECK_SAMPLES = 16  # samples of the first validation batch that the model is tried on before a run exists


def _check_fit(cfg: DictConfig, datamodule: Any, module: Any) -> None:
    """The loss of the model on a few samples of the first validation batch (eval mode, no gradient, no random
    number drawn), so a model that does not fit the data (input size, number of classes) fails before a run is
    created, as a ConfigError naming the shapes and, when it is the cause, the right `model.in_features`."""
    batch = next(iter(datamodule.val_dataloader()), None)
    if batch is None or not callable(getattr(module, "probe_loss", None)):
        return
    sample = [t[:FIT_CHECK_SAMPLES] for t in batch]
    try:
        module.probe_loss(sample)
    except (RuntimeError, IndexError, ValueError) as err:
        x, y = sample[0], sample[1]
        declared, features = cfg.model.get("in_features"), x.shape[-1]
        hint = "" if declared in (None, features) else (
            f"; model.in_features={declared} but the inputs have {features} features: "
            f"set model.in_features={features}")
        raise ConfigError(f"model {cfg.model.get('_target_', '?')} does not fit the data of task "
                          f"{cfg.task.name!r} (inputs {tuple(x.shape)}, targets {tuple(y.shape)}): "
                          f"{str(err).splitlines()[0]}{hint}") from err


def _derived_sizes(cfg: DictConfig, datamodule: Any) -> dict[str, Any]:
    """The model sizes the config leaves to the data (`???`, such as a forecaster's `in_features`), from the
    datamodule's `model_sizes()` (which loads the data). An explicit value is kept: `_check_fit` then tries it."""
    missing = [key for key in cfg.model if OmegaConf.is_missing(cfg.model, key)]
    if not missing or not callable(getattr(datamodule, "model_sizes", None)):
        return {}
    datamodule.setup("fit")  # bad or missing data files raise here (a DataError / DataNotFoundError)
    return {key: value for key, value in datamodule.model_sizes().items() if key in missing}


def build(cfg: DictConfig) -> dict[str, Any]:
    """Datamodule (loaded), task module, LR policy and views for `cfg`; every config or data error surfaces
    here (a UserError), before anything is trained or written to the MLflow store."""
    from adaptive_lr.callbacks import LRControl, LRControlConfigError

    datamodule = _instantiate(cfg.data, "data")
    sizes = _derived_sizes(cfg, datamodule)  # the stored config keeps `???`: its hash does not depend on the data
    loss = _instantiate(cfg.loss, "loss")
    optimizer = _instantiate(cfg.optimizer, "optimizer")

    def new_module() -> Any:  # the task around a freshly initialised model (draws from the global torch RNG)
        model = _instantiate(cfg.model, "model", **sizes)
        return _instantiate(cfg.module, "module", model=model, optimizer=optimizer, loss=loss)

    multi_start = None
    if cfg.multi_start.k > 1:  # keep the best of k initialisations (by the loss on the first training batches)
        from itertools import islice

        from adaptive_lr.tasks.multi_start import choose_init

        datamodule.setup("fit")  # a fresh loader: the trainer's own shuffle order is untouched
        batches = list(islice(iter(datamodule.train_dataloader()), cfg.multi_start.batches))
        module, losses, best = choose_init(new_module, batches, cfg.multi_start.k, cfg.seed)
        multi_start = {"losses": losses, "best": best}
    else:
        module = new_module()
    model = module.model
    if getattr(module, "metric", cfg.task.metric) != cfg.task.metric:
        raise ConfigError(f"task.metric={cfg.task.metric!r} but {type(module).__name__} logs {module.metric!r}")
    policy = _instantiate(cfg.scheduler.build, "scheduler.policy")  # the policy with its warmup (_base_.yaml)
    allowed = LRControl.monitorable(module.logged_metrics, cfg.scheduler.interval)
    if policy.monitor is not None and policy.monitor not in allowed:
        raise ConfigError(
            f"scheduler.policy.monitor={policy.monitor!r} is never logged by task {cfg.task.name!r}; "
            f"allowed: {', '.join(allowed)}"
        )
    # the starting LRs against the policy's bounds (a start outside explicit bounds is an error, never a clamp)
    copy.deepcopy(policy).reset([group["lr"] for group in module.optimizer_factory(model.parameters()).param_groups])
    try:  # the driver's own checks (e.g. a policy that decides before every step needs interval=step)
        LRControl(policy, interval=cfg.scheduler.interval, frequency=cfg.scheduler.frequency,
                  log_every_n_steps=cfg.logger.log_every_n_steps)
    except LRControlConfigError as err:
        raise ConfigError(f"scheduler: {err}") from err
    datamodule.setup("fit")  # bad or missing data files raise here (a DataError / DataNotFoundError)
    _check_fit(cfg, datamodule, module)
    # views switched on from config (`viz=[latent,param_views]`): each writes under run_dir/viz
    views = [_instantiate(spec, f"viz.{name}") for name, spec in (cfg.get("viz") or {}).items()]
    return {"datamodule": datamodule, "module": module, "policy": policy, "multi_start": multi_start,
            "views": views}


def _stored_run_dir(tracking_uri: str, run_id: str) -> Path:
    from mlflow.tracking import MlflowClient

    return Path(MlflowClient(tracking_uri).get_run(run_id).data.tags["run_dir"])


def resume_run(run_id: str, tracking_uri: str, tags: dict[str, Any] | None = None,
               progress: bool = False) -> RunResult:
    """Continue a KILLED or FAILED run (see `run`) with the resolved config it was created with (its run folder's
    config.json: the source of truth, whatever the configs say now). Runs of dead processes are marked first, so a
    run that was SIGKILLed can be resumed at once; a RUNNING or FINISHED run is refused (ConfigError)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    from omegaconf import OmegaConf

    from adaptive_lr.tracking.run import mark_orphans

    mark_orphans(tracking_uri)
    try:
        stored = MlflowClient(tracking_uri).get_run(run_id)
    except MlflowException as err:
        raise ConfigError(f"no run {run_id!r} in {tracking_uri}") from err
    status, stored_tags = stored.info.status, stored.data.tags
    if status not in ("KILLED", "FAILED"):
        owner = f" (process {stored_tags.get('pid')} on {stored_tags.get('host')})" if status == "RUNNING" else ""
        raise ConfigError(f"run {run_id} is {status}{owner}; only a KILLED or FAILED run can be resumed")
    config = Path(stored_tags.get("run_dir", "")) / "config.json"
    if not config.is_file():
        raise ConfigError(f"run {run_id} has no resolved config on this machine ({config})")
    cfg = upgrade_stored(OmegaConf.create(json.loads(config.read_text())))
    cfg.logger.tracking_uri = tracking_uri  # the store it was found in (not part of what the run computes)
    return run(cfg, tags=tags, resume=run_id, progress=progress)


def run(cfg: DictConfig, tags: dict[str, Any] | None = None, ckpt_path: str | None = None,
        resume: str | None = None, progress: bool = False) -> RunResult:
    """Train and test one configured run, tracked in MLflow and TensorBoard. Exceptions mark the run FAILED,
    SIGINT/SIGTERM KILLED (see `TrackedRun`). With `resume` (a run ID; use `resume_run`, which checks it), that
    KILLED or FAILED run continues, in the same MLflow run and run folder, from its last checkpoint. With
    `progress` (a single `adaptive-lr train` or `resume`; grid cells print one line each instead) training shows a
    progress bar on a terminal, one line per epoch otherwise (`tracking.progress`).

    Steps: 1) build every component (config errors before any run exists); 2) where the run lives (a new folder,
    or the resumed run's own with its last checkpoint); 3) its tags; 4) inside the tracked run: loggers, callbacks,
    fit and test; 5) what it leaves behind."""
    configure_environment(cfg.paths.cache)  # before mlflow and matplotlib (through lightning) are imported
    from adaptive_lr.compat import import_lightning, import_mlflow

    L = import_lightning()  # the same imports in a grid cell as in `adaptive-lr train` (compat.import_lightning)
    import_mlflow()
    from adaptive_lr.tracking.run import TrackedRun

    configure_runtime()
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # model init depends on the seed alone
    parts = build(cfg)  # 1)
    place = _place(cfg, resume, ckpt_path)  # 2)
    parts["datamodule"].setup("fit")
    t0 = time.perf_counter()
    tags = {**_tags(cfg, parts["datamodule"], tags), "lr_bounds": getattr(getattr(parts["policy"], "policy", parts["policy"]), "bounds", "")}
    with TrackedRun(place.tracking_uri, cfg.experiment, place.run_name, tags,
                    to_container(cfg), place.run_dir, Path(cfg.paths.mlruns) / "artifacts",
                    resume_run_id=resume) as tracked:  # 3)
        outcome = _fit_and_test(cfg, parts, place, tracked, resume, progress)  # 4)
        run_id = tracked.run_id
    if outcome["resumable"] is not None and not outcome["keep_checkpoints"]:  # 5) FINISHED: nothing to resume
        outcome["resumable"].remove()
    return RunResult(run_id, place.run_dir, "FINISHED", outcome["final"], time.perf_counter() - t0,
                     outcome["fit_seconds"], outcome["epoch_metrics"].elapsed_s)


@dataclass(frozen=True)
class _Place:
    """Where a run lives: its store, name, folder, and the checkpoint it starts from."""

    tracking_uri: str
    run_name: str
    run_dir: Path
    ckpt_path: str | None


def _place(cfg: DictConfig, resume: str | None, ckpt_path: str | None) -> _Place:
    from adaptive_lr.tracking.checkpoint import last_checkpoint
    from adaptive_lr.tracking.run import mark_orphans, resolve_tracking_uri

    tracking_uri = resolve_tracking_uri(cfg.logger.tracking_uri, Path(cfg.paths.mlruns))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    run_name = f"{cfg.task.name}-{cfg.scheduler.name}-s{cfg.seed}"
    run_dir = Path(cfg.paths.runs) / cfg.experiment / f"{run_name}-{stamp}"
    for key, default in (("every_n_epochs", 1), ("every_n_steps", 0)):  # read by callbacks.resume_checkpoint
        require_int(f"checkpoint.{key}", cfg.get("checkpoint", {}).get(key, default), minimum=0, error=ConfigError,
                    allowed="an int >= 0 (0: none)")
    if resume is None:
        mark_orphans(tracking_uri)  # runs of processes that died are KILLED before this one starts
    else:  # continue in the run's own folder, from its last checkpoint (none: from the start, in the same run)
        run_dir = _stored_run_dir(tracking_uri, resume)
        ckpt = last_checkpoint(run_dir)
        ckpt_path = str(ckpt) if ckpt else None
    return _Place(tracking_uri, run_name, run_dir, ckpt_path)


def _tags(cfg: DictConfig, datamodule: Any, extra: dict[str, Any] | None) -> dict[str, Any]:
    """What a report needs to know of a run without reading its config: identity, budget, margins, provenance."""
    tags = {
        "experiment": cfg.experiment, schema.TASK: cfg.task.name, schema.SCHEDULER: cfg.scheduler.name,
        schema.SEED: cfg.seed,
        "metric": cfg.task.metric, "metric_mode": cfg.task.mode, "threshold": cfg.task.threshold,
        "equivalence_margin": cfg.task.get("margin", ""),
        "margin_relative": str(bool(cfg.task.get("margin_relative", False))).lower(),
        "max_epochs": cfg.trainer.max_epochs, "steps_per_epoch": datamodule.steps_per_epoch(),
        "adaptive": str(bool(cfg.scheduler.adaptive)).lower(), schema.CONFIG_HASH: config_hash(cfg),
        schema.DATA_CHECKSUM: datamodule.fingerprint(),
        **(extra or {}),
    }  # fmt: skip
    tags.update(provenance())
    warm_start = cfg.scheduler.policy.get("warm_start")
    if warm_start:  # a learned controller started from another run's policy: reports mark such runs
        tags["warm_start"] = warm_start
    return tags


def build_loggers(cfg: DictConfig, place: _Place, tracked: Any, resume: str | None) -> list:
    """The run's loggers from its `loggers` group (configs/loggers/default.yaml), completed with its store, tracked
    run and folder; the first must be the MLflow logger (the store of record, which the final metrics go through)."""
    from adaptive_lr.tracking.loggers import LoggerParts, MLflowRunLogger

    loggers = instantiate_entries(_group_specs(cfg, "loggers"), LoggerParts(place.tracking_uri, tracked,
                                                                            place.run_dir, resume is not None),
                                  "loggers")
    if not loggers or not isinstance(loggers[0], MLflowRunLogger):
        raise ConfigError("loggers: the first logger must be MLflow's (configs/loggers/default.yaml's mlflow), the "
                          "store every report reads")
    return loggers


def _record_inputs(cfg: DictConfig, parts: dict[str, Any], tracked: Any, mlflow_logger: Any,
                   resume: str | None) -> None:
    """What the run started from, in MLflow: the multi-start record and (once, not on resume) the run's data as its
    dataset input, digest = its data checksum."""
    if parts["multi_start"]:
        ms = parts["multi_start"]
        tracked.set_tags({"multi_start_k": len(ms["losses"]), "multi_start_best": ms["best"]})
        for i, value in enumerate(ms["losses"]):
            mlflow_logger.log_metrics({"multi_start_initial_loss": value}, step=i)
    if resume is None:
        from adaptive_lr.tracking.datasets import log_dataset_input

        log_dataset_input(tracked.client, tracked.run_id, cfg.task.name, tracked.tags[schema.DATA_CHECKSUM],
                          parts["datamodule"])


def instantiate_entries(specs: DictConfig | None, run: RunParts | LoggerParts, group: str = "callbacks") -> list:
    """The entries of a `callbacks` or `loggers` group, in order (configs/<group>/default.yaml), each built from its
    `_target_`; a `_partial_: true` entry is then called with `run` (the run's `RunParts` / `LoggerParts`). An entry
    that is null or builds None is off; one that builds a list adds each of its items."""
    from functools import partial

    made: list = []
    for name, spec in (specs or {}).items():
        built = None if spec is None else _instantiate(spec, f"{group}.{name}")
        built = built(run) if isinstance(built, partial) else built
        made += built if isinstance(built, list) else [] if built is None else [built]
    return made


def _group_specs(cfg: DictConfig, group: str) -> DictConfig | None:
    """`cfg.<group>` (`callbacks`, `loggers`); a config stored before the group existed (a resumed run's) gets the
    default group, its arguments read from that config (the keys it lacks at train.yaml's defaults, as `_place`
    reads them)."""
    if group in cfg:
        return cfg[group]
    from adaptive_lr.config import CONFIG_DIR

    base = OmegaConf.load(CONFIG_DIR / "train.yaml")
    base.pop("defaults")
    return OmegaConf.merge(base, cfg, {group: OmegaConf.load(CONFIG_DIR / group / "default.yaml")})[group]


def build_callbacks(cfg: DictConfig, parts: dict[str, Any], run_dir: Path, trainer_kwargs: dict) -> dict[str, Any]:
    """The run's callbacks from its `callbacks` group, completed with its policy and views (`build`'s `parts`) and
    folder; `trainer_kwargs` get `enable_checkpointing` when a resume checkpoint is written. Checkpoints: every
    epoch's kept when `trainer.enable_checkpointing`, else only the last, for `adaptive-lr resume` (removed once
    finished)."""
    from adaptive_lr.callbacks import EpochMetrics, RunParts
    from adaptive_lr.tracking.checkpoint import ResumeCheckpoint

    callbacks = instantiate_entries(_group_specs(cfg, "callbacks"), RunParts(parts["policy"], run_dir, parts["views"]))
    epoch_metrics = next((c for c in callbacks if isinstance(c, EpochMetrics)), None)
    if epoch_metrics is None:
        raise ConfigError("callbacks: the run needs an EpochMetrics (configs/callbacks/default.yaml's epoch_metrics), "
                          "its per-epoch record")
    resumable = next((c for c in callbacks if isinstance(c, ResumeCheckpoint)), None)
    keep_checkpoints = bool(trainer_kwargs.get("enable_checkpointing"))
    if resumable is not None:
        trainer_kwargs["enable_checkpointing"] = True
    return {"callbacks": callbacks, "epoch_metrics": epoch_metrics, "resumable": resumable,
            "keep_checkpoints": keep_checkpoints}


def _fit_and_test(cfg: DictConfig, parts: dict[str, Any], place: _Place, tracked: Any,
                  resume: str | None, progress: bool = False) -> dict[str, Any]:
    """Fit (from the place's checkpoint, if any), test, log the test metrics and what the run leaves behind."""
    import lightning as L

    from adaptive_lr.tasks.base import NoProfiler
    from adaptive_lr.tracking.loggers import LeanTensorBoardLogger

    loggers = build_loggers(cfg, place, tracked, resume)
    _record_inputs(cfg, parts, tracked, loggers[0], resume)
    trainer_kwargs = dict(cfg.trainer)
    made = build_callbacks(cfg, parts, place.run_dir, trainer_kwargs)
    trainer_kwargs.setdefault("profiler", NoProfiler())  # unless the config asks for one (`trainer.profiler=`)
    if progress:  # a bar on a terminal, else one line per epoch
        from adaptive_lr.tracking.progress import progress_callback

        made["callbacks"].append(progress_callback(made["epoch_metrics"], parts["datamodule"].steps_per_epoch()))
        trainer_kwargs["enable_progress_bar"] = trainer_kwargs.get("enable_progress_bar") or \
            made["callbacks"][-1].is_bar
    trainer = L.Trainer(**trainer_kwargs, logger=loggers, callbacks=made["callbacks"], use_distributed_sampler=False,
                        default_root_dir=str(place.run_dir))
    module, datamodule = parts["module"], parts["datamodule"]
    t_fit = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=place.ckpt_path)
    made["fit_seconds"] = time.perf_counter() - t_fit
    trainer.test(module, datamodule=datamodule, verbose=False)
    epochs = trainer.current_epoch
    final = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test_")}
    loggers[0].log_metrics(final, step=trainer.global_step)  # every metric on the global step
    loggers[0].flush()
    last_val = {k: v for k, v in made["epoch_metrics"].last_record.items() if k.startswith("val_")}
    for logger in loggers[1:]:
        logger.log_metrics(final, step=trainer.global_step)
        if isinstance(logger, LeanTensorBoardLogger):  # HParams: the final validation and test values
            logger.log_hparams_summary(hparams_of(cfg), {**last_val, **final})
        logger.finalize("success")
    tracked.set_tags({"epochs_trained": epochs, "diverged": made["epoch_metrics"].diverged_epoch is not None,
                     "load_avg_end": _load_average()})
    if (place.run_dir / "viz").is_dir():
        tracked.add_artifact(place.run_dir / "viz")
    if parts["policy"].learns:  # a learning controller: keep what it learned, for warm starts
        learned = place.run_dir / "policy_learned.pt"
        parts["policy"].save_learned(learned)
        tracked.add_artifact(learned)
    made["final"] = final
    return made
