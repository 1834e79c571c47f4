"""The image tasks (mnist, fashion_mnist, cifar10, cifar100) through the real path: compose the task config, run it
with `runner.run` on tiny fixtures in the real on-disk formats, and check the model swaps and the experiment grids.

The fixture writers are minimal copies of those in tests/data/test_image_datasets.py (which test the formats in
detail); here they only need to produce data the tasks can train on.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest

from adaptive_lr.config import compose
from adaptive_lr.experiment import load_grid
from adaptive_lr.runner import run
from store_support import seed_store

IMAGE_GRIDS = ("mnist-quick", "mnist", "fashion-mnist-quick", "cifar10-quick", "cifar10", "cifar100")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<root>/mnist/*.gz (40 train, 10 test, 28x28) and <root>/cifar10/cifar-10-batches-py (40 train, 10 test)."""
    root = tmp_path_factory.mktemp("image_data")
    rng = np.random.default_rng(0)
    (root / "mnist").mkdir()
    for name, n, shape in (("train", 40, (28, 28)), ("t10k", 10, (28, 28))):
        images, labels = rng.integers(0, 256, (n, *shape), dtype=np.uint8), np.arange(n, dtype=np.uint8) % 10
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
            with gzip.open(root / "mnist" / f"{name}-{kind}-ubyte.gz", "wb") as f:
                f.write(header + array.tobytes())
    pickles = root / "cifar10" / "cifar-10-batches-py"
    pickles.mkdir(parents=True)
    for name, n in [*((f"data_batch_{i}", 8) for i in range(1, 6)), ("test_batch", 10)]:
        rows = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": [i % 10 for i in range(n)]}
        (pickles / name).write_bytes(pickle.dumps(rows))
    return root


@pytest.mark.parametrize(("task", "extra"), [("mnist", []), ("cifar10", ["data.batch_size=16"])])
def test_image_task_runs_end_to_end_on_fixture_files(task, extra, data_dir, home, tmp_path_factory, monkeypatch):
    monkeypatch.delenv("ADAPTIVE_LR_CACHE_DIR", raising=False)
    seed_store(home, tmp_path_factory)
    cfg = compose([f"task={task}", f"data_dir={data_dir}", "trainer.max_epochs=1", "data.val_size=10",
                   "data.download=false", *extra])
    assert cfg.data.cache_dir == str(home / ".cache" / "adaptive-lr")
    result = run(cfg)
    assert result.status == "FINISHED"
    assert set(result.metrics) == {"test_loss", "test_acc"}
    acc = result.metrics["test_acc"]
    assert 0 <= acc <= 1 and acc * 10 == pytest.approx(round(acc * 10))  # a multiple of 1/10: 10 test images
    assert list((home / ".cache" / "adaptive-lr").glob(f"{task}/*.pt"))  # decoded once into the cache


def test_task_configs_pick_dataset_model_and_threshold():
    mnist = compose(["task=mnist"])
    assert (mnist.model._target_, mnist.model.in_features, list(mnist.model.hidden), mnist.model.out_features,
            mnist.model.dropout) == ("adaptive_lr.models.mlp.MLP", 784, [128, 64], 10, 0.5)
    assert (mnist.task.threshold, mnist.data.dataset, mnist.data.batch_size) == (0.97, "mnist", 64)
    fashion = compose(["task=fashion_mnist"])
    assert (fashion.task.name, fashion.data.dataset, fashion.model.in_features) == ("fashion_mnist", "fashion-mnist",
                                                                                    784)
    cifar100 = compose(["task=cifar100"])
    assert (cifar100.task.name, cifar100.data.num_classes, cifar100.model.num_classes) == ("cifar100", 100, 100)
    assert cifar100.model._target_ == "adaptive_lr.models.cnn.SmallCNN"


@pytest.mark.parametrize(("task", "classes"), [("cifar10", 10), ("cifar100", 100)])
@pytest.mark.parametrize(("model", "target"), [("resnet18", "adaptive_lr.models.resnet.ResNet18"),
                                               ("vgg16", "adaptive_lr.models.vgg.VGG16BN")])
def test_cifar_tasks_swap_models_on_the_command_line(task, classes, model, target):
    cfg = compose([f"task={task}", f"model={model}"])
    assert dict(cfg.model) == {"_target_": target, "num_classes": classes, "in_channels": 3}


@pytest.mark.parametrize("grid", IMAGE_GRIDS)
def test_image_grids_compose_every_cell(grid):
    cells = load_grid(grid).cells
    assert len(cells) == 4 * 3 * len({c.task for c in cells})  # 4 schedulers x 3 seeds per task
    quick = grid.endswith("-quick")
    start_lrs = set()
    for cell in cells:
        cfg = compose(cell.overrides)
        assert cfg.data.batch_size == 64
        if quick:  # every schedule starts at the grid's one LR (0.001 or 0.002); the step schedule acts in budget
            start_lrs.add(cfg.lr)
            assert cfg.lr in (0.001, 0.002) and cfg.trainer.max_epochs <= 15
            if cell.scheduler == "step":
                assert 2 * cfg.scheduler.policy.step_size <= cfg.trainer.max_epochs
        else:  # the plan: lr 0.01, fixed baseline at 0.001, 50 epochs, step every 10
            assert cfg.lr == 0.01 and cfg.trainer.max_epochs == 50
            assert cfg.scheduler.policy.get("lr") == (0.001 if cell.scheduler == "fixed" else None)
            if cell.scheduler == "step":
                assert (cfg.scheduler.policy.step_size, cfg.scheduler.policy.gamma) == (10, 0.1)
    assert len(start_lrs) <= 1  # quick grids: the same start for every scheduler
