"""Hugging Face `datasets` sources (data/hf.py) of CIFAR-10/100, IMDB and electricity load, offline: tiny datasets
written with `datasets` itself (save_to_disk and Parquet) give the same tensors and `data_checksum` as the same
content through the torchvision pickles / aclImdb / UCI text sources, are decoded once and cached, `source=hf`
(electricity: `data.source.location=hf`) goes to the hub id through `load_dataset` (stubbed, or failing offline),
and bad inputs are one-line `DataError`s naming the file and column."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from adaptive_lr.data.cifar import CIFARDataModule
from adaptive_lr.data.electricity import UCI_HF, UCIElectricity
from adaptive_lr.data.forecast import ForecastDataModule
from adaptive_lr.data.hf import DiskLocation, HFDataset, HFSeries
from adaptive_lr.data.imdb import IMDBDataModule, write_aclimdb
from adaptive_lr.data.source import DataError, DataNotFoundError
from adaptive_lr.data.text import WordVocabTokenizer
from data_fixtures import (
    cifar10_split_rows,
    cifar100_split_rows,
    hf_cifar,
    hf_imdb,
    hf_load_series,
    write_cifar10_pickles,
    write_cifar100_pickles,
    write_hf,
    write_uci,
)

FORMS = ("disk", "parquet")
REVIEWS = {
    "train": {"neg": [f"mn{i} a bad movie" for i in range(5)],
              "pos": [f"mp{i} a great movie" for i in range(5)],
              "unsup": ["unsupword never labelled"]},
    "test": {"neg": ["bad", "awful film"], "pos": ["great", "loved it"]},
}


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reaches the hub: offline mode (read by `datasets` and the hub client at import, so patched in
    their config too), and their default caches in the test's folder."""
    import datasets.config
    import huggingface_hub.constants

    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-home" / "datasets")


def cifar(num_classes: int, root: Path, cache: Path, **kw) -> CIFARDataModule:
    return CIFARDataModule(num_classes=num_classes, val_size=5, data_dir=root, cache_dir=cache,
                           download=False, **kw)


def pickles_and_hf(num_classes: int, root: Path, form: str) -> tuple[Path, Path]:
    """(data_dir holding torchvision's pickles, folder holding the same images written by `datasets`)."""
    if num_classes == 10:
        write_cifar10_pickles(root / "pickles" / "cifar10" / "cifar-10-batches-py")
        data = hf_cifar(cifar10_split_rows())
    else:
        write_cifar100_pickles(root / "pickles" / "cifar100" / "cifar-100-python")
        data = hf_cifar(cifar100_split_rows(), b"fine_labels", "fine_label", 100)
    return root / "pickles", write_hf(data, root / "hf", form)


def assert_same_splits(a, b) -> None:  # noqa: ANN001 - two DataModules
    for split_a, split_b in zip(a.splits, b.splits, strict=True):
        assert len(split_a) == len(split_b) and all(torch.equal(p, q) for p, q in zip(split_a, split_b, strict=True))
    assert a.fingerprint() == b.fingerprint()  # the run's data_checksum does not depend on the source


# -- CIFAR ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("num_classes", [10, 100])
def test_cifar_from_a_datasets_folder_equals_the_same_images_as_pickles(tmp_path, num_classes, form):
    pickles, folder = pickles_and_hf(num_classes, tmp_path, form)
    from_pickles = cifar(num_classes, pickles, tmp_path / "cache")
    from_hf = cifar(num_classes, None, tmp_path / "cache", source=str(folder))
    assert from_pickles.source().kind == "pickles" and from_hf.source().kind == "hf-disk"
    assert from_hf.hf.label_column == ("label" if num_classes == 10 else "fine_label")
    assert_same_splits(from_pickles, from_hf)
    raw = from_hf.raw()
    assert raw["x_train"].dtype == torch.uint8 and raw["y_test"].dtype == torch.long
    assert len(raw["y_train"]) == (40 if num_classes == 10 else 30)
    cache_folder = tmp_path / "cache" / f"cifar{num_classes}"
    cached = sorted(p.name.rsplit("-", 1)[0] for p in cache_folder.glob("*.pt"))
    assert cached == ["hf-disk", "pickles"]  # each source's tensors under the one cache folder


