"""What each long event-loop turn was made of: every event Qt delivered, timed, nested.

``TimedApplication`` is a QApplication whose ``notify`` times each delivered event (and
the events delivered inside it: an UpdateRequest to the window paints its widgets). The
steps of the window's update path are logged too (``lossview.gui.plotkit.frames``),
with the step's name, and so are the 3D view's frames. ``report(gaps)`` prints, for each
long gap between heartbeats, the events of at least ``min_ms`` inside it. A Python
``notify`` costs a few microseconds an event: fine for finding where a block goes, not for
the headline numbers (``bench_gui.py --turns`` prints both; compare with a run without).
"""

from __future__ import annotations

import itertools
import sys
import time

from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QApplication

#: (start, seconds, depth, what)
LOG: list[tuple[float, float, int, str]] = []
_depth = 0
#: events and paints shorter than this are not logged (``bench_gui.py --min-ms`` lowers it)
_MIN_S = 0.0005


def _who(obj) -> str:
    """``Class`` of a receiver, with the panel it sits in (``LossPanel/GraphicsLayoutWidget``)."""
    names = []
    w = obj
    while w is not None and len(names) < 12:
        names.append(type(w).__name__)
        parent = getattr(w, "parentWidget", None) or getattr(w, "parent", None)
        try:
            w = parent() if parent is not None else None
        except (TypeError, RuntimeError):  # RuntimeError: deleted while being delivered
            w = None
    panel = next((n for n in names if n.endswith(("Panel", "Dialog", "Window"))), None)
    return f"{panel}/{names[0]}" if panel and panel != names[0] else names[0]


def _record(t: float, what: str) -> None:
    LOG.append((t, time.perf_counter() - t, _depth, what))


class TimedApplication(QApplication):
    def notify(self, receiver, event):
        global _depth
        t = time.perf_counter()
        _depth += 1
        try:
            return super().notify(receiver, event)
        finally:
            _depth -= 1
            if time.perf_counter() - t > _MIN_S:
                try:
                    name = QEvent.Type(event.type()).name
                except ValueError:
                    name = str(int(event.type()))
                _record(t, f"{name} -> {_who(receiver)}")


#: pyqtgraph items whose ``paint`` is timed too (patched on the class: PySide looks a
#: Python override up once per object, so this must run before any item is made)
ITEMS = ("PlotCurveItem", "ScatterPlotItem", "AxisItem", "ImageItem", "TextItem",
         "LabelItem", "InfiniteLine", "LinearRegionItem", "ViewBox", "PlotDataItem",
         "LegendItem", "ErrorBarItem", "BarGraphItem")


def _plot_of(item) -> str:
    """`` 'title' left`` for an item in a titled PlotItem (which of a panel's plots)."""
    p = item
    while p is not None and not hasattr(p, "titleLabel"):
        p = p.parentItem()
    title = getattr(getattr(p, "titleLabel", None), "text", "") or ""
    side = getattr(item, "orientation", "")
    return f" {title[:24]!r}{' ' + side if isinstance(side, str) else ''}" if p else ""


def _time_item_paints() -> None:
    import pyqtgraph as pg

    for name in ITEMS:
        cls = getattr(pg, name)
        if "paint" not in cls.__dict__:
            continue

        def paint(self, *args, _orig=cls.__dict__["paint"], _name=name):
            t = time.perf_counter()
            try:
                return _orig(self, *args)
            finally:
                if time.perf_counter() - t > _MIN_S:
                    scene = self.scene()
                    views = scene.views() if scene is not None else []
                    _record(t, f"paint {_name}{_plot_of(self)}"
                            + (f" ({_who(views[0])})" if views else ""))

        cls.paint = paint


def install(items: bool = False) -> None:
    """Log update-path steps and 3D frames as well, and with ``items`` the paint of each
    pyqtgraph item over 0.5 ms (call before any window is made)."""
    from lossview.gui.plotkit import frames
    from lossview.gui.surface import gl_window
    if items:
        _time_item_paints()

    def timed_frame_step(self, schedule=True, _orig=frames.Frames._frame):
        key = next(iter(self._queue), None)
        t = time.perf_counter()
        try:
            return _orig(self, schedule)
        finally:
            if key is not None:
                _record(t, f"frame step {key[1]} ({_who(key[0])})")

    frames.Frames._frame = timed_frame_step
    window_class = gl_window.window_class()

    def timed_frame(self, _orig=window_class.frame):
        t = time.perf_counter()
        try:
            return _orig(self)
        finally:
            _record(t, "3D frame")

    window_class.frame = timed_frame


def report(beats: list[float], threshold_ms: float = 40.0, min_ms: float = 1.0,
           n: int = 4, file=sys.stdout) -> None:
    """The ``n`` longest gaps between heartbeat times ``beats`` (perf_counter seconds)
    over ``threshold_ms``, each with the events of at least ``min_ms`` that ran in it."""
    gaps = sorted(((b - a, a, b) for a, b in itertools.pairwise(beats)
                   if b - a > threshold_ms / 1000), reverse=True)[:n]
    report_spans([(a, b) for _, a, b in gaps], beats[0] if beats else 0.0, "gap",
                 min_ms, file)


def report_spans(spans: list[tuple[float, float]], t0: float, what: str = "step",
                 min_ms: float = 1.0, file=sys.stdout) -> None:
    """For each (start, end) perf_counter span, the events of at least ``min_ms`` in it."""
    for a, b in spans:
        print(f"  turns in the {what} of {1000 * (b - a):.0f} ms at {a - t0:.2f} s:", file=file)
        inside = sorted(e for e in LOG if e[0] >= a and e[0] + e[1] <= b + 1e-4
                        and e[1] * 1000 >= min_ms)
        for t, dt, depth, name in inside:
            print(f"    {1000 * (t - a):6.1f} {'  ' * depth}{1000 * dt:5.1f} ms  {name}",
                  file=file)
