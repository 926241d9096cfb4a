"""An empty plot as one sentence: while a plot has nothing to show, its axes, grid,
legend and items are hidden and the reason is written across its middle, wrapped to its
width. Empty axes ("0.2 ... 0.8", a colour bar from 0 to 1, a legend listing series
that are not there) read as a measurement that came out blank."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextOption

from lossview.gui.plotkit import style

#: Qt's "no maximum" size
QWIDGETSIZE_MAX = 16777215
#: pixels kept free on each side of the sentence
MARGIN_PX = 8.0


class EmptyNote(pg.TextItem):
    """The sentence of an empty ``plot``; ``setText("")`` shows the plot again.

    ``also``: graphics items hidden with the axes (a colour bar beside the plot)."""

    def __init__(self, plot: pg.PlotItem, color, also: tuple = ()) -> None:
        super().__init__("", color=color, anchor=(0.5, 0.5))
        self._plot = plot
        self._also = tuple(also)
        self._hidden: list = []
        opt = QTextOption(Qt.AlignmentFlag.AlignHCenter)
        opt.setWrapMode(QTextOption.WrapMode.WordWrap)
        self.textItem.document().setDefaultTextOption(opt)
        vb = plot.getViewBox()
        self.setParentItem(vb)
        self.setZValue(1000)
        vb.sigResized.connect(self._place)
        self._place()

    @property
    def empty(self) -> bool:
        """True while the plot shows its sentence instead of its axes."""
        return bool(self.toPlainText())

    def _place(self, *_) -> None:
        r = self._plot.getViewBox().boundingRect()
        self.setTextWidth(max(r.width() - 2 * MARGIN_PX, 40.0))
        self.setPos(r.center())

    def setText(self, text: str, color=None) -> None:
        text = " ".join(str(text).split())  # the plot's width wraps it, not the caller
        if text == self.toPlainText():
            return
        if color is None:
            super().setText(text)
        else:
            super().setText(text, color)
        self._show_plot(not text)
        self._place()

    def _show_plot(self, on: bool) -> None:
        plot = self._plot
        if not on and not self._hidden:
            parts = [plot.getAxis(n) for n in ("left", "bottom", "right", "top")]
            parts += [plot.getViewBox().childGroup, *self._also]
            if plot.legend is not None:
                parts.append(plot.legend)
            self._hidden = [p for p in parts if p.isVisible()]
            for p in self._hidden:
                p.setVisible(False)
        elif on and self._hidden:
            for p in self._hidden:
                p.setVisible(True)
            self._hidden = []


def empty_note(plot: pg.PlotItem, color, also: tuple = ()) -> EmptyNote:
    """An :class:`EmptyNote` for ``plot`` (hidden until given a text)."""
    return EmptyNote(plot, color, also)


def stack_rows(plots: list[pg.PlotItem], shown: list[bool], bottom: str) -> None:
    """Show only the ``shown`` plots of a column stacked in a GraphicsLayout (a hidden
    plot gives its room to the others), with the x axis label ``bottom`` on the lowest
    shown one: an empty row said nothing but took a third of the column."""
    lowest = max((i for i, on in enumerate(shown) if on), default=-1)
    fg = style.current().foreground
    for i, (p, on) in enumerate(zip(plots, shown)):
        if p.isVisible() != on:
            p.setVisible(on)
            # a hidden item keeps its row's stretch in a QGraphicsGridLayout: no height
            p.setMaximumHeight(QWIDGETSIZE_MAX if on else 0)
        text = bottom if i == lowest else None
        axis = p.getAxis("bottom")  # (PlotItem.setLabel would show a hidden axis again)
        if axis.labelText != (text or ""):
            axis.setLabel(text, color=fg)
