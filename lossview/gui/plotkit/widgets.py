"""Small shared widgets: panel headers, a "not available" overlay text, guard helpers."""

from __future__ import annotations

import html
import re
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPalette
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QSizePolicy, QWidget

if TYPE_CHECKING:  # (at run time pyqtgraph is imported inside the functions that use it)
    import pyqtgraph as pg


class LazyProgressBar(QProgressBar):
    """A QProgressBar whose ``setValue`` schedules its repaint instead of painting at once.

    ``QProgressBar.setValue`` calls ``repaint()`` (a synchronous paint and flush) whenever
    the bar moves by a pixel or its text changes. In a window holding a QOpenGLWidget the
    flush composes the whole window through OpenGL; on a software renderer that is
    ~7 ms or more per call, and progress arrives up to 30 times a second from workers. With
    updates disabled around the base call, the paint is merged into the next repaint.
    """

    def setValue(self, value: int) -> None:
        if value == self.value():
            return
        self.setUpdatesEnabled(False)
        try:
            super().setValue(value)
        finally:
            self.setUpdatesEnabled(True)  # schedules update()


_BOLD = re.compile(r"<b>(.*?)</b>", re.S)


def bold_runs(text: str) -> list[tuple[str, bool]]:
    """``"step <b>1,000</b> · epoch 2"`` as ``[("step ", False), ("1,000", True),
    (" · epoch 2", False)]``: the one tag a :class:`Readout` draws, entities unescaped."""
    runs, at = [], 0
    for m in _BOLD.finditer(text):
        runs += [(text[at:m.start()], False), (m.group(1), True)]
        at = m.end()
    runs.append((text[at:], False))
    return [(html.unescape(t), b) for t, b in runs if t]


