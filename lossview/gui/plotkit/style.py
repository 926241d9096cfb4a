"""Colours and Qt/pyqtgraph styling for the light (default) and dark themes."""

from __future__ import annotations

from dataclasses import dataclass

import pyqtgraph as pg
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication


@dataclass(frozen=True)
class Theme:
    name: str
    background: str
    foreground: str
    panel: str
    muted: str
    grid_alpha: float
    train: str
    val: str
    raw: str
    grad: str
    update: str
    lr: str
    cursor: str
    plateau: str
    divergence: str
    highlight: str
    colormap: str
    #: colours of core's verdict roles (:func:`lossview.core.analysis.verdicts.role`)
    good: str
    notice: str
    bad: str
    neutral: str


LIGHT = Theme("light", background="#ffffff", foreground="#3a3f44", panel="#f4f5f7",
              muted="#8a9099", grid_alpha=0.18, train="#1f6fb4", val="#e07b16",
              raw="#9dc3e6", grad="#2e9d4f", update="#8fc9a0", lr="#7b52ab",
              cursor="#d62728", plateau="#6c757d", divergence="#c0392b",
              highlight="#ff8c1a", colormap="viridis",
              good="#2e8b57", notice="#b8690b", bad="#c0392b", neutral="#6c757d")
DARK = Theme("dark", background="#1e2126", foreground="#d6d9de", panel="#272b31",
             muted="#8b929c", grid_alpha=0.22, train="#5aa9e6", val="#f0a04b",
             raw="#2f5577", grad="#5cc47a", update="#3f7a52", lr="#b08de0",
             cursor="#ff5c5c", plateau="#a0a7b0", divergence="#ff6b5b",
             highlight="#ffb347", colormap="viridis",
             good="#5cc47a", notice="#f0b34b", bad="#ff6b5b", neutral="#a0a7b0")

_current = LIGHT


def current() -> Theme:
    return _current


def apply(name: str = "light", app: QApplication | None = None) -> Theme:
    """Set pyqtgraph defaults and the Qt palette; call before creating plots."""
    global _current
    _current = DARK if name == "dark" else LIGHT
    t = _current
    pg.setConfigOptions(antialias=True, background=t.background, foreground=t.foreground,
                        imageAxisOrder="row-major")
    app = app or QApplication.instance()
    if app is not None:
        app.setStyle("Fusion")
        pal = QPalette()
        if t.name == "dark":
            pal.setColor(QPalette.ColorRole.Window, QColor(t.panel))
            pal.setColor(QPalette.ColorRole.WindowText, QColor(t.foreground))
            pal.setColor(QPalette.ColorRole.Base, QColor(t.background))
            pal.setColor(QPalette.ColorRole.AlternateBase, QColor(t.panel))
            pal.setColor(QPalette.ColorRole.Text, QColor(t.foreground))
            pal.setColor(QPalette.ColorRole.Button, QColor(t.panel))
            pal.setColor(QPalette.ColorRole.ButtonText, QColor(t.foreground))
            pal.setColor(QPalette.ColorRole.ToolTipBase, QColor(t.panel))
            pal.setColor(QPalette.ColorRole.ToolTipText, QColor(t.foreground))
            pal.setColor(QPalette.ColorRole.Highlight, QColor("#3d7bd9"))
            pal.setColor(QPalette.ColorRole.HighlightedText, QColor("#ffffff"))
            pal.setColor(QPalette.ColorRole.PlaceholderText, QColor(t.muted))
        else:
            pal = app.style().standardPalette()
            pal.setColor(QPalette.ColorRole.Window, QColor(t.panel))
            pal.setColor(QPalette.ColorRole.Base, QColor("#ffffff"))
            pal.setColor(QPalette.ColorRole.Highlight, QColor("#2f74c0"))
        app.setPalette(pal)
        f = QFont(app.font())
        if f.pointSizeF() < 9.5:
            f.setPointSizeF(9.5)
        app.setFont(f)
    return t


def role_color(role: str | None) -> str:
    """The theme's colour for a verdict role ("good", "notice", "bad", "neutral")."""
    t = current()
    return {"good": t.good, "notice": t.notice, "bad": t.bad}.get(role or "", t.neutral)


def opaque(color: str, alpha: float, background: str) -> str:
    """``color`` at ``alpha`` over ``background``, as an opaque ``#rrggbb``.

    Opaque pens can be drawn as separate segments; a translucent pen makes Qt stroke the
    whole curve as one self-intersecting outline (a 1,000-point trajectory: 40 ms a pen).
    """
    c, b = QColor(color), QColor(background)
    mix = [round(x * alpha + y * (1 - alpha)) for x, y in
           ((c.red(), b.red()), (c.green(), b.green()), (c.blue(), b.blue()))]
    return "#{:02x}{:02x}{:02x}".format(*mix)


def style_plot(plot: pg.PlotItem, title: str | None = None, left: str | None = None,
               bottom: str | None = None) -> pg.PlotItem:
    """Calm defaults for a PlotItem: light grid, small title, labelled axes."""
    t = current()
    plot.showGrid(x=True, y=True, alpha=t.grid_alpha)
    if title:
        plot.setTitle(title, size="10pt", color=t.foreground)
    steady_axes(plot)
    for name in ("left", "bottom"):
        plot.getAxis(name).setTextPen(t.foreground)
        plot.getAxis(name).setPen(pg.mkPen(t.muted))
    if left:
        plot.setLabel("left", left, color=t.foreground)
    if bottom:
        plot.setLabel("bottom", bottom, color=t.foreground)
    plot.setMenuEnabled(True)
    plot.hideButtons()
    return plot


def steady_axes(plot: pg.PlotItem) -> None:
    """Axes that cost little when the data or a cursor changes: each repaints from a
    pixmap when a cursor moves past it (re-rendered when its range changes), and its
    text space is fixed, because an axis that grows or shrinks with its tick labels
    (10⁻² is taller than 0.01) resizes its plot, which re-renders every item in it."""
    from PySide6.QtWidgets import QGraphicsItem

    for name in ("left", "bottom", "top", "right"):
        ax = plot.getAxis(name)
        ax.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        ax.setStyle(autoExpandTextSpace=False, autoReduceTextSpace=False)


def not_available_html(what: str, reason: str) -> str:
    t = current()
    return (f"<span style='color:{t.muted}'>{what}: not available"
            f"{' (' + reason + ')' if reason else ''}</span>")
