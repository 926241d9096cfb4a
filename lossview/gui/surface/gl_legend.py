"""The 3D view's legend and colour scale, a strip under the view: what the white-to-orange
line, the white dot, the red dot and the white outline are (only those drawn), and the
loss each colour of the surface stands for."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QLinearGradient, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from lossview.core.surface.scene import SurfaceScene
from lossview.gui.plotkit.axes import format_value

#: the legend's point size, the swatches' width and the gap between entries (pixels)
FONT_PT = 8
SWATCH_PX = 22
GAP_PX = 14
#: the colour scale's width (pixels)
BAR_PX = 110


def _rgb(c) -> QColor:
    return QColor.fromRgbF(*c[:3], c[3] if len(c) > 3 else 1.0)


class SurfaceLegend(QWidget):
    """Two lines: the entries of what is drawn over the surface, then the colour scale
    (``loss  low [colours] high``); nothing without a scene."""

    def __init__(self, colors: dict, cmap: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.colors = colors  # path_start, path_end, halo, marker, basin (RGBA floats)
        self._cmap = pg.colormap.get(cmap)
        self.entries: list[str] = []
        self.scale: tuple[str, str] | None = None  # the loss at the bottom and at the top
        self._overflow = False
        font = QFont(self.font())
        font.setPointSize(FONT_PT)
        self.setFont(font)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(2 * QFontMetrics(font).height() + 8)

    def sizeHint(self) -> QSize:
        return QSize(300, self.height())

    def set_scene(self, scene: SurfaceScene | None) -> None:
        if scene is None:
            self.entries, self.scale = [], None
        else:
            has_path = scene.n_points > 0
            self.entries = (["trajectory", "start", "current point"] if has_path else []) + (
                ["flat basin"] if len(scene.basin) else [])
            s = scene.scale
            self.scale = (format_value(float(f"{s.label(0.0):.3g}")),
                          format_value(float(f"{s.label(1.0):.3g}")) + ("+" if s.clipped else ""))
            self._overflow = bool(np.any(scene.overflowed))
        self.update()

    def paintEvent(self, event) -> None:
        if not self.entries and self.scale is None:
            return
        p = QPainter(self)
        try:
            self._paint(p)
        finally:
            p.end()

    def _paint(self, p: QPainter) -> None:
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        fm = QFontMetrics(self.font())
        line = fm.height()
        fg = self.palette().color(self.foregroundRole())
        x, y = 6.0, 3.0 + line / 2
        for name in self.entries:
            self._swatch(p, name, QRectF(x, y - line / 2, SWATCH_PX, line))
            x += SWATCH_PX + 4
            p.setPen(fg)
            p.drawText(QPointF(x, y + fm.ascent() / 2 - 1), name)
            x += fm.horizontalAdvance(name) + GAP_PX
        if self.scale is not None:
            lo, hi = self.scale
            y += line + 2
            x = 6.0
            p.setPen(fg)
            base = y + fm.ascent() / 2 - 1
            p.drawText(QPointF(x, base), f"loss  {lo}")
            x += fm.horizontalAdvance(f"loss  {lo}") + 4
            grad = QLinearGradient(x, 0, x + BAR_PX, 0)
            for f in np.linspace(0, 1, 8):
                grad.setColorAt(float(f), self._cmap.map(float(f), mode="qcolor"))
            p.fillRect(QRectF(x, y - line / 2 + 2, BAR_PX, line - 4), QBrush(grad))
            x += BAR_PX + 4
            p.drawText(QPointF(x, base), hi)

    def _swatch(self, p: QPainter, name: str, r: QRectF) -> None:
        c = self.colors
        mid = r.center().y()
        if name in ("start", "current point"):
            d = 8 if name == "start" else 12
            p.setPen(QPen(_rgb(c["halo"]), 2))
            p.setBrush(_rgb(c["start"] if name == "start" else c["marker"]))
            p.drawEllipse(QPointF(r.center().x(), mid), d / 2, d / 2)
            return
        if name == "flat basin":  # a white outline: on a dark chip, as on the surface
            p.fillRect(r.adjusted(0, 1, 0, -1), self._cmap.map(0.1, mode="qcolor"))
            p.setPen(QPen(_rgb(c["basin"]), 2))
            p.drawLine(QPointF(r.left() + 3, mid), QPointF(r.right() - 3, mid))
            return
        grad = QLinearGradient(r.left(), 0, r.right(), 0)
        grad.setColorAt(0, _rgb(c["path_start"]))
        grad.setColorAt(1, _rgb(c["path_end"]))
        for pen in (QPen(_rgb(c["halo"]), 5), QPen(QBrush(grad), 2.5)):
            pen.setCapStyle(Qt.PenCapStyle.RoundCap)
            p.setPen(pen)
            p.drawLine(QPointF(r.left() + 2, mid), QPointF(r.right() - 2, mid))
