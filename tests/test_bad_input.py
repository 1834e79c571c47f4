"""Bad input of every kind (config values, grid files, data files in every supported format, command lines)
through the real `adaptive-lr` entry point: exit code 2, exactly one `error:` line naming the key or the file,
no traceback, and the MLflow store and run folders exactly as they were (everything is checked before a run
exists)."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adaptive_lr.cli import main
from adaptive_lr.data.imdb import write_aclimdb
from adaptive_lr.data.mnist import IDX_FILES
from data_fixtures import (
    image_tree,
    write_cifar10_pickles,
    write_idx,
    write_idx_dataset,
    write_tar_gz,
    write_vic_elec,
)
from store_support import seed_store, tracking_uri

XOR = ["train", "task=xor_clean", "trainer.max_epochs=1", "data.n_samples=80"]
DIGITS = ["train", "task=digits", "trainer.max_epochs=1"]
TINY_IMAGES = ["trainer.max_epochs=1", "data.val_size=8", "data.batch_size=8", "data.download=false"]
MNIST = ["train", "task=mnist", *TINY_IMAGES]
CIFAR = ["train", "task=cifar10", *TINY_IMAGES]
IMDB = ["train", "task=imdb", "trainer.max_epochs=1", "data.val_size=2", "data.batch_size=2",
        "data.download=false", "data.tokenizer.vocab_size=100", "data.max_len=8"]
ELECTRICITY = ["train", "task=electricity", "trainer.max_epochs=1", "data.lookback=8", "data.horizon=4",
               "data.stride=2", "model.hidden=8", "data.batch_size=32"]
GRID = "name: tiny\ntasks: [xor_clean]\nschedulers: [fixed]\nseeds: [0]\n"
CIFAR_ARCHIVE = "cifar10/cifar10-jpeg.tar.gz"
IMDB_TARBALL = "imdb/aclImdb-labelled.tar.gz"
VIC_ELEC = "electricity/vic_elec.csv"


@dataclass(frozen=True)
class Finished:
    """A real finished tiny run, in a home of its own: its store, run ID and run folder."""

    home: Path
    run_id: str
    run_dir: Path


@dataclass(frozen=True)
class Ctx:
    home: Path  # $ADAPTIVE_LR_HOME of the case, with an empty store
    data: Path  # $ADAPTIVE_LR_DATA_DIR of the case (empty until the case writes its files)
    finished: Finished


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Finished:
    from mlflow.tracking import MlflowClient

    home = tmp_path_factory.mktemp("finished_home")
    seed_store(home, tmp_path_factory)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADAPTIVE_LR_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert main([*XOR, "logger.tensorboard=false"]) == 0
    client = MlflowClient(tracking_uri(home))
    (run,) = client.search_runs([client.get_experiment_by_name("adhoc").experiment_id])
    return Finished(home, run.info.run_id, Path(run.data.tags["run_dir"]))


def store_state(*homes: Path) -> list[object]:
    """Every experiment, run (ID and status) and file of the MLflow stores and run folders of these homes."""
    from mlflow.tracking import MlflowClient

    state: list[object] = []
    for home in homes:
        client = MlflowClient(tracking_uri(home))
        experiments = client.search_experiments()
        runs = client.search_runs([e.experiment_id for e in experiments], max_results=1000)
        state.append(sorted(e.name for e in experiments))
        state.append(sorted((r.info.run_id, r.info.status) for r in runs))
        files = [p for folder in ("mlruns", "runs") for p in (home / folder).rglob("*")]
        state.append(sorted(str(p.relative_to(home)) for p in files))
    return state


def running_run(ctx: Ctx, pid: int) -> str:
    """A run in the case's store, RUNNING in process `pid` of this host, with a run folder."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri(ctx.home))
    folder = ctx.home / "running_run"
    folder.mkdir()
    tags = {"host": platform.node(), "pid": str(pid), "run_dir": str(folder)}
    return client.create_run(client.create_experiment("live"), tags=tags).info.run_id


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


