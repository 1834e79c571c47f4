"""Short TensorBoard run names: `<experiment>/<task>/<scheduler>/seed<N>` links to the event folders in the run
folders; a taken name gets a suffix, a resumed run keeps its link, and earlier runs are named by `link_all`."""

from __future__ import annotations

import json
import os

from adaptive_lr.tracking.tb_names import link_all, link_run, linked_targets, run_name


def _run_folder(runs, experiment, folder, task="digits", scheduler="cosine", seed=0, events=True):
    run_dir = runs / experiment / folder
    run_dir.mkdir(parents=True)
    config = {"experiment": experiment, "task": {"name": task}, "scheduler": {"name": scheduler}, "seed": seed}
    (run_dir / "config.json").write_text(json.dumps(config))
    if events:
        (run_dir / "tensorboard").mkdir()
    return run_dir


def test_names_come_from_the_cell_with_its_setting_or_phase_on_the_seed():
    assert run_name("digits", "cosine", 0) == "digits/cosine/seed0"
    assert run_name("digits", "cosine", 0, "digits/cosine/seed0", "final") == "digits/cosine/seed0"
    assert run_name("digits", "cosine", 0, "digits/cosine/seed0/lr=0.01", "sweep") == "digits/cosine/seed0-lr=0.01"
    assert run_name("digits", "cosine", 0, "digits/cosine/seed0", "tune") == "digits/cosine/seed0-tune"


def test_a_taken_name_gets_a_suffix_and_a_resumed_run_keeps_its_link(tmp_path):
    names, runs = tmp_path / "tensorboard", tmp_path / "runs"
    first = _run_folder(runs, "demo", "digits-cosine-s0-1") / "tensorboard"
    second = _run_folder(runs, "demo", "digits-cosine-s0-2") / "tensorboard"
    link = link_run(names, "demo", "digits/cosine/seed0", first)
    assert link == names / "demo" / "digits" / "cosine" / "seed0" and link.resolve() == first.resolve()
    assert not os.path.isabs(os.readlink(link))  # relative: the home folder can move
    assert link_run(names, "demo", "digits/cosine/seed0", second).name == "seed0-2"
    assert link_run(names, "demo", "digits/cosine/seed0", first) == link  # resumed: the same name


def test_link_all_names_earlier_runs_once_in_the_order_they_started(tmp_path):
    names, runs = tmp_path / "tensorboard", tmp_path / "runs"
    older = _run_folder(runs, "demo", "digits-cosine-s0-20260101-000000-000001")
    newer = _run_folder(runs, "demo", "digits-cosine-s0-20260102-000000-000001")
    _run_folder(runs, "demo", "digits-fixed-s1-20260101-000000-000001", scheduler="fixed", seed=1, events=False)
    (runs / "demo" / "not-a-run").mkdir()
    assert link_all(runs, names) == 2
    assert (names / "demo/digits/cosine/seed0").resolve() == (older / "tensorboard").resolve()
    assert (names / "demo/digits/cosine/seed0-2").resolve() == (newer / "tensorboard").resolve()
    assert link_all(runs, names) == 0  # already named
    assert linked_targets(names) == {(older / "tensorboard").resolve(), (newer / "tensorboard").resolve()}
