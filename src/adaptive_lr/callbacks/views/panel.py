"""The parameter view's panel, drawn with numpy and Pillow: three heatmaps (or bar charts for vectors) side by side,
each with its title, colour bar and value range, under one title line.

Drawn straight into an RGB array instead of through matplotlib's axes: a matplotlib panel spent ~80% of its time
laying out tick labels (~200 ms a panel on the loaded 2-core machine, ~100 MNIST training steps; this: a few ms).
The colour maps are matplotlib's (`viridis` for values, `RdBu_r` centred on 0 for updates, `magma` for the
effective LR) and the font is matplotlib's DejaVu Sans, so panels look like the other views' figures.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

BACKGROUND, INK, FRAME = (255, 255, 255), (30, 30, 30), (150, 150, 150)
BAR = (31, 119, 180)  # matplotlib's tab:blue


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
