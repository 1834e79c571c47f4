"""A tiny grid file and the runs of its cells, shared by the grid tests (test_experiment, test_concurrent_grids,
test_cluster); a module, as store_support.py is."""

from __future__ import annotations

from pathlib import Path

from store_support import tracking_uri

#: the cells of `write_grid`'s grid
CELLS = {f"xor_clean/{s}/seed{seed}" for s in ("fixed", "heuristic") for seed in (0, 1)}


def write_grid(path: Path, max_epochs: int = 2, extra: str = "", schedulers: str = "[fixed, heuristic]") -> Path:
    """Grid `tiny`: XOR (80 samples) x `schedulers` x seeds 0, 1, `max_epochs` epochs, plus the YAML `extra`."""
    path.write_text(
        "name: tiny\n"
        "tasks: [xor_clean]\n"
        f"schedulers: {schedulers}\n"
        "seeds: [0, 1]\n"
        f"overrides: [trainer.max_epochs={max_epochs}, data.n_samples=80]\n" + extra
    )
    return path


def cell_runs(store: Path | str, status: str | None = None, experiment: str = "tiny") -> list:
    """The runs of the grid's cells (its parent run left out) in `experiment`, with `status` if given, from the
    store of the home folder `store` (or at the tracking URI `store`); [] before the experiment exists."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri(store) if isinstance(store, Path) else store)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    found = client.search_runs([exp.experiment_id], max_results=1000)
    return [r for r in found if (status is None or r.info.status == status) and not r.data.tags.get("grid_parent")]
