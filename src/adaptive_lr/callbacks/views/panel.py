"""Figures of the views drawn with numpy and Pillow: the parameter view's panel (three heatmaps, or bar charts for
vectors, side by side, each with its title, colour bar and value range, under one title line) and the latent
view's scatter (train and validation points on shared 2-D coordinates, coloured by class, misclassified points
crossed, with a legend of the classes).

Drawn straight into an RGB array instead of through matplotlib's axes: a matplotlib panel spent ~80% of its time
laying out tick labels (~200 ms a panel on the loaded 2-core machine, ~100 MNIST training steps; this: a few ms).
The colour maps are matplotlib's (`viridis` for values, `RdBu_r` centred on 0 for updates, `magma` for the
effective LR; `tab10`/`tab20` for classes) and the font is matplotlib's DejaVu Sans, so they look like the other
views' figures. The latent scatter has no axis ticks: a t-SNE or UMAP coordinate has no unit.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

BACKGROUND, INK, FRAME = (255, 255, 255), (30, 30, 30), (150, 150, 150)
BAR = (31, 119, 180)  # matplotlib's tab:blue
WRONG = (214, 39, 40)  # matplotlib's tab:red


@dataclass(frozen=True)
class Heatmap:
    """One panel: its title, the data [rows, cols] (None: not defined) and its colour map."""

    title: str
    data: np.ndarray | None
    cmap: str


@functools.lru_cache(maxsize=8)
def colour_table(cmap: str) -> np.ndarray:
    """256 RGB uint8 colours of a matplotlib colour map."""
    import matplotlib

    return (matplotlib.colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


@functools.lru_cache(maxsize=8)
def font(size: int):
    from matplotlib import font_manager
    from PIL import ImageFont

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


def colour_range(data: np.ndarray, cmap: str) -> tuple[float, float]:
    """The values the colour map spans: symmetric around 0 for the diverging map (updates), else min to max."""
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return 0.0, 1.0
    if cmap == "RdBu_r":
        bound = float(np.abs(finite).max()) or 1.0
        return -bound, bound
    return float(finite.min()), float(finite.max())


def colourize(data: np.ndarray, cmap: str, lo: float, hi: float) -> np.ndarray:
    """RGB uint8 [rows, cols, 3] of `data` on the colour map between lo and hi (NaN: grey)."""
    t = np.full(data.shape, 0.5) if hi <= lo else (np.nan_to_num(data, nan=lo) - lo) / (hi - lo)
    rgb = colour_table(cmap)[(np.clip(t, 0.0, 1.0) * 255).round().astype(np.intp)]
    rgb[~np.isfinite(data)] = FRAME
    return rgb


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def render_panel(title: str, panels: list[Heatmap], width: int, height: int) -> np.ndarray:
    """The panel as an RGB uint8 array [height, width, 3]."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    size = max(8, round(height * 0.036))
    text, small = font(size + 2), font(size)
    draw.text((width / 2, size * 0.4), title, fill=INK, font=font(size + 3), anchor="ma")
    column = width / len(panels)
    top, bottom = round(height * 0.2), round(height * 0.86)
    for i, panel in enumerate(panels):
        x0 = round(i * column + column * 0.14)
        bar_x = round((i + 1) * column - column * 0.2)
        x1 = bar_x - round(column * 0.035)
        draw.text(((x0 + bar_x) / 2, top - size * 2.0), panel.title, fill=INK, font=text, anchor="ma")
        if panel.data is None:
            draw.multiline_text(((x0 + x1) / 2, (top + bottom) / 2), "not defined\nfor this optimizer", fill=INK,
                                font=text, anchor="mm", align="center")
            continue
        data = panel.data
        if data.shape[1] == 1:  # a vector (bias, norm scale): one bar per element
            _bars(draw, data[:, 0], (x0, top, bar_x, bottom), small)
            continue
        lo, hi = colour_range(data, panel.cmap)
        heat = Image.fromarray(colourize(data, panel.cmap, lo, hi)).resize((x1 - x0, bottom - top), Image.NEAREST)
        image.paste(heat, (x0, top))
        draw.rectangle((x0 - 1, top - 1, x1, bottom), outline=FRAME)
        draw.text(((x0 + x1) / 2, bottom + size * 0.4), f"input 0-{data.shape[1] - 1}", fill=INK, font=small,
                  anchor="ma")
        label = Image.new("RGB", (bottom - top, size + 4), BACKGROUND)
        ImageDraw.Draw(label).text(((bottom - top) / 2, 1), f"output 0-{data.shape[0] - 1}", fill=INK, font=small,
                                   anchor="ma")
        image.paste(label.rotate(90, expand=True), (x0 - size - 6, top))
        # the colour bar: the map from hi (top) to lo (bottom), with its ends and middle labelled
        strip = colour_table(panel.cmap)[np.linspace(255, 0, bottom - top).round().astype(np.intp)]
        bar_w = max(6, round(column * 0.035))
        image.paste(Image.fromarray(np.repeat(strip[:, None, :], bar_w, axis=1)), (bar_x, top))
        draw.rectangle((bar_x - 1, top - 1, bar_x + bar_w, bottom), outline=FRAME)
        for y, value in ((top, hi), ((top + bottom) / 2, (lo + hi) / 2), (bottom, lo)):
            draw.text((bar_x + bar_w + 3, y), _fmt(value), fill=INK, font=small, anchor="lm")
    return np.asarray(image)


