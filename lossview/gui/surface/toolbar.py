"""The surface panel's header: plane, grid size, log z on one row; 2D/3D, camera reset, and
the progress bar with Cancel / Compute while a surface is computed on a second, so that
the panel fits a third of a 1280-pixel window (in one row it needed 877 pixels, and the
window could not be narrower than 1512).

The toolbar only holds controls and says what the user asked for (its signals); the
panel (:mod:`lossview.gui.surface.panel`) decides what to compute and draw.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from lossview.gui.plotkit.widgets import LazyProgressBar, choose

#: (core plane name, label, tooltip)
PLANES = (
    ("pca", "PCA of the trajectory",
     "The plane of the trajectory's first two principal components, through its last "
     "snapshot (Li et al. 2018)."),
    ("post-plateau", "Post-plateau segment",
     "PCA of the snapshots after the loss plateau only: the plane the weights wander in "
     "once the loss is flat."),
    ("random", "Random (filter-normalised)",
     "Two random directions, each filter scaled to the norm of the weights' filter "
     "(Li et al. 2018); the trajectory is projected onto them."),
)
RESOLUTIONS = (21, 31, 41, 51, 61)
#: the 2D/3D button says what a click switches to
VIEW_LABELS = ("3D surface", "2D contour")
DEFAULT_STEPS = 41


class SurfaceToolbar(QWidget):
    """Controls of the surface panel.

    Signals
    -------
    settings_changed() : the plane or the grid size changed (the surface must be recomputed).
    log_toggled(bool) : log z switched (the same surface is redrawn).
    view_toggled(bool) : True for the 2D contour view, False for the 3D surface.
    reset_requested(), cancel_requested(), compute_requested() : the buttons.
    """

    settings_changed = Signal()
    log_toggled = Signal(bool)
    view_toggled = Signal(bool)
    reset_requested = Signal()
    cancel_requested = Signal()
    compute_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        rows = QVBoxLayout(self)
        rows.setContentsMargins(6, 2, 6, 2)
        rows.setSpacing(2)
        row1, row2 = QHBoxLayout(), QHBoxLayout()
        for row in (row1, row2):
            row.setSpacing(6)
            rows.addLayout(row)
        title = QLabel("<b>Loss surface</b>")
        title.setToolTip("The loss on a 2D plane through weight space, with the training "
                         "path projected onto it (Li et al. 2018).")
        row1.addWidget(title)

        self.plane_box = QComboBox()
        for i, (key, label, tip) in enumerate(PLANES):
            self.plane_box.addItem(label, key)
            self.plane_box.setItemData(i, tip, Qt.ItemDataRole.ToolTipRole)
        self.plane_box.setToolTip("Which plane to slice weight space with.")
        self.plane_box.currentIndexChanged.connect(lambda _i: self.settings_changed.emit())
        row1.addWidget(self.plane_box)

        self.res_box = QComboBox()
        for n in RESOLUTIONS:
            self.res_box.addItem(f"{n}×{n}", n)
        self.res_box.setCurrentIndex(RESOLUTIONS.index(DEFAULT_STEPS))
        self.res_box.setToolTip("Grid points per side (the loss is evaluated exactly at each).")
        self.res_box.currentIndexChanged.connect(lambda _i: self.settings_changed.emit())
        row1.addWidget(self.res_box)

        self.log_box = QCheckBox("log z")
        self.log_box.setToolTip("Show log10 of the loss, so the flat basin and the walls "
                                "are both visible.")
        self.log_box.toggled.connect(self.log_toggled)
        row1.addWidget(self.log_box)
        row1.addStretch(1)

        self.view_button = QToolButton()
        self.view_button.setCheckable(True)
        self.view_button.setText(VIEW_LABELS[1])
        self.view_button.setToolTip("Switch between the 3D surface and a 2D contour map.")
        self.view_button.toggled.connect(self._on_view_toggled)
        # as wide as its wider label: a header that changes width when the view is
        # toggled re-lays out the window's splitter, and every panel repaints (150 ms)
        self.view_button.setFixedWidth(max(
            self.view_button.fontMetrics().horizontalAdvance(t) for t in VIEW_LABELS) + 16)
        row2.addWidget(self.view_button)

        self.reset_button = QToolButton()
        self.reset_button.setText("Reset view")
        self.reset_button.setToolTip("Back to the default camera (3D) or the full plane (2D).")
        self.reset_button.clicked.connect(self.reset_requested)
        row2.addWidget(self.reset_button)
        row2.addStretch(1)

        self.progress = LazyProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setMaximumWidth(160)
        self.progress.setTextVisible(True)
        self.progress.setFormat("surface %p%")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop computing; what is already evaluated stays drawn.")
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.compute_button = QPushButton("Compute")
        self.compute_button.setToolTip("Compute the surface again (or finish a cancelled one).")
        self.compute_button.clicked.connect(self.compute_requested)
        # Cancel and Compute are never shown together: one place for both
        buttons = QGridLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addWidget(self.cancel_button, 0, 0)
        buttons.addWidget(self.compute_button, 0, 0)
        row2.addWidget(self.progress)
        row2.addLayout(buttons)
        for w in (self.progress, self.cancel_button, self.compute_button):
            # hidden or shown, they keep their place: a header that changes size re-lays
            # out the main window's splitter, and every panel then repaints from scratch
            policy = w.sizePolicy()
            policy.setRetainSizeWhenHidden(True)
            w.setSizePolicy(policy)
            w.setVisible(False)

    # -- what the user chose -------------------------------------------------------
    def plane(self) -> str:
        return str(self.plane_box.currentData())

    def set_plane(self, plane: str) -> None:
        choose(self.plane_box, plane, f"unknown plane {plane!r}")

    def grid_steps(self) -> int:
        return int(self.res_box.currentData())

    def set_grid_steps(self, steps: int) -> None:
        """Choose the grid size (one of :data:`RESOLUTIONS`), as the combo box would."""
        choose(self.res_box, int(steps), f"grid size {steps} is not one of {RESOLUTIONS}")

    def log_z(self) -> bool:
        return self.log_box.isChecked()

    def wants_contour(self) -> bool:
        return self.view_button.isChecked()

    # -- state shown ---------------------------------------------------------------
    def set_contour(self, on: bool) -> None:
        """Check the 2D/3D button; emits ``view_toggled`` only if it changed."""
        self.view_button.setChecked(bool(on))

    def set_gl_unavailable(self, reason: str) -> None:
        """No 3D view can be made: lock the button on the contour map, saying why."""
        self.view_button.setChecked(True)
        self.view_button.setEnabled(False)
        self.view_button.setToolTip(f"3D view unavailable: {reason}. "
                                    "Showing the 2D contour map.")

    def set_progress(self, fraction: float) -> None:
        self.progress.setValue(round(1000 * fraction))

    def set_busy(self, busy: bool, can_compute: bool) -> None:
        """Progress + Cancel while computing; else Compute where a surface is unfinished."""
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self.compute_button.setVisible(not busy and can_compute)

    def _on_view_toggled(self, contour: bool) -> None:
        self.view_button.setText(VIEW_LABELS[0] if contour else VIEW_LABELS[1])
        self.view_toggled.emit(contour)