def test_cifar_hf_source_is_decoded_once_and_read_from_the_cache(tmp_path, monkeypatch):
    _, folder = pickles_and_hf(10, tmp_path, "parquet")
    cache = tmp_path / "cache"
    first = cifar(10, None, cache, source=str(folder)).raw()
    assert [p.name[:8] for p in (cache / "cifar10").glob("*.pt")] == ["hf-disk-"]

    def no_loading(self, cache_dir):
        raise AssertionError("loaded again")

    monkeypatch.setattr(DiskLocation, "load", no_loading)
    second = cifar(10, None, cache, source=str(folder)).raw()
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    with pytest.raises(AssertionError, match="loaded again"):  # another cache decodes (the patch is in force)
        cifar(10, None, tmp_path / "other", source=str(folder)).raw()
    with pytest.raises(AssertionError, match="loaded again"):  # other columns are other tensors
        cifar(10, None, cache, source=str(folder), hf=HFDataset("uoft-cs/cifar10", "img", "other")).raw()


def test_source_hf_loads_the_hub_id_into_the_project_cache(tmp_path, monkeypatch):
    import datasets

    _, folder = pickles_and_hf(10, tmp_path, "disk")
    calls = []

    def hub(path, cache_dir):  # what load_dataset returns for uoft-cs/cifar10, without the network
        calls.append((path, cache_dir))
        return datasets.load_from_disk(str(folder))

    monkeypatch.setattr(datasets, "load_dataset", hub)
    cache = tmp_path / "cache"
    dm = cifar(10, tmp_path / "pickles", cache, source="hf")  # forced: the pickles in data_dir are not read
    assert dm.source().kind == "hf-hub"
    assert torch.equal(dm.raw()["x_test"], cifar(10, tmp_path / "pickles", cache).raw()["x_test"])
    assert calls == [("uoft-cs/cifar10", str(cache / "huggingface" / "datasets"))]
    cifar(10, None, cache, source="hf").raw()
    assert len(calls) == 1  # cached under the hub id: not loaded again


def test_source_hf_offline_without_a_copy_is_a_data_not_found_error(tmp_path):
    dm = cifar(100, None, tmp_path / "cache", source="hf")
    with pytest.raises(DataNotFoundError, match=r"^cifar100: data not found\. Searched: .*huggingface.*"
                       r"Hugging Face dataset uoft-cs/cifar100.*The download failed"):
        dm.raw()


@pytest.mark.parametrize("source", ["nowhere", "", None])
def test_a_source_that_is_no_folder_is_refused(tmp_path, source):
    with pytest.raises(DataNotFoundError, match=rf"data.source={source!r} is neither 'auto', 'hf' nor a "):
        cifar(10, None, tmp_path, source=source).raw()


# -- IMDB ----------------------------------------------------------------------------------------------------
def imdb(cache: Path, data_dir: Path | None = None, **kw) -> IMDBDataModule:
    return IMDBDataModule(tokenizer=WordVocabTokenizer(vocab_size=100), max_len=6, val_size=3, split_seed=0,
                          data_dir=data_dir, cache_dir=cache, download=False, **kw)


@pytest.mark.parametrize("form", FORMS)
def test_imdb_from_a_datasets_folder_equals_the_aclimdb_folder_and_is_cached(tmp_path, monkeypatch, form):
    (tmp_path / "acl" / "imdb").mkdir(parents=True)
    write_aclimdb(tmp_path / "acl" / "imdb", REVIEWS)
    folder = write_hf(hf_imdb(REVIEWS), tmp_path / "hf", form)
    acl, hf = imdb(tmp_path / "cache", tmp_path / "acl"), imdb(tmp_path / "cache", source=str(folder))
    assert_same_splits(acl, hf)  # rows alternate labels: put in (label, row) order like aclImdb's (label, id)
    assert hf.tokenizer.itos == acl.tokenizer.itos and "unsupword" not in hf.tokenizer.stoi
    assert hf.cache_file != acl.cache_file and hf.cache_file.parent == tmp_path / "cache" / "imdb"

    def no_loading(self, cache_dir):
        raise AssertionError("loaded again")

    with monkeypatch.context() as patch:
        patch.setattr(DiskLocation, "load", no_loading)
        again = imdb(tmp_path / "cache", source=str(folder))
        assert_same_splits(hf, again)
        assert again.tokenizer.itos == hf.tokenizer.itos
    shutil.rmtree(folder)  # the cache key holds the files' identities: a changed copy is read again
    write_hf(hf_imdb({**REVIEWS, "test": {"neg": ["bad"], "pos": ["great", "a great film"]}}), folder, form)
    assert len(imdb(tmp_path / "cache", source=str(folder)).splits[2][1]) == 3


