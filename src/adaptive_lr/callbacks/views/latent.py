"""The latent-space view: how a classifier's penultimate features organise the classes as training goes on.

At milestone epochs (`milestones`, every `viz_every` epochs, and the last epoch) it embeds the features of a fixed
seeded subset of at most `n_train` training and `n_val` validation samples in 2-D and draws them: left the
training points coloured by class, right the validation points coloured by class with the misclassified ones
marked by a large red X. Train and validation features are embedded together, so both panels share coordinates.

Features are the *input* of one module, captured by a forward hook while the subset runs through the task in eval
mode: by default the last `nn.Linear` (the classifier head), i.e. the penultimate layer; `layer` names another
module of `pl_module.named_modules()` (e.g. `model.head`).

Output, in `viz/latent/NNN/` (a new numbered folder per fit):
  - `epoch_XXX_accY.YYYY.png` per snapshot (Y.YYYY: the epoch's `val_acc`, else the subset's accuracy);
  - `run_metadata.json`: run folder, classes, method, start time, whether umap is importable, the settings, and
    (rewritten at train end) the snapshots taken: file, epoch, val_acc and the subset's misclassified count;
  - `training_progress.txt`: one row per epoch: epoch, train/val accuracy, train/val loss (from the task's
    epoch means in `trainer.callback_metrics`);
  - `latent.gif`: every snapshot, one frame each, built with Pillow at train end;
  - TensorBoard: each snapshot as image `views/latent/embedding`, and the final features in the projector
    (`add_embedding`, tag `latent`, metadata: label and split).

What it costs the training thread (`benchmarks/viz_overhead.py`): at a snapshot, the subset's forward pass; the
embedding, its figure and files are made by the view's background thread (`background`, on by default) while
training goes on, one snapshot after another, and train end waits for the last. The last epoch's snapshot starts
at that epoch's last training batch, so its t-SNE runs during the final validation (the weights no longer change;
the figure waits for the epoch's validation accuracy). t-SNE runs 450 iterations from
its PCA initialisation (250 of them with early exaggeration, as before): on 800 points of scikit-learn's digits its
KL divergence was 0.524 after 450 iterations, 0.517 after 500 and 0.502 after 1000, the first in 45% of the time.

The embedding method is an object from config (`embedder._target_`): `TSNEEmbedding` (default) or
`UMAPEmbedding`, which falls back to t-SNE, with one message, when `umap-learn` is not installed.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import sys
from collections.abc import Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import Any, Protocol

import lightning as L
import numpy as np
import torch
from torch import nn

from adaptive_lr.callbacks.views.base import (
    TRAIN,
    VAL,
    Background,
    View,
    ViewConfigError,
    add_png_image,
    class_labels,
    metric,
    positive_int,
    predicted_classes,
    save_png,
    split_tensors,
    tb_tag,
    write_gif,
)

DEFAULT_MILESTONES = (1, 5, 10, 25, 50, 75, 100)
EARLY_WAIT_S = 3600.0  # the longest an early snapshot waits for its epoch's validation accuracy
PROGRESS_COLUMNS = ("epoch", "train_acc", "val_acc", "train_loss", "val_loss")
UMAP_FALLBACK = "viz.latent: umap-learn is not installed (pip install umap-learn); embedding with t-SNE instead"


def umap_available() -> bool:
    return importlib.util.find_spec("umap") is not None


class Embedder(Protocol):
    name: str

    def fit_transform(self, features: np.ndarray) -> np.ndarray: ...


class TSNEEmbedding:
    """scikit-learn's t-SNE to 2-D, PCA-initialised and seeded.

    1) The perplexity is capped at (n - 1) / 3, so a small subset (a test's few dozen points) stays valid.
    2) It runs with `threads` OpenMP threads (default 1): scikit-learn's OpenMP pool spin-waits, and on a loaded
       2-core host t-SNE of 60 points took 66-85 s with the default pool against 1.0 s with one thread.
       `threads: null` uses every core (for an idle many-core machine). Measured again with the latent view's 800
       points on that host under load: 1.5-1.8 s with one thread, 12-21 s with two.
    """

    name = "tsne"

    def __init__(self, perplexity: float = 30.0, seed: int = 0, max_iter: int = 450, threads: int | None = 1) -> None:
        if not (isinstance(perplexity, (int, float)) and perplexity > 0):
            raise ViewConfigError(f"perplexity must be a positive number, got {perplexity!r}")
        if not (isinstance(max_iter, int) and max_iter >= 250):
            raise ViewConfigError(f"max_iter must be an int >= 250 (scikit-learn's minimum), got {max_iter!r}")
        self.perplexity, self.seed, self.max_iter = float(perplexity), seed, max_iter
        self.threads = None if threads is None else positive_int("threads", threads)

    def fit_transform(self, features: np.ndarray) -> np.ndarray:
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits

        perplexity = min(self.perplexity, max(1.0, (len(features) - 1) / 3))
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=self.seed, max_iter=self.max_iter)
        with threadpool_limits(limits=self.threads):
            return tsne.fit_transform(features.astype(np.float32))


class UMAPEmbedding:
    """UMAP to 2-D (`umap-learn`), seeded. Without `umap-learn` it prints one fallback message at construction
    and embeds with `TSNEEmbedding(perplexity, seed, max_iter, threads)` (then `name` is "tsne", which the metadata records)."""

    def __init__(self, n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0, perplexity: float = 30.0,
                 max_iter: int = 450, threads: int | None = 1) -> None:
        self.n_neighbors, self.min_dist, self.seed = positive_int("n_neighbors", n_neighbors), min_dist, seed
        self._fallback: TSNEEmbedding | None = None
        if not umap_available():
            print(UMAP_FALLBACK, file=sys.stderr, flush=True)
            self._fallback = TSNEEmbedding(perplexity, seed, max_iter, threads)
        self.name = "umap" if self._fallback is None else self._fallback.name

    def fit_transform(self, features: np.ndarray) -> np.ndarray:
        if self._fallback is not None:
            return self._fallback.fit_transform(features)
        import umap

        n_neighbors = min(self.n_neighbors, len(features) - 1)
        return umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=self.min_dist,
                         random_state=self.seed).fit_transform(features)


def seeded_subset(n: int, k: int, seed: int) -> torch.Tensor:
    """`min(n, k)` distinct indices of range(n), sorted, fixed by `seed`."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[:k].sort().values


