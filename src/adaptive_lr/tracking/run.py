"""One MLflow run per training run, owned here: created RUNNING, closed FINISHED only when complete, else FAILED
(KILLED when interrupted by SIGINT or SIGTERM). Runs whose process died without closing them (SIGKILL, power loss)
are marked KILLED by the next command that opens the store (`mark_orphans`)."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from adaptive_lr.tracking.schema import GIT_COMMIT, HOST, PARENT_TAG, PID, search_all

MAX_PARAM_CHARS = 500  # MLflow's portable limit for one param value
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)
IDENTITY_FILE = "mlflow_run.json"  # in the run folder: its MLflow run ID and store


class RunInterrupted(SystemExit):
    """SIGINT or SIGTERM arrived during a tracked run: the run is flushed and marked KILLED, and the process exits
    with status 128 + the signal number, without a traceback.

    A `SystemExit`, not a `KeyboardInterrupt`: Lightning turns a KeyboardInterrupt inside `fit` into `sys.exit(1)`,
    which could not be told from a failure, while other exceptions pass through it unchanged.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"interrupted by {signal.Signals(self.signum).name}"


def resolve_tracking_uri(uri: str | None, mlruns_dir: Path) -> str:
    """An explicit URI wins; else `$MLFLOW_TRACKING_URI`; else an SQLite store inside the project."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    mlruns_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{mlruns_dir.resolve()}/mlflow.db"


def git_commit(cwd: Path | None = None) -> str:
    """The commit the code runs at, with `-dirty` when the tree has uncommitted changes; `unknown` outside git. Asked
    of the repository the running package lives in (`cwd` by default: the project root), not of the shell's working
    folder: a grid started from another checkout than the code it imports would otherwise tag that checkout's commit."""
    if cwd is None:
        from adaptive_lr.config import PROJECT_ROOT

        cwd = PROJECT_ROOT
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def source_tags(commit: str, cwd: Path | None = None) -> dict[str, str]:
    """MLflow's standard source tags, which fill the UI's Source and Git columns: `mlflow.source.name` (the command
    that started the run; a grid worker has its runner's command line), `mlflow.source.type` LOCAL,
    `mlflow.source.git.commit` (the commit alone: `git_commit` keeps the `-dirty` mark), `mlflow.source.git.branch`,
    `mlflow.source.git.repoURL` (when the clone has an `origin`) and `mlflow.user`."""
    import getpass

    command = " ".join([Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]])
    tags = {"mlflow.source.name": command[:MAX_PARAM_CHARS], "mlflow.source.type": "LOCAL",
            "mlflow.source.git.commit": commit.removesuffix("-dirty")}
    for key, args in (("mlflow.source.git.branch", ["rev-parse", "--abbrev-ref", "HEAD"]),
                      ("mlflow.source.git.repoURL", ["config", "--get", "remote.origin.url"])):
        try:
            value = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True).stdout.strip()
        except OSError:
            value = ""
        if value and commit != "unknown":
            tags[key] = value
    try:
        tags["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a container)
        pass
    return tags


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten(value, name + ".")
        else:
            yield name, value


def stored_identity(run_dir: Path) -> tuple[str, str]:
    """(run ID, tracking URI) of the MLflow run a run folder belongs to."""
    from adaptive_lr.config import ConfigError

    path = run_dir / IDENTITY_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no {IDENTITY_FILE}); give the MLflow run ID instead")
    identity = json.loads(path.read_text())
    return identity["run_id"], identity["tracking_uri"]


def process_alive(pid: int) -> bool:
    """Whether a process runs; a zombie (ended, not yet reaped: e.g. a killed worker whose parent died) has not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def mark_orphans(tracking_uri: str, experiment: str | None = None) -> int:
    """Mark KILLED the RUNNING runs (of one experiment, or of the whole store) whose process, on this host, no
    longer exists; their metrics stay as they were flushed. Returns how many were marked.

    Runs on other hosts are left alone: their process cannot be checked from here.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    if experiment is None:
        ids, token = [], None
        while True:
            page = client.search_experiments(page_token=token)
            ids += [e.experiment_id for e in page]
            token = page.token
            if not token:
                break
    else:
        exp = client.get_experiment_by_name(experiment)
        ids = [exp.experiment_id] if exp is not None else []
    host, n = platform.node(), 0
    for r in (search_all(client, ids, "attributes.status = 'RUNNING'") if ids else ()):
        tags = r.data.tags
        if tags.get(PARENT_TAG) or tags.get(HOST) != host or not tags.get(PID, "").isdigit():
            continue
        if not process_alive(int(tags[PID])):
            client.set_tag(r.info.run_id, "error", f"orphaned: process {tags[PID]} on {host} ended mid-run")
            client.set_terminated(r.info.run_id, "KILLED")
            n += 1
    return n


SERVER_SCHEMES = ("http", "https")  # a tracking server: it chooses where artifacts go (and serves them)


def is_server(tracking_uri: str) -> bool:
    """Whether the store is a tracking server (`http(s)://`, Databricks), not a file or database opened here."""
    scheme = tracking_uri.split("://", 1)[0].lower() if "://" in tracking_uri else ""
    return scheme in SERVER_SCHEMES or tracking_uri.startswith("databricks")


def artifact_location(tracking_uri: str, folder: Path) -> str | None:
    """Where a new experiment of this store keeps its artifacts: `folder` (this machine's, e.g. mlruns/artifacts)
    for a store opened directly (an SQLite file or a database), None for a tracking server, so the server's own
    artifact root is used (`mlflow server --serve-artifacts`: every artifact is uploaded to and downloaded from the
    server, and no machine needs a path of another)."""
    return None if is_server(tracking_uri) else folder.resolve().as_uri()


