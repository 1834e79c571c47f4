"""Writers of tiny datasets in the real on-disk formats (gzipped IDX, CIFAR pickles and image tars, the
vic_elec CSV, UCI's LD2011_2014.txt, an hourly many-series forecasting CSV, Hugging Face `datasets` folders),
shared by the data tests and the bad-input test (a module, as store_support.py is)."""

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
ZONES = ("north", "south", "east")  # the series of the hourly forecasting fixture; east starts 2 days late


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


def cifar100_rows(n: int, offset: int) -> dict[bytes, object]:
    """`cifar_rows` in CIFAR-100's layout: fine label (row * 3) % 100, coarse label 0."""
    rows = cifar_rows(n, offset)
    rows[b"fine_labels"] = [(offset + i) * 3 % 100 for i in range(n)]
    rows[b"coarse_labels"] = [0] * n
    del rows[b"labels"]
    return rows


CIFAR100_SPLITS = (("train", 30, 0), ("test", 6, 50))  # (pickle file, rows, first row number)


def write_cifar100_pickles(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, offset in CIFAR100_SPLITS:
        (folder / name).write_bytes(pickle.dumps(cifar100_rows(n, offset)))


def write_cifar10_pickles(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(5):  # 5 batches of N_TRAIN / 5 rows
        rows = cifar_rows(N_TRAIN // 5, offset=i * N_TRAIN // 5)
        (folder / f"data_batch_{i + 1}").write_bytes(pickle.dumps(rows))
    (folder / "test_batch").write_bytes(pickle.dumps(cifar_rows(N_TEST, offset=100)))


def cifar10_split_rows() -> dict[str, dict[bytes, object]]:
    """The rows `write_cifar10_pickles` writes, per split (the train batches concatenated)."""
    return {"train": cifar_rows(N_TRAIN, 0), "test": cifar_rows(N_TEST, 100)}


def cifar100_split_rows() -> dict[str, dict[bytes, object]]:
    """The rows `write_cifar100_pickles` writes, per split."""
    return {name: cifar100_rows(n, offset) for name, n, offset in CIFAR100_SPLITS}


def png(image: np.ndarray) -> bytes:
    """A [3, 32, 32] uint8 image (channel-major, as in the pickles) as lossless PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(buf, format="PNG")
    return buf.getvalue()


def hf_cifar(rows: dict[str, dict[bytes, object]], label_key: bytes = b"labels", label_column: str = "label",
             num_classes: int = 10):  # noqa: ANN201 - a datasets.DatasetDict, imported lazily
    """The same images as pickle `rows` ({split: rows}) as a Hugging Face DatasetDict laid out like
    uoft-cs/cifar10 (PNG images in `img`, a ClassLabel column)."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image

    features = Features({"img": Image(), label_column: ClassLabel(num_classes=num_classes)})
    out = {}
    for split, r in rows.items():
        images = [{"bytes": png(x), "path": None} for x in np.asarray(r[b"data"]).reshape(-1, 3, 32, 32)]
        labels = list(r[label_key])  # type: ignore[call-overload]
        out[split] = Dataset.from_dict({"img": images, label_column: labels}, features=features)
    return DatasetDict(out)


def hf_imdb(reviews: dict[str, dict[str, list[str]]]):  # noqa: ANN201 - a datasets.DatasetDict
    """The labelled reviews of `write_aclimdb`'s argument as a DatasetDict laid out like stanfordnlp/imdb
    (`text`, `label` 0 = neg, 1 = pos; `unsup` reviews in an `unsupervised` split labelled -1). Rows alternate
    labels, each label's reviews in their aclImdb id order."""
    from itertools import zip_longest

    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    out = {}
    for split, by_label in reviews.items():
        neg, pos = ([(t, y) for t in by_label.get(name, [])] for y, name in enumerate(("neg", "pos")))
        rows = [row for pair in zip_longest(neg, pos) for row in pair if row is not None]
        out[split] = Dataset.from_dict({"text": [t for t, _ in rows], "label": [y for _, y in rows]},
                                       features=features)
    if "unsup" in reviews["train"]:
        texts = reviews["train"]["unsup"]
        out["unsupervised"] = Dataset.from_dict({"text": texts, "label": [-1] * len(texts)},
                                                features=features)
    return DatasetDict(out)


def write_hf(data, folder: Path, form: str) -> Path:  # noqa: ANN001 - a datasets.DatasetDict
    """`data` saved with `save_to_disk` (form "disk") or as one Parquet file per split in the hub's layout
    (`plain_text/<split>-00000-of-00001.parquet`, form "parquet") in `folder`."""
    if form == "disk":
        data.save_to_disk(str(folder))
        return folder
    for split, part in data.items():
        path = folder / "plain_text" / f"{split}-00000-of-00001.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        part.to_parquet(str(path))
    return folder


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


def hourly_zones(days: int = 20, seed: int = 0) -> pd.DataFrame:
    """Hourly load of three zones in long format, another layout than vic_elec: columns ts, zone, load_mw (the
    target), temp_c (a past covariate) and wind_fc (a wind forecast, known ahead: a known-future covariate),
    rows ordered by time with the zones interleaved. Each zone's load is its own level and scale times a daily
    sine (own phase) plus 1.5 x the wind forecast plus a little noise: learnable from the lookback and the
    horizon's wind, while the seasonal-naive forecast misses the wind's change from one day to the next. The
    east zone starts 2 days later (series of unequal length)."""
    g = np.random.default_rng(seed)
    n = days * 24
    times = pd.date_range("2024-03-01", periods=n, freq="h")
    frames = []
    for z, zone in enumerate(ZONES):
        t = np.arange(n)
        wind = g.standard_normal(n)
        shape = 2 * np.sin(2 * np.pi * t / 24 + z) + 1.5 * wind + 0.2 * g.standard_normal(n)
        frame = pd.DataFrame({"ts": times.strftime("%Y-%m-%d %H:%M"), "zone": zone,
                              "load_mw": (100 * (z + 1) + 10 * (z + 1) * shape).round(4),
                              "temp_c": (15 + 5 * np.sin(2 * np.pi * (t - 3) / 24) + g.standard_normal(n)).round(2),
                              "wind_fc": wind.round(4), "order": t})
        frames.append(frame.iloc[48:] if zone == "east" else frame)
    return pd.concat(frames).sort_values(["order", "zone"], kind="stable").drop(columns="order").reset_index(drop=True)


def write_hourly_zones(path: Path, frame: pd.DataFrame | None = None) -> Path:
    """`path` (a CSV) holding `frame`, by default `hourly_zones()`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (hourly_zones() if frame is None else frame).to_csv(path, index=False)
    return path


def write_uci(path: Path, days: int = 4, clients: int = 3) -> pd.DataFrame:
    """`LD2011_2014.txt` in the UCI format (quoted header, `;` separators, comma decimals, 15-min kW, the first
    timestamp 00:15); returns the values as written (timestamps as the index, one column per client)."""
    n = days * 96
    times = pd.date_range("2011-01-01 00:15:00", periods=n, freq="15min")
    t = torch.arange(n, dtype=torch.float64)
    values = pd.DataFrame(
        {
            f"MT_{c + 1:03d}": (
                10 * (c + 1) + (c + 2) * torch.sin(2 * math.pi * t / 96) + 0.25 * (t % 7)
            ).numpy()
            for c in range(clients)
        },
        index=times,
    ).round(6)
    lines = ['"";' + ";".join(f'"{c}"' for c in values.columns)]
    for stamp, row in values.iterrows():
        cells = ";".join(repr(float(v)).replace(".", ",") for v in row)
        lines.append(f'"{stamp:%Y-%m-%d %H:%M:%S}";{cells}')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return values


def hf_load_series(values: pd.DataFrame, layout: str = "rows", split: str = "train",
                   target: str = "consumption_kW"):  # noqa: ANN201 - a datasets.DatasetDict
    """`write_uci`'s values as a Hugging Face DatasetDict with one split: layout "rows" as the hub's
    `autogluon/chronos_datasets` `electricity_15min` (one row per client: `id`, a list of `timestamp`s, a list of
    `target` values), layout "long" one row per (timestamp, client), time-major."""
    from datasets import Dataset, DatasetDict, Features, List, Value

    stamps = list(values.index.to_pydatetime())
    if layout == "rows":
        features = Features({"id": Value("string"), "timestamp": List(Value("timestamp[ms]")),
                             target: List(Value("float64"))})
        part = Dataset.from_dict({"id": list(values.columns), "timestamp": [stamps] * values.shape[1],
                                  target: [values[c].tolist() for c in values.columns]}, features=features)
    else:
        features = Features({"id": Value("string"), "timestamp": Value("timestamp[ms]"), target: Value("float64")})
        long = values.stack().reset_index()  # columns: timestamp, client, value
        times = list(long.iloc[:, 0].dt.to_pydatetime())
        part = Dataset.from_dict({"id": long.iloc[:, 1].tolist(), "timestamp": times,
                                  target: long.iloc[:, 2].tolist()}, features=features)
    return DatasetDict({split: part})
