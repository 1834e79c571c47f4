"""MNIST/Fashion-MNIST (IDX) and CIFAR-10/100 (pickles, image tree, tar.gz) DataModules on tiny fixtures in the real
on-disk formats: decoded values and labels, splits, the cache (written once, under cache_dir, reused), the error
when data is missing, and the batch transforms. Plus the CIFAR models' shapes and sizes."""

from __future__ import annotations

import gzip
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from adaptive_lr.data import cifar as cifar_module
from adaptive_lr.data import mnist as mnist_module
from adaptive_lr.data.cifar import CIFARDataModule
from adaptive_lr.data.mnist import IDX_FILES, MNISTDataModule, read_idx
from adaptive_lr.data.source import DataNotFoundError
from adaptive_lr.data.splits import holdout_split
from adaptive_lr.models.resnet import ResNet18
from adaptive_lr.models.vgg import VGG16BN
from data_fixtures import (
    CLASSES,
    N_TRAIN,
    cifar_rows,
    class_color,
    image_tree,
    write_cifar10_pickles,
    write_cifar100_pickles,
    write_idx,
    write_idx_dataset,
    write_tar_gz,
)

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mnist_data")
    write_idx_dataset(root / "mnist")
    return root


@pytest.fixture(scope="module")
def cifar_pickle_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cifar_pickles")
    write_cifar10_pickles(root / "cifar10" / "cifar-10-batches-py")
    return root


@pytest.fixture(scope="module")
def tree_files() -> dict[str, bytes]:
    return image_tree()


@pytest.fixture(scope="module")
def cifar_tar_root(tmp_path_factory: pytest.TempPathFactory, tree_files: dict[str, bytes]) -> Path:
    root = tmp_path_factory.mktemp("cifar_tar")
    write_tar_gz(root / "cifar10-jpeg" / "cifar10-jpeg.tar.gz", tree_files)
    return root