# -- writers of broken inputs: each returns the argv of its case ---------------------------------------------
def write(path: Path, content: bytes, argv: list[str]) -> list[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return argv


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def mnist(ctx: Ctx, damage: Callable[[Path], object]) -> list[str]:
    write_idx_dataset(ctx.data / "mnist")
    damage(ctx.data / "mnist")
    return MNIST


def cifar_pickles(ctx: Ctx, damage: Callable[[Path], object]) -> list[str]:
    folder = ctx.data / "cifar10" / "cifar-10-batches-py"
    write_cifar10_pickles(folder)
    damage(folder)
    return CIFAR


def cifar_tree(ctx: Ctx, keep: Callable[[str], bool], replace: dict[str, bytes] | None = None) -> list[str]:
    files = {name: data for name, data in image_tree().items() if keep(name)}
    write_tar_gz(ctx.data / CIFAR_ARCHIVE, files | (replace or {}))
    return CIFAR


def imdb_tarball(ctx: Ctx, reviews: dict[str, dict[str, list[str]]]) -> list[str]:
    (ctx.data / "imdb").mkdir()
    write_aclimdb(ctx.data / "imdb", reviews, tarball="aclImdb-labelled.tar.gz")
    return IMDB


def vic_elec(ctx: Ctx, edit: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
             days: int = 3) -> list[str]:
    path = write_vic_elec(ctx.data, days=days)
    if edit is not None:
        edit(pd.read_csv(path, dtype=str)).to_csv(path, index=False)
    return ELECTRICITY


def set_cell(row: int, column: str, value: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[row, column] = value
        return frame

    return edit


def grid_file(ctx: Ctx, text: str) -> list[str]:
    (ctx.home / "grid.yaml").write_text(text)
    return ["experiment", str(ctx.home / "grid.yaml")]


def cases() -> list[tuple[str, Callable[[Ctx], list[str]], list[str]]]:
    """(id, the case's argv (writing its files first), what its error line must name)."""
    return [
        # -- config values
        ("seed-float", lambda c: [*XOR, "seed=1.5"], ["seed", "1.5", "4294967295"]),
        ("seed-text", lambda c: [*XOR, "seed=abc"], ["seed", "'abc'"]),
        ("seed-negative", lambda c: [*XOR, "seed=-1"], ["seed", "-1"]),
        ("batch-size-0", lambda c: [*XOR, "data.batch_size=0"], ["data.batch_size", ">= 1", "0"]),
        ("frequency-0", lambda c: [*XOR, "scheduler.frequency=0"], ["scheduler.frequency", ">= 1"]),
        ("warmup-negative", lambda c: [*XOR, "scheduler.warmup.ticks=-5"],
         ["scheduler.warmup.ticks", ">= 0", "-5"]),
        ("start-outside-explicit-bounds", lambda c: [*XOR, "scheduler=heuristic", "lr=1000000.0",
                                                     "scheduler.policy.min_lr=1e-6", "scheduler.policy.max_lr=1.0"],
         ["starting LR 1e+06", "outside its bounds", "[1e-06, 1]"]),
        ("warmup-factor", lambda c: [*XOR, "scheduler.warmup.start_factor=0"], ["start_factor", "(0, 1]"]),
        ("unknown-key", lambda c: [*XOR, "lr_rate=0.1"], ["lr_rate", "+lr_rate=0.1"]),
        ("lr-text", lambda c: [*XOR, "lr=abc"], ["lr", "positive", "'abc'"]),
        ("epochs-float", lambda c: [*XOR, "trainer.max_epochs=1.5"], ["trainer.max_epochs", "1.5"]),
        ("interval", lambda c: [*XOR, "scheduler.interval=hourly"],
         ["scheduler.interval", "'step'", "'hourly'"]),
        ("interval-mismatch", lambda c: [*XOR, "scheduler=hypergradient", "scheduler.interval=epoch"],
         ["scheduler", "interval must be 'step'", "'epoch'"]),
        ("scheduler-adaptive", lambda c: [*XOR, "scheduler.adaptive=maybe"], ["scheduler.adaptive", "a bool"]),
        ("scheduler-target", lambda c: [*XOR, "scheduler.policy._target_=adaptive_lr.schedulers.nope.Nope"],
         ["scheduler.policy._target_", "cannot import", "nope.Nope"]),
        ("log-every-0", lambda c: [*XOR, "logger.log_every_n_steps=0"], ["logger.log_every_n_steps"]),
        ("multi-start-0", lambda c: [*XOR, "multi_start.k=0"], ["multi_start.k"]),
        ("checkpoint-steps", lambda c: [*XOR, "checkpoint.every_n_steps=-1"], ["checkpoint.every_n_steps", "-1"]),
        ("live-bounds", lambda c: [*XOR, "live_control.min_lr=1.0", "live_control.max_lr=0.5"],
         ["live_control.min_lr", "live_control.max_lr"]),
        ("view-setting", lambda c: [*XOR, "viz=[latent]", "viz.latent.embedder.perplexity=-1"],
         ["viz.latent", "perplexity", "-1"]),
        ("optimizer-choice", lambda c: [*XOR, "optimizer=nope"], ["optimizer", "'nope'", "adam", "sgd"]),
        ("interpolation", lambda c: [*XOR, "lr=${nope}"], ["lr", "nope"]),
        ("override-syntax", lambda c: [*XOR, "seed=[1"], ["[1"]),
        ("in-features", lambda c: [*DIGITS, "model.in_features=3"],
         ["model.in_features=3", "set model.in_features=64"]),
        ("out-features", lambda c: [*DIGITS, "model.out_features=2"], ["model", "'digits'", "out of bounds"]),
        ("val-size", lambda c: [*mnist(c, lambda f: None), "data.val_size=1000"], ["data.val_size", "1000"]),
        # -- data files: MNIST (gzipped IDX)
        ("mnist-missing", lambda c: [*MNIST, f"data_dir={c.home / 'nowhere'}"],
         ["mnist: data not found", "nowhere", IDX_FILES[0]]),
        ("mnist-truncated-gz", lambda c: mnist(c, lambda f: truncate(f / IDX_FILES[0])), [IDX_FILES[0]]),
        ("mnist-not-gzip", lambda c: mnist(c, lambda f: (f / IDX_FILES[1]).write_bytes(b"plain bytes")),
         [IDX_FILES[1], "gzip"]),
        ("mnist-magic", lambda c: mnist(c, lambda f: write_idx(f / IDX_FILES[0], np.arange(40))),
         [IDX_FILES[0], "magic number 0x00000801, expected 0x00000803"]),
        ("mnist-counts", lambda c: mnist(c, lambda f: write_idx(f / IDX_FILES[1], np.arange(7))),
         ["train has 40 images but 7 labels"]),
        # -- CIFAR-10 (pickles, image archive)
        ("cifar-missing", lambda c: CIFAR, ["cifar10: data not found", "cifar10-jpeg.tar.gz"]),
        ("cifar-not-a-tar", lambda c: write(c.data / CIFAR_ARCHIVE, gzip.compress(b"not a tar" * 99), CIFAR),
         ["cifar10-jpeg.tar.gz", "tar"]),
        ("cifar-not-gzip", lambda c: write(c.data / CIFAR_ARCHIVE, b"plain bytes", CIFAR),
         ["cifar10-jpeg.tar.gz", "gzip"]),
        ("cifar-pickle-truncated", lambda c: cifar_pickles(c, lambda f: truncate(f / "data_batch_1")),
         ["data_batch_1", "CIFAR pickle"]),
        ("cifar-pickle-labels", lambda c: cifar_pickles(
            c, lambda f: (f / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072))}))),
         ["test_batch", "b'labels'"]),
        ("cifar-classes", lambda c: cifar_tree(c, lambda n: n.split("/")[1] in ("cat", "dog", "frog")),
         ["found 3 train classes, expected 10"]),
        ("cifar-bad-image", lambda c: cifar_tree(c, lambda n: True, {"train/cat/0000.jpg": b"\xff\xd8 cut"}),
         ["JPEG", "cannot be decoded"]),
        # -- IMDB (aclImdb tarball)
        ("imdb-missing", lambda c: IMDB, ["imdb: data not found", "aclImdb-labelled.tar.gz"]),
        ("imdb-no-labels", lambda c: imdb_tarball(c, {"train": {"unsup": ["a b"]}, "test": {"pos": ["c"]}}),
         ["aclImdb-labelled.tar.gz", "no labelled train/neg|pos reviews"]),
        ("imdb-not-a-tar", lambda c: write(c.data / IMDB_TARBALL, b"plain", IMDB),
         ["aclImdb-labelled.tar.gz", "not a readable aclImdb tarball"]),
        # -- electricity (vic_elec CSV)
        ("elec-missing", lambda c: ELECTRICITY, ["electricity: data not found", "vic_elec.csv"]),
        ("elec-empty-value", lambda c: vic_elec(c, set_cell(17, "Demand", "")),
         ["'Demand'", "vic_elec.csv", "1 missing values (first at 17)"]),
        ("elec-nan", lambda c: vic_elec(c, set_cell(5, "Temperature", "NaN")),
         ["'Temperature'", "missing values"]),
        ("elec-non-numeric", lambda c: vic_elec(c, set_cell(9, "Demand", "lots")),
         ["'Demand'", "vic_elec.csv", "'lots'", "row 9"]),
        ("elec-unsorted", lambda c: vic_elec(c, lambda f: f.iloc[[*range(10), 11, 10, *range(12, len(f))]]),
         ["vic_elec.csv", "row 10", "regular time series"]),
        ("elec-duplicated", lambda c: vic_elec(c, set_cell(20, "Time", "2011-12-31T22:30:00Z")),
         ["vic_elec.csv", "row 20", "does not increase"]),
        ("elec-bad-time", lambda c: vic_elec(c, set_cell(3, "Time", "yesterday")), ["'Time'", "timestamp"]),
        ("elec-too-few-rows", lambda c: vic_elec(c, days=1), ["48-step series", "no window"]),
        ("elec-unknown-column", lambda c: [*vic_elec(c), "data.source.covariates=[Humidity]"],
         ["vic_elec.csv", "Humidity"]),
        ("elec-empty-file", lambda c: write(c.data / VIC_ELEC, b"", ELECTRICITY),
         ["vic_elec.csv", "not a readable CSV"]),
        ("elec-in-features", lambda c: [*vic_elec(c), "model.in_features=3"],
         ["model.in_features=3", "set model.in_features=2"]),
        # -- grids (experiments/<name>.yaml or a path)
        ("grid-unknown", lambda c: ["experiment", "nope"], ["'nope'", "demo"]),
        ("grid-yaml-syntax", lambda c: grid_file(c, "name: tiny\ntasks: [xor_clean\nseeds: [0]\n"),
         ["grid.yaml", "not a valid grid file", "line 2"]),
        ("grid-unknown-key", lambda c: grid_file(c, GRID + "sedes: [1]\n"), ["sedes", "allowed"]),
        ("grid-seeds", lambda c: grid_file(c, GRID.replace("[0]", "[a]")), ["seeds", "list of ints"]),
        ("grid-bad-override", lambda c: grid_file(c, GRID + "overrides: [scheduler.warmup.ticks=-5]\n"),
         ["scheduler.warmup.ticks"]),
        ("grid-jobs", lambda c: [*grid_file(c, GRID), "-j", "0"], ["jobs", "positive"]),
        # -- commands
        ("no-command", lambda c: [], ["adaptive-lr", "required"]),
        ("unknown-command", lambda c: ["fly"], ["adaptive-lr", "'fly'"]),
        ("set-lr-value", lambda c: ["set-lr", "somerun", "fast"], ["set-lr", "invalid float value: 'fast'"]),
        ("set-lr-unknown-run", lambda c: ["set-lr", "0123abcd", "0.1"],
         ["'0123abcd'", "neither a run folder"]),
        ("set-lr-finished-id",
         lambda c: ["set-lr", c.finished.run_id, "0.1", f"paths.root={c.finished.home}"],
         ["FINISHED", "not RUNNING"]),
        ("set-lr-finished-folder", lambda c: ["set-lr", str(c.finished.run_dir), "0.1"],
         ["FINISHED", "not RUNNING"]),
        ("set-lr-dead-process", lambda c: ["set-lr", running_run(c, dead_pid()), "0.1"],
         ["process", "has ended"]),
        ("set-lr-zero", lambda c: ["set-lr", running_run(c, os.getpid()), "0"], ["value", "0"]),
        ("release-lr-no-run", lambda c: ["release-lr"], ["release-lr", "run"]),
        ("watch-unknown-run", lambda c: ["watch", "0123abcd"], ["'0123abcd'", "neither a run folder"]),
        ("watch-port-range", lambda c: ["watch", str(c.finished.run_dir), "--port", "70000"], ["--port", "70000"]),
        ("watch-port-word", lambda c: ["watch", "somerun", "--port", "web"], ["watch", "invalid int value: 'web'"]),
        ("meta-unknown-controller", lambda c: ["meta-train", "meta/controller=adam"],
         ["meta/controller", "'adam'", "rl_qlearning"]),
        ("meta-holdout", lambda c: ["meta-train", "holdout=cifar"], ["holdout", "'cifar'", "digits"]),
        ("meta-not-learned", lambda c: ["meta-train", "controller.scheduler=cosine"],
         ["controller.scheduler='cosine'", "not a learned controller"]),
        ("meta-loo-holdout", lambda c: ["meta-train", "holdout=digits", "--leave-one-out"],
         ["--leave-one-out", "holdout="]),
        ("report-unknown", lambda c: ["report", "nope"], ["'nope'", "demo"]),
        ("report-no-runs", lambda c: ["report", grid_file(c, GRID)[1]], ["'tiny'"]),
    ]


