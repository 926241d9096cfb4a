"""The timeline's moving markers: cursor lines redrawn only once they are a device pixel or
more from where they are drawn, and a current-point marker that moves without new data.

A 1,000-snapshot run scrubbed across a 250-pixel plot moves a cursor by a quarter of a
pixel a step, and pyqtgraph repainted the line (and every item under it) at each of those
steps, for a change on screen too small to see. The loss panel (three plots) and the
diagnostics panel (three) were two of the four views repainted at every scrub step.
:class:`PixelCursor` keeps the exact value (``value()``, its signals, dragging) and
leaves the line where it is drawn while the value stays within :data:`SLACK_PX` of it:
on screen it is never a pixel or more from the exact step, and it is redrawn at most
once per pixel it travels.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QPainter, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsObject

#: the drawn line follows the value once it is this many device pixels from it
SLACK_PX = 1.0


class PixelCursor(pg.InfiniteLine):
    """A vertical (``angle=90``) or horizontal (``angle=0``) :class:`pg.InfiniteLine` drawn
    less than :data:`SLACK_PX` device pixels from its value (see the module docstring).
    Other angles, and positions given as points, behave as pyqtgraph's.

    pyqtgraph's own position (``InfiniteLine.setPos``/``getPos``, public) is where the
    line is drawn; the exact value is kept beside it and is what :meth:`value` and
    :meth:`getPos` return and ``sigPositionChanged`` announces."""

    #: how many times the drawn line moved (for tests and benchmarks)
    moves = 0

    def __init__(self, *args, **kwargs) -> None:
        self._exact: float | None = None  # the value, where it is not where it is drawn
        super().__init__(*args, **kwargs)

    def setPos(self, pos) -> None:
        if self.angle not in (0, 90) or isinstance(pos, (list, tuple, np.ndarray, QPointF)):
            self._exact = None
            self._draw(pos)
            return
        lo, hi = self.maxRange
        v = float(pos)
        v = v if lo is None else max(v, lo)
        v = v if hi is None else min(v, hi)
        if v == self.value():
            return
        self._exact = v
        if not self._within_slack():
            self._draw(v)  # (announced by pyqtgraph)
        else:
            self.sigPositionChanged.emit(self)

    def getPos(self) -> list:
        drawn = super().getPos()
        if self._exact is None:
            return drawn
        return [self._exact, drawn[1]] if self.angle == 90 else [drawn[0], self._exact]

    def value(self):
        if self._exact is None:
            return super().value()
        return self._exact

    def informViewBoundsChanged(self) -> None:
        """Not told: pyqtgraph flags the view for an auto-range recomputation on every
        move of any item, ignored by auto-range or not, and the scrub spent ~8 % of its
        time recomputing ranges that cannot change (py-spy, whole window, 1,000 steps)."""

    def viewTransformChanged(self) -> None:
        """The view was zoomed, panned or resized: a pixel is another distance in data
        units now, so the line is drawn at its exact value again."""
        super().viewTransformChanged()
        if self._exact is not None and super().value() != self._exact:
            self._draw(self._exact)

    def _draw(self, pos) -> None:
        before = super().getPos()
        super().setPos(pos)
        if super().getPos() != before:
            self.moves += 1

    def _within_slack(self) -> bool:
        """Whether the value maps within :data:`SLACK_PX` of where the line is drawn."""
        parent = self.parentItem()  # a ViewBox's child group: data coordinates
        tr = parent.deviceTransform_() if hasattr(parent, "deviceTransform_") else None
        if tr is None:  # not in a shown view yet
            return False
        x, y = super().getPos()
        want = (self._exact, y) if self.angle == 90 else (x, self._exact)
        drawn, want = tr.map(QPointF(x, y)), tr.map(QPointF(*want))
        d = want.x() - drawn.x() if self.angle == 90 else want.y() - drawn.y()
        return abs(d) < SLACK_PX


class PointMarker(QGraphicsObject):
    """The current snapshot on a plane: a circle of ``size`` screen pixels at a point in
    data coordinates, moved by :meth:`set_point`.

    A one-point ``pg.ScatterPlotItem`` refilled its spot table at each step (``setData``,
    ~0.3 ms) and painted its one spot through the machinery made for thousands (view
    masks, coordinate arrays, pixmap fragments: 0.5-0.9 ms a paint); the marker is
    repainted at every scrub step. This item ignores the view's transformation (its local
    coordinates are screen pixels around the point), so its bounds are a constant and its
    paint one ellipse. :meth:`getData` answers as a ScatterPlotItem would: the point
    shown, in data coordinates, or nothing.
    """

    def __init__(self, size: float = 10, pen=None, brush=None) -> None:
        super().__init__()
        self._size = size
        self._pen = pg.mkPen(pen) if pen is not None else QPen(Qt.PenStyle.NoPen)
        self._brush = pg.mkBrush(brush) if brush is not None else QBrush()
        self._pen.setCosmetic(True)
        self._set_scale(1.0)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.hide()

    def _set_scale(self, scale: float) -> None:
        self._scale = scale
        self._r = scale * self._size / 2
        pad = self._r + scale * self._pen.widthF() / 2 + 1
        self._bounds = QRectF(-pad, -pad, 2 * pad, 2 * pad)

    def setExportMode(self, export: bool, opts: dict | None = None) -> None:
        """pyqtgraph's image exporter at a larger size than on screen: the marker grows
        with the picture (its size is in screen pixels), as a ScatterPlotItem's spots do."""
        scale = float((opts or {}).get("resolutionScale", 1.0)) if export else 1.0
        if scale != self._scale:
            self.prepareGeometryChange()
            self._set_scale(scale)

    def set_point(self, x: float | None, y: float | None = None) -> None:
        """Show the marker at (``x``, ``y``); ``None`` or a non-finite coordinate hides it."""
        if x is None or y is None or not (np.isfinite(x) and np.isfinite(y)):
            self.hide()
            return
        if (self.x(), self.y()) != (x, y):
            self.setPos(float(x), float(y))
        self.show()

    def getData(self):
        if not self.isVisible():
            return np.array([]), np.array([])
        return np.array([self.x()]), np.array([self.y()])

    def boundingRect(self) -> QRectF:
        return self._bounds

    def paint(self, p, *args) -> None:
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        if self._scale != 1.0 and self._pen.style() != Qt.PenStyle.NoPen:
            pen = QPen(self._pen)
            pen.setWidthF(self._pen.widthF() * self._scale)
            p.setPen(pen)
        else:
            p.setPen(self._pen)
        p.setBrush(self._brush)
        p.drawEllipse(QPointF(0, 0), self._r, self._r)
