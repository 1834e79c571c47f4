"""Meta-training across runs (`meta.train`, `meta.transfer`) on the embedded XOR sets and digits, tiny: the saved
policy loads through `warm_start` and names what it was trained on, every run's return is credited to each of its
decisions, a stopped training resumes, and the leave-one-family-out evaluation writes its transfer table."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from adaptive_lr.config import ConfigError, compose
from adaptive_lr.meta.train import compose_meta, meta_train, plan, training_families
from adaptive_lr.schedulers.rl import QLearning
from store_support import tracking_uri

TINY = [
    "meta/families=embedded", "seeds=[0]", "lr_factors=[1.0,4.0]", "evaluation.seeds=[0,1]",
    "families.xor_noisy.overrides=['trainer.max_epochs=3','data.n_samples=64']",
    "families.xor_corner.overrides=['trainer.max_epochs=3','data.n_samples=64']",
    "families.digits.overrides=['trainer.max_epochs=2']",
]  # fmt: skip


def runs_of(home: Path, experiment: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri(home))
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)


def test_the_plan_cycles_every_family_seed_and_lr_and_a_longer_plan_extends_a_shorter_one():
    cfg = compose_meta([*TINY, "seeds=[0,1]"])
    families = training_families(cfg)
    episodes = plan(cfg, families, 14)
    first_pass = {(e.family, e.seed, e.lr_factor) for e in episodes[:12]}
    assert len(first_pass) == 12  # 3 families x 2 seeds x 2 factors, each once per pass
    assert plan(cfg, families, 5) == episodes[:5]
    assert [e.index for e in episodes] == list(range(14))


def test_held_out_family_is_never_trained_on():
    cfg = compose_meta([*TINY, "holdout=digits"])
    assert {e.family for e in plan(cfg, training_families(cfg), 12)} == {"xor_noisy", "xor_corner"}


@pytest.mark.parametrize("overrides, message", [
    (["holdout=cifar"], "holdout must be one of the families"),
    (["episodes=0"], "episodes must be an int >= 1"),
    (["lr_factors=[]"], "lr_factors must be a non-empty list"),
    (["meta/controller=adam"], "unknown meta/controller 'adam'"),
    (["families.digits.task=nope"], "families.digits must be"),
    (["controller.scheduler=cosine"], "not a learned controller"),
])  # fmt: skip
def test_bad_meta_configs_are_one_line_errors(overrides, message, home):
    with pytest.raises(ConfigError, match=message):
        meta_train(compose_meta([*TINY, *overrides]), io.StringIO())


def test_meta_training_credits_whole_runs_saves_a_frozen_policy_with_provenance_and_resumes(store):
    out = io.StringIO()
    cfg = compose_meta([*TINY, "episodes=3", "holdout=xor_corner"])
    result = meta_train(cfg, out)

    # the policy loads through warm_start into the configured controller, and says what it was trained on
    run_cfg = compose(["task=xor_corner", "scheduler=rl_qlearning", f"scheduler.policy.warm_start='{result.policy}'",
                       *cfg.frozen_overrides])
    from adaptive_lr.runner import build

    policy = build(run_cfg)["policy"]
    assert isinstance(policy, QLearning) and policy.warm_started and policy.frozen
    provenance = policy.provenance
    history = pd.read_csv(result.state_dir / "history.csv")
    assert provenance["families"] == sorted(set(history["family"])) and "xor_corner" not in provenance["families"]
    assert provenance["held_out"] == "xor_corner" and provenance["training_set"] == ["digits", "xor_noisy"]
    assert provenance["episodes"] == 3 and provenance["episode_runs"] == 3
    assert provenance["runs"] == 3 + provenance["reference_runs"] and provenance["seeds"] == [0]
    assert provenance["git_commits"] and len(provenance["config_hash"]) == 12
    assert "whole-run return" in provenance["reward"] and provenance["reward_config"]["scale"] == 0.05
    assert provenance["family_runs"]["digits"] == ["task=digits", "trainer.max_epochs=2"]

    # every decision of every episode got its run's return: replaying the recorded episodes from a cold learner
    # with the logged returns gives the saved policy exactly
    episodes = [r for r in runs_of(store, cfg.name) if r.data.tags.get("meta_role") == "episode"]
    references = [r for r in runs_of(store, cfg.name) if r.data.tags.get("meta_role") == "reference"]
    assert len(episodes) == 3 and len(references) == provenance["reference_runs"]
    replay = QLearning(**{k: v for k, v in policy.init_args.items() if k not in ("warm_start", "online", "explore")})
    by_run = {r.info.run_id: r for r in episodes}
    epochs = {"xor_noisy": 3, "digits": 2}
    for run_id, ret, decisions, family in zip(history["run_id"], history["return"], history["decisions"],
                                              history["family"], strict=True):
        run_dir = Path(by_run[run_id].data.tags["run_dir"])
        recorded = torch.load(run_dir / "policy_learned.pt", weights_only=True)["episode"]
        assert len(recorded) == decisions == epochs[family]  # one decision per epoch, each credited
        replay.learn_episode(recorded, ret)
    assert np.allclose(replay.weights, policy.weights)
    # the returns are those of the curves against the references (final val acc, relative, / 0.05, clipped)
    expected = np.clip((history["score"] - history["reference_score"]) / history["reference_score"] / 0.05, -1, 1)
    assert np.allclose(history["return"], expected)
    # each episode warm-started from the policy of the episodes before it, explored, learned nothing in the run
    assert {r.data.params["scheduler.policy.online"] for r in episodes} == {"False"}
    assert {r.data.params["scheduler.policy.record_episode"] for r in episodes} == {"True"}

    # a longer training continues from the saved state: only the new episode runs (references reused or new)
    before = len(runs_of(store, cfg.name))
    longer = meta_train(compose_meta([*TINY, "episodes=4", "holdout=xor_corner"]), out)
    assert longer.state_dir == result.state_dir
    new = len(runs_of(store, cfg.name)) - before
    assert new in (1, 2) and pd.read_csv(longer.state_dir / "history.csv").head(3).equals(history)
    assert "4 episodes on" in out.getvalue() and "(3 done;" in out.getvalue()


def test_leave_one_out_trains_without_each_family_and_reports_transfer_against_scratch(store):
    from adaptive_lr.meta.transfer import leave_one_out

    overrides = [*TINY, "~families.digits", "episodes=1", "lr_factors=[1.0]"]
    report = leave_one_out(overrides, out=io.StringIO())
    text = report.read_text(encoding="utf-8")
    section = text.split("## Transfer", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| xor_")]
    assert [row.split(" | ")[0] for row in rows] == ["| xor_corner", "| xor_noisy"]
    assert all("rl_qlearning" in row and "-without-" in row for row in rows)
    assert all(any(v in row for v in ("better", "worse", "equivalent", "inconclusive", "untested")) for row in rows)
    assert "/tmp/" not in text and "/work/" not in text  # policy folders by name, never a path
    for family, other in (("xor_noisy", "xor_corner"), ("xor_corner", "xor_noisy")):
        saved = torch.load(report.parent / "policies" / f"without-{family}" / "policy.pt", weights_only=True)
        assert saved["provenance"]["families"] == [other] and saved["provenance"]["held_out"] == family
    runs = pd.read_csv(report.parent / "bundle" / "runs.csv", keep_default_na=False)
    warm = runs[runs["scheduler"] == "rl_qlearning +warm"]
    assert len(warm) == 4 and all(f"without-{task}" in path for task, path in zip(warm["task"], warm["warm_start"],
                                                                                  strict=True))
    assert set(runs["scheduler"]) == {"rl_qlearning", "rl_qlearning +warm", "fixed"}
