"""A multi-node cluster on this machine, for trying grids across machines on one (`make cluster-up`,
`make cluster-down`; `tests/test_cluster.py` starts its own):

- an MLflow tracking server on 127.0.0.1 (SQLite backend `<folder>/mlflow.db`; artifacts served by the server from
  `<folder>/artifacts`, so clients upload and download them over HTTP and never share a path);
- a Ray head and `workers` Ray worker nodes, each a separate raylet with its own CPUs and object store, joined
  through the head's address on 127.0.0.1, with token authentication (a fresh random token per cluster).

Every process is started in a process group of its own (`start_new_session`) and stopped by it: SIGTERM to every
group, SIGKILL after `grace_s`. Ray starts its worker processes in groups of their own, so every process of the
cluster also carries one environment variable (`MARKER`, a random value per cluster) by which `stop` finds and
ends any that outlived their group, and reports what is left (nothing, or a bug).

Ray rewrites a loopback `--node-ip-address` to the machine's own address (`ray._private.services.
resolve_ip_for_localhost`), and its GCS and raylets listen on every interface whatever the flags: only the MLflow
server and Ray's dashboard are bound to 127.0.0.1 alone; the token keeps others from using the Ray servers.

    python -m adaptive_lr.cluster up [--folder mlruns/cluster] [--workers 1] [--cpus 1]
    python -m adaptive_lr.cluster down [--folder mlruns/cluster]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from adaptive_lr.errors import UserError

MARKER = "ADAPTIVE_LR_CLUSTER"  # environment variable every process of one cluster carries (its value: the id)
STATE, ENV_FILE = "cluster.json", "cluster.env"  # in the cluster's folder: what `down` stops; what a driver needs
HOST = "127.0.0.1"
OBJECT_STORE_BYTES = 80 * 2**20  # per node; cells return small dicts
START_TIMEOUT_S = 300.0  # per process; a whole cluster took 23-58 s to start on a loaded 2-core machine
GRACE_S = 5.0  # SIGTERM to SIGKILL: `ray start --block` drains for 30 s, and a cluster here keeps nothing worth it


class ClusterError(UserError):
    """The cluster could not be started or found (a port, a process that ended at start, no state file)."""


@dataclass
class Cluster:
    """A running cluster: where it lives, how to reach it, and the process group of each of its processes."""

    folder: str
    tracking_uri: str  # the MLflow server: MLFLOW_TRACKING_URI of every node and driver
    address: str  # the head's GCS address: `adaptive-lr experiment <grid> --engine ray --address <it>`
    marker: str
    ray_temp: str
    groups: dict[str, int] = field(default_factory=dict)  # mlflow, head, worker1, ... -> process group id
    env: dict[str, str] = field(default_factory=dict)  # what a driver adds to its environment (token included)

    def save(self) -> None:
        folder = Path(self.folder)
        lines = [f"{k}={v}" for k, v in self.env.items()]
        for name, text in ((STATE, json.dumps(asdict(self), indent=2) + "\n"),
                           (ENV_FILE, "\n".join([*lines, f"ADAPTIVE_LR_RAY_ADDRESS={self.address}", ""]))):
            # readable by this user alone: the Ray token is a credential of the cluster
            fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(text)

    @classmethod
    def load(cls, folder: Path) -> Cluster:
        path = folder / STATE
        if not path.is_file():
            raise ClusterError(f"no cluster in {folder} (no {STATE}); start one with `make cluster-up`")
        return cls(**json.loads(path.read_text()))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _tool(name: str) -> str:
    """A console script of this environment (mlflow, ray), beside its Python."""
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        raise ClusterError(f"`{name}` not found beside {sys.executable}; Ray is the `scale` group: "
                           "`uv sync --group scale`")
    return found


def _spawn(argv: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path) -> int:
    """Start a process in a new session (its own process group), output to `log`; returns its pid (= pgid)."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(list(argv), env=dict(env), stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return proc.pid


