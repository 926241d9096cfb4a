"""How faithful the plane is: true loss vs the surface's loss along the path, and the
distance of each snapshot off the plane.

A 2D plane through a high-dimensional trajectory can look convincing while the weights
are far from it (Li et al. 2018; Antognini & Sohl-Dickstein 2018). This small plot puts
the real loss beside the loss the surface shows at each projected point, with the
distance off the plane on a second axis, and a one-line summary under it.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGraphicsItem, QLabel, QVBoxLayout, QWidget

from lossview.core.surface.scene import SurfaceScene, honesty_summary
from lossview.gui.plotkit.axes import nice_axes
from lossview.gui.plotkit.cursor import PixelCursor
from lossview.gui.plotkit.widgets import add_marker
from lossview.gui.timeline import Timeline

SURF_COLOR = "#2e9d4f"
OFF_COLOR = "#e07b16"
#: the short plot's left axis labels this many decades at most
MAX_DECADE_LABELS = 5


class HonestyPlot(QWidget):
    """True vs surface loss per snapshot (left axis) and distance off the plane (right),
    against the timeline's steps; its cursor at the timeline's step."""

    def __init__(self, timeline: Timeline, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.timeline = timeline
        self._n = 0  # the points of the scene shown (0: none)
        self.plot = pg.PlotWidget(axisItems=nice_axes("left", "bottom", "right"))
        self.plot.setMenuEnabled(False)
        self.plot.setMinimumHeight(110)  # (the 3D view above it needs the height more)
        pi = self.plot.getPlotItem()
        pi.setLabel("bottom", "step")
        fg = pg.mkColor(pg.getConfigOption("foreground")).name()
        # the key above the plot, a label that wraps: as the plot's title its width
        # widened the plot past a narrow panel, and the right axis was cut off
        self.key = QLabel(f"<span style='color:{fg}'>— true loss</span> &nbsp; "
                          f"<span style='color:{SURF_COLOR}'>- - loss on the plane</span> &nbsp; "
                          f"<span style='color:{OFF_COLOR}'>— distance off the plane (right)</span>")
        self.key.setWordWrap(True)
        self.key.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.key.setStyleSheet("font-size: 11px;")
        pi.setLabel("left", "loss")
        pi.showAxis("right")
        pi.getAxis("right").setLabel("off plane", color=OFF_COLOR)
        fg = pg.getConfigOption("foreground")
        self.true_curve = pi.plot(pen=pg.mkPen(fg, width=1.5), name="true loss",
                                  connect="finite")
        # 1 px: Qt strokes a dashed antialiased line of 1 px or less itself (0.7 ms for
        # 1,000 points), a wider one as a dashed outline filled (10 ms a paint)
        self.surf_curve = pi.plot(pen=pg.mkPen(SURF_COLOR, width=1,
                                               style=pg.QtCore.Qt.PenStyle.DashLine),
                                  name="loss on the plane", connect="finite")
        self.off_box = pg.ViewBox()
        pi.scene().addItem(self.off_box)
        pi.getAxis("right").linkToView(self.off_box)
        self.off_box.setXLink(pi)
        self.off_curve = pg.PlotDataItem(pen=pg.mkPen(OFF_COLOR, width=1), connect="finite")
        self.off_box.addItem(self.off_curve)
        pi.getViewBox().sigResized.connect(self._sync_boxes)
        # the curves change only with the surface; cached, the moving cursor repaints
        # from pixmaps instead of re-stroking three antialiased curves (11 ms -> <1 ms
        # a step under Xvfb)
        for item in (self.true_curve, self.surf_curve, self.off_curve):
            item.curve.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.cursor = PixelCursor(angle=90, movable=False, pen=pg.mkPen("#ff3b30", width=1))
        add_marker(pi, self.cursor)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setStyleSheet("font-size: 11px;")
        self._fit_summary()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.key)
        lay.addWidget(self.plot)
        lay.addWidget(self.summary)
        # hidden while there is no surface (empty axes and a legend looked like a broken
        # plot), its space kept: showing it again re-lays out nothing
        for w in (self.plot, self.key):
            policy = w.sizePolicy()
            policy.setRetainSizeWhenHidden(True)
            w.setSizePolicy(policy)
        self.clear()
        self.setToolTip(
            "If the plane were faithful, the two loss curves would coincide and the "
            "distance off the plane would stay near zero (Li et al. 2018)."
        )

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_summary()

    def _fit_summary(self) -> None:
        """The summary as tall as its wrapped lines at its width (at least two), so the
        plot above gives way instead of covering its first line in a narrow panel."""
        label = self.summary
        lines = 2 * label.fontMetrics().height() + 2
        need = max(lines, label.heightForWidth(max(label.width(), 50)) if label.text() else 0)
        if label.minimumHeight() != need:
            label.setMinimumHeight(need)

    def _sync_boxes(self) -> None:
        self.off_box.setGeometry(self.plot.getPlotItem().getViewBox().sceneBoundingRect())

    def clear(self) -> None:
        """No surface to compare with (none yet, being computed, or failed)."""
        self._n = 0
        self.plot.setVisible(False)
        self.key.setVisible(False)
        self.summary.setText("")

    def _x(self) -> np.ndarray:
        """The shown scene's points along the x axis: their steps (their indices where the
        timeline has fewer steps than the scene has points)."""
        steps, n = self.timeline.steps, self._n
        return steps[:n].astype(np.float64) if len(steps) >= n else np.arange(n, dtype=np.float64)

    def set_scene(self, scene: SurfaceScene) -> None:
        self.plot.setVisible(True)
        self.key.setVisible(True)
        self._n = scene.n_points
        x = self._x()
        # log y when the losses span more than a decade, so the gap between the curves
        # (a relative error) stays visible after the loss has dropped; the right axis
        # (distance off the plane) stays linear
        both = np.concatenate([scene.true_loss, scene.traj_loss])
        pos = both[np.isfinite(both) & (both > 0)]
        log = bool(len(pos)) and len(pos) == np.isfinite(both).sum() and \
            pos.max() > 10 * pos.min()
        pi = self.plot.getPlotItem()
        pi.setLogMode(y=bool(log))
        pi.getAxis("right").setLogMode(False, False)
        left = pi.getAxis("left")
        if log:
            # the plot is short: label the decades (and their halves) only, or pyqtgraph's
            # log ticks pile up into an unreadable column
            lo, hi = np.floor(np.log10(pos.min())), np.ceil(np.log10(pos.max()))
            # at most MAX_DECADE_LABELS labels (a diverged run spans 30+ decades)
            every = max(1, int(np.ceil((hi - lo + 1) / MAX_DECADE_LABELS)))
            major = [(float(k), _decade(k)) for k in np.arange(lo, hi + 1, every)]
            minor = ([(float(k) + np.log10(3), "") for k in np.arange(lo, hi)] if every == 1
                     else [(float(k), "") for k in np.arange(lo, hi + 1)])
            left.setTicks([major, minor])
        else:
            left.setTicks(None)
        self.true_curve.setData(x, scene.true_loss)
        self.surf_curve.setData(x, scene.traj_loss)
        self.off_curve.setData(x, scene.off_plane)
        self.off_box.enableAutoRange()
        self.summary.setText(honesty_summary(scene))
        self._fit_summary()
        self._sync_boxes()

    def set_current(self, index: int) -> None:
        if self._n:
            x = self._x()
            self.cursor.setValue(float(x[min(max(index, 0), len(x) - 1)]))


def _decade(k: float) -> str:
    k = int(k)
    return f"{10.0**k:g}" if -3 <= k <= 3 else f"1e{k}"
