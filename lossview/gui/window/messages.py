"""Where the main window tells the user things: the status bar (message, busy bar with
Cancel, a warnings counter that opens the log), the log dock, and the red banner over the
panels for errors. Nothing here raises: every message lands somewhere visible.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QDockWidget, QLabel, QMainWindow, QPlainTextEdit, QToolButton, QWidget

from lossview.gui.plotkit.widgets import LazyProgressBar

log = logging.getLogger("lossview.gui")

#: how long an error stays in the status bar and the banner (ms)
ERROR_MS = 15000


class WindowMessages(QObject):
    """The message widgets of ``window`` (a QMainWindow), built and placed on it: the
    ``banner`` (to put above the panels), ``log_view`` in ``log_dock``, and in the status
    bar ``warn_btn``, ``progress`` and ``cancel_btn`` (which calls ``on_cancel``)."""

    def __init__(self, window: QMainWindow, on_cancel: Callable[[], None]) -> None:
        super().__init__(window)
        self.window = window
        self.banner = QLabel("")
        self.banner.setObjectName("banner")
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet("QLabel#banner { background: #fdecea; color: #8a1c12; "
                                  "padding: 6px 10px; border-bottom: 1px solid #f5c2bc; }")
        self.banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.banner.hide()
        self._banner_timer = QTimer(self)  # restarted by each error: shown 15 s after the last
        self._banner_timer.setSingleShot(True)
        self._banner_timer.timeout.connect(self.banner.hide)

        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(2000)
        self.log_dock = QDockWidget("Log", window)
        self.log_dock.setObjectName("logDock")
        self.log_dock.setWidget(self.log_view)
        window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.log_dock)
        self.log_dock.hide()

        self.progress = LazyProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setMaximumWidth(160)
        self.progress.setMaximumHeight(14)
        self.progress.hide()
        self.cancel_btn = QToolButton()
        self.cancel_btn.setText("Cancel")
        self.cancel_btn.setAutoRaise(True)
        self.cancel_btn.clicked.connect(on_cancel)
        self.cancel_btn.hide()
        self.warn_btn = QToolButton()
        self.warn_btn.setAutoRaise(True)
        self.warn_btn.setToolTip("Show the log")
        self.warn_btn.clicked.connect(lambda: self.log_dock.setVisible(not self.log_dock.isVisible()))
        self.warn_btn.hide()
        sb = window.statusBar()
        for w in (self.warn_btn, self.progress, self.cancel_btn):
            sb.addPermanentWidget(w)
        self.n_warnings = 0
        self._transient: str | None = None  # the busy or progress text shown last

    def log(self, text: str, warning: bool = False) -> None:
        """Append ``text`` to the log; a warning also counts on the status bar's button."""
        self.log_view.appendPlainText(("⚠ " if warning else "") + text)
        if warning:
            self.n_warnings += 1
            self.warn_btn.setText(f"⚠ {self.n_warnings} warning{'s' * (self.n_warnings != 1)}")
            self.warn_btn.show()
        log.info(text)

    def reset_warnings(self) -> None:
        """A new run: its warnings are counted from zero (the log keeps the old ones)."""
        self.n_warnings = 0

    def error(self, text: str, on_banner: bool = True) -> None:
        """``text`` in the log, the status bar and (``on_banner``) the banner for a while."""
        self.log(f"error: {text}", warning=True)
        # elided where it would run under the status bar's own widgets: the banner and
        # the log hold the whole line
        self.window.statusBar().showMessage(self._fit(text) if on_banner else text, ERROR_MS)
        if on_banner:
            self.banner.setText(text)
            self.banner.show()
            self._banner_timer.start(ERROR_MS)

    def _fit(self, text: str) -> str:
        """``text`` elided to the room the status bar's permanent widgets leave."""
        sb = self.window.statusBar()
        kids = sb.findChildren(QWidget, options=Qt.FindChildOption.FindDirectChildrenOnly)
        room = sb.width() - sum(w.width() + 8 for w in kids if w.isVisible()) - 16
        if room < 120:  # not laid out yet: as it is
            return text
        return sb.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, room)

    def set_busy(self, busy: bool, text: str = "") -> None:
        """The busy bar and Cancel shown with ``text``, or both hidden and the busy or
        progress text gone (a message said since, such as what was opened, stays)."""
        self.progress.setVisible(busy)
        self.cancel_btn.setVisible(busy)
        sb = self.window.statusBar()
        if busy:
            self.show_progress(text)
        elif self._transient is not None and sb.currentMessage() == self._transient:
            sb.clearMessage()

    def show_progress(self, text: str) -> None:
        """``text`` in the status bar until the next message, or until work ends."""
        self._transient = text
        self.window.statusBar().showMessage(text)
