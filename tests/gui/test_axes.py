"""Grid lines filled as rectangles (axes.GridAxis) light exactly the pixels pyqtgraph's
drawn lines do: on the screen, in a pixmap-cached axis, and (drawn as lines again) under
a scaled painter."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen

from lossview.gui.plotkit import style
from lossview.gui.plotkit.axes import NiceAxis, line_rects


def _pixels(img: QImage) -> np.ndarray:
    img = img.convertToFormat(QImage.Format.Format_ARGB32)
    return np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.width(), 4).copy()


def _draw(lines, as_rects: bool, tx: float, ty: float) -> np.ndarray:
    img = QImage(64, 64, QImage.Format.Format_ARGB32_Premultiplied)
    img.fill(0)
    p = QPainter(img)
    p.translate(tx, ty)
    if as_rects:
        for r, color in line_rects(lines):
            p.fillRect(r, color)
    else:
        for pen, a, b in lines:
            p.setPen(pen)
            p.drawLine(a, b)
    p.end()
    return _pixels(img)


def test_a_line_and_its_rectangle_light_the_same_pixels(qapp):
    pen = QPen(QColor(150, 150, 150, 38))
    pen.setCosmetic(True)
    pen.setCapStyle(Qt.PenCapStyle.SquareCap)
    rng = np.random.default_rng(0)
    for k in range(300):
        c = rng.uniform(2, 40)
        if k % 3 == 0:  # on and next to a pixel boundary
            c = round(c) + rng.choice([0.0, 1e-4, -1e-4, 0.5, 1 / 128, -1 / 128])
        a, b = rng.uniform(1, 20), rng.uniform(21, 45)
        if k % 2:
            a, b = b, a  # pyqtgraph draws a left axis's grid lines right to left
        lines = [(pen, QPointF(a, c), QPointF(b, c)), (pen, QPointF(c, a), QPointF(c, b))]
        tx, ty = rng.uniform(0, 10, 2) if k % 5 else (0.0, 0.0)
        drawn, filled = _draw(lines, False, tx, ty), _draw(lines, True, tx, ty)
        assert drawn[..., 3].any()
        np.testing.assert_array_equal(filled, drawn, err_msg=f"line at {c}, {a}..{b}, t={tx, ty}")


def test_lines_that_are_not_one_pixel_along_an_axis_are_left_to_pyqtgraph(qapp):
    pen = QPen(QColor(0, 0, 0, 40))
    pen.setCosmetic(True)
    assert line_rects([(pen, QPointF(0, 0), QPointF(5, 5))]) is None  # diagonal
    wide = QPen(pen)
    wide.setWidthF(2.0)
    assert line_rects([(wide, QPointF(0, 1), QPointF(5, 1))]) is None
    dashed = QPen(pen)
    dashed.setStyle(Qt.PenStyle.DashLine)
    assert line_rects([(dashed, QPointF(0, 1), QPointF(5, 1))]) is None
    [(rect, color)] = line_rects([(pen, QPointF(5, 1), QPointF(0, 1))])
    assert rect == QRectF(-0.5, 0.5, 6.0, 1.0) and color == QColor(0, 0, 0, 40)


class _DrawnAxis(NiceAxis):
    """NiceAxis with pyqtgraph's own drawing: every tick and grid line a drawLine."""

    generateDrawSpecs = pg.AxisItem.generateDrawSpecs
    paint = pg.AxisItem.paint


def _plot(qtbot, axis_class, cached: bool):
    w = pg.GraphicsLayoutWidget()
    qtbot.addWidget(w)
    w.resize(420, 300)
    p = w.addPlot(axisItems={"left": axis_class("left"), "bottom": axis_class("bottom")})
    p.showGrid(x=True, y=True, alpha=0.15)
    if cached:
        style.steady_axes(p)  # each axis rendered into a device-pixel cache
    x = np.arange(100.0)
    p.plot(x, np.exp(-x / 10) + 1e-3)
    w.show()
    qtbot.waitExposed(w)
    return w, p


@pytest.mark.parametrize("cached", [False, True])
def test_an_axis_with_filled_grid_lines_looks_the_same(qtbot, cached):
    w_fill, p_fill = _plot(qtbot, NiceAxis, cached)
    w_draw, p_draw = _plot(qtbot, _DrawnAxis, cached)
    rng = np.random.default_rng(1)
    for k in range(12):
        log = k % 2 == 0
        y = ((rng.uniform(-4, -1), rng.uniform(0, 1)) if log
             else (rng.uniform(0, 0.3), rng.uniform(0.5, 2)))
        x = (rng.uniform(-10, 10), rng.uniform(40, 150))
        for p in (p_fill, p_draw):
            p.setLogMode(y=log)
            p.setRange(xRange=x, yRange=y, padding=0)
        a = _pixels(w_fill.grab().toImage()).astype(int)
        b = _pixels(w_draw.grab().toImage()).astype(int)
        assert p_fill.getAxis("left")._rects, "the grid was not filled as rectangles"
        # the same pixels lit (a missing or moved grid line is ~16 levels off); a colour
        # may be one in 255 off where the vertical lines' comb image is blended
        assert np.abs(a - b).max() <= 1, f"range {x}, {y} (log {log})"


def test_a_scaled_painter_gets_the_lines_drawn_as_lines(qtbot):
    """An export at twice the size scales the painter: a 1-pixel line stays 1 pixel wide
    there (a 1-unit rectangle would be 2), so the axis draws lines as pyqtgraph does."""
    w_fill, p_fill = _plot(qtbot, NiceAxis, False)
    w_draw, _p_draw = _plot(qtbot, _DrawnAxis, False)
    images = []
    for w in (w_fill, w_draw):
        img = QImage(2 * w.width(), 2 * w.height(), QImage.Format.Format_ARGB32_Premultiplied)
        img.fill(0)
        painter = QPainter(img)
        painter.scale(2.0, 2.0)
        w.scene().render(painter, QRectF(0, 0, w.width(), w.height()),
                         QRectF(0, 0, w.width(), w.height()))
        painter.end()
        images.append(_pixels(img))
    assert p_fill.getAxis("left")._lines
    np.testing.assert_array_equal(images[0], images[1])


def test_narrow_horizontal_axis_keeps_its_labels_apart(qtbot):
    # "500 10001500" under a 130-pixel plot: pyqtgraph spaces ticks by length alone
    from lossview.gui.plotkit.axes import NiceAxis

    ax = NiceAxis("bottom")
    major = ax.tickValues(240.0, 2000.0, 130.0)[0][1]
    width = max(len(f"{v:g}") for v in major) * 7.0 + 12.0
    assert len(major) >= 2 and len(major) * width <= 130.0
    import pyqtgraph as pg

    raw = pg.AxisItem.tickValues(ax, 240.0, 2000.0, 130.0)[0][1]  # what pyqtgraph picks
    assert len(raw) > len(major) and set(major) <= set(raw)  # thinned, not moved
