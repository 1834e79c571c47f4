"""A report's per-run bundle: everything the report was computed from, in small CSV files, so anyone can rebuild
the report (`adaptive-lr report --from <bundle>`) or rerun a test without the MLflow store.

A bundle is a folder (`bundle/` beside every report.md) holding the four frames of `collect.RunData`:
- `runs.csv`:    one row per run of any status and phase: its tags (task, scheduler, seed, phase, metric, mode,
                 threshold, equivalence margin, ...), the config hash, code version (`git_commit`), data
                 checksum, host/load provenance, status, and the final test values;
- `epochs.csv`:  run_id, epoch, name, value: every per-epoch metric of the result runs (the per-seed values of
                 every table);
- `lr.csv`, `actions.csv`: the step-indexed LR and controller decisions of the result runs;
- `bundle.json`: the experiment, where the runs were read from (a server URL, or "local MLflow store"; never a
                 path of the machine that ran them), the format version, and per commit the git tree hashes of
                 `src/` and `configs/` (two commits with the same trees ran the same training code).

Numbers are written with full precision (round trip exact) and read back with the dtypes `load_runs` gives, so
a report from the bundle equals the report from the store (the report itself is always computed from the bundle
it writes).
"""

from __future__ import annotations

import json
import math
import subprocess
from collections import Counter
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pandas as pd

from adaptive_lr.errors import UserError
from adaptive_lr.reporting.collect import RUN_COLUMNS, RunData, require_results
from adaptive_lr.tracking import schema

FORMAT = 1
MANIFEST = "bundle.json"
GZIP_ABOVE = 1_000_000  # characters: a frame larger than this is written as <file>.gz (pandas reads either)
FRAMES = {"runs": "runs.csv", "epochs": "epochs.csv", "lr": "lr.csv", "actions": "actions.csv"}
INTEGERS = ("seed", "max_epochs", "steps_per_epoch")  # nullable: a tag may be missing
FLOATS = ("threshold", "test_loss", "test_metric", "test_baseline", "equivalence_margin", "lr", "final_val",
          "budget_fraction", "end_time")
BOOLEANS = ("adaptive", "diverged_tag", "superseded", "margin_relative")
# run columns added after format 1, with their default
ADDED_COLUMNS = {"budget_fraction": "nan", "lr_bounds": "", "end_time": "nan"}
FRAME_TYPES = {
    "epochs": {"epoch": int, "value": float},
    "lr": {"step": int, "value": float},
    "actions": {"step": int, "code": float, "factor": float},
}


class BundleError(UserError, ValueError):
    """A bundle folder that is missing, incomplete or of another format; the message names the file."""


def describe_source(tracking_uri: str) -> str:
    """What a report may print about where its runs came from: a server URL as is, never a local path."""
    return tracking_uri if tracking_uri.startswith(("http://", "https://")) else "local MLflow store"


def code_trees(commits: list[str], repo: Path) -> dict[str, dict[str, str]]:
    """Per commit, the git tree hashes of src/ and configs/ ("" when git does not know the commit, or for a
    `-dirty` commit whose training code is not what the commit holds)."""
    trees = {}
    for commit in sorted(set(commits)):
        entry = {}
        for folder in ("src", "configs"):
            sha = ""
            if commit and not commit.endswith("-dirty") and commit != "unknown":
                try:
                    sha = subprocess.run(["git", "rev-parse", f"{commit}:{folder}"], cwd=repo, capture_output=True,
                                         text=True, check=True).stdout.strip()
                except (OSError, subprocess.CalledProcessError):
                    sha = ""
            entry[folder] = sha
        trees[commit] = entry
    return trees


