"""The views (`callbacks/views/`): the files, TensorBoard records and numbers each writes, inside real tiny fits.

One shared fit (module scope) runs every view on the 2-2-1 XOR net: 200 points (120 train, batch 32: 4 steps an
epoch), 5 epochs, plain SGD (so the effective LR is exactly the LR and an update is exactly -lr * grad).
"""

from __future__ import annotations

import csv
import functools
import json
import re
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from PIL import Image

from adaptive_lr.callbacks.views import (
    DecisionBoundaryView,
    LatentView,
    ParamView,
    TSNEEmbedding,
    UMAPEmbedding,
    ViewConfigError,
    effective_lr,
)
from adaptive_lr.callbacks.views import latent as latent_module
from adaptive_lr.data.base import InMemoryDataModule
from adaptive_lr.data.xor import XORDataModule
from adaptive_lr.models.mlp import MLP
from adaptive_lr.tasks import ClassificationTask
from adaptive_lr.tracking.loggers import LeanTensorBoardLogger

pytestmark = [pytest.mark.filterwarnings("ignore:.*LeafSpec.*"),
              pytest.mark.filterwarnings("ignore:.*log_every_n_steps.*")]  # 4 steps an epoch, by design

LR = 0.1
EPOCHS = 5
STEPS_PER_EPOCH = 4
PARAMS = ("model.features.1.weight", "model.features.1.bias", "model.head.weight", "model.head.bias")
LATENT_NAME = re.compile(r"epoch_(\d{3})_acc(\d\.\d{4})\.png")


class EpochRecorder(Callback):
    """The task's epoch metrics as every callback sees them at train-epoch end (an independent record)."""

    def __init__(self) -> None:
        self.metrics: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.metrics.append({k: float(v) for k, v in trainer.callback_metrics.items()})


class Blobs(InMemoryDataModule):
    """Three Gaussian classes in 5-D (inputs [N, 5]): a non-2-D classification task."""

    num_outputs = 3

    def load(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        g = torch.Generator().manual_seed(0)
        y = torch.arange(90) % 3
        x = torch.randn(90, 5, generator=g) + 3.0 * torch.nn.functional.one_hot(y, 5).float()
        return (x[:60], y[:60]), (x[60:75], y[60:75]), (x[75:], y[75:])


def fit(root: Path, callbacks: list[Callback], datamodule: L.LightningDataModule | None = None,
        model: torch.nn.Module | None = None, epochs: int = EPOCHS, optimizer: Any = None) -> L.Trainer:
    L.seed_everything(0, verbose=False)
    datamodule = datamodule or XORDataModule(variant="clean", n_samples=200, batch_size=32)
    model = model or MLP(2, [2], 1, activation="tanh")
    loss = torch.nn.BCEWithLogitsLoss() if isinstance(datamodule, XORDataModule) else torch.nn.CrossEntropyLoss()
    module = ClassificationTask(model, optimizer or functools.partial(torch.optim.SGD, lr=LR), loss)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=[LeanTensorBoardLogger(str(root / "tb"))],
                        callbacks=callbacks, default_root_dir=str(root), enable_progress_bar=False,
                        enable_checkpointing=False, num_sanity_val_steps=0, enable_model_summary=False)
    trainer.fit(module, datamodule=datamodule)
    return trainer


def events(root: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(root / "tb"), size_guidance={"histograms": 0, "images": 0, "scalars": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("views")
    recorder = EpochRecorder()
    views = [ParamView(every_n_steps=4, panel_every_n_steps=8, histogram_every_n_steps=8, dpi=40),
             LatentView(TSNEEmbedding(perplexity=5, max_iter=250), viz_every=2, milestones=[1], n_train=40, n_val=20,
                        dpi=40),
             DecisionBoundaryView(every_n_epochs=2, resolution=40, dpi=40)]
    fit(root, [*views, recorder])
    return {"root": root, "epochs": recorder.metrics, "events": events(root), "views": views}


# -- effective LR ----------------------------------------------------------------------------------------------------
def _stepped(optimizer_cls: type, steps: int = 3, **kwargs: Any) -> tuple[torch.optim.Optimizer, torch.Tensor,
                                                                           torch.Tensor, torch.Tensor]:
    """`steps` steps on one parameter with fixed gradients; returns the optimizer, the parameter, its value
    before the last step and the last gradient."""
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5, 3.0]))
    opt = optimizer_cls([p], **kwargs)
    for k in range(steps):
        before = p.detach().clone()
        p.grad = torch.tensor([0.1, -0.2, 1.5, 0.0]) * (k + 1)
        opt.step()
    return opt, p, before, p.grad


