"""Writers of tiny datasets in the real on-disk formats (gzipped IDX, CIFAR pickles and image tars, the
vic_elec CSV), shared by the data tests and the bad-input test (a module, as store_support.py is)."""

from __future__ import annotations

import gzip
import io
import math
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from adaptive_lr.data.mnist import IDX_FILES

N_TRAIN, N_TEST = 40, 10  # images per split of the IDX and CIFAR fixtures
# created in this (unsorted) order; labels follow the sorted names, as torchvision's ImageFolder does
CLASSES = ("truck", "airplane", "ship", "bird", "frog", "cat", "horse", "deer", "dog", "automobile")
DAYS = 10  # of the vic_elec fixture: 480 half-hours


def write_idx(path: Path, array: np.ndarray) -> None:
    """A gzipped IDX file: magic (0, 0, type 0x08 = ubyte, ndim), big-endian int32 dims, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def mnist_arrays(n: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Image i has pixel (0, 0) = offset + i and pixel (27, 27) = 255, label (offset + i) % 10."""
    x = np.zeros((n, 28, 28), dtype=np.uint8)
    x[:, 0, 0] = offset + np.arange(n)
    x[:, 27, 27] = 255
    return x, (offset + np.arange(n)) % 10


def write_idx_dataset(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (xtr, ytr), (xte, yte) = mnist_arrays(N_TRAIN), mnist_arrays(N_TEST, offset=100)
    for name, array in zip(IDX_FILES, (xtr, ytr, xte, yte), strict=True):
        write_idx(folder / name, array)


def cifar_rows(n: int, offset: int) -> dict[bytes, object]:
    """Rows in torchvision's layout (R plane, G plane, B plane, each row-major): R=10 but pixel (0, 1) = row number,
    G=20, B=30; label row % 10."""
    data = np.concatenate([np.full((n, 1024), v, dtype=np.uint8) for v in (10, 20, 30)], axis=1)
    data[:, 1] = offset + np.arange(n)
    return {b"data": data, b"labels": [(offset + i) % 10 for i in range(n)]}


def write_cifar10_pickles(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(5):  # 5 batches of N_TRAIN / 5 rows
        rows = cifar_rows(N_TRAIN // 5, offset=i * N_TRAIN // 5)
        (folder / f"data_batch_{i + 1}").write_bytes(pickle.dumps(rows))
    (folder / "test_batch").write_bytes(pickle.dumps(cifar_rows(N_TEST, offset=100)))


def class_color(k: int) -> tuple[int, int, int]:
    return (25 * k, 200 - 20 * k, 50)


def image_tree() -> dict[str, bytes]:
    """{relative path: encoded image} of a CIFAR-10 ImageFolder tree: 2 train + 1 test image per class, solid colour
    of the class's sorted index; one train image is a PNG (lossless), the rest JPEG."""
    from PIL import Image

    files: dict[str, bytes] = {}
    for name in CLASSES:
        k = sorted(CLASSES).index(name)
        for split, count in (("train", 2), ("test", 1)):
            for j in range(count):
                png = name == "bird" and split == "train" and j == 1
                buf = io.BytesIO()
                Image.new("RGB", (32, 32), class_color(k)).save(buf, format="PNG" if png else "JPEG", quality=95)
                files[f"{split}/{name}/{j:04d}.{'png' if png else 'jpg'}"] = buf.getvalue()
    return files


def write_tar_gz(path: Path, files: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def write_vic_elec(folder: Path, days: int = DAYS, missing_row: int | None = None) -> Path:
    """`<folder>/electricity/vic_elec.csv` in the real column format: a daily sine demand plus noise."""
    g = torch.Generator().manual_seed(0)
    n = days * 48
    t = torch.arange(n, dtype=torch.float64)
    demand = (
        4000 + 800 * torch.sin(2 * math.pi * t / 48) + 50 * torch.randn(n, generator=g, dtype=torch.float64)
    )
    temperature = (
        20 + 5 * torch.sin(2 * math.pi * (t - 6) / 48) + torch.randn(n, generator=g, dtype=torch.float64)
    )
    times = pd.date_range("2011-12-31T13:00:00Z", periods=n, freq="30min")
    frame = pd.DataFrame(
        {
            "Time": times.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Demand": demand.numpy().round(6),
            "Temperature": temperature.numpy().round(2),
            "Date": (times + pd.Timedelta(hours=11)).strftime("%Y-%m-%d"),
            "Holiday": ["TRUE" if i < 48 else "FALSE" for i in range(n)],
        }
    )
    if missing_row is not None:
        frame["Demand"] = frame["Demand"].astype(object)
        frame.loc[missing_row, "Demand"] = ""
    path = folder / "electricity" / "vic_elec.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path
