"""The train dialog's small pieces: where runs are saved and named, and a spin box for
floats that reads as they are written (0.5, 1e-05)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from PySide6.QtCore import QStandardPaths, Qt
from PySide6.QtWidgets import QDoubleSpinBox


def default_runs_folder() -> Path:
    """``<user data dir>/runs`` (QStandardPaths.AppDataLocation)."""
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(base or Path.home() / ".lossview") / "runs"


def stamp() -> str:
    """A run folder's time stamp (local time, to the second)."""
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def tilde(path: Path | str) -> str:
    """``path`` with the home folder written ``~`` (shorter in a narrow field)."""
    p, home = Path(path), Path.home()
    try:
        return str(Path("~") / p.relative_to(home))
    except ValueError:
        return str(p)


def unique_folder(parent: Path, name: str) -> Path:
    """``parent/name``, or ``parent/name-2``... if it exists already."""
    p = Path(parent) / name
    k = 2
    while p.exists():
        p = Path(parent) / f"{name}-{k}"
        k += 1
    return p



class _GSpin(QDoubleSpinBox):
    """A double spin box that shows 0.5 and 1e-05 instead of 0.500000 and 0.000010."""

    def textFromValue(self, value: float) -> str:
        return f"{value:.6g}"

    def valueFromText(self, text: str) -> float:
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        from PySide6.QtGui import QValidator

        t = text.strip()
        try:
            v = float(t)
        except ValueError:
            ok = t == "" or (t[-1:] in "eE.-+" and t.count("e") + t.count("E") <= 1)
            return (QValidator.State.Intermediate if ok else QValidator.State.Invalid), text, pos
        if self.minimum() <= v <= self.maximum():
            return QValidator.State.Acceptable, text, pos
        return QValidator.State.Intermediate, text, pos


def float_spin(lo: float, hi: float, decimals: int, tip: str) -> QDoubleSpinBox:
    s = _GSpin()
    s.setRange(lo, hi)
    s.setDecimals(decimals)
    s.setSingleStep(10 ** -min(decimals, 3))
    s.setToolTip(tip)
    s.setAlignment(Qt.AlignmentFlag.AlignRight)
    return s