@pytest.mark.parametrize("cls,kwargs", [(torch.optim.Adam, {"lr": 0.01}), (torch.optim.AdamW, {"lr": 0.01,
                                        "weight_decay": 0.0}), (torch.optim.Adam, {"lr": 0.01, "amsgrad": True})])
def test_adam_effective_lr_times_bias_corrected_first_moment_is_the_update(cls, kwargs):
    opt, p, before, _ = _stepped(cls, **kwargs)
    lr = effective_lr(opt, opt.param_groups[0], p)
    state = opt.state[p]
    m_hat = state["exp_avg"] / (1 - 0.9 ** 3)
    torch.testing.assert_close(p.detach() - before, -lr * m_hat)
    v = state["max_exp_avg_sq"] if kwargs.get("amsgrad") else state["exp_avg_sq"]
    torch.testing.assert_close(lr, 0.01 / ((v / (1 - 0.999 ** 3)).sqrt() + 1e-8))


def test_sgd_adagrad_and_recorded_effective_lrs():
    opt, p, before, grad = _stepped(torch.optim.SGD, lr=0.3)
    lr = effective_lr(opt, opt.param_groups[0], p)
    assert torch.equal(lr, torch.full((4,), 0.3))
    torch.testing.assert_close(p.detach() - before, -lr * grad)
    opt, p, before, grad = _stepped(torch.optim.Adagrad, lr=0.5, lr_decay=0.1)
    torch.testing.assert_close(p.detach() - before, -effective_lr(opt, opt.param_groups[0], p) * grad)
    from adaptive_lr.optim.rescaled_sgd import RescaledSGD

    opt, p, before, grad = _stepped(RescaledSGD, lr=0.2)
    lr = effective_lr(opt, opt.param_groups[0], p)
    assert lr is opt.state[p]["effective_lr"]
    torch.testing.assert_close(p.detach() - before, -lr * grad)
    opt, p, _, _ = _stepped(torch.optim.RMSprop, lr=0.1)
    assert effective_lr(opt, opt.param_groups[0], p) is None  # not defined: the panel says so


