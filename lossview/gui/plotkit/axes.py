"""Axes: grid lines that cost little to draw, log-mode ticks that are readable (decades,
or 1-2-5 within a decade), a y-only log switch, and steady y ranges for curves that grow."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRect, QRectF, Qt
from PySide6.QtGui import QImage, QPainter, QTransform

_SUP = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
#: a linear axis' tick label longer than this is written with a power of ten
MAX_TICK_CHARS = 6


def format_value(x: float) -> str:
    """``0.01``, ``250``, ``2×10⁻⁵``, ``10⁶``: short labels for a log axis."""
    if x == 0 or not math.isfinite(x):
        return str(x)
    if 1e-3 <= abs(x) < 1e4:
        s = f"{x:.3g}"
        return f"{x:.0f}" if "e" in s else s
    k = math.floor(math.log10(abs(x)) + 1e-9)
    m = x / 10**k
    exp = str(k).translate(_SUP)
    return f"10{exp}" if abs(m - 1) < 1e-6 else f"{m:.2g}×10{exp}"


def log_ticks(lo: float, hi: float, max_ticks: int = 7) -> tuple[list[float], list[float]]:
    """Major and minor tick positions (log10 units) for a log axis spanning ``lo..hi``."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [], []
    k0, k1 = math.floor(lo), math.ceil(hi)
    decades = [float(k) for k in range(k0, k1 + 1) if lo <= k <= hi]
    if len(decades) >= 2:
        stride = max(1, math.ceil(len(decades) / max_ticks))
        major = decades[::stride]
        minor = [k + math.log10(m) for k in range(k0, k1 + 1) for m in range(2, 10)
                 if lo <= k + math.log10(m) <= hi] if len(decades) <= 4 else []
        return major, minor
    for mants in ((1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        vals = [k + math.log10(m) for k in range(k0 - 1, k1 + 1) for m in mants
                if lo <= k + math.log10(m) <= hi]
        if len(vals) >= 3:
            return vals[:: max(1, math.ceil(len(vals) / max_ticks))], []
    # narrower than one 1..9 step: fall back to evenly spaced values in linear units
    a, b = 10**lo, 10**hi
    step = 10 ** math.floor(math.log10((b - a) / 3))
    vals, v = [], math.ceil(a / step) * step
    while v <= b and len(vals) < 12:
        vals.append(math.log10(v))
        v += step
    return vals, []


def line_rects(specs) -> list[tuple[QRectF, object]] | None:
    """pyqtgraph's tick and grid lines (``(pen, p1, p2)``) as rectangles with their
    colour, or None where a line is not a 1-pixel solid square-capped line along x or y.

    The line from ``a`` to ``b`` at ``c`` lights pixels ``floor(min(a, b))`` to
    ``floor(max(a, b))`` along and ``floor(c)`` across it; a rectangle filled without
    antialiasing lights those whose centres lie inside it, so the line's extent grown
    by half a pixel on every side lights the same pixels (under any translation)."""
    out = []
    for pen, p1, p2 in specs:
        if pen.style() != Qt.PenStyle.SolidLine or pen.capStyle() != Qt.PenCapStyle.SquareCap \
                or pen.brush().style() != Qt.BrushStyle.SolidPattern \
                or not (pen.isCosmetic() and pen.widthF() <= 1.0):
            return None
        x1, y1, x2, y2 = p1.x(), p1.y(), p2.x(), p2.y()
        if y1 == y2:
            r = QRectF(min(x1, x2) - 0.5, y1 - 0.5, abs(x2 - x1) + 1.0, 1.0)
        elif x1 == x2:
            r = QRectF(x1 - 0.5, min(y1, y2) - 0.5, 1.0, abs(y2 - y1) + 1.0)
        else:
            return None
        out.append((r, pen.color()))
    return out


def fill_rects(p, rects: list[tuple[QRectF, object]]) -> None:
    """Fill :func:`line_rects`' rectangles on ``p`` (a painter that only translates).

    A rectangle one pixel wide is blended one span a row, ~150 ns a span: the 65 vertical
    grid lines of a 400-pixel-high plot took 6 ms. Lines that span the same rows are
    blended into a one-row image first (a "comb", in the order they were given), which
    is drawn stretched over those rows: a span a row for all of them (0.4 ms). The
    pixels are the ones the rectangles light (an aliased fill rounds each edge to the
    nearest pixel boundary); a colour may differ by one in 255 where Qt's scaled image
    blend rounds differently from its solid fill."""
    t = p.transform()
    combs: dict[tuple[float, float], list[tuple[float, object]]] = {}
    for r, color in rects:
        if r.width() == 1.0 and r.height() > 2.0:
            combs.setdefault((r.top(), r.bottom()), []).append((r.left(), color))
        else:
            p.fillRect(r, color)
    for (top, bottom), lines in combs.items():
        if len(lines) < 3:
            for left, color in lines:
                p.fillRect(QRectF(left, top, 1.0, bottom - top), color)
            continue
        cols = [math.floor(left + t.dx() + 0.5) for left, _ in lines]
        c0 = min(cols)
        comb = QImage(max(cols) - c0 + 1, 1, QImage.Format.Format_ARGB32_Premultiplied)
        comb.fill(0)
        q = QPainter(comb)
        for c, (_, color) in zip(cols, lines):
            q.fillRect(QRect(c - c0, 0, 1, 1), color)
        q.end()
        r0, r1 = math.floor(top + t.dy() + 0.5), math.floor(bottom + t.dy() + 0.5)
        if r1 > r0:
            p.save()
            p.resetTransform()  # device pixels (the clip stays as it was)
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
            p.drawImage(QRect(c0, r0, comb.width(), r1 - r0), comb)
            p.restore()


class GridAxis(pg.AxisItem):
    """AxisItem whose tick and grid lines are filled as rectangles: the same pixels,
    ~100x cheaper to draw.

    Qt's raster engine strokes an aliased line of a translucent pen (a grid line) pixel
    by pixel: the 34 grid lines of a log axis took 4-6 ms, at every range change of every
    plot (which re-renders its axes), where the same pixels filled as rectangles (one
    blended span a row) take ~0.05 ms. pyqtgraph records an axis into a QPicture and
    replays it, but a rectangle replayed from a picture is rasterised as a path, whose
    edges snap to 1/64 pixel (a line within 1/128 pixel of a pixel boundary then moved
    by one): the picture keeps the axis line and the labels, and the rectangles are
    filled straight onto the painter after it, as pyqtgraph drew the lines after the
    axis line. Where the painter scales (a high-DPI screen, a scaled export) a 1-pixel
    line is not a 1-unit rectangle: the lines are drawn as lines there."""

    _lines: list = []
    _rects: list = []

    def generateDrawSpecs(self, p):
        specs = super().generateDrawSpecs(p)
        self._lines, self._rects = [], []
        if specs is None:
            return None
        axis_spec, ticks, texts = specs
        rects = line_rects(ticks)
        if rects is None:  # drawn by pyqtgraph, into the picture
            return specs
        self._lines, self._rects = ticks, rects
        return axis_spec, [], texts

    def paint(self, p, opt, widget):
        super().paint(p, opt, widget)
        if not self._lines:
            return
        exact = p.transform().type().value <= QTransform.TransformationType.TxTranslate.value \
            and self._device_pixel_ratio() == 1.0
        p.save()
        p.setRenderHint(p.RenderHint.Antialiasing, False)
        if exact:
            fill_rects(p, self._rects)
        else:
            for pen, a, b in self._lines:
                p.setPen(pen)
                p.drawLine(a, b)
        p.restore()

    def _device_pixel_ratio(self) -> float:
        scene = self.scene()
        views = scene.views() if scene is not None else []
        return max((v.devicePixelRatioF() for v in views), default=1.0)


def _fit_labels(values: list[float], size: float, char_px: float = 7.0, gap_px: float = 12.0
                ) -> list[float]:
    """Every k-th major tick, so that the labels of a narrow horizontal axis do not run
    into each other ("500 10001500" in a 130-pixel plot); pyqtgraph spaces ticks by the
    axis length only, not by the labels' width."""
    vals = list(values)
    if len(vals) < 3 or size <= 0:
        return vals
    width = max(len(f"{v:g}") for v in vals) * char_px + gap_px
    k = 1
    while len(vals[::k]) > 2 and len(vals[::k]) * width > size:
        k += 1
    return vals[::k]


class NiceAxis(GridAxis):
    """AxisItem with readable ticks and cheap grid lines: log mode labels decades (or
    1-2-5 within one); linear mode has no SI prefix after the axis label ("PC2 (x0.001)"
    was cut off by the colour bar, "loss (x0.001)" read as a unit) and writes a tick
    longer than :data:`MAX_TICK_CHARS` (or in e-notation) as ``2.5×10⁻⁴``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.enableAutoSIPrefix(False)

    def tickValues(self, minVal, maxVal, size):
        if not self.logMode:
            levels = super().tickValues(minVal, maxVal, size)
            if self.orientation in ("bottom", "top") and levels:
                levels = [(levels[0][0], _fit_labels(levels[0][1], size)), *levels[1:]]
            return levels
        major, minor = log_ticks(min(minVal, maxVal), max(minVal, maxVal))
        if not major:
            return super().tickValues(minVal, maxVal, size)
        out = [(1.0, major)]
        if minor:
            out.append((0.5, minor))
        return out

    def tickStrings(self, values, scale, spacing):
        if not self.logMode:
            strings = super().tickStrings(values, scale, spacing)
            if max(map(len, strings), default=0) <= MAX_TICK_CHARS \
                    and not any("e" in t for t in strings):  # (pyqtgraph's "1e+07")
                return strings
            return [format_value(float(f"{v * scale:.3g}")) for v in values]
        if spacing == 0.5:  # minor ticks: marks only
            return ["" for _ in values]
        return [format_value(10**v) for v in values]


def nice_axes(*sides: str) -> dict[str, NiceAxis]:
    """``axisItems`` for a PlotItem: a :class:`NiceAxis` on each side (left and bottom)."""
    return {side: NiceAxis(side) for side in (sides or ("left", "bottom"))}


def set_log_y(plot: pg.PlotItem, on: bool) -> bool:
    """Switch ``plot``'s y axis to log (or linear) mode and touch nothing else; return
    whether the mode changed.

    ``PlotItem.setLogMode`` also re-enables auto-range on *both* axes and resets the x
    axes' tick pictures: in a plot whose x frame is fixed (a run still training), a
    y-only switch then moved the x range of every x-linked plot, and the next refresh
    moved it back, re-rendering all of their axes and curves twice (27 ms of one turn
    of live training). This switches the data items and the y axes alone, through their
    public ``setLogMode``; the axis's ``logMode`` says the mode. PlotItem's own "Plot
    Options" menu, which keeps a mode of its own, is turned off on such plots
    (``setMenuEnabled(False, None)``): the panel's log checkbox is the one switch.
    """
    on = bool(on)
    if bool(plot.getAxis("left").logMode) == on:
        return False
    x_log = bool(plot.getAxis("bottom").logMode)
    for item in plot.listDataItems():
        item.setLogMode(x_log, on)
    for name in ("left", "right"):
        plot.getAxis(name).setLogMode(x_log, on)
    return True


def planned_steps(run) -> int | None:
    """The number of steps a live run will train for (None for a finished run).

    While training, the x axes show the whole planned run instead of following the data:
    re-ranging them at every live refresh re-rendered every axis (40-90 ms a refresh,
    mostly tick text; measured), and a fixed frame shows how far training has got."""
    if not getattr(run, "live", False):
        return None
    spec = getattr(run, "spec", None) or {}
    steps = (spec.get("training") or {}).get("steps")
    return int(steps) if isinstance(steps, (int, float)) and steps > 0 else None


def spans_decades(arrays: list, ratio: float = 30.0) -> bool:
    """The positive values of ``arrays`` span more than ``ratio`` (a log axis reads them)."""
    vals = np.concatenate([a[np.isfinite(a) & (a > 0)] for a in arrays]) if arrays else []
    return len(vals) > 1 and float(vals.max()) > ratio * float(vals.min())


def steady_range(current: tuple[float, float] | None, arrays: list, log: bool,
                 pad: float = 0.12, loose: float = 3.0,
                 ahead: float = 0.25) -> tuple[float, float] | None:
    """A y range for curves that grow: None while ``current`` (view coordinates: log10 of
    the values in log mode) holds every value and is at most ``loose`` times as wide as
    they need; else (or with no ``current``) the values' range with ``pad`` of its span
    on each side (at least 0.15 of a decade in log mode, where a falling loss would
    otherwise leave a tight range again at the next refresh), and ``ahead`` of the span
    more on a side the values had left ``current`` by: they are moving that way.

    A growing run's curves change range at nearly every refresh under auto-range, and
    each change re-renders the axis and its grid (3-11 ms an axis on a software
    display); most refreshes now keep the range, and the axes stop jittering. A loss
    falling by a decade a second re-ranged at every refresh with the margin alone.
    """
    vals = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays]) \
        if arrays else np.array([])
    vals = vals[np.isfinite(vals)]
    if log:
        vals = np.log10(vals[vals > 0])
    if not len(vals):
        return None
    lo, hi = float(vals.min()), float(vals.max())
    span = hi - lo if hi > lo else (0.1 if log else max(abs(hi) * 0.1, 1e-12))
    margin = max(pad * span, 0.15) if log else pad * span
    need = span + 2 * margin
    if current is not None and current[0] <= lo and hi <= current[1] \
            and (current[1] - current[0]) <= loose * need:
        return None
    below = current is not None and lo < current[0]
    above = current is not None and hi > current[1]
    return (lo - margin - (ahead * span if below else 0.0),
            hi + margin + (ahead * span if above else 0.0))