def _format(value: float) -> str:
    return f"{value:12.4f}" if math.isfinite(value) else f"{'nan':>12}"


class LatentView(View):
    """2-D embeddings of penultimate-layer features at milestone epochs (module docstring).

    Args:
        embedder: the embedding method (`TSNEEmbedding()` when None).
        viz_every: also snapshot every this many epochs (10). Positive int.
        milestones: epochs (1-based) that always get a snapshot ((1, 5, 10, 25, 50, 75, 100)).
        n_train, n_val: at most this many training (500) / validation (300) samples, a fixed seeded subset.
        layer: module whose input is embedded (default: the last `nn.Linear`).
        seed: seed of the subset (0).
        projector: write the final features to TensorBoard's projector (True).
        frame_ms: GIF frame duration (800).
        batch_size: samples per forward pass of the subset (1024).
        dpi: figure resolution (100).
        background: embed, draw and write snapshots in the view's background thread (True); False: in the hook.
    """

    view = "latent"

    def __init__(self, embedder: Embedder | None = None, viz_every: int = 10,
                 milestones: Sequence[int] = DEFAULT_MILESTONES, n_train: int = 500, n_val: int = 300,
                 layer: str | None = None, seed: int = 0, projector: bool = True, frame_ms: int = 800,
                 batch_size: int = 1024, dpi: int = 100, background: bool = True) -> None:
        super().__init__(dpi)
        self.background = bool(background)
        self._worker = Background("latent-view")
        self.embedder: Embedder = embedder if embedder is not None else TSNEEmbedding(seed=seed)
        self.viz_every = positive_int("viz_every", viz_every)
        self.milestones = frozenset(positive_int("milestones[]", m) for m in milestones)
        self.n_train, self.n_val = positive_int("n_train", n_train), positive_int("n_val", n_val)
        self.layer, self.seed, self.projector = layer, seed, bool(projector)
        self.frame_ms, self.batch_size = positive_int("frame_ms", frame_ms), positive_int("batch_size", batch_size)
        self._data: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._module: nn.Module | None = None
        self._last_epoch = 0          # last epoch recorded in training_progress.txt
        self._snapshots: list[dict[str, Any]] = []  # file, epoch, val_acc, misclassified (one per snapshot)
        self._final: tuple[np.ndarray, list[list[str]], int] | None = None  # features, metadata, epoch
        self._metadata: dict[str, Any] = {}
        self._early: tuple[int, Future] | None = None  # (epoch, its val_acc to come) of a snapshot started early

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._module = self._feature_module(pl_module)
        if not self.active(trainer):
            return
        self._last_epoch, self._snapshots, self._final, self._early = 0, [], None, None
        for split, limit in ((TRAIN, self.n_train), (VAL, self.n_val)):
            x, y = split_tensors(trainer, split, limit)
            idx = seeded_subset(len(x), limit, self.seed + split)
            self._data[split] = (x[idx], class_labels(y[idx]))
        classes = sorted({int(c) for split in self._data.values() for c in split[1].unique()})
        self._metadata = {
            "run_dir": str(trainer.default_root_dir), "classes": classes, "method": self.embedder.name,
            "start_time": datetime.now().isoformat(timespec="seconds"), "umap_available": umap_available(),
            "layer": self.layer, "n_train": len(self._data[TRAIN][0]), "n_val": len(self._data[VAL][0]),
            "seed": self.seed, "milestones": sorted(self.milestones), "viz_every": self.viz_every,
        }
        self._write_metadata()
        header = "".join(f"{c:>12}" for c in PROGRESS_COLUMNS)
        (self.out_dir / "training_progress.txt").write_text(header + "\n")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # the last epoch's snapshot, started at its last batch: the t-SNE overlaps the final validation
        epoch = trainer.current_epoch + 1
        if (self.background and self._early is None and epoch == trainer.max_epochs and trainer.is_last_batch
                and self.active(trainer)):
            self._early = (epoch, Future())
            self._snapshot(pl_module, epoch, val_acc=self._early[1])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.active(trainer):
            return
        epoch = trainer.current_epoch + 1
        values = [metric(trainer, name) for name in PROGRESS_COLUMNS[1:]]  # host sync: once per epoch
        with open(self.out_dir / "training_progress.txt", "a") as f:
            f.write(f"{epoch:>12}" + "".join(_format(v) for v in values) + "\n")
        self._last_epoch = epoch
        if self._early is not None and self._early[0] == epoch:  # taken at the epoch's last batch
            self._resolve_early(values[1])
        elif epoch in self.milestones or epoch % self.viz_every == 0 or epoch == trainer.max_epochs:
            self._snapshot(pl_module, epoch, val_acc=values[1])

    def _resolve_early(self, val_acc: float) -> None:
        """Hand the early snapshot its validation accuracy (NaN: the subset's accuracy is used)."""
        if self._early is not None and not self._early[1].done():
            self._early[1].set_result(val_acc)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.active(trainer):
            return
        taken = self._final[2] if self._final is not None else 0
        if self._last_epoch > taken:  # stopped early (divergence, max_steps): the last epoch still gets one
            self._snapshot(pl_module, self._last_epoch, val_acc=metric(trainer, "val_acc"))
        self._resolve_early(metric(trainer, "val_acc"))  # never left waiting (an epoch end that did not come)
        self._worker.close()  # every snapshot embedded and written
        write_gif([self.out_dir / s["file"] for s in self._snapshots], self.out_dir / "latent.gif", self.frame_ms)
        if self.projector and self.writer is not None and self._final is not None:
            features, meta, epoch = self._final
            self.writer.add_embedding(torch.from_numpy(features), metadata=meta, metadata_header=["label", "split"],
                                      global_step=epoch, tag="latent")
        self._metadata.update(snapshots=self._snapshots, end_time=datetime.now().isoformat(timespec="seconds"))
        self._write_metadata()
        super().on_train_end(trainer, pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._resolve_early(float("nan"))
        try:  # let a snapshot in progress finish; the training error is the one reported
            self._worker.close()
        except Exception as err:
            exception.add_note(f"viz.latent: a snapshot failed too: {err}")

    # -- snapshot ------------------------------------------------------------------------------------------------
    def _feature_module(self, pl_module: L.LightningModule) -> nn.Module:
        modules = dict(pl_module.named_modules())
        if self.layer is None:
            linears = [name for name, m in modules.items() if isinstance(m, nn.Linear)]
            if not linears:
                raise ViewConfigError(f"viz.latent: {type(pl_module).__name__} has no nn.Linear; set layer to the "
                                      "module whose input is the feature vector")
            self.layer = linears[-1]
        if self.layer not in modules:
            raise ViewConfigError(f"viz.latent.layer={self.layer!r} is not a module of {type(pl_module).__name__}; "
                                  f"allowed: {', '.join(n for n in modules if n)}")
        return modules[self.layer]

    def _features(self, pl_module: L.LightningModule, x: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        """Features (the input of the hooked module, flattened) and logits of `x`."""
        captured: list[torch.Tensor] = []
        handle = self._module.register_forward_pre_hook(
            lambda _m, args: captured.append(args[0].detach().flatten(1).float().cpu()))
        try:
            logits = self.eval_forward(pl_module, x, self.batch_size)
        finally:
            handle.remove()
        return torch.cat(captured).numpy(), logits.reshape(len(x), -1)

    def _snapshot(self, pl_module: L.LightningModule, epoch: int, val_acc: float | Future) -> None:
        """Features of the subset now (training thread); embedding, figure and files in the background. `val_acc`
        may be a Future (a snapshot started before its epoch's validation): the figure waits for it."""
        (x_tr, y_tr), (x_va, y_va) = self._data[TRAIN], self._data[VAL]
        f_tr, _ = self._features(pl_module, x_tr)
        f_va, logits = self._features(pl_module, x_va)
        wrong = (predicted_classes(logits) != y_va).numpy()
        features = np.concatenate([f_tr, f_va])
        if not np.isfinite(features).all():  # a diverged model: nothing to embed
            return
        meta = [[str(int(c)), "train"] for c in y_tr] + [[str(int(c)), "val"] for c in y_va]
        self._final = (features, meta, epoch)
        job = functools.partial(self._embed_and_draw, features, len(f_tr), y_tr.numpy(), y_va.numpy(), wrong, epoch,
                                val_acc)
        if self.background:
            self._worker.submit(job)
        else:
            job()

    def _embed_and_draw(self, features: np.ndarray, n_train: int, y_tr: np.ndarray, y_va: np.ndarray,
                        wrong: np.ndarray, epoch: int, val_acc: float | Future) -> None:
        """The embedding, its figure, the PNG and the TensorBoard image of one snapshot (in the background thread
        unless `background` is off)."""
        points = self.embedder.fit_transform(features)
        if isinstance(val_acc, Future):  # set at the epoch's end, or NaN at train end / on an exception
            try:
                val_acc = val_acc.result(timeout=EARLY_WAIT_S)
            except TimeoutError:  # never left hanging, whatever happened to the training thread
                val_acc = float("nan")
        if not math.isfinite(val_acc):  # no validation metric this epoch: the subset's accuracy
            val_acc = float(1.0 - wrong.mean()) if len(wrong) else float("nan")
        rgb = self._draw(points[:n_train], y_tr, points[n_train:], y_va, wrong, epoch, val_acc)
        name = f"epoch_{epoch:03d}_acc{val_acc:.4f}.png"
        png = save_png(rgb, self.out_dir / name)
        self._snapshots.append({"file": name, "epoch": epoch, "val_acc": val_acc,
                                "misclassified": int(wrong.sum())})
        if self.writer is not None:
            add_png_image(self.writer, tb_tag("latent/embedding"), png, rgb.shape, epoch)

    def _draw(self, p_tr: np.ndarray, y_tr: np.ndarray, p_va: np.ndarray, y_va: np.ndarray, wrong: np.ndarray,
              epoch: int, val_acc: float) -> np.ndarray:
        """Both panels on shared coordinates, drawn with Pillow (`views.panel.render_scatter`): t-SNE's axes carry no
        units, so the figure needs no ticks, and drawing it takes milliseconds instead of matplotlib's ~0.1 s."""
        from adaptive_lr.callbacks.views.panel import Scatter, render_scatter

        classes = self._metadata["classes"]
        panels = [Scatter(f"train ({len(y_tr)} samples), coloured by class", p_tr, y_tr, None),
                  Scatter(f"validation ({len(y_va)} samples)", p_va, y_va, wrong)]
        title = f"{self.embedder.name} of {self.layer} input, epoch {epoch}, val acc {val_acc:.4f}"
        return render_scatter(title, panels, classes, round(12.0 * self.dpi), round(5.6 * self.dpi))

    def _write_metadata(self) -> None:
        (self.out_dir / "run_metadata.json").write_text(json.dumps(self._metadata, indent=2) + "\n")
