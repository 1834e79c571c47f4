"""Learning-rate-free optimizers: the logged LR is the step size each applies (`effective_lr`), `AveragedDoG` matches
the package's averager, each trains through the harness, and Schedule-Free's eval mode covers validation, test and
checkpoints while every training step runs in train mode."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import lightning as L
import pytest
import torch
from dadaptation import DAdaptAdam
from dog import DoG, PolynomialDecayAverager
from prodigyopt import Prodigy
from schedulefree import AdamWScheduleFree
from torch import nn

from adaptive_lr.optim import AveragedDoG, effective_lr
from store_support import seed_store, tracking_uri

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*")


def quadratic_steps(opt: torch.optim.Optimizer, p: nn.Parameter, n: int):
    """n steps on sum((p - 3)^2 * scale); yields (lr logged before the step, p before, grad, p after)."""
    scale = torch.linspace(0.5, 2.0, p.numel(), dtype=p.dtype)
    for _ in range(n):
        opt.zero_grad()
        ((p - 3) ** 2 * scale).sum().backward()
        before, grad, logged = p.detach().clone(), p.grad.clone(), effective_lr(opt.param_groups[0])
        opt.step()
        yield logged, before, grad, p.detach().clone()


def param(n: int = 4) -> nn.Parameter:
    return nn.Parameter(torch.linspace(-1.0, 1.0, n, dtype=torch.float64))


# -- effective_lr: the step size each optimizer applies, measured from its own update ---------------------------------
def test_dadapt_adam_logs_d_times_lr_the_rate_of_its_next_step():
    p = param()
    opt = DAdaptAdam([p], lr=0.5, betas=(0.0, 0.999))  # beta1 = 0: the update is -dlr * g / (sqrt(v) + eps)
    applied = []
    for logged, before, grad, after in quadratic_steps(opt, p, 6):
        denom = opt.state[p]["exp_avg_sq"].sqrt() + opt.param_groups[0]["eps"]
        dlr = (before - after) * denom / grad
        assert torch.allclose(dlr, dlr[0].expand_as(dlr), rtol=1e-9)
        applied.append(float(dlr[0]))
        assert logged == pytest.approx(float(dlr[0]), rel=1e-9)
    assert applied[0] == pytest.approx(0.5e-6, rel=1e-9) and applied[-1] > 100 * applied[0]  # d grew from d0


def test_prodigy_logs_d_times_lr_with_bias_correction_when_on():
    for bias_correction in (False, True):
        p = param()
        opt = Prodigy([p], lr=2.0, use_bias_correction=bias_correction)
        applied = []
        for logged, before, _, after in quadratic_steps(opt, p, 6):
            group, state = opt.param_groups[0], opt.state[p]
            denom = state["exp_avg_sq"].sqrt() + group["d"] * group["eps"]  # Prodigy's update: -dlr * m / denom
            applied.append(float(((before - after) * denom / state["exp_avg"]).mean()))
            assert logged == pytest.approx(applied[-1], rel=1e-6), bias_correction
        first = 2.0 * 1e-6 * ((1 - 0.999) ** 0.5 / (1 - 0.9) if bias_correction else 1.0)  # d0 * lr (* Adam's)
        assert applied[0] == pytest.approx(first, rel=1e-9)


def test_dog_logs_the_eta_of_its_latest_step_and_nothing_before_the_first():
    p = param()
    opt = DoG([p], lr=1.0)
    assert effective_lr(opt.param_groups[0]) is None  # DoG's first eta comes from the first gradient
    for _, before, grad, after in quadratic_steps(opt, p, 5):
        eta = (before - after) / grad  # SGD: p -= eta * g
        assert effective_lr(opt.param_groups[0]) == pytest.approx(float(eta.mean()), rel=1e-9)


def test_schedule_free_logs_lr_with_its_warmup_and_plain_optimizers_their_lr():
    p = param()
    opt = AdamWScheduleFree([p], lr=0.1, warmup_steps=4)
    opt.train()
    for logged, *_ in quadratic_steps(opt, p, 6):
        assert logged == pytest.approx(opt.param_groups[0]["scheduled_lr"], rel=1e-12)  # what the step used
    assert [effective_lr({**opt.param_groups[0], "k": k}) for k in range(5)] == pytest.approx(
        [0.025, 0.05, 0.075, 0.1, 0.1])
    assert effective_lr(torch.optim.Adam([param()], lr=0.003).param_groups[0]) == 0.003


# -- AveragedDoG: the package's averager, kept in the optimizer and swapped in by eval() -----------------------------
def test_averaged_dog_equals_dog_plus_polynomial_decay_averager_step_by_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    reference = copy.deepcopy(model)
    opt, ref_opt = AveragedDoG(model.parameters()), DoG(reference.parameters())
    averager = PolynomialDecayAverager(reference)  # gamma = 8, its default and ours
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    for t in range(1, 13):
        for m, o in ((model, opt), (reference, ref_opt)):
            o.zero_grad()
            nn.functional.mse_loss(m(x), y).backward()
            o.step()
        averager.step()
        for a, b in zip(model.parameters(), reference.parameters(), strict=True):
            assert torch.equal(a, b)  # training is DoG's own, untouched by the average
        opt.eval()
        for a, b in zip(model.parameters(), averager.averaged_model.parameters(), strict=True):
            assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)
        assert torch.equal(next(model.parameters()), next(reference.parameters())) == (t == 1)  # x_1 itself
        opt.train()  # an exact swap back
    with pytest.raises(RuntimeError, match="eval mode"):
        opt.eval()
        opt.step()


# -- through the harness: each trains one tiny run and logs its step size ------------------------------------------
TINY = ["task=xor_clean", "trainer.max_epochs=2", "data.n_samples=120", "data.batch_size=16",
        "logger.log_every_n_steps=1", "logger.tensorboard=false", "experiment=unit"]


@pytest.fixture
def client(home: Path, tmp_path_factory: pytest.TempPathFactory):
    from mlflow.tracking import MlflowClient

    seed_store(home, tmp_path_factory)
    return MlflowClient(tracking_uri(home))


def logged_lr(client, run_id: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, "lr")}


@pytest.mark.parametrize("optimizer, multiplier", [("prodigy", 0.5), ("dadapt_adam", 1.0), ("dog", 2.0)])
def test_lr_free_optimizer_trains_through_the_harness_and_logs_its_step_size(home, client, optimizer, multiplier):
    from adaptive_lr.config import compose
    from adaptive_lr.runner import run

    cfg = compose([*TINY, f"optimizer={optimizer}", f"lr_multiplier={multiplier}"])
    assert cfg.optimizer.lr == multiplier and cfg.lr == 0.05  # the task's LR is not the multiplier
    result = run(cfg)
    assert result.status == "FINISHED" and 0 <= result.metrics["test_acc"] <= 1
    lr = logged_lr(client, result.run_id)
    steps = 2 * int(client.get_run(result.run_id).data.tags["steps_per_epoch"])
    assert max(lr) == steps and all(0 < v < multiplier for v in lr.values())  # a step size, not the multiplier
    if optimizer == "dog":  # its first eta exists once the first step has taken it
        assert min(lr) == 1
    else:  # d starts at d0 = 1e-6 and grows
        assert lr[0] == pytest.approx(multiplier * 1e-6) and lr[steps] > 100 * lr[0]


def test_schedule_free_trains_through_the_harness_and_logs_its_warmup(home, client):
    from adaptive_lr.config import compose
    from adaptive_lr.runner import run

    result = run(compose([*TINY, "optimizer=schedulefree_adamw", "optimizer.warmup_steps=4"]))
    assert result.status == "FINISHED"
    lr = logged_lr(client, result.run_id)
    assert [lr[s] for s in range(6)] == pytest.approx([0.05 * min(1, (s + 1) / 4) for s in range(6)])


# -- Schedule-Free's modes inside the task -------------------------------------------------------------------------
def schedule_free_task():
    from adaptive_lr.data.xor import XORDataModule
    from adaptive_lr.models.mlp import MLP
    from adaptive_lr.tasks import ClassificationTask

    torch.manual_seed(0)
    dm = XORDataModule(n_samples=200, batch_size=10, seed=0)  # 120 train samples: 12 steps an epoch
    optimizer = functools.partial(AdamWScheduleFree, lr=0.05, betas=(0.8, 0.999))
    return dm, ClassificationTask(MLP(2, [4], 1, "tanh"), optimizer, nn.BCEWithLogitsLoss())


def eval_point(optimizer: AdamWScheduleFree) -> list[torch.Tensor]:
    """x, the averaged weights, computed from the train-mode parameters y and the state z (as eval() does)."""
    (group,) = optimizer.param_groups
    assert group["train_mode"]
    beta1 = group["betas"][0]
    return [torch.lerp(p.detach(), optimizer.state[p]["z"], 1 - 1 / beta1) for p in group["params"]]


class ModeRecorder(L.Callback):
    """Records the optimizer's mode at every training and validation batch, and whether each validation batch sees
    the eval point x of the last training step."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bool]] = []  # (stage, train_mode) per batch
        self.expected_x: list[torch.Tensor] | None = None
        self.eval_weights_ok: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.events.append(("train", trainer.optimizers[0].param_groups[0]["train_mode"]))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.expected_x = eval_point(trainer.optimizers[0])

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.events.append(("val", trainer.optimizers[0].param_groups[0]["train_mode"]))
        if self.expected_x is not None:
            self.eval_weights_ok.append(all(torch.allclose(p, x, atol=1e-6)
                                            for p, x in zip(pl_module.parameters(), self.expected_x, strict=True)))


