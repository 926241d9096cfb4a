"""What the surface panel shows for a folder of weights without its model: one short
sentence, a button that attaches a model file, and what goes in one. A Hugging Face
folder (config.json: its model is rebuilt from it) needs only data: it also gets
"Use data file…" (a text, or JSON lines for a classifier; docs/surface.md).

A loss surface needs the model and the data, which a folder written by ``torch.save``
does not hold (docs/surface.md, "Where the model and data come from"). The core's reason
(one long line naming ``--model``) is the tooltip; the page says it in words that fit a
narrow panel.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCursor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QToolTip, QVBoxLayout, QWidget

NEEDS_MODEL = "This folder holds weights only: the surface needs the model and data."
NEEDS_DATA = ("This Hugging Face folder's model is rebuilt from its config.json; the "
              "surface needs data: a text file (JSON lines with text and label for a "
              "classifier), or a model file.")
ATTACH_TEXT = "Attach model file…"
DATA_TEXT = "Use data file…"
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
    """The "needs the model" state. Signals: ``attach_requested()`` (the model-file
    button), ``data_requested()`` ("Use data file…", shown for Hugging Face folders)."""

    attach_requested = Signal()
    data_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.text = QLabel(NEEDS_MODEL)
        self.text.setWordWrap(True)
        self.text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.attach_button = QPushButton(ATTACH_TEXT)
        self.attach_button.setToolTip("A Python file that builds the model and yields "
                                      "batches (this runs its code)")
        self.attach_button.clicked.connect(self.attach_requested)
        self.data_button = QPushButton(DATA_TEXT)
        self.data_button.setToolTip("A text file the language model's loss is averaged "
                                    "over (JSON lines with \"text\" and \"label\" for a "
                                    "classifier); no code is run")
        self.data_button.clicked.connect(self.data_requested)
        self.data_button.hide()
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.data_button)
        buttons.addWidget(self.attach_button)
        buttons.addStretch(1)
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
        lay.addLayout(buttons)
        lay.addWidget(self.what)
        lay.addStretch(1)

    def set_reason(self, message: str) -> None:
        """The core's one line (kept as the tooltip); Hugging Face folders that need data
        are told so, and get "Use data file…"."""
        hf = "Hugging Face" in message
        self.text.setText(NEEDS_DATA if hf else NEEDS_MODEL)
        self.text.setToolTip(message)
        self.data_button.setVisible(hf)

    def show_contract(self) -> None:
        """The contract at the link (a click, where a tooltip needs a hover)."""
        QToolTip.showText(QCursor.pos(), CONTRACT_TIP, self.what)
