"""Crash safety and exact resume: a run killed at any step keeps what it flushed, is marked KILLED by the next
command that opens the store, and `adaptive-lr resume` finishes it in the same MLflow run with the LR trajectory
and final metrics of a run that was never interrupted. SIGINT and SIGTERM mark a run KILLED, not FAILED."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adaptive_lr.cli import main
from adaptive_lr.config import compose
from adaptive_lr.runner import run
from adaptive_lr.tracking.run import RunInterrupted
from store_support import seed_store, tracking_uri

# digits: dropout draws from the global torch RNG; rl_bandit: a Thompson-sampling controller (its own RNG) that
# reacts to val_loss, so any difference in the random streams or restored state changes the LR trajectory
KILLED = ["task=digits", "scheduler=rl_bandit", "seed=3", "logger.log_every_n_steps=5", "logger.tensorboard=false"]
COMPARED = ("lr", "epoch_lr", "controller_action", "controller_factor", "train_loss", "val_loss", "val_acc",
            "train_acc", "test_loss", "test_acc")


@pytest.fixture
def client(home: Path, tmp_path_factory: pytest.TempPathFactory):
    from mlflow.tracking import MlflowClient

    seed_store(home, tmp_path_factory)
    return MlflowClient(tracking_uri(home))


def histories(client, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric of a run: (step, value) in logging order (ties in a step keep their order of logging); NaN as
    "nan", so that equal histories compare equal."""
    keys = client.get_run(run_id).data.metrics
    return {k: [(m.step, m.value if m.value == m.value else "nan")
                for m in sorted(client.get_metric_history(run_id, k), key=lambda m: (m.step, m.timestamp))]
            for k in keys}


def only_run(client, experiment: str):
    (found,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return found


def assert_same_run(client, resumed_id: str, straight_id: str, before_kill: dict[str, list]) -> None:
    resumed, straight = histories(client, resumed_id), histories(client, straight_id)
    for key in COMPARED:
        assert resumed[key] == straight[key], key  # identical LR trajectory, decisions and metrics
    for key, values in before_kill.items():  # what was stored before the kill is still there, unchanged
        assert all(v in resumed[key] for v in values), key
    assert client.get_run(resumed_id).info.status == "FINISHED"


def cli_env(home: Path) -> dict[str, str]:
    import torch

    # the same number of torch threads as this process: float sums then add up in the same order
    return {**os.environ, "ADAPTIVE_LR_HOME": str(home), "PYTHONWARNINGS": "ignore",
            "OMP_NUM_THREADS": str(torch.get_num_threads())}


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)
    return time.monotonic()


def cli(home: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "adaptive_lr.cli", *args], env=cli_env(home),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_at_random_step(proc: subprocess.Popen, home: Path, epochs: int, rng: random.Random) -> Path:
    """SIGKILL `proc` (a run of experiment `killed`) at a random step of an epoch: once it has written `epochs`
    (at least 2) more checkpoints, a random fraction of the last epoch's duration later. Returns the run folder."""
    def stamp() -> int | None:
        path = next((home / "runs" / "killed").glob("*/checkpoints/last.ckpt"), None)
        return path.stat().st_mtime_ns if path else None  # replaced atomically: the path always names a file

    seen, times = stamp(), []
    for _ in range(max(2, epochs)):
        wait_for(lambda last=seen: stamp() not in (None, last), 240, "the next checkpoint", proc)
        seen = stamp()
        times.append(time.monotonic())
    time.sleep(rng.uniform(0.0, 0.9) * (times[-1] - times[-2]))
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    (run_dir,) = (home / "runs" / "killed").iterdir()
    return run_dir


