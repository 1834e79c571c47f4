"""What every view shares: where it writes, how it renders, and the data it looks at.

A view is a Lightning callback that is constructed only when configured (`viz=[params,latent]`: the runner builds
one callback per entry of `cfg.viz`), so a run without views executes exactly the code it would without this
package. A view writes:
  - files under `<run folder>/viz/<view>/<NNN>/` (`NNN` = 001, 002, ...: a new numbered folder per fit, never
    overwritten), which the runner logs as the run's MLflow artifact folder `viz/`;
  - TensorBoard summaries through the run's `TensorBoardLogger` (its SummaryWriter), when it has one, under
    `views/` (`tb_tag`: TensorBoard groups a run's charts by the tag's first part, beside `lr/`, `train/`, `val/`
    and `controller/`).

Figures are drawn on a matplotlib `Figure` with an explicit Agg canvas (no pyplot global state, so views are safe
in a grid's worker process and never open a window), rendered once to an RGB array that becomes the PNG, the
TensorBoard image and, later, a GIF frame (read back from the PNGs: nothing grows in memory over a run). Every
figure of a view has the same size in pixels (no `bbox_inches="tight"`), so the frames of a GIF line up. A PNG is
encoded once (`encode_png`, zlib level 1: ~3x faster than Pillow's default for ~1.3x the bytes) and the same bytes
become the file and the TensorBoard image (`add_png_image`).
Only global rank 0 draws and writes; the other ranks return at once from every hook.

Work that does not need the training thread (an embedding, its figure and files) can go to the view's `Background`
worker: one thread, so it runs on a free core while training goes on (the heavy parts, t-SNE's gradient loops,
release the GIL), jobs in order; `wait()` at train end re-raises a job's error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from adaptive_lr.errors import UserError

TRAIN, VAL = 0, 1  # split indices, as in `InMemoryDataModule.splits`
TB_GROUP = "views"  # the TensorBoard tag group of every view
PNG_LEVEL = 1  # zlib level of the PNGs (views are drawn often; size matters less than time)


class ViewConfigError(UserError, ValueError):
    """A view was configured with an invalid argument, or for a task it cannot show; the message names it."""


def positive_int(name: str, value: Any) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ViewConfigError(f"{name} must be a positive int, got {value!r}")
    return value


def numbered_dir(parent: Path) -> Path:
    """A new folder `parent/NNN` numbered one past the highest existing one (001 for the first)."""
    parent.mkdir(parents=True, exist_ok=True)
    n = max((int(p.name) for p in parent.iterdir() if p.is_dir() and p.name.isdigit()), default=0) + 1
    while True:
        folder = parent / f"{n:03d}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:  # another process took this number between the listing and the mkdir
            n += 1


def tensorboard_writer(trainer: L.Trainer) -> Any | None:
    """The SummaryWriter of the trainer's TensorBoardLogger (the runner's `LeanTensorBoardLogger`), else None."""
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def new_figure(width: float, height: float, dpi: int, layout: str | None = "constrained") -> Figure:
    """A figure on the Agg canvas. `layout=None` skips constrained layout's solver (half the draw time of a
    3-panel figure with colorbars: 0.085 s against 0.16 s) for figures drawn often that set their own margins."""
    fig = Figure(figsize=(width, height), dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas
    return fig


def render(fig: Figure) -> np.ndarray:
    """The figure as an RGB uint8 array [H, W, 3]."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def tb_tag(tag: str) -> str:
    """A view's TensorBoard tag, in the `views/` group."""
    return f"{TB_GROUP}/{tag}"


def encode_png(rgb: np.ndarray) -> bytes:
    """The RGB array as PNG bytes."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG", compress_level=PNG_LEVEL)
    return out.getvalue()


def save_png(rgb: np.ndarray, path: Path) -> bytes:
    """Write the RGB array as a PNG file; returns its bytes (for `add_png_image`)."""
    png = encode_png(rgb)
    Path(path).write_bytes(png)
    return png


def add_png_image(writer: Any, tag: str, png: bytes, shape: tuple[int, ...], step: int) -> None:
    """A TensorBoard image from already encoded PNG bytes (SummaryWriter.add_image would encode the array again)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    from adaptive_lr.compat import event_file_writer

    image = Summary.Image(height=shape[0], width=shape[1], colorspace=3, encoded_image_string=png)
    event_file_writer(writer).add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), global_step=step)