class Readout(QWidget):
    """One line of text (``<b>`` tags allowed) that changes without re-laying out the
    window: for readouts rewritten at every timeline step.

    A QLabel asks its layout to recompute at each ``setText`` and lays its rich text out
    again for the size hint; the timeline readout also changed width with its digits,
    which moved the slider beside it. This widget takes its size from a template
    (:meth:`set_template`: the widest text expected) and only repaints. It draws its
    runs of plain and bold text itself: laying rich text out (QStaticText, QLabel) goes
    through a QTextDocument, ~0.2-0.3 ms at every change, four times what drawing the
    runs costs.
    """

    def __init__(self, template: str = "", color: str | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._text = ""
        self._runs: list[tuple[str, bool]] = []
        self._style_key: QFont | None = None
        self._style: tuple = ()
        self._color = QColor(color) if color else None
        self._hint = QSize(0, 0)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.set_template(template)

    def _styles(self) -> tuple[tuple[QFont, QFontMetrics], tuple[QFont, QFontMetrics]]:
        """(font, metrics) for plain and for bold runs, made again only when the widget's
        font changes (the readouts repaint at every timeline step)."""
        if self._style_key != self.font():
            bold = QFont(self.font())
            bold.setBold(True)
            self._style_key = self.font()
            self._style = tuple((f, QFontMetrics(f)) for f in (self.font(), bold))
        return self._style

    def text_width(self, text: str) -> int:
        """Pixels ``text`` takes when drawn (bold runs in the bold font)."""
        styles = self._styles()
        return sum(styles[b][1].horizontalAdvance(t) for t, b in bold_runs(text))

    def set_template(self, template: str) -> None:
        """Size the readout for ``template`` (and at least one line of any text)."""
        m = self.contentsMargins()
        height = max(fm.height() for _, fm in self._styles())
        hint = QSize(self.text_width(template) + 2 + m.left() + m.right() if template else 0,
                     height + m.top() + m.bottom())
        if hint != self._hint:
            self._hint = hint
            self.setFixedHeight(hint.height())
            self.updateGeometry()

    def sizeHint(self) -> QSize:
        return self._hint

    def minimumSizeHint(self) -> QSize:
        return self._hint

    def text(self) -> str:
        return self._text

    def setText(self, text: str) -> None:
        if text == self._text:
            return
        self._text = text
        self._runs = bold_runs(text)
        self.update()

    def paintEvent(self, event) -> None:
        if not self._runs:
            return
        p = QPainter(self)
        p.setPen(self._color or self.palette().color(QPalette.ColorRole.WindowText))
        styles = self._styles()
        r = self.contentsRect()
        fm = styles[0][1]
        x, y = r.left(), r.top() + (r.height() - fm.height()) // 2 + fm.ascent()
        for text, bold in self._runs:
            font, metrics = styles[bold]
            p.setFont(font)
            p.drawText(x, y, text)
            x += metrics.horizontalAdvance(text)


def header(title: str, tooltip: str = "") -> tuple[QWidget, QHBoxLayout]:
    """A slim title row; add controls to the returned layout after the title."""
    w = QWidget()
    w.setObjectName("panelHeader")
    lay = QHBoxLayout(w)
    lay.setContentsMargins(6, 2, 6, 2)
    lay.setSpacing(8)
    lab = QLabel(f"<b>{title}</b>")
    lab.setToolTip(tooltip)
    lay.addWidget(lab)
    lay.addStretch(1)
    return w, lay


def muted_label(text: str = "") -> QLabel:
    lab = QLabel(text)
    lab.setTextFormat(Qt.TextFormat.RichText)
    lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return lab


def choose(combo, data, error: str) -> None:
    """Select ``combo``'s item whose data is ``data``, as a user would (its signals fire);
    ``ValueError(error)`` if there is none."""
    i = combo.findData(data)
    if i < 0:
        raise ValueError(error)
    combo.setCurrentIndex(i)


@contextmanager
def signals_blocked(obj: QObject):
    """Block ``obj``'s signals for the duration, restoring the previous state."""
    prev = obj.blockSignals(True)
    try:
        yield obj
    finally:
        obj.blockSignals(prev)


def as_array(values, dtype=float) -> np.ndarray:
    """A list from a report (None for missing) as a float array with NaN for None."""
    if values is None:
        return np.array([], dtype=dtype)
    if isinstance(values, np.ndarray):  # a typed report's (NaN for None already)
        return values.astype(dtype)
    return np.array([np.nan if v is None else v for v in values], dtype=dtype)


def nearest_index(steps: np.ndarray, x: float) -> int:
    """Index of the snapshot step nearest to ``x``."""
    if len(steps) == 0:
        return 0
    i = int(np.searchsorted(steps, x))
    if i <= 0:
        return 0
    if i >= len(steps):
        return len(steps) - 1
    return i if steps[i] - x < x - steps[i - 1] else i - 1


def fmt(v: float | None, digits: int = 4) -> str:
    if v is None or not np.isfinite(v):
        return "—"
    return f"{v:.{digits}g}"


def centered_note(viewbox, color) -> pg.TextItem:
    """A text item kept at the centre of ``viewbox`` (for "not available: ..." notes)."""
    import pyqtgraph as pg

    note = pg.TextItem("", color=color, anchor=(0.5, 0.5))
    note.setParentItem(viewbox)

    def place(*_):
        note.setPos(viewbox.boundingRect().center())

    viewbox.sigResized.connect(place)
    place()
    return note


def add_marker(plot, item) -> None:
    """Add a cursor line or current-point marker that moves on every timeline step
    (:class:`~lossview.gui.plotkit.cursor.PixelCursor`, ``PointMarker``): out of
    auto-range (``ignoreBounds``). Neither tells the view its bounds changed when it moves
    (see ``PixelCursor.informViewBoundsChanged``)."""
    plot.addItem(item, ignoreBounds=True)


def cache_item(item, on: bool = True) -> None:
    """Paint ``item`` into a device-pixel cache, so a cursor moving over it repaints a
    pixmap instead of re-stroking thousands of antialiased segments (scrubbing cost).
    ``on=False`` paints it directly: for data that changes more often than a cursor
    moves over it (a live run), where each change re-rendered a plot-sized pixmap."""
    from PySide6.QtWidgets import QGraphicsItem

    mode = QGraphicsItem.CacheMode.DeviceCoordinateCache if on \
        else QGraphicsItem.CacheMode.NoCache
    for part in (item, getattr(item, "curve", None), getattr(item, "scatter", None)):
        if part is not None:
            part.setCacheMode(mode)


def cache_plot_items(widget) -> int:
    """Give every curve, scatter and axis inside ``widget``'s pyqtgraph views a device-pixel
    cache (see :func:`cache_item`); returns how many items were set. Used on panels whose
    plots are built elsewhere (the surface panel), so a moving cursor stays cheap there too."""
    import pyqtgraph as pg
    from PySide6.QtWidgets import QGraphicsItem

    mode = QGraphicsItem.CacheMode.DeviceCoordinateCache
    kinds = (pg.PlotCurveItem, pg.ScatterPlotItem, pg.AxisItem, pg.IsocurveItem)
    n = 0
    for view in widget.findChildren(pg.GraphicsView):
        for item in view.scene().items():
            if isinstance(item, kinds) and item.cacheMode() != mode:
                item.setCacheMode(mode)
                n += 1
    return n


def sync_legend(legend: Any, entries: list[tuple[Any, bool]]) -> None:
    """List in ``legend`` exactly the named curves that are shown: pyqtgraph draws a hidden
    curve's entry with a crossed-out icon, which reads as a measurement that failed."""
    for curve, shown in entries:
        name = curve.name()
        if not name or (legend.getLabel(curve) is not None) == shown:
            continue
        if shown:
            legend.addItem(curve, name)
        else:
            legend.removeItem(curve)