def test_sigkilled_run_resumes_in_the_same_run_identical_to_an_uninterrupted_one(home, client, capsys):
    overrides = [*KILLED, "trainer.max_epochs=6"]
    run_dir = kill_at_random_step(cli(home, "train", *overrides, "experiment=killed"), home, 2, random.Random())
    killed = only_run(client, "killed")
    assert killed.info.status == "RUNNING"  # nothing could mark it: its process is gone
    before_kill = histories(client, killed.info.run_id)
    # every epoch before its checkpoint is stored (epoch metrics on the global step, the epoch number beside them)
    assert [e for _, e in before_kill["epoch"]][:2] == [1.0, 2.0]
    assert [s for s, _ in before_kill["val_loss"]][:2] == [s for s, _ in before_kill["epoch"]][:2]

    straight = run(compose([*overrides, "experiment=straight"]))  # opens the store: the dead run is marked
    assert client.get_run(killed.info.run_id).info.status == "KILLED"
    assert histories(client, killed.info.run_id) == before_kill

    assert main(["resume", str(run_dir)]) == 0  # the run folder (a run ID works too)
    assert f"run {killed.info.run_id} FINISHED" in capsys.readouterr().out
    resumed = only_run(client, "killed")  # one MLflow run: the killed one, continued
    assert resumed.info.run_id == killed.info.run_id and resumed.data.tags["resumed"] == "1"
    assert "error" not in resumed.data.tags
    assert_same_run(client, killed.info.run_id, straight.run_id, before_kill)
    assert not (run_dir / "checkpoints" / "last.ckpt").exists()  # a finished run keeps no resume checkpoint


# -- mid-epoch checkpoints (`checkpoint.every_n_steps`) -----------------------------------------------------------
STEP_CHECKPOINTS = "checkpoint.every_n_steps=4"  # digits: 17 steps an epoch, so at epoch positions 3/4, 7/8, ...
# a step-interval controller that watches the last validation's loss: a restore must put back the RNGs, the
# loader's position, the epoch sums and the published val_loss, or the LR trajectory differs
STEP_CONTROLLER = ["task=digits", "scheduler=plateau_feedback", "scheduler.frequency=1",
                   "scheduler.policy.monitor=val_loss", "scheduler.policy.smoothing=0", "scheduler.policy.decide_every=2",
                   "scheduler.policy.patience=1", "scheduler.policy.cooldown=0", "seed=4", "logger.log_every_n_steps=3",
                   "logger.tensorboard=false"]


def mid_epoch_position(path: Path) -> tuple[int, int] | None:
    """(epoch, batches done in it) of a checkpoint written inside an epoch; None for an epoch-end one (its epoch
    sums were published and emptied) or none readable."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError):
        return None
    if ckpt.get("epoch_sums", {}).get("train", {}).get("sums") is None:
        return None
    loader = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    return int(loader["epoch"]), int(loader["batches"])


def kill_after_a_step_checkpoint(proc: subprocess.Popen, home: Path, epoch: int, position: int) -> Path:
    """SIGKILL `proc` (a run of experiment `killed`) as soon as its last checkpoint is a step checkpoint written
    `position` or more batches into epoch `epoch` (0-based; a busy machine may poll past the first): the kill lands
    a few steps later, before the epoch ends. Returns the run folder."""
    seen: dict[str, object] = {"stamp": None, "position": None}

    def written() -> tuple[int, int] | None:  # read again only when the file was replaced (a new inode)
        path = next((home / "runs" / "killed").glob("*/checkpoints/last.ckpt"), None)
        try:
            stat = path.stat() if path else None
        except FileNotFoundError:
            return None
        stamp = (stat.st_ino, stat.st_mtime_ns) if stat else None
        if stamp != seen["stamp"]:
            seen.update(stamp=stamp, position=mid_epoch_position(path) if path else None)
        return seen["position"]  # type: ignore[return-value]

    def reached() -> bool:
        at = written()
        return at is not None and at[0] == epoch and at[1] >= position

    wait_for(reached, 240, f"a checkpoint at batch {position} or later of epoch {epoch}", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    (run_dir,) = (home / "runs" / "killed").iterdir()
    return run_dir


def test_sigkilled_after_a_mid_epoch_checkpoint_resumes_identically(home, client, capsys):
    overrides = [*KILLED, "trainer.max_epochs=3", STEP_CHECKPOINTS]
    run_dir = kill_after_a_step_checkpoint(cli(home, "train", *overrides, "experiment=killed"), home, 1, 7)
    assert mid_epoch_position(run_dir / "checkpoints" / "last.ckpt") in ((1, 7), (1, 11), (1, 15))
    killed = only_run(client, "killed")
    before_kill = histories(client, killed.info.run_id)
    assert len(before_kill["val_loss"]) == 1  # the first epoch's; the kill came in the second
    straight = run(compose([*overrides, "experiment=straight"]))

    assert main(["resume", str(run_dir)]) == 0
    assert f"run {killed.info.run_id} FINISHED" in capsys.readouterr().out
    assert_same_run(client, killed.info.run_id, straight.run_id, before_kill)
    assert not (run_dir / "checkpoints" / "last.ckpt").exists()


def interrupted_run(client, monkeypatch, overrides: list[str], batch: int):
    """Run `overrides` as experiment `killed`, SIGTERM'd at `batch` of its second epoch; its (KILLED) run."""
    from adaptive_lr.tasks.classification import ClassificationTask

    train_step = ClassificationTask.training_step

    def interrupt_in_epoch_2(self, batch_, batch_idx):
        if self.current_epoch == 1 and batch_idx == batch:
            os.kill(os.getpid(), signal.SIGTERM)
        return train_step(self, batch_, batch_idx)

    with monkeypatch.context() as m:
        m.setattr(ClassificationTask, "training_step", interrupt_in_epoch_2)
        with pytest.raises(RunInterrupted):
            run(compose([*overrides, "experiment=killed"]))
    return only_run(client, "killed")