def sf_trainer(callbacks, **kwargs):
    return L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                     use_distributed_sampler=False, callbacks=callbacks, **kwargs)


def test_schedule_free_validates_in_eval_mode_and_trains_in_train_mode_after_mid_epoch_validation():
    dm, task = schedule_free_task()
    recorder = ModeRecorder()
    sf_trainer([recorder], max_epochs=2, val_check_interval=5, num_sanity_val_steps=1,
               enable_checkpointing=False).fit(task, datamodule=dm)
    stages = [stage for stage, _ in recorder.events]
    assert stages.count("val") >= 4 and stages[0] == "val"  # sanity check, then mid-epoch validations
    assert all(not train_mode for stage, train_mode in recorder.events if stage == "val")  # eval mode entered
    assert all(train_mode for stage, train_mode in recorder.events if stage == "train")  # and left again
    follows = [i for i in range(1, len(stages)) if stages[i] == "train" and stages[i - 1] == "val"]
    assert len(follows) >= 3  # training resumed after validations, mid-epoch ones included
    assert recorder.eval_weights_ok and all(recorder.eval_weights_ok)  # validation saw the averaged weights x
    # after fit the module holds x, the eval point after its last step (test and later users see it)
    for p, x in zip(task.parameters(), recorder.expected_x, strict=True):
        assert torch.allclose(p, x, atol=1e-6)