def write_bundle(data: RunData, folder: Path, code: dict[str, dict[str, str]]) -> Path:
    """Write `data` as a bundle into `folder` (created); return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, file in FRAMES.items():
        text = getattr(data, name).to_csv(index=False, na_rep="nan")
        if len(text) > GZIP_ABOVE:  # a merged study's histories: compressed, deterministically (no timestamp)
            getattr(data, name).to_csv(folder / (file + ".gz"), index=False, na_rep="nan",
                                       compression={"method": "gzip", "mtime": 0})
        else:
            (folder / file).write_text(text, encoding="utf-8")
    manifest = {"format": FORMAT, "experiment": data.experiment, "source": data.tracking_uri, "code": code}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return folder


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path}: not a report bundle (no {MANIFEST}); pass the bundle/ folder beside a report.md")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise BundleError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: bundle format {manifest.get('format')!r}, this version reads {FORMAT}")
    return manifest


def read_bundle(folder: Path, results_required: bool = True) -> RunData:
    """The RunData a bundle holds; BundleError for a missing or malformed bundle, NoRunsError without results
    (unless `results_required` is False: a study part saved while its sweep was still running)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    frames = {}
    for name, file in FRAMES.items():
        path = folder / file
        if not path.is_file() and (folder / (file + ".gz")).is_file():
            path = folder / (file + ".gz")  # written compressed (`write_bundle`)
        if not path.is_file():
            raise BundleError(f"{path}: missing from the bundle")
        frames[name] = pd.read_csv(path, dtype=str, keep_default_na=False)
    runs = frames["runs"]
    for column, default in ADDED_COLUMNS.items():  # a bundle written before the column existed
        if column not in runs.columns:
            runs[column] = default
    missing = [c for c in RUN_COLUMNS if c not in runs.columns]
    if missing:
        raise BundleError(f"{folder / FRAMES['runs']}: missing columns {', '.join(missing)}")
    runs = runs[RUN_COLUMNS].copy()
    for column in INTEGERS:
        runs[column] = pd.array([None if v in ("", "nan", "<NA>") else int(v) for v in runs[column]], dtype="Int64")
    for column in FLOATS:
        runs[column] = [_float(v) for v in runs[column]]
    for column in BOOLEANS:
        runs[column] = runs[column].str.strip().str.lower() == "true"
    runs["start_time"] = runs["start_time"].astype("int64")
    for name, types in FRAME_TYPES.items():
        frame = frames[name]
        for column, kind in types.items():
            frame[column] = [_float(v) for v in frame[column]] if kind is float else frame[column].astype("int64")
    if results_required:
        require_results(runs, manifest["experiment"], str(folder))
    return RunData(experiment=manifest["experiment"], tracking_uri=manifest["source"], runs=runs,
                   epochs=frames["epochs"], lr=frames["lr"], actions=frames["actions"])


def _float(text: str) -> float:
    return math.nan if text in ("", "nan", "<NA>", "None") else float(text)


# the run columns that go back into the store as tags when a bundle is imported (the rest are metrics or derived)
TAG_COLUMNS = ("task", "seed", "metric", "threshold", "max_epochs", "steps_per_epoch", "warm_start", "error",
               "run_dir", "phase", "tuning_budget", "equivalence_margin", "git_commit", "data_checksum", "host",
               "cpu_count", "torch_version", "python_version", "device", "config_hash", "grid_jobs",
               "load_avg_start", "load_avg_end", "lr_bounds")  # fmt: skip
_BATCH = 1000  # metrics per MLflow log_batch call (its limit)


def _tag(value: object) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and not math.isfinite(value)) or value == "":
        return None
    return str(value)


def _cell_key(tags: dict[str, str]) -> tuple[str, str, str]:
    """What identifies a stored run as a grid cell's result: (config_hash, phase, seed) tags."""
    return tags.get(schema.CONFIG_HASH, ""), tags.get(schema.PHASE, ""), tags.get(schema.SEED, "")