# -- MNIST / Fashion-MNIST -------------------------------------------------------------------------------------------
def pixel_index(x: torch.Tensor, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> torch.Tensor:
    """Recover pixel (0, 0) (the image number) from standardised flattened inputs."""
    return torch.round((x[:, 0] * std + mean) * 255).long()


def test_mnist_decodes_standardises_and_splits(mnist_root, tmp_path):
    dm = MNISTDataModule(data_dir=mnist_root, cache_dir=tmp_path, download=False, val_size=8)
    (xtr, ytr), (xva, yva), (xte, yte) = dm.splits
    assert (xtr.shape, xva.shape, xte.shape) == ((32, 784), (8, 784), (10, 784))
    assert xtr.dtype == torch.float32 and ytr.dtype == torch.long
    assert dm.input_shape == (784,) and dm.num_outputs == 10
    # values: (v / 255 - mean) / std, pixel (27, 27) = 255 everywhere, zeros elsewhere
    assert xtr[:, -1] == pytest.approx(torch.full((32,), (1 - MNIST_MEAN) / MNIST_STD))
    assert xtr[:, 1] == pytest.approx(torch.full((32,), -MNIST_MEAN / MNIST_STD))
    # labels stay with their images; val and train partition the 40 train images; test is the official set in order
    for x, y in ((xtr, ytr), (xva, yva), (xte, yte)):
        assert torch.equal(y, pixel_index(x) % 10)
    assert sorted(torch.cat([pixel_index(xtr), pixel_index(xva)]).tolist()) == list(range(N_TRAIN))
    assert pixel_index(xte).tolist() == list(range(100, 110))


def test_mnist_split_depends_on_split_seed_only_and_unflattened_shape(mnist_root, tmp_path):
    def val_images(**kw) -> list[int]:
        dm = MNISTDataModule(data_dir=mnist_root, cache_dir=tmp_path, download=False, val_size=8, **kw)
        return pixel_index(dm.splits[1][0].flatten(1)).tolist()

    assert val_images(seed=0) == val_images(seed=5)  # the run seed does not move the split
    assert val_images(split_seed=1) != val_images(split_seed=2)
    dm = MNISTDataModule(data_dir=mnist_root, cache_dir=tmp_path, download=False, val_size=8, flatten=False)
    assert dm.splits[0][0].shape == (32, 1, 28, 28) and dm.input_shape == (1, 28, 28)


def test_mnist_subset_is_stratified(mnist_root, tmp_path):
    dm = MNISTDataModule(data_dir=mnist_root, cache_dir=tmp_path, download=False, val_size=5, subset=12)
    y = dm.splits[0][1]
    assert len(y) == 12
    assert torch.bincount(y, minlength=10).tolist() == [2, 2] + [1] * 8  # 12 // 10 each, one more for classes 0, 1


def test_holdout_split_refuses_bad_sizes():
    labels = torch.arange(10) % 2
    with pytest.raises(ValueError, match=r"data.val_size must be an int in \[1, 9\].*got 10"):
        holdout_split(labels, 10, None, 0, 2)
    with pytest.raises(ValueError, match="data.subset must be a positive int or null, got 0"):
        holdout_split(labels, 2, 0, 0, 2)


def test_mnist_reads_torchvision_layout_and_fashion_folder_with_its_statistics(tmp_path):
    root = tmp_path / "data"
    write_idx_dataset(root / "MNIST" / "raw")
    write_idx_dataset(root / "fashion-mnist")
    mnist = MNISTDataModule(data_dir=root, cache_dir=tmp_path / "cache", download=False, val_size=5)
    assert mnist.source_dir() == root / "MNIST" / "raw"
    assert pixel_index(mnist.splits[2][0]).tolist() == list(range(100, 110))
    fashion = MNISTDataModule(dataset="fashion-mnist", data_dir=root, cache_dir=tmp_path / "cache", download=False,
                              val_size=5)
    assert fashion.source_dir() == root / "fashion-mnist"
    assert fashion.splits[2][0][:, -1] == pytest.approx(torch.full((10,), (1 - 0.2860) / 0.3530))


def test_mnist_cache_is_written_under_cache_dir_once_and_reused(mnist_root, tmp_path, monkeypatch):
    before = files_under(mnist_root)
    cache = tmp_path / "cache"
    first = MNISTDataModule(data_dir=mnist_root, cache_dir=cache, download=False, val_size=8).splits
    cached_files = files_under(cache)
    assert len(cached_files) == 1 and cached_files.pop().startswith("mnist/idx-")
    assert files_under(mnist_root) == before  # nothing written into the data directory

    def fail(folder):
        raise AssertionError("decoded again")

    monkeypatch.setattr(mnist_module, "decode_idx", fail)
    second = MNISTDataModule(data_dir=mnist_root, cache_dir=cache, download=False, val_size=8).splits
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, second, strict=True))
    with pytest.raises(AssertionError, match="decoded again"):  # a fresh cache decodes (the patch is in force)
        MNISTDataModule(data_dir=mnist_root, cache_dir=tmp_path / "other", download=False, val_size=8).setup()


MISSING = {  # dataset: (its DataModule, the data-directory folders searched, what the message says to put there)
    "mnist": (MNISTDataModule, ("mnist", "MNIST/raw"), (*IDX_FILES, "data.download=true")),
    "cifar10": (CIFARDataModule, ("cifar10", "cifar10-jpeg"),
                ("cifar-10-batches-py/{data_batch_1,data_batch_2,data_batch_3,data_batch_4,data_batch_5,test_batch}",
                 "train/<class>/*.jpg and test/<class>/*.jpg", "cifar10-jpeg.tar.gz", "data.download=true")),
}


