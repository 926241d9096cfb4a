"""The 2D contour view of the loss surface: used when OpenGL is unavailable, and as a toggle.

A heat map of the (log or linear) loss, a few isolines, the flat basin outlined, the
trajectory on top and a marker at the current snapshot. Clicking near the path moves
the timeline to the nearest snapshot. Grid cells whose loss overflowed are covered by
a hatched patch in the overflow colour (no colour of the heat map's, no isolines).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Signal
from PySide6.QtWidgets import QGraphicsItem, QVBoxLayout, QWidget

from lossview.core.surface.scene import OVERFLOW_HATCH_RGB, OVERFLOW_RGB, SurfaceScene
from lossview.gui.plotkit.cursor import PointMarker
from lossview.gui.plotkit.widgets import add_marker

PATH_PEN = pg.mkPen((255, 255, 255, 220), width=1.5)
ISO_PEN = pg.mkPen((255, 255, 255, 80), width=1)
BASIN_PEN = pg.mkPen((255, 255, 255, 255), width=2.5, style=pg.QtCore.Qt.PenStyle.DashLine)
MARKER_BRUSH = pg.mkBrush(255, 59, 48)
#: the plane is drawn to scale unless one side is more than this many times the other
#: (a diverged run's PCA plane can be 1e14 times longer than wide: a line, no surface)
MAX_ASPECT = 8.0
#: the overflow patch's pixels per grid cell, and its hatching: a dark stripe HATCH_WIDTH
#: of every HATCH_PERIOD pixels along the diagonal
HATCH_CELL = 8
HATCH_PERIOD = 6
HATCH_WIDTH = 2


def overflow_image(mask: np.ndarray) -> np.ndarray:
    """RGBA image (rows beta, columns alpha, ``HATCH_CELL`` pixels a grid cell) of the
    overflowed cells of ``mask[alpha, beta]``, hatched; transparent elsewhere."""
    m = np.asarray(mask, dtype=np.uint8).T
    m = np.repeat(np.repeat(m, HATCH_CELL, axis=0), HATCH_CELL, axis=1)
    # 0: transparent, 1: fill, 2: a stripe of the hatching (a palette lookup: ~1 ms for
    # a 61 x 61 grid, where boolean masks took ~9 ms of the GUI thread)
    return np.take(_PALETTE, m * (1 + _stripes(m.shape)), axis=0)


@lru_cache(maxsize=4)
def _stripes(shape: tuple[int, int]) -> np.ndarray:
    yy, xx = np.indices(shape)
    return ((xx + yy) % HATCH_PERIOD < HATCH_WIDTH).astype(np.uint8)


_PALETTE = np.array([(0, 0, 0, 0), (*OVERFLOW_RGB, 255), (*OVERFLOW_HATCH_RGB, 255)],
                    dtype=np.uint8)


class SurfaceContourView(QWidget):
    """Heat map + isolines of a :class:`SurfaceScene` with the path and a current marker.

    Signals
    -------
    point_clicked(int) : the user clicked on the plot; the nearest snapshot's index.
    """

    point_clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = pg.PlotWidget()
        self.plot.setAspectLocked(True)
        self.plot.setMenuEnabled(False)
        # short: in a 1280x800 window the plot is ~130 px tall, and "β (direction 2)
        # (x1e+12)" was cut off
        self.plot.setLabel("bottom", "α")
        self.plot.setLabel("left", "β")
        self.plot.setToolTip("α, β: coordinates along the plane's two directions (see the "
                             "plane's tooltip); hatched cells: the loss overflowed there.")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.plot)

        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setColorMap(pg.colormap.get("viridis"))
        self.overflow = pg.ImageItem(axisOrder="row-major")
        self.iso = pg.PlotDataItem(pen=ISO_PEN, connect="finite")
        self.basin = pg.PlotDataItem(pen=BASIN_PEN, connect="finite")
        self.path = pg.PlotDataItem(pen=PATH_PEN, connect="finite")
        self.start = pg.ScatterPlotItem(size=8, brush=pg.mkBrush("w"), pen=pg.mkPen("k"))
        self.marker = PointMarker(size=14, brush=MARKER_BRUSH, pen=pg.mkPen("w", width=1.5))
        for z, item in enumerate((self.image, self.overflow, self.iso, self.basin, self.path,
                                  self.start, self.marker)):
            item.setZValue(z)
            # the moving marker stays out of auto-range (a range change redraws the caches)
            if item is self.marker:
                add_marker(self.plot, item)
            else:
                self.plot.addItem(item)
        # everything but the marker changes only with the surface: cache it, so moving the
        # marker repaints from pixmaps
        for item in (self.image, self.overflow):
            item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        for item in (self.iso, self.basin, self.path):
            item.curve.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.colorbar = pg.ColorBarItem(colorMap=pg.colormap.get("viridis"), interactive=False,
                                        width=12)
        self.colorbar.setImageItem(self.image, insert_in=self.plot.getPlotItem())
        self._coords = np.zeros((0, 2))
        self._index = 0
        self.plot.scene().sigMouseClicked.connect(self._on_click)

    def set_scene(self, scene: SurfaceScene) -> None:
        a, b = scene.alphas, scene.betas
        h = scene.scale.transform(scene.loss)
        # ImageItem row-major: rows are y (beta), columns x (alpha)
        self.image.setImage(h.T, autoLevels=False, levels=(scene.scale.floor, scene.scale.ceiling))
        da = (a[-1] - a[0]) / max(len(a) - 1, 1)
        db = (b[-1] - b[0]) / max(len(b) - 1, 1)
        rect = QRectF(a[0] - da / 2, b[0] - db / 2, a[-1] - a[0] + da, b[-1] - b[0] + db)
        self.image.setRect(rect)
        bad = scene.overflowed
        self.overflow.setVisible(bool(bad.any()))
        if bad.any():
            self.overflow.setImage(overflow_image(bad), autoLevels=False)
            self.overflow.setRect(rect)
        self.colorbar.setLevels((scene.scale.floor, scene.scale.ceiling))
        self.colorbar.axis.setLabel("log₁₀ loss" if scene.scale.log else "loss")
        iso = scene.iso
        self.iso.setData(iso[:, 0], iso[:, 1]) if len(iso) else self.iso.setData([], [])
        if len(scene.basin):
            self.basin.setData(scene.basin[:, 0], scene.basin[:, 1])
        else:
            self.basin.setData([], [])
        self._coords = scene.coords
        if len(scene.coords):
            self.path.setData(scene.coords[:, 0], scene.coords[:, 1])
            self.start.setData(scene.coords[:1, 0], scene.coords[:1, 1])
        else:
            self.path.setData([], [])
            self.start.setData([], [])
        wa, wb = abs(a[-1] - a[0]), abs(b[-1] - b[0])
        to_scale = min(wa, wb) > 0 and max(wa, wb) <= MAX_ASPECT * min(wa, wb)
        self.plot.setAspectLocked(to_scale)
        self.plot.setRange(xRange=(a[0], a[-1]), yRange=(b[0], b[-1]), padding=0.02)
        self.set_current(self._index)

    def set_current(self, index: int) -> None:
        """Move the marker to snapshot ``index`` (the only update made while scrubbing)."""
        self._index = int(index)
        if not len(self._coords):
            self.marker.set_point(None)
            return
        i = min(max(self._index, 0), len(self._coords) - 1)
        self.marker.set_point(self._coords[i, 0], self._coords[i, 1])

    def marker_position(self) -> np.ndarray | None:
        if not len(self._coords):
            return None
        return self._coords[min(max(self._index, 0), len(self._coords) - 1)].copy()

    def reset_camera(self) -> None:
        self.plot.getPlotItem().enableAutoRange()
        if self.image.image is not None:
            r = self.image.boundingRect()
            self.plot.setRange(self.image.mapRectToParent(r), padding=0.02)

    def _on_click(self, event) -> None:
        if not len(self._coords):
            return
        vb = self.plot.getPlotItem().getViewBox()
        if not vb.sceneBoundingRect().contains(event.scenePos()):
            return
        p = vb.mapSceneToView(event.scenePos())
        ok = np.isfinite(self._coords).all(axis=1)
        if not ok.any():
            return
        d = np.hypot(self._coords[:, 0] - p.x(), self._coords[:, 1] - p.y())
        d[~ok] = np.inf
        self.point_clicked.emit(int(np.argmin(d)))
