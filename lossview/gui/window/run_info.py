"""What the loader did, visible: the run's name and an info button in the status bar.

The core says how a folder was opened in one line (``run.spec["opened_as"]``,
:mod:`lossview.core.io.summary`: format, files used, steps, where each metric came from,
what was normalised, files skipped and why). The window shows a short status line after
opening (:func:`short_line`: "Opened as torch: 161 checkpoints, metrics from
metrics.csv") and the whole account, one item a line, in the button's tooltip and in a
popover when it is clicked, instead of a wall of warnings. The button is the style's
information icon: the "ⓘ" character is in none of the fonts a bare Linux has.
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path
from typing import Any

from PySide6.QtCore import QPoint, QSize, Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QStyle, QToolButton, QVBoxLayout, QWidget

#: the popover's width (px): long file names wrap
POPOVER_WIDTH = 460


def full_text(run: Any) -> str:
    """The core's account of how ``run`` was opened (one line, items joined by "; ")."""
    text = run.spec.get("opened_as") if isinstance(run.spec, dict) else None
    if not text and len(run):  # a run opened by an older reader, or built in memory
        try:
            from lossview.core.io.summary import opened_as

            text = opened_as(run)
        except Exception:  # noqa: BLE001 - only a summary: fall back to what the run carries
            text = None
    if not text:  # what the run carries
        n = len(run)
        text = "; ".join([f"opened as {run.format}: {n} checkpoint{'s' * (n != 1)}",
                          *map(str, run.warnings)])
    return " ".join(str(text).split())


def items(run: Any) -> list[str]:
    """:func:`full_text`, one item each (format and files, metrics, ..., then the run's
    warnings whole: a warning may hold "; " itself)."""
    text = full_text(run)
    notes = [" ".join(str(w).split()) for w in run.warnings]
    tail = "; ".join(notes)
    if notes and text.endswith(tail):
        text = text[:len(text) - len(tail)].rstrip().rstrip(";")
    else:
        notes = []
    return [p.strip() for p in text.split("; ") if p.strip()] + notes


def metric_sources(run: Any) -> list[str]:
    """Where the run's metrics came from, as the core names them (``metrics.csv``,
    ``TensorBoard runs/May01``, ``the checkpoint files``); [] where none were logged."""
    part = next((p for p in items(run) if p.startswith("metrics: ")), None)
    if part is None:
        files = run.spec.get("metrics_files") or [] if isinstance(run.spec, dict) else []
        return [Path(f).name for f in files]
    seen: list[str] = []
    for s in re.findall(r"\(([^()]+)\)", part):
        if s not in seen:
            seen.append(s)
    return seen


def short_line(run: Any) -> str:
    """One status line: format, snapshots, where the metrics came from, notes to read."""
    n = len(run)
    line = f"Opened as {run.format}: {n} checkpoint{'s' * (n != 1)}"
    sources = metric_sources(run)
    if sources:
        line += ", metrics from " + ", ".join(sources)
    elif not run.metrics:
        line += ", no metrics logged"
    k = len(run.warnings)
    if k:
        line += f", {k} note{'s' * (k != 1)}"
    return line


class RunInfo(QWidget):
    """The shown run's name and an info button: its tooltip and its popover (on click)
    hold the core's account of how the run was opened."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = QLabel()
        self.button = QToolButton()
        self.button.setIcon(self.style().standardIcon(
            QStyle.StandardPixmap.SP_MessageBoxInformation))
        self.button.setIconSize(QSize(14, 14))
        self.button.setAutoRaise(True)
        self.button.setAccessibleName("How this run was opened")
        self.button.clicked.connect(self.show_popover)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.name)
        lay.addWidget(self.button)
        self.popover: QFrame | None = None
        self._items: list[str] = []
        self.hide()

    def set_run(self, run: Any | None, model_file: str | None = None,
                loss_from_model: bool = False) -> None:
        """Show ``run``'s name and account, and the model file attached to it (whose loss
        is the run's where ``loss_from_model``); None (no run) hides the widget."""
        if run is None or run.live:  # a live run: nothing was opened (yet)
            self._items = []
            self.hide()
            return
        self._items = items(run)
        if model_file:
            self._items.append(f"model file {Path(model_file).name} (surface and sharpness"
                               + ("; the loss is its full-data loss at each snapshot)"
                                  if loss_from_model else ")"))
        self.name.setText(run.name)
        self.button.setToolTip(self.html())
        self.show()

    def text(self) -> str:
        """Everything the popover says, one item a line (for tests and the log)."""
        return "\n".join(self._items)

    def html(self) -> str:
        head, *rest = self._items or [""]
        return (f"<b>{escape(head[:1].upper() + head[1:])}</b>"
                + "".join(f"<br>• {escape(i)}" for i in rest))

    def show_popover(self) -> None:
        """The account in a popup under the button, selectable, closed by a click away."""
        if self.popover is None:
            self.popover = QFrame(self, Qt.WindowType.Popup)
            self.popover.setFrameShape(QFrame.Shape.StyledPanel)
            label = QLabel()
            label.setObjectName("runInfoText")
            label.setWordWrap(True)
            label.setTextFormat(Qt.TextFormat.RichText)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label.setFixedWidth(POPOVER_WIDTH)
            QVBoxLayout(self.popover).addWidget(label)
        label = self.popover.findChild(QLabel, "runInfoText")
        label.setText(self.html())
        self.popover.adjustSize()
        size = self.popover.sizeHint()
        at = self.button.mapToGlobal(QPoint(self.button.width(), 0))
        screen = self.screen().availableGeometry() if self.screen() else None
        x, y = at.x() - size.width(), at.y() - size.height()  # above the status bar
        if screen is not None:
            x = max(screen.left(), min(x, screen.right() - size.width()))
            y = max(screen.top(), y)
        self.popover.move(x, y)
        self.popover.show()