def _bars(draw, values: np.ndarray, box: tuple[int, int, int, int], small) -> None:
    """A bar per element inside `box`, from a zero line, with the value range labelled on the left."""
    x0, top, x1, bottom = box
    finite = values[np.isfinite(values)]
    lo, hi = (min(0.0, float(finite.min())), max(0.0, float(finite.max()))) if finite.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    scale = (bottom - top) / (hi - lo)
    zero = bottom - (0.0 - lo) * scale
    step = (x1 - x0) / max(len(values), 1)
    for k, value in enumerate(values):
        if np.isfinite(value):
            y = zero - float(value) * scale
            draw.rectangle((x0 + k * step + step * 0.1, min(y, zero), x0 + (k + 1) * step - step * 0.1, max(y, zero)),
                           fill=BAR)
    draw.line((x0, zero, x1, zero), fill=FRAME)
    draw.rectangle((x0 - 1, top - 1, x1, bottom), outline=FRAME)
    for y, value in ((top, hi), (bottom, lo)):
        draw.text((x0 - 3, y), _fmt(value), fill=INK, font=small, anchor="rm")
    draw.text(((x0 + x1) / 2, bottom + 3), f"element 0-{len(values) - 1}", fill=INK, font=small, anchor="ma")


@dataclass(frozen=True)
class Scatter:
    """One scatter panel: its title, points [N, 2], their classes [N] and which to cross out (None: none)."""

    title: str
    points: np.ndarray
    labels: np.ndarray
    crossed: np.ndarray | None


def class_colours(classes: list[int]) -> dict[int, tuple[int, int, int]]:
    """A colour per class: tab10 (up to 10 classes), tab20 (up to 20), else viridis over the class range."""
    import matplotlib

    lo, hi = min(classes), max(classes)
    if len(classes) <= 20:
        table = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
        return {c: tuple(int(round(255 * v)) for v in table(c - lo)[:3]) for c in classes}
    table = matplotlib.colormaps["viridis"]
    return {c: tuple(int(round(255 * v)) for v in table((c - lo) / max(hi - lo, 1))[:3]) for c in classes}


def render_scatter(title: str, panels: list[Scatter], classes: list[int], width: int, height: int) -> np.ndarray:
    """The panels side by side on shared coordinates, as an RGB uint8 array [height, width, 3]."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    size = max(8, round(height * 0.024))
    text, small = font(size + 2), font(size)
    draw.text((width / 2, size * 0.5), title, fill=INK, font=font(size + 3), anchor="ma")
    every = np.concatenate([p.points for p in panels]) if panels else np.zeros((0, 2))
    finite = every[np.isfinite(every).all(axis=1)]
    lo, hi = (finite.min(axis=0), finite.max(axis=0)) if len(finite) else (np.zeros(2), np.ones(2))
    pad = np.maximum(hi - lo, 1e-9) * 0.04
    lo, hi = lo - pad, hi + pad
    colours = class_colours(classes)
    radius, cross = max(1.5, height * 0.0045), max(3.0, height * 0.011)
    column = width / max(len(panels), 1)
    top, bottom = round(height * 0.12), round(height * 0.97)
    for i, panel in enumerate(panels):
        x0, x1 = round(i * column + column * 0.02), round((i + 1) * column - column * 0.02)
        draw.text(((x0 + x1) / 2, top - size * 1.8), panel.title, fill=INK, font=text, anchor="ma")
        draw.rectangle((x0, top, x1, bottom), outline=FRAME)
        xy = np.column_stack([x0 + (panel.points[:, 0] - lo[0]) / (hi[0] - lo[0]) * (x1 - x0),
                              bottom - (panel.points[:, 1] - lo[1]) / (hi[1] - lo[1]) * (bottom - top)])
        for (x, y), label in zip(xy, panel.labels, strict=True):
            if np.isfinite(x) and np.isfinite(y):
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colours.get(int(label), FRAME))
        if panel.crossed is not None:
            for x, y in xy[np.asarray(panel.crossed, dtype=bool)]:
                draw.line((x - cross, y - cross, x + cross, y + cross), fill=WRONG, width=2)
                draw.line((x - cross, y + cross, x + cross, y - cross), fill=WRONG, width=2)
            _legend(draw, [(WRONG, "x", f"misclassified ({int(np.sum(panel.crossed))})")], (x1, top), small, size)
        elif len(classes) <= 20:
            _legend(draw, [(colours[c], "o", str(c)) for c in classes], (x1, top), small, size,
                    title="class", columns=2 if len(classes) > 10 else 1)
    return np.asarray(image)


def _legend(draw, entries: list[tuple[tuple[int, int, int], str, str]], corner: tuple[float, float], small,
            size: int, title: str | None = None, columns: int = 1) -> None:
    """A framed legend in the top right corner `corner`: a marker (o: dot, x: cross) and a label per entry."""
    row = size + 4
    widths = [draw.textlength(label, font=small) for _, _, label in entries] + [0]
    cell = max(widths) + size * 2
    rows = -(-len(entries) // columns) + (1 if title else 0)
    x1, y0 = corner[0] - 6, corner[1] + 6
    x0 = x1 - cell * columns - 8
    draw.rectangle((x0, y0, x1, y0 + rows * row + 8), fill=BACKGROUND, outline=FRAME)
    y = y0 + 4
    if title:
        draw.text(((x0 + x1) / 2, y), title, fill=INK, font=small, anchor="ma")
        y += row
    for k, (colour, marker, label) in enumerate(entries):
        cx = x0 + 6 + (k % columns) * cell + size / 2
        cy = y + (k // columns) * row + row / 2
        half = size * 0.35
        if marker == "x":
            draw.line((cx - half, cy - half, cx + half, cy + half), fill=colour, width=2)
            draw.line((cx - half, cy + half, cx + half, cy - half), fill=colour, width=2)
        else:
            draw.ellipse((cx - half, cy - half, cx + half, cy + half), fill=colour)
        draw.text((cx + size, cy), label, fill=INK, font=small, anchor="lm")
