"""The start page: open a folder, drop one on the window, recent runs, the demo, training."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from lossview.gui.plotkit import style


class StartPage(QWidget):
    """Signals: ``open_folder`` (browse), ``open_path(str)``, ``open_demo``, ``train``."""

    open_folder = Signal()
    open_path = Signal(str)
    open_demo = Signal()
    train = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        t = style.current()
        title = QLabel("lossview")
        f = title.font()
        f.setPointSizeF(f.pointSizeF() * 2.6)
        f.setBold(True)
        title.setFont(f)
        subtitle = QLabel("See what your optimizer does after the loss stops moving: loss curves, "
                          "the weight trajectory and the loss surface on one timeline.")
        subtitle.setWordWrap(True)
        subtitle.setStyleSheet(f"color: {t.muted};")

        self.open_btn = QPushButton("Open run folder…")
        self.demo_btn = QPushButton("Open the demo run")
        self.train_btn = QPushButton("Train a problem…")
        self.open_btn.setDefault(True)
        for b, tipt in ((self.open_btn, "A folder of checkpoints written by lossview, PyTorch, "
                                        "Lightning or the Hugging Face Trainer (Ctrl+O)"),
                        (self.demo_btn, "A small recorded run shipped with lossview"),
                        (self.train_btn, "Train a small built-in model live and watch it")):
            b.setMinimumHeight(36)
            b.setToolTip(tipt)
        self.open_btn.clicked.connect(self.open_folder)
        self.demo_btn.clicked.connect(self.open_demo)
        self.train_btn.clicked.connect(self.train)
        buttons = QHBoxLayout()
        buttons.setSpacing(10)
        for b in (self.open_btn, self.demo_btn, self.train_btn):
            buttons.addWidget(b)
        buttons.addStretch(1)

        drop = QLabel("…or drop a folder anywhere on this window.")
        drop.setStyleSheet(f"color: {t.muted};")
        self.recent_title = QLabel("<b>Recent runs</b>")
        self.recent = QListWidget()
        self.recent.setFrameShape(QFrame.Shape.NoFrame)
        self.recent.setIconSize(QSize(16, 16))
        self.recent.setStyleSheet(
            "QListWidget { background: transparent; }"
            "QListWidget::item { padding: 6px 4px; border-radius: 4px; }"
            "QListWidget::item:hover { background: rgba(47, 116, 192, 0.10); }")
        self.recent.setCursor(Qt.CursorShape.PointingHandCursor)
        self.recent.itemActivated.connect(lambda it: self.open_path.emit(it.data(Qt.ItemDataRole.UserRole)))
        self.recent.itemClicked.connect(lambda it: self.open_path.emit(it.data(Qt.ItemDataRole.UserRole)))
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setStyleSheet(f"color: {t.divergence};")
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        card = QWidget()
        card.setMaximumWidth(760)
        lay = QVBoxLayout(card)
        lay.setSpacing(12)
        lay.addWidget(title)
        lay.addWidget(subtitle)
        lay.addSpacing(10)
        lay.addLayout(buttons)
        lay.addWidget(drop)
        lay.addWidget(self.message)
        lay.addSpacing(14)
        lay.addWidget(self.recent_title)
        lay.addWidget(self.recent, 1)

        outer = QHBoxLayout(self)
        outer.setContentsMargins(40, 50, 40, 30)
        outer.addStretch(1)
        outer.addWidget(card, 4)
        outer.addStretch(1)

    def set_demo_available(self, ok: bool, reason: str = "") -> None:
        self.demo_btn.setEnabled(ok)
        if not ok:
            self.demo_btn.setToolTip(f"The demo run is not available: {reason}")

    def set_train_available(self, ok: bool) -> None:
        self.train_btn.setEnabled(ok)
        if not ok:
            self.train_btn.setToolTip("Live training is not available in this build yet")

    def set_recent(self, paths: list[str]) -> None:
        self.recent.clear()
        icon = self.style().standardIcon(self.style().StandardPixmap.SP_DirIcon)
        for p in paths:
            item = QListWidgetItem(icon, f"{Path(p).name}    —    {p}")
            item.setData(Qt.ItemDataRole.UserRole, p)
            item.setToolTip(p)
            self.recent.addItem(item)
        self.recent_title.setVisible(bool(paths))
        self.recent.setVisible(bool(paths))

    def show_message(self, text: str) -> None:
        self.message.setText(text)
