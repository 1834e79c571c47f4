"""The watch page: one column per run (two side by side), rebuilt for every browser session by the Bokeh server.

Each column has: a header (what the run is, its status, step, epoch, current LR and who holds it); the LR of every
parameter group on a log axis with the controller's decisions as markers (hover: action and factor); training
and validation loss; the task metric; the controls (a log-scale LR slider within the run's bounds, x0.5, x2, hold,
release) and their last outcome; and the parameter view's bars for its layer (values before the update, the update
about to be applied, the effective LR per element; the view writes them only while a page touches the run's
heartbeat, `layer_file.WATCH_FILE`, which this page does at every poll of a running run). A periodic callback polls the run every `poll_ms` and streams
only the new points into the sources (`ColumnDataSource.stream`), so the browser receives each point once.

Models carry names (`<slot>:<what>`, slot `a` or `b`) that the browser test reads through BokehJS.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import (
    Button,
    ColumnDataSource,
    CustomJSTickFormatter,
    Div,
    HoverTool,
    Slider,
)
from bokeh.palettes import Category10_10, Category20_20
from bokeh.plotting import figure
from bokeh.transform import factor_cmap

from adaptive_lr.watch import controls, readers
from adaptive_lr.watch.layer_file import heartbeat, latest_layer_file, read_layer
from adaptive_lr.watch.runs import MlflowFeed, Progress, WatchedRun

POLL_MS = 1000
MAX_BARS = 1024  # elements of the view's layer drawn as bars
SLIDER_STEP = 0.01  # in decades
_CURVES = {"train_loss": ("training", "#1f77b4"), "val_loss": ("validation", "#ff7f0e")}


def _action_names() -> list[str]:
    from adaptive_lr.schedulers.base import ACTIONS

    return sorted(ACTIONS, key=ACTIONS.get)


class RunPanel:
    """The column of one run, and its `update` from one poll."""

    def __init__(self, run: WatchedRun, slot: str, width: int, max_bars: int = MAX_BARS,
                 feed: Any | None = None) -> None:
        from adaptive_lr.schedulers.base import ACTIONS

        self.run, self.slot, self.width, self.max_bars = run, slot, width, max_bars
        self.feed = feed if feed is not None else MlflowFeed(run)
        self.names = readers.action_names(ACTIONS)
        self.low, self.high = run.lr_range()
        self._lr_seen: float | None = None
        self._layer_mtime: int | None = None
        self._build_curves()
        self._build_decisions()
        self._build_controls()
        bar_figs = self._build_bars()
        self.layout = column(self.header, self.lr_fig, self.loss_fig, self.metric_fig, self.slider,
                             row(*self.buttons), self.status, self.bar_title, *bar_figs, name=f"{slot}:column")

    # -- the column's parts, built in the order they are shown ------------------------------------------------------
    def _build_curves(self) -> None:
        """The header and the three figures (LR, loss, task metric) on one step axis, with the loss and metric
        curves; the LR lines are added as groups appear (`_lr_source`)."""
        run, slot, width = self.run, self.slot, self.width
        tools = "pan,wheel_zoom,box_zoom,reset,save"

        self.header = Div(text=self._header(None), width=width, name=f"{slot}:header")
        self.lr_fig = figure(title="learning rate per parameter group (markers: controller decisions)",
                             y_axis_type="log", width=width, height=260, tools=tools, x_axis_label="optimizer step",
                             name=f"{slot}:lr_fig")
        self.loss_fig = figure(title="loss", width=width, height=200, tools=tools, x_range=self.lr_fig.x_range,
                               name=f"{slot}:loss_fig")
        self.metric_fig = figure(title=f"task metric ({run.metric})", width=width, height=200, tools=tools,
                                 x_range=self.lr_fig.x_range, x_axis_label="optimizer step",
                                 name=f"{slot}:metric_fig")
        self.sources: dict[str, ColumnDataSource] = {}
        for fig, keys in ((self.loss_fig, readers.metric_keys(run.metric)["loss"]),
                          (self.metric_fig, readers.metric_keys(run.metric)["metric"])):
            for key, (label, color) in zip(keys, _CURVES.values(), strict=True):
                source = self._source(key)
                fig.line("step", "value", source=source, color=color, line_width=2, legend_label=label)
                fig.scatter("step", "value", source=source, color=color, size=4)
            fig.legend.location = "top_right"
            fig.legend.click_policy = "hide"

    def _build_decisions(self) -> None:
        """The controller's decisions as markers on the LR figure (hover: action and factor)."""
        names = _action_names()
        self.decisions = ColumnDataSource({"step": [], "lr": [], "action": [], "factor": []},
                                          name=f"{self.slot}:decisions")
        markers = self.lr_fig.scatter("step", "lr", source=self.decisions, marker="triangle", size=10,
                                      line_color="black", legend_field="action",
                                      color=factor_cmap("action", Category20_20[:len(names)], names))
        self.lr_fig.add_tools(HoverTool(renderers=[markers], tooltips=[("step", "@step"), ("action", "@action"),
                                                                        ("factor", "@factor{0.000}"),
                                                                        ("LR", "@lr{0.000e}")]))
        self.lr_fig.legend.location = "top_right"
        self.lr_fig.legend.click_policy = "hide"
        self.lr_fig.legend.background_fill_alpha = 0.5  # the curves stay visible under it

    def _build_controls(self) -> None:
        """The log-scale LR slider within the run's bounds, the buttons and the line with their last outcome."""
        slot, width = self.slot, self.width
        self.slider = Slider(start=math.log10(self.low), end=math.log10(self.high), step=SLIDER_STEP,
                             value=controls.lr_to_slider(float("nan"), self.low, self.high),
                             title=f"LR, log scale within [{self.low:.3g}, {self.high:.3g}]",
                             format=CustomJSTickFormatter(code="return Math.pow(10, tick).toPrecision(3)"),
                             width=width - 20, name=f"{slot}:lr_slider")
        self.slider.on_change("value_throttled", self._on_slider)  # once, when a drag ends
        self.buttons = []
        for control in controls.BUTTONS:
            button = Button(label=control.label, width=90, name=f"{slot}:{control.label}",
                            button_type="warning" if control.op == "release" else "default")
            button.on_click(partial(self._press, control.op, control.value))
            self.buttons.append(button)
        self.status = Div(text="", width=width, name=f"{slot}:status")

    def _build_bars(self) -> list[Any]:
        """The parameter view's bars (values, update, effective LR) on one element axis; the figures, in order."""
        slot, width = self.slot, self.width
        self.bars = ColumnDataSource({"index": [], "value": [], "update": [], "lr": [], "lr_base": []},
                                     name=f"{slot}:bars")
        self.bar_title = Div(text=self._no_layer(), width=width, name=f"{slot}:bar_title")
        bar_figs = []
        for column_name, title, color in (("value", "values (before the update)", "steelblue"),
                                          ("update", "update about to be applied", "firebrick"),
                                          ("lr", "effective learning rate", "purple")):
            shared = {"x_range": bar_figs[0].x_range} if bar_figs else {}
            log = column_name == "lr"  # effective LRs span decades (RescaledSGD: min_scale x lr up to many x lr)
            fig = figure(title=title + (" (log scale)" if log else ""), width=width, height=130,
                         tools="xpan,xwheel_zoom,reset,hover", y_axis_type="log" if log else "linear",
                         tooltips=[("element", "@index"), (column_name, f"@{column_name}{{0.000e}}")],
                         name=f"{slot}:bars_{column_name}", **shared)
            fig.vbar(x="index", top=column_name, bottom="lr_base" if log else 0, width=0.8, source=self.bars,
                     color=color)
            fig.xaxis.visible = column_name == "lr"
            bar_figs.append(fig)
        return bar_figs

    # -- sources ---------------------------------------------------------------------------------------------------
    def _source(self, key: str) -> ColumnDataSource:
        if key not in self.sources:
            self.sources[key] = ColumnDataSource({"step": [], "value": []}, name=f"{self.slot}:{key}")
        return self.sources[key]

    def _lr_source(self, key: str) -> ColumnDataSource:
        """The source of one group's LR; its line is added when the group first appears."""
        if key not in self.sources:
            source = self._source(key)
            color = Category10_10[(len([k for k in self.sources if k.startswith("lr")]) - 1) % 10]
            self.lr_fig.line("step", "value", source=source, color=color, line_width=2,
                             legend_label=readers.group_label(key))
        return self.sources[key]

    @staticmethod
    def _show(source: ColumnDataSource, data: dict[str, list[Any]]) -> None:
        """Stream only the new rows; replace the data when they do not extend what is shown."""
        rows = readers.tail(source.data, data)
        if rows is None:
            source.data = data
        elif rows["step"]:
            source.stream(rows)

    # -- one poll --------------------------------------------------------------------------------------------------
    def update(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            progress = self.feed.poll()
        except (MlflowException, OSError) as err:  # the store is busy or gone: say so, try again at the next poll
            self.header.text = self._header(None, f"cannot read the run's store: {html.escape(str(err)[:200])}")
            return
        h = progress.histories
        if progress.status == "RUNNING" and self.run.run_dir is not None:
            try:
                heartbeat(self.run.run_dir)  # the parameter view writes its layer's bars while this is fresh
            except OSError:
                pass  # a read-only run folder: the curves still work, the bars do not
        self.header.text = self._header(progress)
        self._update_bars(progress.status)
        if progress.changed:
            self._update_curves(h, progress.epochs_on_steps)

    def _update_curves(self, h: dict[str, readers.Points], epochs_on_steps: bool) -> None:
        for key in readers.lr_keys(h):
            self._show(self._lr_source(key), readers.columns(h[key]))
        for pair in readers.metric_keys(self.run.metric).values():
            for key in pair:
                points = readers.on_global_steps(h.get(key, []), self.run.steps_per_epoch, epochs_on_steps)
                self._show(self._source(key), readers.columns(points))
        markers = readers.decision_markers(h.get("controller_action", []), h.get("controller_factor", []),
                                           h.get("lr", []), h.get(readers.HUMAN_KEY, []), self.names)
        if len(markers["step"]) != len(self.decisions.data["step"]):
            self.decisions.data = markers
        lr = h["lr"][-1][1] if h.get("lr") else None
        if lr is not None and lr != self._lr_seen:  # follow the run's LR (a `value` change sends no command)
            self._lr_seen = lr
            self.slider.value = controls.lr_to_slider(lr, self.low, self.high)

    def _update_bars(self, status: str) -> None:
        path = latest_layer_file(self.run.run_dir) if self.run.run_dir is not None else None
        if path is None:
            if status != "RUNNING":
                self.bar_title.text = ("<b>parameter view</b>: none. The view writes its layer only while a page "
                                       "watches the running run (and only with <code>viz=[params]</code>)")
            return
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime == self._layer_mtime:
            return
        snapshot = read_layer(path)
        if snapshot is None:
            return
        self._layer_mtime = mtime
        self.bars.data = readers.bar_columns(snapshot, self.max_bars)
        self.bar_title.text = (f"<b>parameter view</b>: {html.escape(readers.bar_title(snapshot, self.max_bars))}"
                               f" <span style='color:#777'>(refreshed every viz.params.every_n_steps steps; "
                               f"another layer: viz.params.layer=&lt;name&gt;)</span>")

    # -- controls --------------------------------------------------------------------------------------------------
    def _on_slider(self, attr: str, old: Any, new: float) -> None:
        self._press("set", controls.slider_to_lr(new))

    def _press(self, op: str, value: float | None) -> None:
        ok, message = controls.outcome(self.run.run_dir, self.run.run_id, op, value)
        color = "#2a7d2a" if ok else "#b00020"
        self.status.text = (f"<span style='color:{color}'>{time.strftime('%H:%M:%S')} "
                            f"{html.escape(message)}</span>")

    # -- text ------------------------------------------------------------------------------------------------------
    def _header(self, progress: Progress | None, problem: str = "") -> str:
        run, t = self.run, self.run.tags
        lines = [f"<b>{html.escape(run.name)}</b> <span style='color:#777'>{html.escape(run.run_id)}</span>",
                 html.escape(run.label)]
        if progress is not None:
            h = progress.histories
            status = progress.status + ("" if progress.alive else " (its process has ended)")
            epochs = max((len(h.get(k, [])) for k in ("train_loss", "val_loss")), default=0)
            step = readers.last_step(h)
            lr = h["lr"][-1][1] if h.get("lr") else float("nan")
            lines.append(f"{status} · epoch {epochs}/{t.get('max_epochs', '?')} · step "
                         f"{'-' if step is None else step} · LR {lr:.4g} · {self._holder()}")
        if problem:
            lines.append(f"<span style='color:#b00020'>{problem}</span>")
        return "<br>".join(lines)

    def _holder(self) -> str:
        """Who sets the LR, from the run's control file: the scheduler, or a person's last command."""
        from adaptive_lr.live_control import CONTROL_FILE, read_command

        path = None if self.run.run_dir is None else Path(self.run.run_dir) / CONTROL_FILE
        if path is None or not path.is_file():
            return "set by its scheduler"
        try:
            command = read_command(path)
        except (OSError, ValueError, KeyError):
            return "set by its scheduler"
        if command.op == "release":
            return f"set by its scheduler (released by command {command.seq})"
        what = f"{command.value:.4g}" if command.op == "set" else f"x{command.value:g}"
        return f"held by hand (command {command.seq}: {command.op} {what})"

    def _no_layer(self) -> str:
        return ("<b>parameter view</b>: none yet. A run started with <code>viz=[params]</code> writes its layer "
                "at the view's next logging step while this page is open (every <code>viz.params.every_n_steps"
                "</code> steps; layer: <code>viz.params.layer=&lt;name&gt;</code>, default the smallest weight "
                "matrix)")


def build_document(doc: Document, runs: Sequence[WatchedRun], poll_ms: int = POLL_MS,
                   max_bars: int = MAX_BARS) -> list[RunPanel]:
    """Fill `doc` with one column per run and poll them every `poll_ms`."""
    width = 1100 if len(runs) == 1 else 680
    panels = [RunPanel(run, slot, width, max_bars) for slot, run in zip("ab", runs, strict=False)]
    doc.title = "adaptive-lr watch: " + " vs ".join(run.name for run in runs)
    doc.add_root(row(*(p.layout for p in panels), name="watch"))

    def poll() -> None:
        for panel in panels:
            panel.update()

    poll()  # the page opens with what the runs already logged
    doc.add_periodic_callback(poll, poll_ms)
    return panels
