"""What the surface panel shows for a folder of weights without its model: one short
sentence, a button that attaches a model file, and what goes in one.

A loss surface needs the model and the data, which a folder written by ``torch.save``
does not hold (docs/surface.md, "Where the model and data come from"). The core's reason
(one long line naming ``--model``) is the tooltip; the page says it in words that fit a
narrow panel.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCursor
from PySide6.QtWidgets import QLabel, QPushButton, QToolTip, QVBoxLayout, QWidget

NEEDS_MODEL = "This folder holds weights only: the surface needs the model and data."
NEEDS_DATA = ("This Hugging Face folder's model is rebuilt from its config.json, but the "
              "surface needs data: start lossview with --data FILE, or attach a model file.")
ATTACH_TEXT = "Attach model file…"
WHAT_TEXT = "What goes in it?"

#: the model-file contract of docs/surface.md, short (the link's tooltip)
CONTRACT_TIP = (
    "<p>A Python file that defines:</p>"
    "<pre>def build_model():   # a torch.nn.Module whose parameter\n"
    "                     # names and shapes are the checkpoints'\n"
    "def batches():       # yields (inputs, targets) batches:\n"
    "                     # the data the loss is averaged over\n"
    "def loss_fn(outputs, targets):   # the batch's mean loss;\n"
    "                     # optional for integer class targets</pre>"
    "<p>Loading it runs its code. lossview remembers it for this folder. "
    "Details: docs/surface.md, \"Where the model and data come from\".</p>")


class NeedsModelView(QWidget):
    """The "needs the model" state. Signal: ``attach_requested()`` (the button)."""

    attach_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.text = QLabel(NEEDS_MODEL)
        self.text.setWordWrap(True)
        self.text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.attach_button = QPushButton(ATTACH_TEXT)
        self.attach_button.setToolTip("A Python file that builds the model and yields "
                                      "batches (this runs its code)")
        self.attach_button.clicked.connect(self.attach_requested)
        self.what = QLabel(f"<a href='contract'>{WHAT_TEXT}</a>")
        self.what.setTextFormat(Qt.TextFormat.RichText)
        self.what.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.what.setToolTip(CONTRACT_TIP)
        self.what.linkActivated.connect(lambda _href: self.show_contract())
        lay = QVBoxLayout(self)
        lay.setContentsMargins(24, 12, 24, 12)
        lay.setSpacing(10)
        lay.addStretch(1)
        lay.addWidget(self.text)
        lay.addWidget(self.attach_button, 0, Qt.AlignmentFlag.AlignHCenter)
        lay.addWidget(self.what)
        lay.addStretch(1)

    def set_reason(self, message: str) -> None:
        """The core's one line (kept as the tooltip); Hugging Face folders that need data
        are told so."""
        self.text.setText(NEEDS_DATA if "Hugging Face" in message else NEEDS_MODEL)
        self.text.setToolTip(message)

    def show_contract(self) -> None:
        """The contract at the link (a click, where a tooltip needs a hover)."""
        QToolTip.showText(QCursor.pos(), CONTRACT_TIP, self.what)
