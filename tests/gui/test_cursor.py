"""PixelCursor: exact value, drawn less than a device pixel from it, redrawn only when
that is no longer so, and exact again whenever the view changes."""

import math

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QPointF
from PySide6.QtGui import QImage

from lossview.gui.plotkit.cursor import SLACK_PX, PixelCursor, PointMarker


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
    line.sigPositionChanged.connect(lambda line_: moved.append(line_.value()))
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
    from lossview.gui.panels.diagnostics_panel import DiagnosticsPanel
    from lossview.gui.panels.loss_panel import LossPanel
    from lossview.gui.surface.honesty import HonestyPlot
    from lossview.gui.timeline import Timeline

    tl = Timeline()
    lp, dp = LossPanel(tl), DiagnosticsPanel(tl)
    for w in (lp, dp):
        qtbot.addWidget(w)
    lines = [*lp.cursors, *dp.cursors, dp.pair_hline, HonestyPlot(tl).cursor]
    assert all(isinstance(c, PixelCursor) for c in lines)
    assert np.all([c.movable for c in lp.cursors])  # the loss cursors can still be dragged


def _red_pixels(plot):
    """(x, y) columns and rows of the widget's pure-red pixels, in logical pixels."""
    img = plot.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    a = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine() // 4, 4)
    b, g, r = a[..., 0].astype(int), a[..., 1].astype(int), a[..., 2].astype(int)
    ys, xs = np.nonzero((r > 200) & (g < 80) & (b < 80))
    dpr = img.devicePixelRatio()
    return xs / dpr, ys / dpr


def _red_centroid(plot):
    xs, ys = _red_pixels(plot)
    return (xs.mean(), ys.mean()) if len(xs) else None


def test_point_marker_moves_by_position_and_is_drawn_where_its_point_maps(plot, qtbot):
    """The current-point marker: drawn centred on its point's pixel, its size in screen
    pixels whatever the zoom, and hidden by None or NaN."""
    m = PointMarker(size=15, pen=None, brush=pg.mkBrush(255, 0, 0))
    plot.addItem(m, ignoreBounds=True)
    assert m.getData()[0].size == 0 and _red_centroid(plot) is None  # hidden until set
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
    # a 15-pixel disc (antialiased edge pixels are not pure red) ...
    xs, ys = _red_pixels(plot)
    assert 12 <= np.ptp(xs) + 1 <= 16 and 12 <= np.ptp(ys) + 1 <= 16
    # ... at any zoom: the view 10 times narrower, the disc the same on screen
    plot.setXRange(750, 850, padding=0)
    qtbot.wait(20)
    xs2, ys2 = _red_pixels(plot)
    assert abs(np.ptp(xs2) - np.ptp(xs)) <= 1 and abs(np.ptp(ys2) - np.ptp(ys)) <= 1  # (sub-pixel)
    assert abs(xs2.mean() - plot.mapFromScene(vb.mapViewToScene(QPointF(800, 7))).x()) < 1.5
    for gone in ((None, None), (np.nan, 3.0)):
        m.set_point(*gone)
        qtbot.wait(20)
        assert m.getData()[0].size == 0 and _red_centroid(plot) is None


def test_point_marker_grows_with_an_export_larger_than_the_screen(plot, qtbot):
    """pyqtgraph's image exporter at twice the plot's width: the marker is twice as wide
    in the picture (its size is in screen pixels, as a ScatterPlotItem spot's), centred
    where the point maps, and back to its size on screen afterwards."""
    from pyqtgraph.exporters import ImageExporter

    m = PointMarker(size=15, pen=None, brush=pg.mkBrush(255, 0, 0))
    plot.addItem(m, ignoreBounds=True)
    m.set_point(500.0, 5.0)
    qtbot.wait(20)
    widths = {}
    for scale in (1, 2):
        ex = ImageExporter(plot.getPlotItem())
        ex.parameters()["width"] = scale * int(ex.parameters()["width"])
        img = ex.export(toBytes=True).convertToFormat(QImage.Format.Format_RGB32)
        a = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine() // 4, 4)
        ys, xs = np.nonzero((a[..., 2] > 200) & (a[..., 1] < 80) & (a[..., 0] < 80))
        widths[scale] = np.ptp(xs) + 1
        vb = plot.getPlotItem().getViewBox()
        # where (500, 5) lies in the exported picture: the plot item's rectangle scaled
        want = (vb.mapViewToScene(QPointF(500, 5)) - plot.getPlotItem().sceneBoundingRect().topLeft()) * scale
        assert abs(xs.mean() - want.x()) < 1.5 * scale and abs(ys.mean() - want.y()) < 1.5 * scale
    assert 12 <= widths[1] <= 16
    assert abs(widths[2] - 2 * widths[1]) <= 2
    xs, _ = _red_pixels(plot)
    assert 12 <= np.ptp(xs) + 1 <= 16  # on screen, as before