@pytest.mark.parametrize("dataset", MISSING)
def test_missing_data_error_names_dataset_folders_and_files(tmp_path, dataset):
    module, folders, expected = MISSING[dataset]
    dm = module(data_dir=tmp_path / "empty", cache_dir=tmp_path / "cache", download=False)
    with pytest.raises(DataNotFoundError) as err:
        dm.setup()
    msg = str(err.value)
    assert msg.startswith(f"{dataset}: data not found. Searched: ")
    for part in [tmp_path / "empty" / folder for folder in folders] + [tmp_path / "cache" / dataset]:
        assert str(part) in msg
    assert all(text in msg for text in expected), msg


def test_a_failed_download_is_a_data_not_found_error_naming_the_folders(tmp_path, monkeypatch):
    from urllib.error import URLError

    import torchvision.datasets

    def offline(*args, **kwargs):  # what torchvision raises without network
        raise URLError("no route to host")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    dm = MNISTDataModule(data_dir=tmp_path / "empty", cache_dir=tmp_path / "cache", download=True)
    with pytest.raises(DataNotFoundError, match=r"^mnist: data not found\. Searched: .*empty.*"
                                                r"The download failed \(<urlopen error no route to host>\)"):
        dm.setup()


def test_idx_reader_checks_magic_and_size(tmp_path):
    path = tmp_path / "labels.gz"
    write_idx(path, np.arange(5))
    assert read_idx(path, 0x801).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"IDX magic number 0x00000801, expected 0x00000803"):
        read_idx(path, 0x803)
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + (6).to_bytes(4, "big") + bytes(5))
    with pytest.raises(ValueError, match=r"IDX dims \(6,\) need 6 bytes of data, found 5"):
        read_idx(path, 0x801)


def test_mnist_refuses_an_unknown_dataset():
    with pytest.raises(ValueError, match=r"data.dataset must be one of \['fashion-mnist', 'mnist'\], got 'kmnist'"):
        MNISTDataModule(dataset="kmnist")