# -- parameter view --------------------------------------------------------------------------------------------------
def test_param_view_summary_rows_are_exact_sgd_numbers(shared):
    with open(shared["root"] / "viz" / "params" / "001" / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    # snapshots at the updates numbered 0, 4, ..., 16 of 20; one row per parameter tensor each
    assert [(int(r["step"]), r["param"]) for r in rows] == [(s, n) for s in range(0, 20, 4) for n in PARAMS]
    for r in rows:
        assert float(r["effective_lr_mean"]) == float(r["effective_lr_min"]) == float(r["effective_lr_max"]) == \
            pytest.approx(LR)
        assert float(r["update_norm"]) == pytest.approx(LR * float(r["grad_norm"]), rel=1e-4)  # SGD: -lr * grad
        assert float(r["update_ratio"]) > 0


def test_param_view_panels_and_tensorboard_histograms(shared):
    folder = shared["root"] / "viz" / "params" / "001"
    assert sorted(p.name for p in folder.glob("*.png")) == ["step_0000000.png", "step_0000008.png",
                                                            "step_0000016.png"]
    assert all(p.stat().st_size > 0 for p in folder.glob("*.png"))
    acc = shared["events"]
    histograms = set(acc.Tags()["histograms"])
    for name in PARAMS:  # every view's tag is in TensorBoard's `views/` group
        assert {f"views/values/{name}", f"views/grads/{name}", f"views/update_ratio_log10/{name}",
                f"views/effective_lr/{name}"} <= histograms
    assert [e.step for e in acc.Histograms("views/values/model.head.weight")] == [0, 8, 16]  # every 8 steps
    assert [e.step for e in acc.Scalars("views/norm/grads/total")] == [0, 4, 8, 12, 16]  # every 4
    assert [e.step for e in acc.Images("views/params/panel")] == [0, 8, 16]
    assert all(tag.startswith("views/") for kind in ("scalars", "histograms", "images") for tag in acc.Tags()[kind]
               if not tag.startswith(("train/", "val/", "lr/", "controller/")))
    # the effective LR histogram of SGD holds LR alone
    h = acc.Histograms("views/effective_lr/model.head.weight")[0].histogram_value
    assert (h.min, h.max, h.num) == pytest.approx((LR, LR, 2))
    # a panel is the same figure redrawn: every PNG has the first one's size
    sizes = {Image.open(p).size for p in folder.glob("*.png")}
    assert len(sizes) == 1


def test_histogram_buckets_counted_on_the_device_match_numpy():
    from adaptive_lr.callbacks.views.params import histogram_stats

    x = torch.tensor([0.5, -1.0, 2.0, 3.0, 0.0, 2.0, -0.25])
    lo, hi, num, total, squares, *counts = histogram_stats(x, buckets=4).tolist()
    expected, _ = np.histogram(x.numpy(), bins=4, range=(-1.0, 3.0))  # numpy's last bucket includes the max too
    assert (lo, hi, num) == (-1.0, 3.0, 7) and counts == expected.tolist()
    assert total == pytest.approx(float(x.sum())) and squares == pytest.approx(float((x * x).sum()))
    valid = x > 0  # only these elements count
    lo, hi, num, total, _, *counts = histogram_stats(x, valid, buckets=2).tolist()
    assert (lo, hi, num, total, counts) == (0.5, 3.0, 4, 7.5, [1, 3])


def test_histogram_of_equal_values_or_no_values_is_one_bucket_or_none():
    from adaptive_lr.callbacks.views.params import histogram_stats, write_histogram

    class Writer:
        def __init__(self):
            self.calls = []

        def add_histogram_raw(self, tag, **kwargs):
            self.calls.append((tag, kwargs))

    writer = Writer()
    write_histogram(writer, "same", histogram_stats(torch.full((5,), 0.1)).tolist(), 3)
    write_histogram(writer, "none", histogram_stats(torch.ones(3), torch.zeros(3, dtype=torch.bool)).tolist(), 3)
    ((tag, kwargs),) = writer.calls
    assert tag == "same" and kwargs["bucket_limits"] == pytest.approx([0.1]) and kwargs["bucket_counts"] == [5]


def test_param_view_validates_its_arguments(tmp_path):
    with pytest.raises(ViewConfigError, match="every_n_steps must be a positive int, got 0"):
        ParamView(every_n_steps=0)
    with pytest.raises(ViewConfigError, match="panel_every_n_steps must be 0 or a multiple of every_n_steps=4, got 6"):
        ParamView(every_n_steps=4, panel_every_n_steps=6)
    with pytest.raises(ViewConfigError, match="histogram_every_n_steps must be a positive multiple of every_n_steps=4"):
        ParamView(every_n_steps=4, panel_every_n_steps=8, histogram_every_n_steps=6)
    with pytest.raises(ViewConfigError, match="viz.params.layer='model.nope' is not a trainable parameter"):
        fit(tmp_path, [ParamView(layer="model.nope")], epochs=1)


# -- latent view -----------------------------------------------------------------------------------------------------
def test_latent_view_files_names_and_progress_table(shared):
    folder = shared["root"] / "viz" / "latent" / "001"
    epochs = shared["epochs"]
    pngs = sorted(p.name for p in folder.glob("*.png"))
    matches = [LATENT_NAME.fullmatch(name) for name in pngs]
    assert all(matches), pngs
    # milestone 1, every 2nd epoch and the last one; the accuracy in the name is that epoch's val_acc
    assert [int(m[1]) for m in matches] == [1, 2, 4, 5]
    assert [m[2] for m in matches] == [f"{epochs[int(m[1]) - 1]['val_acc']:.4f}" for m in matches]
    assert all((folder / name).stat().st_size > 0 for name in pngs)
    lines = (folder / "training_progress.txt").read_text().splitlines()
    assert lines[0].split() == ["epoch", "train_acc", "val_acc", "train_loss", "val_loss"]
    table = [[float(v) for v in line.split()] for line in lines[1:]]
    assert len(table) == EPOCHS
    assert table == [[e + 1, *(pytest.approx(m[k], abs=5e-5) for k in ("train_acc", "val_acc", "train_loss",
                                                                      "val_loss"))] for e, m in enumerate(epochs)]
    meta = json.loads((folder / "run_metadata.json").read_text())
    assert {"run_dir", "classes", "method", "start_time", "umap_available"} <= set(meta)
    assert (meta["run_dir"], meta["classes"], meta["method"], meta["layer"]) == (str(shared["root"]), [0, 1],
                                                                                "tsne", "model.head")
    assert (meta["n_train"], meta["n_val"]) == (40, 20)
    assert [(s["file"], s["epoch"]) for s in meta["snapshots"]] == [(m[0], int(m[1])) for m in matches]


def test_latent_gif_has_one_frame_per_snapshot_and_projector_holds_final_features(shared):
    folder = shared["root"] / "viz" / "latent" / "001"
    with Image.open(folder / "latent.gif") as gif:
        assert gif.n_frames == 4
    assert [e.step for e in shared["events"].Images("views/latent/embedding")] == [1, 2, 4, 5]
    projector = shared["root"] / "tb" / "00005" / "latent"  # add_embedding's folder: global step (the epoch), tag
    tensors = np.loadtxt(projector / "tensors.tsv", delimiter="\t")
    assert tensors.shape == (60, 2)  # 40 train + 20 val samples, the head's 2 input features
    metadata = (projector / "metadata.tsv").read_text().splitlines()
    assert metadata[0] == "label\tsplit" and len(metadata) == 61
    assert [line.split("\t")[1] for line in metadata[1:]] == ["train"] * 40 + ["val"] * 20


def test_a_second_fit_gets_a_new_numbered_folder(shared, tmp_path):
    before = sorted(p.name for p in (shared["root"] / "viz" / "latent" / "001").iterdir())
    root = shared["root"]
    view = LatentView(TSNEEmbedding(perplexity=5, max_iter=250), milestones=[1], n_train=30, n_val=10, dpi=40)
    fit(root, [view], epochs=1)
    assert sorted(p.name for p in (root / "viz" / "latent").iterdir()) == ["001", "002"]
    assert sorted(p.name for p in (root / "viz" / "latent" / "001").iterdir()) == before  # never overwritten
    assert len((root / "viz" / "latent" / "002" / "training_progress.txt").read_text().splitlines()) == 2


def test_latent_view_on_three_classes_marks_as_many_errors_as_the_accuracy_says(tmp_path):
    recorder = EpochRecorder()
    view = LatentView(TSNEEmbedding(perplexity=4, max_iter=250), milestones=[1], n_train=60, n_val=15, dpi=40)
    fit(tmp_path, [view, recorder], datamodule=Blobs(batch_size=16), model=MLP(5, [8], 3), epochs=1)
    meta = json.loads((tmp_path / "viz" / "latent" / "001" / "run_metadata.json").read_text())
    assert meta["classes"] == [0, 1, 2] and meta["n_val"] == 15  # the whole validation split (15 < 300)
    (snapshot,) = meta["snapshots"]
    val_acc = recorder.metrics[0]["val_acc"]
    assert snapshot["file"] == f"epoch_001_acc{val_acc:.4f}.png"
    assert snapshot["misclassified"] == round((1 - val_acc) * 15)  # the subset is the validation split


def test_umap_falls_back_to_tsne_with_one_message(monkeypatch, capsys):
    monkeypatch.setattr(latent_module, "umap_available", lambda: False)
    embedder = UMAPEmbedding(seed=3, perplexity=5)
    assert capsys.readouterr().err == latent_module.UMAP_FALLBACK + "\n"
    assert embedder.name == "tsne"
    x = np.random.default_rng(0).normal(size=(30, 4))
    np.testing.assert_array_equal(embedder.fit_transform(x), TSNEEmbedding(perplexity=5, seed=3).fit_transform(x))
    assert capsys.readouterr().err == ""  # said once, at construction


def test_latent_view_validates_its_arguments(tmp_path):
    with pytest.raises(ViewConfigError, match="viz_every must be a positive int, got 0"):
        LatentView(viz_every=0)
    with pytest.raises(ViewConfigError, match=r"milestones\[\] must be a positive int, got -1"):
        LatentView(milestones=[1, -1])
    with pytest.raises(ViewConfigError, match="perplexity must be a positive number, got 0"):
        TSNEEmbedding(perplexity=0)
    with pytest.raises(ViewConfigError, match="viz.latent.layer='model.nope' is not a module"):
        fit(tmp_path, [LatentView(layer="model.nope")], epochs=1)


# -- decision boundary view ------------------------------------------------------------------------------------------
def test_boundary_images_gif_and_loss_curve(shared):
    folder = shared["root"] / "viz" / "boundary" / "001"
    names = sorted(p.name for p in folder.glob("*.png"))
    assert names == ["epoch_002.png", "epoch_004.png", "epoch_005.png"]  # every 2 epochs and the last
    assert all((folder / n).stat().st_size > 0 for n in names)
    with Image.open(folder / "boundary.gif") as gif:
        assert gif.n_frames == 3
        assert gif.size == Image.open(folder / names[0]).size
    assert [e.step for e in shared["events"].Images("views/boundary/epoch")] == [2, 4, 5]


def test_boundary_refuses_inputs_that_are_not_2d(tmp_path):
    with pytest.raises(ViewConfigError, match=r"needs 2-D inputs \[N, 2\].*inputs are \[60, 5\]"):
        fit(tmp_path, [DecisionBoundaryView()], datamodule=Blobs(batch_size=16), model=MLP(5, [8], 3), epochs=1)


def test_boundary_loss_curve_is_each_epochs_train_loss_and_goes_into_checkpoints(shared):
    view = shared["views"][2]
    assert view.losses == [m["train_loss"] for m in shared["epochs"]]
    restored = DecisionBoundaryView()
    restored.load_state_dict(view.state_dict())
    assert restored.losses == view.losses


# -- config and runner -----------------------------------------------------------------------------------------------
def test_views_are_selected_together_and_land_at_viz_name():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from adaptive_lr.config import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        default = compose("train")
        cfg = compose("train", overrides=["viz=[params,latent,boundary]", "seed=7"])
        umap_cfg = compose("train", overrides=["viz=[latent_umap]"])
    assert default.get("viz") is None  # no view unless asked for
    built = {name: instantiate(spec) for name, spec in cfg.viz.items()}
    assert {name: type(v) for name, v in built.items()} == {"params": ParamView, "latent": LatentView,
                                                            "boundary": DecisionBoundaryView}
    assert isinstance(built["latent"].embedder, TSNEEmbedding) and built["latent"].embedder.seed == 7
    assert list(umap_cfg.viz) == ["latent"]
    assert isinstance(instantiate(umap_cfg.viz.latent).embedder, UMAPEmbedding)


def test_latent_view_through_the_runner_is_an_mlflow_artifact(home, tmp_path_factory):
    from mlflow.tracking import MlflowClient

    from adaptive_lr.config import compose
    from adaptive_lr.runner import run
    from store_support import seed_store, tracking_uri

    seed_store(home, tmp_path_factory)
    cfg = compose(["task=xor_clean", "trainer.max_epochs=2", "data.n_samples=80", "viz=latent",
                   "viz.latent.n_train=30", "viz.latent.n_val=16", "viz.latent.embedder.perplexity=5", "viz.latent.embedder.max_iter=250", "viz.latent.dpi=40"])
    result = run(cfg)

    folder = result.run_dir / "viz" / "latent" / "001"
    assert len((folder / "training_progress.txt").read_text().splitlines()) == 1 + 2
    client = MlflowClient(tracking_uri(home))
    artifacts = {Path(a.path).name for a in client.list_artifacts(result.run_id, "viz/latent/001")}
    assert {"latent.gif", "run_metadata.json", "training_progress.txt"} <= artifacts
    assert sorted(a for a in artifacts if LATENT_NAME.fullmatch(a))[0].startswith("epoch_001_acc")
    assert len([a for a in artifacts if LATENT_NAME.fullmatch(a)]) == 2  # milestone 1 and the last epoch