def add_scalars_event(writer: Any, scalars: dict[str, float], step: int) -> None:
    """Several scalars at one step as one TensorBoard event (one hand-over to the writer thread, where
    `add_scalar` per value would make as many); each is still its own tag."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    from adaptive_lr.compat import event_file_writer

    if scalars:
        summary = Summary(value=[Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()])
        event_file_writer(writer).add_summary(summary, global_step=step)


class Background:
    """One worker thread for a view's work off the training thread, jobs run in submission order. `wait()` blocks
    until every job submitted so far is done and re-raises the first error; `close()` waits and ends the thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []

    def submit(self, job: Callable[[], Any]) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        self._pending.append(self._pool.submit(job))

    def wait(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


def write_gif(frames: Sequence[Path], path: Path, frame_ms: int) -> None:
    """An animated GIF with one frame per image (in order), built in-process with Pillow; loops forever."""
    from PIL import Image

    if not frames:
        return
    images = [Image.open(p).convert("RGB") for p in frames]
    # disposal=1 and optimize=False keep every frame whole, so the GIF holds exactly len(frames) frames
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0,
                   disposal=1, optimize=False)


def split_tensors(trainer: L.Trainer, split: int, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels of the train (`TRAIN`) or validation (`VAL`) split, on the CPU.

    In-memory datamodules (`InMemoryDataModule.splits`) give the whole split; any other datamodule gives the first
    `limit` samples of its dataloader's batches (the validation loader is not shuffled; the train loader's order
    is seeded, so the result is deterministic either way).
    """
    splits = getattr(trainer.datamodule, "splits", None)
    if splits is not None:
        x, y = splits[split][:2]
        return x.cpu(), y.cpu()
    loader = trainer.train_dataloader if split == TRAIN else trainer.val_dataloaders
    if isinstance(loader, (list, tuple)):
        loader = loader[0]
    xs, ys, n = [], [], 0
    for x, y, *_ in loader:
        xs.append(x.cpu())
        ys.append(y.cpu())
        n += len(x)
        if n >= limit:
            break
    return torch.cat(xs)[:limit], torch.cat(ys)[:limit]


def class_labels(y: torch.Tensor) -> torch.Tensor:
    """Integer class labels [N] from class indices [N] or binary targets [N, 1] (floats 0./1.)."""
    return y.reshape(len(y), -1)[:, 0].round().long() if y.is_floating_point() else y.reshape(-1).long()


def predicted_classes(logits: torch.Tensor) -> torch.Tensor:
    """Class predictions [N] from logits [N, 1] (binary: logit > 0) or [N, C] (argmax)."""
    return (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(dim=1)


def metric(trainer: L.Trainer, name: str) -> float:
    """One entry of `trainer.callback_metrics` as a float (nan when absent); a host sync when it is a tensor."""
    value = trainer.callback_metrics.get(name)
    return float("nan") if value is None else float(value)


class View(Callback):
    """Base of the views: skips non-zero ranks, opens the view's numbered output folder and finds the writer.

    Subclasses set `view` (the folder name under `viz/`) and act in their own hooks after `super()` set up
    `self.out_dir` and `self.writer` at fit start.
    """

    view: ClassVar[str]

    def __init__(self, dpi: int = 100) -> None:
        super().__init__()
        self.dpi = positive_int("dpi", dpi)
        self.out_dir: Path | None = None
        self.writer: Any | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(view=self.view)

    def active(self, trainer: L.Trainer) -> bool:
        """True on global rank 0 of a fit that has started (`out_dir` set); other ranks and stages do nothing."""
        return self.out_dir is not None and trainer.is_global_zero

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self.out_dir = numbered_dir(Path(trainer.default_root_dir) / "viz" / self.view)
        self.writer = tensorboard_writer(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.writer is not None and trainer.is_global_zero:
            self.writer.flush()

    @staticmethod
    def eval_forward(pl_module: L.LightningModule, x: torch.Tensor, batch_size: int) -> torch.Tensor:
        """`pl_module(x)` in eval mode without gradients, in chunks, on the module's device; logits on the CPU.
        The train/eval mode is restored afterwards."""
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.no_grad():
                out = [pl_module(chunk.to(pl_module.device)).cpu() for chunk in x.split(batch_size)]
        finally:
            pl_module.train(was_training)
        return torch.cat(out)
