"""The dialog that asks which run to open when a folder holds several.

The core refuses such a folder with one line listing the runs (``a (12 checkpoints),
b (...)``); the loader lists them (:func:`lossview.core.tasks.loader.run_choices`) and the
window asks here. Opened window-modal with :meth:`QDialog.open`, so the event loop (and
a test driving it) goes on; Cancel opens nothing and keeps what is shown.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)


class RunChooser(QDialog):
    """Lists ``choices`` (``(sub-folder name, checkpoints)``) of the folder ``path``."""

    def __init__(self, path: str | Path, choices: list[tuple[str, int]],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path = Path(path)
        self.setWindowTitle("Choose a run")
        label = QLabel(f"<b>{self.path.name}</b> holds {len(choices)} runs. Open which one?")
        label.setTextFormat(Qt.TextFormat.RichText)
        label.setToolTip(str(self.path))
        self.list = QListWidget()
        for name, count in choices:
            item = QListWidgetItem(f"{name}  —  {count} checkpoint{'s' * (count != 1)}")
            item.setData(Qt.ItemDataRole.UserRole, name)
            item.setToolTip(str(self.path / name))
            self.list.addItem(item)
        self.list.setCurrentRow(0)
        self.list.itemDoubleClicked.connect(lambda _item: self.accept())
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(label)
        lay.addWidget(self.list)
        lay.addWidget(self.buttons)
        self.resize(420, 300)

    def names(self) -> list[str]:
        """The runs listed, in order."""
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]

    def chosen(self) -> Path | None:
        """The folder of the selected run (None if nothing is selected)."""
        item = self.list.currentItem()
        return None if item is None else self.path / item.data(Qt.ItemDataRole.UserRole)
