"""Texts that are not cut off and legends that hide no curve (issue 20 item 5): the
honesty strip's right axis in a panel as narrow as a 1280-pixel window makes it, axis
labels without SI prefixes, a legend placed off the curves."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from lossview.core.surface.scene import SurfaceScene, height_scale
from lossview.gui.plotkit.axes import NiceAxis
from lossview.gui.timeline import Timeline


def test_the_honesty_strips_right_axis_and_its_label_lie_inside_a_narrow_panel(qtbot):
    from lossview.gui.surface.honesty import HonestyPlot

    tl = Timeline()
    n = 21
    tl.set_steps(np.arange(n) * 10)
    h = HonestyPlot(tl)
    qtbot.addWidget(h)
    h.resize(454, 190)  # the surface panel's width in a 1280 x 800 window
    h.show()
    g = np.linspace(-1, 1, 11)
    loss = np.add.outer(g**2, g**2)
    true = np.linspace(0.8, 0.1, n) * 1e-3  # small values: once labelled "loss (x0.001)"
    s = SurfaceScene(g, g, loss, height_scale(loss, False), np.zeros((n, 2)), true * 1.01,
                     true, np.linspace(0, 0.2, n), np.empty((0, 2)), True)
    h.set_scene(s)
    qtbot.waitUntil(lambda: h.plot.isVisible())
    pi = h.plot.getPlotItem()
    view = h.plot.viewport().rect()
    right = pi.getAxis("right")
    box = h.plot.mapFromScene(right.sceneBoundingRect()).boundingRect()
    # its tick labels and "off plane" are on screen, not past the panel's right edge
    assert box.left() >= 0 and box.right() <= view.right(), (box, view)
    assert right.label.isVisible() and "off plane" in right.labelString()
    assert "x0.001" not in pi.getAxis("left").labelString()
    assert h.key.isVisible() and "distance off the plane" in h.key.text()


def test_axis_labels_carry_no_si_prefix_and_long_ticks_use_powers_of_ten(qtbot):
    w = pg.PlotWidget(axisItems={"bottom": NiceAxis("bottom"), "left": NiceAxis("left")})
    qtbot.addWidget(w)
    w.setLabel("bottom", "PC1 (97.9% of variance)")
    w.plot([0.0001, 0.0002, 0.0003], [1e7, 2e7, 3e7])
    w.resize(400, 300)
    w.show()
    qtbot.waitExposed(w)
    bottom, left = w.getAxis("bottom"), w.getAxis("left")
    assert "PC1 (97.9% of variance)" in bottom.labelString()
    assert "(x" not in bottom.labelString() and "(x" not in left.labelString()
    assert bottom.tickStrings([0.0001, 0.0002], 1.0, 0.0001) == ["0.0001", "0.0002"]
    assert left.tickStrings([1e7, 2e7], 1.0, 1e7) == ["10⁷", "2×10⁷"]


def test_a_legend_goes_to_the_corner_that_hides_no_curve(qtbot):
    from lossview.gui.plotkit.legend_place import keep_clear

    w = pg.PlotWidget()
    qtbot.addWidget(w)
    w.resize(300, 240)
    legend = w.addLegend(offset=(-4, 4))
    x = np.linspace(0, 1, 200)
    rising = w.plot(x, x**0.3, name="from init")  # fills the top right and the middle
    keep_clear(w.getPlotItem(), legend, (rising,))
    w.show()
    qtbot.waitExposed(w)
    vb = w.getPlotItem().getViewBox()
    qtbot.waitUntil(lambda: legend.mapRectToItem(vb, legend.boundingRect()).bottom()
                    > vb.height() / 2)
    box = legend.mapRectToItem(vb, legend.boundingRect())
    # the bottom right, under the curve: no sample of it is drawn inside the legend
    assert box.left() > vb.width() / 2
    inside = sum(box.contains(vb.mapFromView(pg.Point(float(a), float(b))))
                 for a, b in zip(x, x**0.3))
    assert inside == 0


def test_a_legend_no_corner_can_hold_goes_above_the_loss_plot(qtbot):
    """A noisy mini-batch loss fills every corner of the plot: the legend is one row above
    it, covering no curve; a clean falling loss gets a corner again."""
    from lossview.core.io.memory import run_from_arrays
    from lossview.gui.panels.loss_panel import LossPanel

    rng = np.random.default_rng(0)
    steps = np.arange(2000)
    noisy = 10 ** rng.uniform(-0.8, 0.35, 2000)  # all over the (log) range
    train = 2 * np.exp(-steps / 300) + 0.2
    run = run_from_arrays(np.cumsum(np.ones((5, 3)), axis=0),
                          metrics={"loss": (steps, noisy), "train_loss": (steps[::20], train[::20])})
    tl = Timeline()
    p = LossPanel(tl)
    qtbot.addWidget(p)
    p.resize(420, 460)
    p.show()
    qtbot.waitExposed(p)
    tl.set_steps(run.steps)
    p.set_run(run, None)
    assert p.legend_corner == "above"
    vb = p.p_loss.getViewBox()

    def above() -> bool:  # every entry's text lies above the plot area (once laid out)
        top = vb.mapRectToScene(vb.boundingRect()).top()
        return all(lab.mapRectToScene(lab.boundingRect()).bottom() <= top + 1
                   for _, lab in p.legend.items)

    qtbot.waitUntil(above)
    rows = {round(lab.mapToScene(0, 0).y()) for _, lab in p.legend.items}
    assert len(rows) == 1 and len(p.legend.items) == 2  # one row: mini-batch, train
    clean = run_from_arrays(np.cumsum(np.ones((5, 3)), axis=0),
                            metrics={"train_loss": (steps[::20], train[::20])})
    p.set_run(clean, None)
    assert p.legend_corner == "top-right"
    assert p.p_loss.titleLabel.text in ("", None) or not p.p_loss.titleLabel.isVisible()
