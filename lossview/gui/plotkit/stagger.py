"""New data shown one plot per event-loop turn, so that no turn paints a whole window.

A run's first paint is tens of milliseconds per plot on a software-rendered display
(axes, text, curves rendered into their caches); a panel holds up to four plots and the
window a dozen. :class:`Stagger` runs a list of steps one per event-loop turn; a step
that fills a panel returns it, and the panel's plots after the first are veiled
(opacity 0: Qt does not paint them) and revealed one per following turn; the first one
too when it was veiled already (a panel shown for the first time). Each turn then
paints about one plot, and input and timers get their turn in between.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from PySide6.QtCore import QObject, QTimer

#: milliseconds between two steps (each step's paint runs in between)
INTERVAL_MS = 15


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
    each), for :func:`one_per_turn`. A widget shown or deleted meanwhile is left to Qt.
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


def one_per_turn(steps: Iterator[Any], context: QObject) -> None:
    """Run a generator's steps one per event-loop turn, from the next one on (none once
    ``context`` is gone)."""
    def step() -> None:
        if next(steps, _DONE) is not _DONE:
            QTimer.singleShot(0, context, step)

    QTimer.singleShot(0, context, step)


_DONE = object()


class Stagger(QObject):
    """Run steps one per event-loop turn; see the module docstring.

    A step is a callable; if it returns a widget, that widget's plots after the first
    are revealed one per turn before the next step. :meth:`run` or :meth:`cancel`
    abandons what is left of a previous sequence and reveals whatever it had veiled.
    """

    def __init__(self, parent: QObject | None = None, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(parent)
        self.interval_ms = int(interval_ms)
        self._queue: deque[Callable[[], Any]] = deque()
        self._veiled: list = []
        self._gen = 0

    @property
    def active(self) -> bool:
        return bool(self._queue)

    def run(self, steps: list[Callable[[], Any]], veil: tuple = (),
            later: bool = False) -> None:
        """Start ``steps``: the first now (or with ``later``, in a turn of its own, when
        the caller's turn is long already), the others one per turn.

        ``veil``: widgets whose plots stay unpainted until the step that returns the
        widget (e.g. every panel, when the window first switches to them: painting
        empty plots cost ~50 ms of that first turn).
        """
        self.cancel()
        for w in veil:
            self._hide(plots_of(w))
        self._queue.extend(steps)
        if later:
            self._schedule(self._gen)
        else:
            self._next(self._gen)

    def _hide(self, plots: list) -> None:
        for p in plots:
            if p not in self._veiled:
                p.setOpacity(0.0)
                self._veiled.append(p)

    def cancel(self) -> None:
        self._gen += 1
        self._queue.clear()
        for p in self._veiled:
            p.setOpacity(1.0)
        self._veiled.clear()

    def _next(self, gen: int) -> None:
        if gen != self._gen or not self._queue:
            return
        try:
            result = self._queue.popleft()()
        except Exception:
            # the rest still runs (nothing stays veiled); the error reaches the app's
            # excepthook, which reports it in the window
            self._schedule(gen)
            raise
        if gen != self._gen:
            return  # the step itself started or cancelled a sequence
        if result is not None and hasattr(result, "findChildren"):
            settle(result)
            plots = plots_of(result)
            later = plots
            if plots and plots[0] not in self._veiled:
                # on screen already: it repaints with this step (veiling it would blank
                # it for a turn); a veiled one is revealed in a turn of its own, as the
                # step itself (a panel's set_run) can take 20 ms and its paint 30
                later = plots[1:]
            self._hide(later)
            self._queue.extendleft(self._revealer(p) for p in reversed(later))
        self._schedule(gen)

    def _schedule(self, gen: int) -> None:
        if self._queue and gen == self._gen:
            # with self as context: no step runs once this object (its panel) is deleted
            QTimer.singleShot(self.interval_ms, self, lambda: self._next(gen))

    def _revealer(self, plot: Any) -> Callable[[], None]:
        def reveal() -> None:
            plot.setOpacity(1.0)
            if plot in self._veiled:
                self._veiled.remove(plot)

        return reveal