def import_bundle(folder: Path, tracking_uri: str) -> tuple[str, int, int]:
    """Recreate the FINISHED runs of a bundle in an MLflow store, so that a grid continued on another machine skips
    the cells they finished (a cell is its `config_hash` and `phase` tags) and a tuning phase finds their values.
    Idempotent: runs whose (config_hash, phase, seed) already have a FINISHED run are skipped. Returns (experiment,
    imported, skipped)."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    data = read_bundle(folder, results_required=False)
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(data.experiment)
    exp_id = found.experiment_id if found else client.create_experiment(data.experiment)
    have = {_cell_key(r.data.tags) for r in schema.search_all(client, [exp_id], "attributes.status = 'FINISHED'")}
    imported = skipped = 0
    for run in data.runs[data.runs["status"] == "FINISHED"].itertuples(index=False):
        key = (run.config_hash, run.phase, _tag(run.seed) or "")
        if key in have:
            skipped += 1
            continue
        tags = {c: t for c in TAG_COLUMNS if (t := _tag(getattr(run, c))) is not None}
        if math.isfinite(run.budget_fraction):
            tags[schema.BUDGET_FRACTION] = f"{run.budget_fraction:g}"
        if math.isfinite(run.end_time):  # the original end: the import's own end time is not the run's
            tags["source_end_time"] = f"{run.end_time:.0f}"
        tags.update({schema.SCHEDULER: run.scheduler.removesuffix(" +warm"), "metric_mode": run.mode,
                     "adaptive": str(bool(run.adaptive)).lower(), "diverged": str(bool(run.diverged_tag)).lower(),
                     "margin_relative": str(bool(run.margin_relative)).lower(), "imported_from": str(run.run_id)})
        created = client.create_run(exp_id, run_name=run.run_name or None, start_time=int(run.start_time),
                                    tags=tags)
        run_id, ts = created.info.run_id, int(run.start_time)
        metrics = [Metric(m.name, m.value, ts, int(m.epoch))
                   for m in data.epochs[data.epochs["run_id"] == run.run_id].itertuples(index=False)]
        metrics += [Metric(schema.LR, m.value, ts, int(m.step))
                    for m in data.lr[data.lr["run_id"] == run.run_id].itertuples(index=False)]
        for m in data.actions[data.actions["run_id"] == run.run_id].itertuples(index=False):
            metrics += [Metric(schema.CONTROLLER_ACTION, m.code, ts, int(m.step)),
                        Metric(schema.CONTROLLER_FACTOR, m.factor, ts, int(m.step))]  # fmt: skip
        last = int(run.max_epochs) if run.max_epochs is not pd.NA else 0
        finals = {f"test_{run.metric}": run.test_metric, "test_loss": run.test_loss,
                  f"test_naive_{run.metric}": run.test_baseline}  # fmt: skip
        if not (data.epochs["run_id"] == run.run_id).any():  # a tuning run: its final val is all a grid reads
            finals[f"val_{run.metric}"] = run.final_val
        metrics += [Metric(k, float(v), ts, last) for k, v in finals.items() if math.isfinite(v)]
        params = [Param(run.lr_param or schema.LR, repr(float(run.lr)))] if math.isfinite(run.lr) else []
        for i in range(0, max(len(metrics), 1), _BATCH):
            client.log_batch(run_id, metrics=metrics[i:i + _BATCH], params=params if i == 0 else [],
                             tags=[RunTag("mlflow.runName", run.run_name)] if i == 0 and run.run_name else [])
        client.set_terminated(run_id, "FINISHED")
        imported += 1
    return data.experiment, imported, skipped


def latest_covers(reports_dir: Path, tracking_uri: str, experiment: str) -> Path | None:
    """The latest report folder under `reports_dir` (reports/<grid>/<timestamp>) whose bundle holds exactly the
    experiment's FINISHED runs in the store (same cells: config_hash, phase, seed), else None: a grid that ran
    nothing new needs no new report (`adaptive-lr experiment --report-changed`, used by `make study`)."""
    from mlflow.tracking import MlflowClient

    bundles = sorted(Path(reports_dir).glob(f"*/bundle/{MANIFEST}"))
    if not bundles:
        return None
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    store = Counter(_cell_key(r.data.tags)
                    for r in schema.search_all(client, [found.experiment_id], "attributes.status = 'FINISHED'")
                    if not r.data.tags.get(schema.PARENT_TAG))  # fmt: skip  # the grid's own run is no cell
    data = read_bundle(bundles[-1].parent, results_required=False)
    done = data.runs[data.runs["status"] == "FINISHED"]
    held = Counter((r.config_hash, r.phase, _tag(r.seed) or "") for r in done.itertuples(index=False))
    return bundles[-1].parent.parent if held == store else None


def save_bundle(experiment: str, tracking_uri: str, reports_root: Path, now: datetime | None = None) -> Path:
    """Only the bundle of `experiment` (any runs, results or not) into `reports_root/<experiment>/<timestamp>/bundle`:
    what a study part still running saves before a session ends, for `import_bundle` on the next machine."""
    from adaptive_lr.reporting.collect import load_runs
    from adaptive_lr.reporting.report import PROJECT_ROOT, TIMESTAMP_FORMAT, _new_folder

    data = load_runs(experiment, tracking_uri, results_required=False)
    code = code_trees(list(data.runs["git_commit"]), PROJECT_ROOT)
    folder = _new_folder(Path(reports_root) / experiment, (now or datetime.now()).strftime(TIMESTAMP_FORMAT))
    return write_bundle(replace(data, tracking_uri=describe_source(tracking_uri)), folder / "bundle", code)