def _wait_for(what: str, ready: Callable[[], bool], pgid: int, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if not group_members(pgid):
            raise ClusterError(f"{what} ended while starting; see {log}")
        if time.monotonic() > deadline:
            raise ClusterError(f"{what} not ready after {timeout_s:.0f} s; see {log}")
        time.sleep(0.5)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _logged(log: Path, text: str) -> bool:
    return log.is_file() and text in log.read_text(errors="replace")


def start(folder: Path, workers: int = 1, cpus: int = 1, env: Mapping[str, str] | None = None,
          timeout_s: float = START_TIMEOUT_S) -> Cluster:
    """Start the MLflow server, the Ray head and `workers` worker nodes (`cpus` CPUs each) with `env` added to
    this process's environment; on any failure everything started so far is stopped again."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / STATE).is_file():
        old = Cluster.load(folder)
        if any(group_members(g) for g in old.groups.values()):
            raise ClusterError(f"a cluster is already running from {folder}: `make cluster-down` first")
        shutil.rmtree(old.ray_temp, ignore_errors=True)
        (folder / STATE).unlink()
    from adaptive_lr.config import PROJECT_ROOT

    marker = secrets.token_hex(8)
    mlflow_port, gcs_port = free_port(), free_port()
    tracking_uri = f"http://{HOST}:{mlflow_port}"
    driver_env = {"MLFLOW_TRACKING_URI": tracking_uri, "RAY_AUTH_MODE": "token",
                  "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    base = {**os.environ, **(env or {}), **driver_env, MARKER: marker, "RAY_USAGE_STATS_ENABLED": "0",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "RAY_worker_niceness": "0"}  # cells at normal priority (Ray nices its workers to 15 by default)
    cluster = Cluster(str(folder), tracking_uri, f"{HOST}:{gcs_port}", marker,
                      tempfile.mkdtemp(prefix="alr-ray-"), env=driver_env)  # short: Ray's socket paths
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    try:
        log = logs / "mlflow.log"
        cluster.groups["mlflow"] = _spawn(
            [_tool("mlflow"), "server", "--host", HOST, "--port", str(mlflow_port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{folder}/mlflow.db", "--serve-artifacts",
             "--artifacts-destination", str(folder / "artifacts")], base, log, folder)
        cluster.save()  # from here on, `down` finds whatever was started
        node = ["--block", "--node-ip-address", HOST, "--num-cpus", str(cpus), "--object-store-memory",
                str(OBJECT_STORE_BYTES), "--dashboard-agent-listen-port", "0", "--disable-usage-stats"]
        log = logs / "ray-head.log"
        cluster.groups["head"] = _spawn(
            [_tool("ray"), "start", "--head", "--port", str(gcs_port), "--include-dashboard", "false",
             "--dashboard-port", str(free_port()), "--ray-client-server-port", str(free_port()),
             "--temp-dir", cluster.ray_temp, *node], base, log, PROJECT_ROOT)
        cluster.save()
        _wait_for("the Ray head", lambda log=log: _logged(log, "Ray runtime started"), cluster.groups["head"],
                  log, timeout_s)
        for i in range(1, workers + 1):
            log = logs / f"ray-worker{i}.log"
            cluster.groups[f"worker{i}"] = _spawn(
                [_tool("ray"), "start", "--address", cluster.address, *node], base, log, PROJECT_ROOT)
            cluster.save()
            _wait_for(f"Ray worker node {i}", lambda log=log: _logged(log, "Ray runtime started"),
                      cluster.groups[f"worker{i}"], log, timeout_s)
        _wait_for("the MLflow server", lambda: _http_ok(f"{tracking_uri}/health"), cluster.groups["mlflow"],
                  logs / "mlflow.log", timeout_s)
    except BaseException:
        stop(cluster)
        raise
    return cluster


def group_members(pgid: int) -> dict[int, str]:
    """The live processes of a process group: pid -> command name."""
    return {pid: name for pid, name, group, _ in _processes() if group == pgid}


def marked(marker: str) -> dict[int, str]:
    """The live processes whose environment carries this cluster's marker: pid -> command name."""
    return {pid: name for pid, name, _, env in _processes() if env.get(MARKER) == marker}


def _processes() -> list[tuple[int, str, int, dict[str, str]]]:
    """(pid, command name, process group, environment) of every live process readable here (zombies left out)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] in ("Z", "X"):
                continue
            raw = (entry / "environ").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        env = dict(item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
        found.append((int(entry.name), name, int(fields[2]),
                      {k.decode(errors="replace"): v.decode(errors="replace") for k, v in env.items()
                       if k == MARKER.encode()}))
    return found


def _signal_all(cluster: Cluster, signum: int) -> None:
    for pgid in reversed(list(cluster.groups.values())):  # workers first, the MLflow server last
        try:
            os.killpg(pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in marked(cluster.marker):  # Ray's workers, in process groups of their own
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def _left(cluster: Cluster) -> dict[int, str]:
    return {**marked(cluster.marker), **{p: n for g in cluster.groups.values() for p, n in group_members(g).items()}}


def stop(cluster: Cluster, grace_s: float = GRACE_S) -> dict[int, str]:
    """SIGTERM every process of the cluster, SIGKILL what is left after `grace_s`; returns the processes still
    alive after that (pid -> name: nothing, unless one could not be killed). Removes Ray's temporary folder."""
    _signal_all(cluster, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _left(cluster) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _left(cluster):
        _signal_all(cluster, signal.SIGKILL)
        deadline = time.monotonic() + GRACE_S
        while _left(cluster) and time.monotonic() < deadline:
            time.sleep(0.2)
    left = _left(cluster)
    if not left:
        shutil.rmtree(cluster.ray_temp, ignore_errors=True)
        (Path(cluster.folder) / STATE).unlink(missing_ok=True)
        (Path(cluster.folder) / ENV_FILE).unlink(missing_ok=True)
    return left


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adaptive_lr.cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("up", "down"))
    parser.add_argument("--folder", type=Path, default=Path("mlruns/cluster"),
                        help="the MLflow store and artifacts, logs, state (default mlruns/cluster)")
    parser.add_argument("--workers", type=int, default=1, help="Ray worker nodes besides the head (default 1)")
    parser.add_argument("--cpus", type=int, default=1, help="CPUs of each node (default 1)")
    args = parser.parse_args(argv)
    try:
        if args.action == "down":
            left = stop(Cluster.load(args.folder))
            print(f"cluster in {args.folder} stopped" if not left else f"still running: {left}")
            return 0 if not left else 1
        t0 = time.monotonic()
        cluster = start(args.folder, workers=args.workers, cpus=args.cpus)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    env_file = Path(cluster.folder) / ENV_FILE
    print(f"cluster up in {time.monotonic() - t0:.0f} s: MLflow server {cluster.tracking_uri} (UI and API), Ray head "
          f"{cluster.address} + {args.workers} worker node(s) x {args.cpus} CPU(s); processes: {cluster.groups}\n"
          f"run a grid on it:  make cluster-experiment EXP=demo\n"
          f"  (or: set -a; . {env_file}; set +a; adaptive-lr experiment demo --engine ray --address "
          f"{cluster.address})\n"
          f"stop it:  make cluster-down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
