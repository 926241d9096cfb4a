"""The main window's layout: its panels in splitters (:func:`build_workspace`), their
sizes and the dock state saved in the settings when the window closes and restored when
it opens; View → "Reset layout" puts them back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QSplitter, QVBoxLayout, QWidget

from lossview.gui.window import settings

if TYPE_CHECKING:
    from lossview.gui.window.main_window import MainWindow

#: loss, trajectory, surface (px, shared out when the window is another width)
TOP_SIZES = [560, 560, 480]
#: the panels above, diagnostics below
MAIN_SIZES = [600, 330]


def build_workspace(win: MainWindow) -> None:
    """``win.workspace``: the panels in two splitters (loss, trajectory, surface above the
    diagnostics), the error banner above them and the timeline bar below."""
    win.top_split = QSplitter(Qt.Orientation.Horizontal)
    win.top_split.setObjectName("topSplit")
    for w in (win.loss_panel, win.trajectory_panel, win.surface_panel):
        win.top_split.addWidget(w)
    win.top_split.setSizes(TOP_SIZES)
    win.main_split = QSplitter(Qt.Orientation.Vertical)
    win.main_split.setObjectName("mainSplit")
    win.main_split.addWidget(win.top_split)
    win.main_split.addWidget(win.diagnostics_panel)
    win.main_split.setSizes(MAIN_SIZES)
    for s in (win.top_split, win.main_split):
        s.setChildrenCollapsible(False)
        s.setHandleWidth(5)

    win.workspace = QWidget()
    wl = QVBoxLayout(win.workspace)
    wl.setContentsMargins(0, 0, 0, 0)
    wl.setSpacing(0)
    wl.addWidget(win.banner)
    wl.addWidget(win.main_split, 1)
    wl.addWidget(win.timeline_bar)


def _splits(win: MainWindow) -> tuple:
    return (("window/top_split", win.top_split), ("window/main_split", win.main_split))


def restore(win: MainWindow) -> None:
    geo = settings.read_bytes("window/geometry")
    if geo is not None:
        win.restoreGeometry(geo)
    for key, split in _splits(win):
        b = settings.read_bytes(key)
        if b is not None:
            split.restoreState(b)
    state = settings.read_bytes("window/state")
    if state is not None:
        win.restoreState(state)


def save(win: MainWindow) -> None:
    settings.write_bytes("window/geometry", win.saveGeometry())
    settings.write_bytes("window/state", win.saveState())
    for key, split in _splits(win):
        settings.write_bytes(key, split.saveState())


def reset(win: MainWindow) -> None:
    win.top_split.setSizes(TOP_SIZES)
    win.main_split.setSizes(MAIN_SIZES)
    win.log_dock.hide()
