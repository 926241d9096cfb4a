"""PixelCursor: exact value, drawn less than a device pixel from it, redrawn only when
that is no longer so, and exact again whenever the view changes."""

import math

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QPointF

from lossview.gui.cursor import SLACK_PX, PixelCursor, PointMarker


@pytest.fixture
def plot(qtbot):
    w = pg.PlotWidget()
    qtbot.addWidget(w)
    w.resize(400, 300)
    w.setXRange(0, 1000, padding=0)
    w.setYRange(0, 10, padding=0)
    w.show()
    qtbot.waitExposed(w)
    vb = w.getPlotItem().getViewBox()
    # the view maps data to pixels once it has been laid out and ranged (lazily)
    # ... and laid out for good: after another test module's windows the first layout
    # was followed by a second one (a 363 px view became 378 px)
    widths = []

    def settled() -> bool:
        widths.append(vb.width())
        return (len(widths) >= 3 and widths[-1] == widths[-2] == widths[-3]
                and abs(exact_px(1000, w) - exact_px(0, w) - vb.width()) < 1)

    qtbot.waitUntil(settled, timeout=2000)
    return w


def drawn_px(line, plot):
    """Device x (angle 90) or y (angle 0) of where the line is drawn."""
    tr = plot.getPlotItem().getViewBox().childGroup.deviceTransform_()
    p = tr.map(line.pos())
    return p.x() if line.angle == 90 else p.y()


def exact_px(value, plot, angle=90):
    tr = plot.getPlotItem().getViewBox().childGroup.deviceTransform_()
    p = tr.map(QPointF(value, 0) if angle == 90 else QPointF(0, value))
    return p.x() if angle == 90 else p.y()


def test_the_value_is_exact_and_the_line_is_redrawn_only_a_pixel_away(plot):
    line = PixelCursor(angle=90, pos=0)
    plot.addItem(line)
    px_per_unit = (exact_px(1000, plot) - exact_px(0, plot)) / 1000
    assert px_per_unit * 1000 == pytest.approx(plot.getPlotItem().getViewBox().width(), rel=0.01)
    moved = []
    line.sigPositionChanged.connect(lambda l: moved.append(l.value()))
    start = line.moves
    # 1,000 steps of 1 unit across ~360 pixels: a step is about a third of a pixel
    for v in range(1, 1001):
        line.setValue(v)
        assert line.value() == v
        assert abs(drawn_px(line, plot) - exact_px(v, plot)) < SLACK_PX + 1e-9
    assert moved == list(range(1, 1001))  # every value change is still signalled
    redraws = line.moves - start
    # a redraw once the value is a pixel (SLACK_PX) or more away: every k-th step
    k = math.ceil(SLACK_PX / px_per_unit)
    assert k == 3  # a step is ~0.36 px
    assert abs(redraws - 1000 / k) <= 3


def test_a_zoom_draws_the_line_at_its_exact_value_again(plot, qtbot):
    line = PixelCursor(angle=90, pos=500)
    plot.addItem(line)
    line.setValue(500.4)  # a fraction of a pixel: the line stays where it is drawn
    assert line.pos().x() == 500
    plot.setXRange(499, 502, padding=0)  # now 0.4 units are ~50 pixels
    qtbot.waitUntil(lambda: line.pos().x() == 500.4, timeout=2000)  # as the view repaints
    assert abs(drawn_px(line, plot) - exact_px(500.4, plot)) < 1e-6


def test_horizontal_lines_bounds_and_points(plot):
    h = PixelCursor(angle=0, pos=5)
    plot.addItem(h)
    h.setValue(5.001)  # ~0.03 px on a 10-unit, ~270 px axis
    assert h.value() == 5.001 and h.pos().y() == 5
    h.setValue(7)
    assert h.pos().y() == 7 and abs(drawn_px(h, plot) - exact_px(7, plot, 0)) < 1e-6
    b = PixelCursor(angle=90, pos=100, bounds=(0, 200))
    plot.addItem(b)
    b.setValue(900)
    assert b.value() == 200 and b.pos().x() == 200  # clamped as pyqtgraph does
    b.setPos(QPointF(50, 0))  # a point: pyqtgraph's own path, exact at once
    assert b.value() == 50 and b.pos().x() == 50


def test_a_line_not_in_a_view_yet_is_placed_exactly():
    line = PixelCursor(angle=90, pos=0)
    line.setValue(3.25)
    assert line.value() == 3.25 and line.pos().x() == 3.25


def test_the_loss_and_diagnostics_cursors_are_pixel_cursors(qtbot):
    from lossview.gui.diagnostics_panel import DiagnosticsPanel
    from lossview.gui.loss_panel import LossPanel
    from lossview.gui.surface_honesty import HonestyPlot
    from lossview.gui.timeline import Timeline

    tl = Timeline()
    lp, dp = LossPanel(tl), DiagnosticsPanel(tl)
    for w in (lp, dp):
        qtbot.addWidget(w)
    lines = [*lp.cursors, *dp.cursors, dp.pair_hline, HonestyPlot().cursor]
    assert all(isinstance(c, PixelCursor) for c in lines)
    assert np.all([c.movable for c in lp.cursors])  # the loss cursors can still be dragged


def _red_centroid(plot):
    img = plot.grab().toImage()
    xs, ys = [], []
    for y in range(img.height()):
        for x in range(img.width()):
            c = img.pixelColor(x, y)
            if c.red() > 200 and c.green() < 80 and c.blue() < 80:
                xs.append(x)
                ys.append(y)
    return (np.mean(xs), np.mean(ys)) if xs else None


def test_point_marker_moves_by_position_and_is_drawn_where_its_point_maps(plot, qtbot):
    """The current-point marker: set_point translates it (the one spot's data is never
    rebuilt), it is drawn centred on the point's pixel, and None or NaN hides it."""
    m = PointMarker(size=15, pen=None, brush=pg.mkBrush(255, 0, 0))
    plot.addItem(m, ignoreBounds=True)
    assert m.getData()[0].size == 0 and _red_centroid(plot) is None  # hidden until set
    spots = m.data
    vb = plot.getPlotItem().getViewBox()
    for x, y in ((250.0, 2.5), (800.0, 7.0)):
        m.set_point(x, y)
        qtbot.wait(20)
        gx, gy = m.getData()
        assert (gx.tolist(), gy.tolist()) == ([x], [y])
        # where (x, y) lies on the widget, in its (logical) pixels
        want = plot.mapFromScene(vb.mapViewToScene(QPointF(x, y)))
        cx, cy = _red_centroid(plot)
        assert abs(cx - want.x()) < 1.5 and abs(cy - want.y()) < 1.5
    assert m.data is spots and len(m.data) == 1  # moved, not re-filled
    for gone in ((None, None), (np.nan, 3.0)):
        m.set_point(*gone)
        qtbot.wait(20)
        assert m.getData()[0].size == 0 and _red_centroid(plot) is None