def test_imdb_auto_download_goes_to_the_hub_id_and_fails_offline_with_one_message(tmp_path):
    dm = IMDBDataModule(data_dir=tmp_path / "empty", cache_dir=tmp_path / "cache", download=True)
    with pytest.raises(DataNotFoundError) as err:
        dm.setup()
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("imdb: data not found. Searched: ")
    assert str(tmp_path / "empty" / "imdb") in msg and "aclImdb-labelled.tar.gz" in msg
    assert "Hugging Face dataset stanfordnlp/imdb" in msg and "The download failed" in msg


# -- bad inputs ----------------------------------------------------------------------------------------------
def rename_image_column(root: Path) -> tuple[Path, dict]:
    data = hf_cifar(cifar10_split_rows()).rename_column("img", "image")
    return write_hf(data, root, "disk"), {"num_classes": 10}


def string_labels(root: Path) -> tuple[Path, dict]:
    from datasets import Value

    data = hf_cifar(cifar100_split_rows(), b"fine_labels", "fine_label", 100)
    data = data.cast_column("fine_label", Value("int64")).cast_column("fine_label", Value("string"))
    return write_hf(data, root, "parquet"), {"num_classes": 100}


def labels_out_of_range(root: Path) -> tuple[Path, dict]:
    return write_hf(hf_cifar(cifar100_split_rows(), b"fine_labels", "fine_label", 100), root, "disk"), \
        {"num_classes": 10, "hf": HFDataset("x", "img", "fine_label")}


def cifar_case(make):  # noqa: ANN001, ANN201
    def load(root: Path, cache: Path) -> None:
        folder, kw = make(root)
        cifar(kw.pop("num_classes"), None, cache, source=str(folder), **kw).raw()
    return load


def imdb_case(make):  # noqa: ANN001, ANN201
    def load(root: Path, cache: Path) -> None:
        imdb(cache, source=str(make(root))).setup()
    return load


def unreadable_parquet(root: Path) -> Path:
    folder = write_hf(hf_imdb(REVIEWS), root, "parquet")
    (folder / "plain_text" / "train-00000-of-00001.parquet").write_bytes(b"PAR1 not really parquet")
    return folder


def no_test_split(root: Path) -> Path:
    folder = write_hf(hf_imdb(REVIEWS), root, "parquet")
    (folder / "plain_text" / "test-00000-of-00001.parquet").unlink()
    return folder


def numbers_as_text(root: Path) -> Path:
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"text": Value("int64"), "label": ClassLabel(names=["neg", "pos"])})
    part = Dataset.from_dict({"text": [1, 2], "label": [0, 1]}, features=features)
    return write_hf(DatasetDict({"train": part, "test": part}), root, "disk")


def one_label_only(root: Path) -> Path:
    return write_hf(hf_imdb({s: {"neg": r["neg"]} for s, r in REVIEWS.items()}), root, "disk")


@pytest.mark.parametrize(("load", "match"), [
    (cifar_case(rename_image_column), r"hf train split has no column 'img' \(it has \['image', 'label'\]\)"),
    (cifar_case(string_labels), r"hf train: column 'fine_label' holds Value\('string'.*expected integer"),
    (cifar_case(labels_out_of_range), r"hf train: column 'fine_label' has labels \[12, 15, 18, 21, 24\] out"),
    (imdb_case(unreadable_parquet), r"train-00000-of-00001.parquet is not a readable Parquet file"),
    (imdb_case(no_test_split), r"hf has no test split: expected .*test\*\.parquet"),
    (imdb_case(numbers_as_text), r"hf train: column 'text' holds Value\('int64'.*expected text"),
    (imdb_case(one_label_only), r"hf has no labelled train/pos reviews; expected both labels .*'label'"),
], ids=["cifar10-missing-column", "cifar100-string-labels", "cifar-label-range", "imdb-unreadable-parquet",
        "imdb-no-test-split", "imdb-text-type", "imdb-one-label"])
def test_bad_datasets_inputs_are_one_line_data_errors_naming_the_file_and_column(tmp_path, load, match):
    with pytest.raises(DataError, match=match) as err:
        load(tmp_path / "hf", tmp_path / "cache")
    assert "\n" not in str(err.value)


