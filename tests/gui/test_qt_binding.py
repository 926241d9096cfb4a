"""The installed Qt binding must not leak references to None.

PySide6-Essentials 6.12.0 drops one reference to None on every Qt call returning void;
on CPython < 3.12 the count reaches zero within a session and the interpreter aborts
("none_dealloc"). pyproject.toml excludes that release; this test catches any other.
"""

import sys

from PySide6.QtWidgets import QWidget


def test_void_qt_calls_keep_none_alive(qtbot, qapp):
    w = QWidget()
    qtbot.addWidget(w)
    before = sys.getrefcount(None)
    for _ in range(2000):
        qapp.processEvents()
        w.setWindowTitle("x")
    lost = before - sys.getrefcount(None)
    assert lost < 100, f"{lost} references to None lost in 4,000 void Qt calls"