def test_a_step_controller_watching_val_loss_resumes_mid_epoch_identically(home, client, monkeypatch):
    """In-process, interrupted at a fixed step 2 batches after a step checkpoint; the controller decides every 2
    steps on the previous validation's loss, so its decisions after the restore need the published val_loss."""

    overrides = [*STEP_CONTROLLER, "trainer.max_epochs=3", STEP_CHECKPOINTS]
    straight = run(compose([*overrides, "experiment=straight"]))
    assert len({v for _, v in histories(client, straight.run_id)["lr"]}) > 2  # the controller did move the LR
    killed = interrupted_run(client, monkeypatch, overrides, batch=9)  # last checkpoint: 7 batches into epoch 2
    assert mid_epoch_position(Path(killed.data.tags["run_dir"]) / "checkpoints" / "last.ckpt") == (1, 7)
    before = histories(client, killed.info.run_id)

    assert main(["resume", killed.info.run_id]) == 0
    assert_same_run(client, killed.info.run_id, straight.run_id, before)


def test_step_checkpoint_settings_are_checked(home, client, capsys):
    assert main(["train", *KILLED, "checkpoint.every_n_steps=-2", "experiment=bad"]) == 2
    assert "checkpoint.every_n_steps must be an int >= 0 (0: none), got -2" in capsys.readouterr().err
    assert client.get_experiment_by_name("bad") is None


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_mark_the_run_killed_after_flushing_and_it_resumes(home, client, monkeypatch, signum):
    from adaptive_lr.tasks.classification import ClassificationTask

    overrides = [*KILLED, "trainer.max_epochs=4", "logger.mlflow_flush_every_s=1000"]
    handler = signal.getsignal(signum)
    straight = run(compose([*overrides, "experiment=straight"]))
    train_step = ClassificationTask.training_step

    def signal_in_epoch_3(self, batch, batch_idx):
        if self.current_epoch == 2 and batch_idx == 5:
            os.kill(os.getpid(), signum)  # delivered to this (main) thread at once
        return train_step(self, batch, batch_idx)

    with monkeypatch.context() as m:
        m.setattr(ClassificationTask, "training_step", signal_in_epoch_3)
        with pytest.raises(RunInterrupted) as interrupted:
            run(compose([*overrides, "experiment=killed"]))
    assert interrupted.value.code == 128 + signum  # exits like a process killed by that signal, no traceback
    killed = only_run(client, "killed")
    assert killed.info.status == "KILLED"
    assert killed.data.tags["error"] == f"interrupted by {signal.Signals(signum).name}"
    before = histories(client, killed.info.run_id)
    spe = int(killed.data.tags["steps_per_epoch"])
    assert [s for s, _ in before["val_loss"]] == [spe, 2 * spe]  # epochs 1 and 2, on their global steps
    last_step = 2 * int(killed.data.tags["steps_per_epoch"]) + 5  # the step before the signal
    assert [s for s, _ in before["lr"]] == [s for s, _ in histories(client, straight.run_id)["lr"]
                                           if s <= last_step]  # flushed at the interrupt, though buffered

    assert main(["resume", killed.info.run_id]) == 0
    assert_same_run(client, killed.info.run_id, straight.run_id, before)
    assert signal.getsignal(signum) is handler  # the handlers are put back