CASES = cases()


@pytest.mark.parametrize(("make_argv", "must_name"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line_and_leaves_the_store_unchanged(make_argv, must_name, store, finished,
                                                                     monkeypatch, capsys):
    data = store / "data"
    data.mkdir()
    monkeypatch.setenv("ADAPTIVE_LR_DATA_DIR", str(data))
    argv = make_argv(Ctx(store, data, finished))
    before = store_state(store, finished.home)
    capsys.readouterr()

    code = main(argv)

    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2, captured
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.out + captured.err
    for text in must_name:
        assert text in lines[0], lines[0]
    assert store_state(store, finished.home) == before  # no run, run folder, experiment or artifact


def test_the_cases_are_at_least_40_distinct_inputs():
    assert len({name for name, _, _ in CASES}) == len(CASES) >= 40


def test_set_lr_on_a_running_run_is_applied(store, finished, capsys):
    """The other side of the refusals: a run RUNNING in a live process takes the command."""
    run_id = running_run(Ctx(store, store / "data", finished), os.getpid())

    assert main(["set-lr", run_id, "0.05"]) == 0

    assert "set 0.05" in capsys.readouterr().out
    command = json.loads((store / "running_run" / "control.json").read_text())
    assert command["op"] == "set" and command["value"] == 0.05
