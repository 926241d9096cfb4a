"""Laying out pyqtgraph views ahead of their paint, so that each paints once.

pyqtgraph resolves layouts and auto-range lazily, at paint time, and Qt sends a hidden
widget's resize events only when it is shown: both made a first paint happen twice or
land in one long turn. :func:`settle` and :func:`lay_out_hidden` do that work earlier, as
steps of the window's update path (:mod:`~lossview.gui.plotkit.frames`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any


def _views(widget: Any) -> list:
    """``widget`` itself if it is a pyqtgraph view, and every view inside it."""
    import pyqtgraph as pg

    own = [widget] if isinstance(widget, pg.GraphicsView) else []
    return own + list(widget.findChildren(pg.GraphicsView))


def plots_of(widget: Any) -> list:
    """The visible PlotItems of ``widget``'s pyqtgraph views, top-left to bottom-right
    within each view, views in creation order."""
    import pyqtgraph as pg

    out = []
    for view in _views(widget):
        items = [it for it in view.scene().items()
                 if isinstance(it, pg.PlotItem) and it.isVisible()]
        items.sort(key=lambda it: (round(it.scenePos().y()), round(it.scenePos().x())))
        out += items
    return out


def settle(widget: Any) -> None:
    """Lay out and range ``widget``'s plots now, before their first paint.

    pyqtgraph resolves layouts (a posted LayoutRequest) and auto-range (in
    ``prepareForPaint``) lazily: a panel given new data painted once, then found its axes
    resized or its range changed and painted everything again in the same turn (the
    trajectory panel: two 25-30 ms paints, 70 ms a turn; settled first: 30-35 ms).
    """
    from PySide6.QtWidgets import QGraphicsWidget

    for view in _views(widget):
        scene = view.scene()
        # QGraphicsWidget.layout(it): pyqtgraph items shadow the method with an attribute
        widgets = [it for it in scene.items()
                   if isinstance(it, QGraphicsWidget) and QGraphicsWidget.layout(it) is not None]

        def depth(it) -> int:
            d, p = 0, it.parentItem()
            while p is not None:
                d, p = d + 1, p.parentItem()
            return d

        for it in sorted(widgets, key=depth):  # outer layouts first: they size the inner
            QGraphicsWidget.layout(it).activate()
        scene.prepareForPaint()


def lay_out_hidden(widget: Any, like: Any) -> Iterator[None]:
    """Size the hidden ``widget`` as ``like`` and lay out its whole tree, sending the
    resize events Qt would send when it is shown (hidden widgets get theirs then, all in
    the turn that shows them: for the window's panels, every plot's scene resized, 15-20
    ms). Shown later at the same size, it is only painted.

    A generator: it pauses after each pyqtgraph view's resize (the costly ones, 1-5 ms
    each), for :meth:`Frames.submit <lossview.gui.plotkit.frames.Frames.submit>`. A widget
    shown or deleted meanwhile is left to Qt.
    """
    import pyqtgraph as pg
    from PySide6.QtCore import QSize, Qt
    from PySide6.QtGui import QResizeEvent
    from PySide6.QtWidgets import QApplication, QWidget

    pending = Qt.WidgetAttribute.WA_PendingResizeEvent
    widget.setGeometry(like.geometry())
    todo = deque([widget])
    while todo:  # parents first: a parent's layout sizes its children
        w = todo.popleft()
        try:
            if w.isVisible():
                continue  # shown meanwhile: Qt sent its events
            if w.testAttribute(pending):
                w.setAttribute(pending, False)
                QApplication.sendEvent(w, QResizeEvent(w.size(), QSize(-1, -1)))
            lay = w.layout()
            if lay is not None:
                lay.activate()
            todo.extend(c for c in w.children() if isinstance(c, QWidget) and not c.isWindow())
        except RuntimeError:  # deleted meanwhile (the window closed)
            continue
        if isinstance(w, pg.GraphicsView):
            yield