def get_or_create_experiment(client: Any, name: str, artifact_root: Path) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(client.tracking_uri, artifact_root))
    except Exception:  # another worker created it between our two calls
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


class TrackedRun:
    """Context manager around one run: MLflow run + run folder (resolved config, git commit, TensorBoard logs).

    On normal exit the run is marked FINISHED; on an exception it gets an `error` tag and is marked FAILED, so
    reports never take a half-written run for a result. SIGINT and SIGTERM (handled while the run is open, in the
    main thread) raise `RunInterrupted`, and the run is marked KILLED. Either way the loggers registered with
    `flush_on_close` are flushed first, so every metric logged before the end reaches the store.

    With `resume_run_id` the existing run (KILLED or FAILED) is reopened instead: RUNNING again, owned by this
    process (`host`/`pid` tags), its `error` tag removed and `resumed` counted; its params, resolved config and
    run folder are those it was created with.
    """

    def __init__(self, tracking_uri: str, experiment: str, run_name: str, tags: Mapping[str, Any],
                 config: Mapping[str, Any], run_dir: Path, artifact_root: Path,
                 resume_run_id: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri, self.experiment, self.run_name = tracking_uri, experiment, run_name
        self.tags = {k: str(v) for k, v in tags.items()}
        self.config, self.run_dir, self.artifact_root = config, run_dir, artifact_root
        self.client = MlflowClient(tracking_uri)
        self.run_id = resume_run_id or ""
        self.resuming = resume_run_id is not None
        self.artifacts: list[Path] = [run_dir / "config.json", run_dir / "git_commit.txt"]
        self._flush: list[Any] = []
        self._handlers: dict[int, Any] = {}
        self._interrupted = False

    def __enter__(self) -> TrackedRun:
        self._catch_signals()
        try:
            self._open()
        except BaseException:
            self._restore_signals()
            raise
        return self

    def _open(self) -> None:
        if self.resuming:
            self._reopen()
            return
        from mlflow.entities import Param, RunTag

        exp_id = get_or_create_experiment(self.client, self.experiment, self.artifact_root)
        commit = git_commit()
        run = self.client.create_run(exp_id, run_name=self.run_name,
                                     tags={**self.tags, GIT_COMMIT: commit, "run_dir": str(self.run_dir)})
        self.run_id = run.info.run_id
        self.run_dir.mkdir(parents=True, exist_ok=False)  # never reuse a run folder
        (self.run_dir / "config.json").write_text(json.dumps(self.config, indent=2, default=str))
        (self.run_dir / "git_commit.txt").write_text(commit + "\n")
        identity = {"run_id": self.run_id, "tracking_uri": self.tracking_uri}
        (self.run_dir / IDENTITY_FILE).write_text(json.dumps(identity) + "\n")
        params = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in flatten(self.config)]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[i : i + 100])
        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in source_tags(commit).items()])

    def _reopen(self) -> None:
        from mlflow.entities import RunTag

        previous = self.client.get_run(self.run_id).data.tags
        tags = {**self.tags, "resumed": str(int(previous.get("resumed", "0")) + 1)}
        commit = git_commit()
        if commit != previous.get(GIT_COMMIT):  # the code changed since the run started: say so
            tags["resumed_git_commit"] = commit
        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        if "error" in previous:
            self.client.delete_tag(self.run_id, "error")
        self.client.update_run(self.run_id, status="RUNNING")

    def _catch_signals(self) -> None:
        """SIGINT/SIGTERM raise `RunInterrupted` in the main thread (once: a second signal during the cleanup is
        ignored, so the run is still marked); the previous handlers come back when the run closes."""
        if threading.current_thread() is not threading.main_thread():
            return

        def interrupt(signum: int, frame: Any) -> None:
            if not self._interrupted:
                self._interrupted = True
                raise RunInterrupted(signum)

        for signum in INTERRUPT_SIGNALS:
            self._handlers[signum] = signal.signal(signum, interrupt)

    def flush_on_close(self, logger: Any) -> None:
        """Flush `logger` (anything with `flush()`) before the run is marked FINISHED, FAILED or KILLED."""
        self._flush.append(logger)

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
        self._interrupted = True  # from here on a signal no longer interrupts the closing of the run
        try:
            if self.run_id:
                self._close(exc)
        finally:
            self._restore_signals()
        return False

    def _restore_signals(self) -> None:
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._handlers = {}

    def _close(self, exc: BaseException | None) -> None:
        if exc is None:
            self.log_artifacts()
            self.client.set_terminated(self.run_id, "FINISHED")
            return
        for logger in self._flush:  # keep every metric logged before the end
            try:
                logger.flush()
            except Exception as err:  # the store is unreachable: still try to mark the run
                exc.add_note(f"flushing metrics failed: {err}")
        killed = isinstance(exc, (KeyboardInterrupt, RunInterrupted))
        message = str(exc) if isinstance(exc, RunInterrupted) else "".join(traceback.format_exception_only(exc))
        self.client.set_tag(self.run_id, "error", message.strip()[-MAX_PARAM_CHARS:])
        self.client.set_terminated(self.run_id, "KILLED" if killed else "FAILED")
        if killed:
            print(f"run {self.run_id} KILLED ({exc or 'interrupted'}); continue it exactly where its last epoch "
                  f"ended with: adaptive-lr resume {self.run_id}", file=sys.stderr)