# -- electricity load (UCI ElectricityLoadDiagrams20112014) --------------------------------------------------------
LAYOUTS = ("rows", "long")  # one row per client with list columns (as the hub's copy), one row per time step


@pytest.fixture(scope="module")
def uci(tmp_path_factory: pytest.TempPathFactory):
    """(data_dir holding LD2011_2014.txt, the values written: 4 days x 96 quarter-hours x 3 clients)."""
    root = tmp_path_factory.mktemp("uci")
    return root, write_uci(root / "electricity" / "LD2011_2014.txt")


def load_dm(cache: Path, data_dir: Path | None = None, **source) -> ForecastDataModule:
    dm = ForecastDataModule(UCIElectricity(**source), lookback=8, horizon=4, season=24, stride=2,
                            data_dir=data_dir, cache_dir=cache, download=False)
    dm.setup()
    return dm


def test_electricity_uci_set_in_hf_layouts_equals_the_uci_text_file(uci, tmp_path):
    """Both layouts, both forms, hourly and quarter-hourly: the same windows and data_checksum as the text file."""
    root, values = uci
    for settings in ({"clients": 2}, {"clients": ("MT_003", "MT_001"), "freq": "1h", "start": "2011-01-01 06:00"}):
        text = load_dm(tmp_path / "cache", root, **settings)
        assert text.source.location == "auto"
        for layout in LAYOUTS:
            for form in FORMS:
                folder = write_hf(hf_load_series(values, layout), tmp_path / f"{layout}-{form}", form)
                hf = load_dm(tmp_path / "cache", None, location=str(folder), **settings)
                assert_same_splits(text, hf)
                torch.testing.assert_close(hf.std, text.std, rtol=0, atol=0)
    folder = tmp_path / "cache" / "electricity"  # each source's tensors under the one cache folder
    assert len(list(folder.glob("hf-disk-*.pt"))) == 2 * len(LAYOUTS) * len(FORMS)
    assert len(list(folder.glob("uci-*.pt"))) == 2


def test_electricity_hf_folder_is_decoded_once_and_read_from_the_cache(uci, tmp_path, monkeypatch):
    _, values = uci
    folder = write_hf(hf_load_series(values), tmp_path / "hf", "parquet")
    first = load_dm(tmp_path / "cache", location=str(folder), clients=3)

    def no_loading(self, cache_dir):
        raise AssertionError("loaded again")

    monkeypatch.setattr(DiskLocation, "load", no_loading)
    assert_same_splits(first, load_dm(tmp_path / "cache", location=str(folder), clients=3))
    with pytest.raises(AssertionError, match="loaded again"):  # other settings are other tensors
        load_dm(tmp_path / "cache", location=str(folder), clients=2)


def test_electricity_location_hf_loads_the_hub_id_and_configuration_into_the_project_cache(uci, tmp_path,
                                                                                         monkeypatch):
    import datasets

    root, values = uci
    folder = write_hf(hf_load_series(values), tmp_path / "hf", "disk")
    calls = []

    def hub(path, name=None, cache_dir=None):  # what load_dataset returns for the hub copy, without the network
        calls.append((path, name, cache_dir))
        return datasets.load_from_disk(str(folder))

    monkeypatch.setattr(datasets, "load_dataset", hub)
    cache = tmp_path / "cache"
    dm = load_dm(cache, root, location="hf", clients=2)  # forced: the text file in data_dir is not read
    assert_same_splits(dm, load_dm(cache, root, clients=2))
    assert calls == [("autogluon/chronos_datasets", "electricity_15min", str(cache / "huggingface" / "datasets"))]
    load_dm(cache, None, location="hf", clients=2)
    assert len(calls) == 1  # cached under the hub id, configuration and columns: not loaded again
    other = HFSeries("someone/electricity", None, "train", "id", "timestamp", "consumption_kW")
    load_dm(cache, None, location="hf", clients=2, hf=other)
    assert calls[1] == ("someone/electricity", None, str(cache / "huggingface" / "datasets"))


def test_electricity_location_hf_offline_without_a_copy_is_a_data_not_found_error(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"^electricity: data not found\. Searched: .*huggingface.*"
                       r"Hugging Face dataset autogluon/chronos_datasets \(electricity_15min\).*download failed"):
        load_dm(tmp_path / "cache", location="hf")