# -- CIFAR -----------------------------------------------------------------------------------------------------------
def normalized(x: torch.Tensor, mean=CIFAR10_MEAN, std=CIFAR10_STD) -> torch.Tensor:
    return (x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def test_cifar10_pickles_decode_channel_major_with_labels(cifar_pickle_root, tmp_path):
    dm = CIFARDataModule(data_dir=cifar_pickle_root, cache_dir=tmp_path, download=False, val_size=10)
    assert dm.source().kind == "pickles"
    (xtr, ytr), (xva, yva), (xte, yte) = dm.splits
    assert (xtr.shape, xva.shape, xte.shape) == ((30, 3, 32, 32), (10, 3, 32, 32), (10, 3, 32, 32))
    assert xtr.dtype == torch.uint8 and ytr.dtype == torch.long and dm.num_outputs == 10
    for x, y in ((xtr, ytr), (xva, yva), (xte, yte)):
        assert torch.equal(y, x[:, 0, 0, 1].long() % 10)  # the row number sits at R(0, 1)
        assert set(x[:, 1].unique().tolist()) == {20} and set(x[:, 2].unique().tolist()) == {30}
        assert x[:, 0, 0, 0].tolist() == [10] * len(x) and x[:, 0, 1, 1].tolist() == [10] * len(x)
    assert sorted(torch.cat([xtr, xva])[:, 0, 0, 1].tolist()) == list(range(N_TRAIN))
    assert xte[:, 0, 0, 1].tolist() == list(range(100, 110))


def test_cifar100_pickles_use_fine_labels(tmp_path):
    write_cifar100_pickles(tmp_path / "data" / "cifar100" / "cifar-100-python")
    dm = CIFARDataModule(num_classes=100, data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", download=False,
                         val_size=5)
    assert dm.num_outputs == 100
    (xtr, ytr), _, (xte, yte) = dm.splits
    assert torch.equal(ytr, xtr[:, 0, 0, 1].long() * 3 % 100)
    assert yte.tolist() == [(50 + i) * 3 % 100 for i in range(6)]
    cached_files = files_under(tmp_path / "cache")
    assert len(cached_files) == 1 and cached_files.pop().startswith("cifar100/pickles-")


def test_cifar_pickle_without_label_key_is_refused(tmp_path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    write_cifar10_pickles(folder)
    rows = cifar_rows(4, 0)
    del rows[b"labels"]
    (folder / "test_batch").write_bytes(pickle.dumps(rows))
    dm = CIFARDataModule(data_dir=tmp_path, cache_dir=tmp_path / "cache", download=False, val_size=5)
    with pytest.raises(ValueError, match=r"test_batch: no \[b'labels'\] in this CIFAR pickle; keys: \[b'data'\]"):
        dm.setup()


def check_tree_images(dm: CIFARDataModule) -> None:
    """Labels are sorted class indices; every image is its class's solid colour (JPEG within 3 levels, PNG exact)."""
    raw = dm.raw()
    assert raw["x_train"].shape == (20, 3, 32, 32) and raw["x_test"].shape == (10, 3, 32, 32)
    assert raw["y_train"].tolist() == [k for k in range(10) for _ in range(2)]  # ordered by (class, file name)
    assert raw["y_test"].tolist() == list(range(10))
    for x, y in ((raw["x_train"], raw["y_train"]), (raw["x_test"], raw["y_test"])):
        colors = torch.tensor([class_color(k) for k in y.tolist()]).view(-1, 3, 1, 1)
        assert (x.int() - colors).abs().max() <= 3
    bird = sorted(CLASSES).index("bird")
    png = raw["x_train"][2 * bird + 1]
    assert torch.equal(png, torch.tensor(class_color(bird), dtype=torch.uint8).view(3, 1, 1).expand(3, 32, 32))


def test_cifar10_tar_gz_tree_is_read_in_memory_with_sorted_classes(cifar_tar_root, tmp_path):
    before = files_under(cifar_tar_root)
    dm = CIFARDataModule(data_dir=cifar_tar_root, cache_dir=tmp_path / "cache", download=False, val_size=5)
    assert dm.source().kind == "archive"
    check_tree_images(dm)
    assert files_under(cifar_tar_root) == before == {"cifar10-jpeg/cifar10-jpeg.tar.gz"}  # nothing extracted
    cached_files = files_under(tmp_path / "cache")
    assert len(cached_files) == 1 and cached_files.pop().startswith("cifar10/archive-")


def test_cifar10_image_folder_tree_gives_the_same_tensors(tree_files, tmp_path):
    root = tmp_path / "data"
    for name, data in tree_files.items():
        (root / "cifar10" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "cifar10" / name).write_bytes(data)
    (root / "cifar10" / "train" / "cat" / ".DS_Store").write_bytes(b"x")  # not an image: ignored
    dm = CIFARDataModule(data_dir=root, cache_dir=tmp_path / "cache", download=False, val_size=5)
    assert dm.source().kind == "tree"
    check_tree_images(dm)


def test_cifar10_tree_with_a_missing_class_is_refused(tree_files, tmp_path):
    files = {k: v for k, v in tree_files.items() if not k.startswith("train/dog/")}
    write_tar_gz(tmp_path / "cifar10" / "cifar10-jpeg.tar.gz", files)
    dm = CIFARDataModule(data_dir=tmp_path, cache_dir=tmp_path / "cache", download=False, val_size=5)
    with pytest.raises(ValueError, match=r"cifar10-jpeg.tar.gz: found 9 train classes, expected 10"):
        dm.setup()


def test_cifar_pickles_take_precedence_over_an_archive_in_the_same_folder(cifar_pickle_root, tree_files, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(cifar_pickle_root / "cifar10", root / "cifar10")
    write_tar_gz(root / "cifar10" / "cifar10-jpeg.tar.gz", tree_files)
    assert CIFARDataModule(data_dir=root, cache_dir=tmp_path / "cache", download=False).source().kind == "pickles"


def test_cifar_cache_is_reused_without_decoding(cifar_tar_root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = CIFARDataModule(data_dir=cifar_tar_root, cache_dir=cache, download=False, val_size=5).raw()

    def fail(self):
        raise AssertionError("decoded again")

    monkeypatch.setattr(cifar_module.ArchiveSource, "decode", fail)
    second = CIFARDataModule(data_dir=cifar_tar_root, cache_dir=cache, download=False, val_size=5).raw()
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    with pytest.raises(AssertionError, match="decoded again"):
        CIFARDataModule(data_dir=cifar_tar_root, cache_dir=tmp_path / "other", download=False).raw()


def test_cifar_loaders_normalise_and_augment_whole_uint8_batches(cifar_pickle_root, tmp_path):
    dm = CIFARDataModule(data_dir=cifar_pickle_root, cache_dir=tmp_path, download=False, val_size=10,
                         batch_size=8, eval_batch_size=4)
    (xva, yva), (xte, _) = dm.splits[1], dm.splits[2]
    x, y = next(iter(dm.val_dataloader()))
    assert x.dtype == torch.float32 and torch.allclose(x, normalized(xva[:4])) and torch.equal(y, yva[:4])
    assert torch.allclose(torch.cat([b[0] for b in dm.test_dataloader()]), normalized(xte))
    train = list(dm.train_dataloader())
    assert [len(b[0]) for b in train] == [8, 8, 8, 6]
    xb = train[0][0]
    assert xb.shape == (8, 3, 32, 32) and xb.dtype == torch.float32
    # crops pad with zeros: a shifted batch has raw 0 pixels, which no source pixel has (all >= 10)
    zero = normalized(torch.zeros(1, 3, 1, 1, dtype=torch.uint8))
    assert torch.isclose(xb, zero).all(dim=1).any()
    plain = CIFARDataModule(data_dir=cifar_pickle_root, cache_dir=tmp_path, download=False, val_size=10, batch_size=8,
                            augment=False)
    xb = next(iter(plain.train_dataloader()))[0]
    assert not torch.isclose(xb, zero).all(dim=1).any()
    assert set(torch.round((xb[:, 1] * CIFAR10_STD[1] + CIFAR10_MEAN[1]) * 255).unique().tolist()) == {20.0}


def test_cifar_subset_is_stratified_and_bad_settings_are_refused(cifar_pickle_root, tmp_path):
    dm = CIFARDataModule(data_dir=cifar_pickle_root, cache_dir=tmp_path, download=False, val_size=5, subset=10)
    assert torch.bincount(dm.splits[0][1], minlength=10).tolist() == [1] * 10
    with pytest.raises(ValueError, match=r"data.num_classes must be one of \[10, 100\].*got 20"):
        CIFARDataModule(num_classes=20)
    with pytest.raises(ValueError, match="data.crop_padding must be a non-negative int, got -1"):
        CIFARDataModule(crop_padding=-1)


# -- models ----------------------------------------------------------------------------------------------------------
def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet18_shape_and_parameter_count():
    assert ResNet18(num_classes=10)(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    with torch.device("meta"):  # sizes and shapes without initialising 11M weights again
        assert n_params(ResNet18(num_classes=10)) == 11_173_962  # the CIFAR ResNet-18's published size
        assert n_params(ResNet18(num_classes=100)) == 11_173_962 + 90 * 513  # only the head grows
        assert ResNet18(num_classes=100)(torch.zeros(2, 3, 32, 32)).shape == (2, 100)


def test_vgg16_bn_shape_and_parameter_count():
    assert VGG16BN(num_classes=10)(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    with torch.device("meta"):
        model = VGG16BN(num_classes=10)
        assert n_params(model) == 14_724_042
        assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 13
        assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 13
        assert VGG16BN(num_classes=100)(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
