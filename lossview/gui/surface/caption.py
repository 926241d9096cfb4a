"""The surface panel's caption: what the surface leaves out and why not to trust it.

One line each, in the core's words (:mod:`lossview.core.surface.results`): the grid points
whose loss overflowed, with a swatch of the colour the views draw them in (the legend of
:data:`~lossview.core.surface.scene.OVERFLOW_RGB`), the snapshots left out after a
divergence, a suspicious (constant) surface, the loss used when a model file gave none;
and above them the panel's own status (cancelled, an error). Lines wrap, so nothing is
cut off in a narrow panel.
"""

from __future__ import annotations

from html import escape
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget

from lossview.core.surface.scene import (
    OVERFLOW_LABEL,
    OVERFLOW_RGB,
    overflow_text,
    surface_notes,
)

SWATCH_HEX = "#{:02x}{:02x}{:02x}".format(*OVERFLOW_RGB)


def _capital(text: str) -> str:
    """The sentence capitalised, unless it starts with a name from code ("loss_fn not
    given: ..." read "Loss_fn")."""
    if "_" in text.split(" ", 1)[0]:
        return text
    return text[:1].upper() + text[1:]


class SurfaceCaption(QLabel):
    """A word-wrapped rich-text label under the surface; :meth:`plain` is what it says."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setContentsMargins(6, 0, 6, 2)
        self._status: str | None = None
        self._overflow: str | None = None
        self._notes: list[str] = []

    def set_status(self, text: str | None) -> None:
        """The panel's own word (cancelled, an error), above the surface's notes."""
        self._status = text or None
        self._render()

    def set_surface(self, surface: Any) -> None:
        """The notes of ``surface`` (a core ``RunSurface``, partial or final, or None)."""
        self._overflow = None if surface is None else overflow_text(surface)
        self._notes = [] if surface is None else surface_notes(surface)
        self._render()

    def clear(self) -> None:
        self._status, self._overflow, self._notes = None, None, []
        super().clear()

    def overflow_legend(self) -> str | None:
        """The legend line of the overflow colour (plain text), or None: the core's count,
        which says "loss overflowed"."""
        if self._overflow is None:
            return None
        text = self._overflow
        return text if OVERFLOW_LABEL in text else f"{text} ({OVERFLOW_LABEL})"

    def plain(self) -> str:
        """Everything the caption says, one line per note (for tests and logs)."""
        lines = [self._status, self.overflow_legend(), *self._notes]
        return "\n".join(_capital(t) for t in lines if t)

    def _render(self) -> None:
        lines = [escape(_capital(self._status))] if self._status else []
        legend = self.overflow_legend()
        if legend:
            lines.append(f"<span style='color:{SWATCH_HEX}'>&#9632;</span> "
                         f"{escape(_capital(legend))}")
        lines += [escape(_capital(n)) for n in self._notes]
        self.setText("<br>".join(lines))
        self.setToolTip("" if not self._overflow else
                        "Grid points where the loss is inf or NaN are drawn in this colour "
                        "at the top of the height scale: there is no loss value to show there.")