def test_electricity_location_that_is_no_folder_is_refused_by_its_key(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"data\.source\.location='nowhere' is neither 'auto', 'hf' nor"):
        load_dm(tmp_path / "cache", location="nowhere")


def series_case(edit_values=None, edit_data=None, layout: str = "rows", **source):  # noqa: ANN001, ANN201
    """A loader of a 3-day UCI fixture written by `datasets` after `edit_values(values)` (the DataFrame of
    clients) or `edit_data(DatasetDict)`."""
    def load(root: Path, cache: Path) -> None:
        values = write_uci(root / "txt" / "LD2011_2014.txt", days=3)
        data = hf_load_series(edit_values(values) if edit_values else values, layout)
        folder = write_hf(edit_data(data) if edit_data else data, root / "hf", "disk")
        load_dm(cache, location=str(folder), **{"clients": 3, **source})
    return load


def missing_value(values):  # noqa: ANN001, ANN201
    values.iloc[5, 1] = float("nan")
    return values


def irregular(values):  # noqa: ANN001, ANN201
    return values.drop(values.index[7])


def too_short(values):  # noqa: ANN001, ANN201
    return values.iloc[:30]


def renamed(data):  # noqa: ANN001, ANN201
    return data.rename_column("consumption_kW", "load")


def text_target(data):  # noqa: ANN001, ANN201
    from datasets import List, Value

    return data.cast_column("consumption_kW", List(Value("string")))


def text_times(data):  # noqa: ANN001, ANN201
    from datasets import Value

    return data.cast_column("timestamp", Value("string")).map(lambda row: {"timestamp": "noon"})


def other_split(data):  # noqa: ANN001, ANN201
    from datasets import DatasetDict

    return DatasetDict({"validation": data["train"]})


def repeated_ids(data):  # noqa: ANN001, ANN201
    return data.map(lambda row: {"id": "MT_001"})


@pytest.mark.parametrize(("load", "match"), [
    (series_case(edit_data=renamed), r"hf train split has no column \['consumption_kW'\] \(it has \['id', "
                                     r"'timestamp', 'load'\]\); set data.source.hf"),
    (series_case(edit_data=text_target), r"hf: column 'consumption_kW' holds string, expected numbers"),
    (series_case(edit_data=text_times, layout="long"), r"hf: column 'timestamp' holds a value that is not a timest"),
    (series_case(edit_data=other_split), r"hf has no train split \(it has \['validation'\]\); set data.source.hf"),
    (series_case(edit_data=repeated_ids), r"hf: series \['MT_001'\] appear in more than one row of column 'id'"),
    (series_case(missing_value), r"column 'MT_002' of .*hf \(series 'MT_002'\) has 1 missing values"),
    (series_case(irregular, layout="long"), r"hf \(series 'MT_001'\) is not a regular time series"),
    (series_case(too_short), r"the train split of a 30-step series has no window"),
    (series_case(clients=("MT_001", "MT_009")), r"unknown clients \['MT_009'\]; .*hf has"),
    (series_case(clients=4), r"clients=4 but .*hf has 3 clients"),
], ids=["missing-column", "text-target", "text-times", "no-split", "repeated-ids", "missing-value", "irregular",
        "too-short", "unknown-client", "too-many-clients"])
def test_bad_electricity_datasets_are_one_line_data_errors(tmp_path, load, match):
    with pytest.raises(DataError, match=match) as err:
        load(tmp_path, tmp_path / "cache")
    assert "\n" not in str(err.value)


def test_the_default_hub_copy_is_the_uci_set_and_every_key_is_in_the_task_config():
    from adaptive_lr.config import compose
    from adaptive_lr.runner import config_hash

    cfg = compose(["task=electricity_uci"])
    source = cfg.data.source
    assert source.location == "auto"
    assert dict(source.hf) == {"_target_": "adaptive_lr.data.hf.HFSeries", **asdict(UCI_HF)}
    for key in ("location", "hf.id", "hf.config"):  # where the data come from is not what a run computes
        other = compose(["task=electricity_uci", f"data.source.{key}=elsewhere"])
        assert config_hash(other) == config_hash(cfg), key
    assert config_hash(compose(["task=electricity_uci", "data.source.clients=3"])) != config_hash(cfg)