@pytest.mark.filterwarnings("ignore:.*callbacks used to create the checkpoint.*")
def test_schedule_free_test_and_checkpoints_hold_the_averaged_weights(tmp_path: Path):
    dm, task = schedule_free_task()
    seen: dict[str, list[torch.Tensor]] = {}

    class AtEpochEnd(L.Callback):  # runs before ModelCheckpoint (always last): the weights about to be saved
        def on_train_epoch_end(self, trainer, pl_module):
            seen["x"], seen["y"] = eval_point(trainer.optimizers[0]), [p.detach().clone() for p in pl_module.parameters()]

        def on_train_end(self, trainer, pl_module):
            seen["y_end"] = [p.detach().clone() for p in pl_module.parameters()]

    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_on_train_epoch_end=True, save_last=True)
    sf_trainer([AtEpochEnd(), checkpoint], max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0).fit(
        task, datamodule=dm)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    weights = [saved["state_dict"][f"model.{name}"] for name, _ in task.model.named_parameters()]
    for w, x, y in zip(weights, seen["x"], seen["y"], strict=True):
        assert torch.allclose(w, x, atol=1e-6) and not torch.allclose(w, y)  # the eval-mode (averaged) weights
    assert saved["optimizer_states"][0]["param_groups"][0]["train_mode"] is False  # and the matching state
    for p, y in zip(seen["y_end"], seen["y"], strict=True):
        assert torch.allclose(p, y, atol=1e-6)  # training continued from y after the save
    # test sees x; a fit resumed from the checkpoint switches back to train mode and trains on
    tested = {}
    original = task.test_step

    def record(batch, batch_idx):
        tested.setdefault("w", [p.detach().clone() for p in task.model.parameters()])
        return original(batch, batch_idx)

    task.test_step = record
    sf_trainer([], max_epochs=1, enable_checkpointing=False).test(task, datamodule=dm, verbose=False)
    for w, x in zip(tested["w"], seen["x"], strict=True):
        assert torch.allclose(w, x, atol=1e-6)
    dm2, resumed = schedule_free_task()
    sf_trainer([], max_epochs=2, limit_val_batches=0, enable_checkpointing=False).fit(
        resumed, datamodule=dm2, ckpt_path=tmp_path / "last.ckpt")
    assert resumed.trainer.global_step == 2 * 12
