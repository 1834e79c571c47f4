"""The run's data as an MLflow dataset input: the MLflow UI's Dataset column and the run page's Datasets section
show which data a run trained on, by name and digest.

The digest is the run's data checksum (`InMemoryDataModule.fingerprint`, also the `data_checksum` tag): two runs
with the same digest trained and were evaluated on the same tensors. The source says where the data came from: the
data folder (`data_dir`) for datasets read from files, else the DataModule class (data embedded in a library or
generated from the config); the profile holds the sample count of each split.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONTEXT = "training"  # the `mlflow.data.context` tag of the input: the data the run trained (and was evaluated) on
SPLITS = ("train", "val", "test")


def source_of(datamodule: Any) -> Any:
    """An `mlflow.data` DatasetSource: the local data folder when the module reads one, else the module's class."""
    from mlflow.data.code_dataset_source import CodeDatasetSource

    data_dir = getattr(datamodule, "data_dir", None)
    if data_dir and Path(data_dir).is_dir():
        import warnings

        from mlflow.data.dataset_source_registry import resolve_dataset_source

        try:
            with warnings.catch_warnings():  # MLflow registers the local-file source twice and says so every time
                warnings.simplefilter("ignore", UserWarning)
                return resolve_dataset_source(str(Path(data_dir).resolve()))
        except Exception:  # no source type claims the folder: name the class instead
            pass
    cls = type(datamodule)
    return CodeDatasetSource({"mlflow.source.name": f"{cls.__module__}.{cls.__qualname__}"})


def profile_of(datamodule: Any) -> dict[str, int]:
    """Samples per split, for an in-memory module (`splits`); empty otherwise."""
    splits = getattr(datamodule, "splits", None) or ()
    return {name: len(split[0]) for name, split in zip(SPLITS, splits, strict=False)}


def dataset_input(name: str, checksum: str, datamodule: Any) -> Any:
    """The `DatasetInput` that `MlflowClient.log_inputs` records: dataset `name` with digest `checksum`."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    source = source_of(datamodule)
    dataset = Dataset(name=name, digest=checksum, source_type=source._get_source_type(), source=source.to_json(),
                      profile=json.dumps(profile_of(datamodule)))
    return DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, CONTEXT)])


def log_dataset_input(client: Any, run_id: str, name: str, checksum: str, datamodule: Any, tries: int = 5) -> None:
    """Record the run's data as its dataset input (once, when the run is created; MLflow keeps one per digest).

    MLflow's SQL store inserts a dataset it has not seen without locking: two grid workers that start runs on the
    same data at the same moment both insert it, and the second fails on the table's unique key. The dataset then
    exists, so trying again links it; a few tries with a short pause cover any number of concurrent workers."""
    import time

    from mlflow.exceptions import MlflowException

    inputs = [dataset_input(name, checksum, datamodule)]
    for attempt in range(tries):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as err:
            if "UNIQUE constraint failed" not in str(err) or attempt == tries - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