def test_resume_refuses_finished_and_unknown_runs_and_bad_checkpoint_settings(home, client, capsys):
    done = run(compose([*KILLED, "trainer.max_epochs=1", "experiment=done"]))
    assert main(["resume", done.run_id]) == 2
    assert f"run {done.run_id} is FINISHED; only a KILLED or FAILED run can be resumed" in capsys.readouterr().err
    assert main(["resume", "0123456789abcdef"]) == 2
    assert "no run '0123456789abcdef'" in capsys.readouterr().err
    assert main(["train", *KILLED, "checkpoint.every_n_epochs=-1", "experiment=bad"]) == 2
    assert "checkpoint.every_n_epochs must be an int >= 0 (0: none), got -1" in capsys.readouterr().err
    assert client.get_experiment_by_name("bad") is None


def test_without_checkpoints_a_resumed_run_starts_over_in_the_same_run(home, client, monkeypatch):

    overrides = [*KILLED, "trainer.max_epochs=3", "checkpoint.every_n_epochs=0"]
    straight = run(compose([*overrides, "experiment=straight"]))
    killed = interrupted_run(client, monkeypatch, overrides, batch=3)
    assert not (Path(killed.data.tags["run_dir"]) / "checkpoints").exists()
    before = histories(client, killed.info.run_id)

    assert main(["resume", killed.info.run_id]) == 0
    assert_same_run(client, killed.info.run_id, straight.run_id, before)


@pytest.mark.slow
def test_a_run_killed_three_times_at_random_steps_still_matches_the_uninterrupted_one(home, client):
    rng = random.Random()
    overrides = [*KILLED, "trainer.max_epochs=20"]
    run_dir = kill_at_random_step(cli(home, "train", *overrides, "experiment=killed"), home, rng.randint(2, 4), rng)
    run_id = only_run(client, "killed").info.run_id
    kept = [histories(client, run_id)]
    for _ in range(2):  # resumed in a new process, killed again a few epochs further on
        kill_at_random_step(cli(home, "resume", str(run_dir)), home, rng.randint(2, 4), rng)
        kept.append(histories(client, run_id))
    straight = run(compose([*overrides, "experiment=straight"]))

    assert main(["resume", str(run_dir)]) == 0
    assert only_run(client, "killed").data.tags["resumed"] == "3"
    assert [len(h["val_loss"]) for h in kept] == sorted({len(h["val_loss"]) for h in kept})  # killed 3 times
    for before_kill in kept:
        assert_same_run(client, run_id, straight.run_id, before_kill)


@pytest.mark.slow
def test_a_run_killed_three_times_mid_epoch_still_matches_the_uninterrupted_one(home, client):
    """Three SIGKILLs, each right after a step checkpoint at a random position of a random later epoch."""
    rng = random.Random()
    overrides = [*KILLED, "trainer.max_epochs=8", STEP_CHECKPOINTS]
    epochs = sorted(rng.sample(range(1, 7), 3))
    points = [(epoch, rng.choice((3, 7))) for epoch in epochs]
    run_dir = kill_after_a_step_checkpoint(cli(home, "train", *overrides, "experiment=killed"), home, *points[0])
    run_id = only_run(client, "killed").info.run_id
    kept = [histories(client, run_id)]
    for point in points[1:]:  # resumed in a new process, killed again in a later epoch
        kill_after_a_step_checkpoint(cli(home, "resume", str(run_dir)), home, *point)
        kept.append(histories(client, run_id))
    straight = run(compose([*overrides, "experiment=straight"]))

    assert main(["resume", str(run_dir)]) == 0
    assert only_run(client, "killed").data.tags["resumed"] == "3"
    for before_kill in kept:
        assert_same_run(client, run_id, straight.run_id, before_kill)
