"""One MLflow run per training run, owned here: created RUNNING, closed FINISHED only when complete, else FAILED."""

from __future__ import annotations

import json
import subprocess
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

MAX_PARAM_CHARS = 500  # MLflow's portable limit for one param value


def resolve_tracking_uri(uri: str | None, mlruns_dir: Path) -> str:
    """An explicit URI wins; else `$MLFLOW_TRACKING_URI`; else an SQLite store inside the project."""
    import os

    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    mlruns_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{mlruns_dir.resolve()}/mlflow.db"


def git_commit(cwd: Path | None = None) -> str:
    """The commit the code runs at, with `-dirty` when the tree has uncommitted changes; `unknown` outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten(value, name + ".")
        else:
            yield name, value


def get_or_create_experiment(client: Any, name: str, artifact_root: Path) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_root.resolve().as_uri())
    except Exception:  # another worker created it between our two calls
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


class TrackedRun:
    """Context manager around one run: MLflow run + run folder (resolved config, git commit, TensorBoard logs).

    On normal exit the run is marked FINISHED; on any exception it gets an `error` tag and is marked FAILED, so
    reports never take a half-written run for a result.
    """

    def __init__(self, tracking_uri: str, experiment: str, run_name: str, tags: Mapping[str, Any],
                 config: Mapping[str, Any], run_dir: Path, artifact_root: Path) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri, self.experiment, self.run_name = tracking_uri, experiment, run_name
        self.tags = {k: str(v) for k, v in tags.items()}
        self.config, self.run_dir, self.artifact_root = config, run_dir, artifact_root
        self.client = MlflowClient(tracking_uri)
        self.run_id = ""
        self.artifacts: list[Path] = [run_dir / "config.json", run_dir / "git_commit.txt"]

    def __enter__(self) -> TrackedRun:
        from mlflow.entities import Param, RunTag

        exp_id = get_or_create_experiment(self.client, self.experiment, self.artifact_root)
        commit = git_commit()
        run = self.client.create_run(exp_id, run_name=self.run_name,
                                     tags={**self.tags, "git_commit": commit, "run_dir": str(self.run_dir)})
        self.run_id = run.info.run_id
        self.run_dir.mkdir(parents=True, exist_ok=False)  # never reuse a run folder
        (self.run_dir / "config.json").write_text(json.dumps(self.config, indent=2, default=str))
        (self.run_dir / "git_commit.txt").write_text(commit + "\n")
        params = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in flatten(self.config)]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[i : i + 100])
        self.client.log_batch(self.run_id, tags=[RunTag("mlflow.source.git.commit", commit)])
        return self

    def add_artifact(self, path: Path) -> None:
        """A file or folder to attach to the MLflow run when it finishes (with the config and commit)."""
        self.artifacts.append(path)

    def log_artifacts(self) -> None:
        for path in self.artifacts:
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), artifact_path=path.name)
            else:
                self.client.log_artifact(self.run_id, str(path))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if not self.run_id:
            return False
        if exc is None:
            self.log_artifacts()
            self.client.set_terminated(self.run_id, "FINISHED")
        else:
            message = "".join(traceback.format_exception_only(exc)).strip()[-MAX_PARAM_CHARS:]
            self.client.set_tag(self.run_id, "error", message)
            self.client.set_terminated(self.run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        return False
