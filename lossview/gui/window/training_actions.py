"""The main window's link to the train dialog: open it, show its live run, and replace
the live view by the saved run when training ends; ``lossview demo`` starts a problem."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lossview.gui.window.main_window import MainWindow

log = logging.getLogger("lossview.gui")

#: the built-in problem ``lossview demo`` trains live (its loss plateaus, the weights wander)
DEMO_PROBLEM = "mlp"


def train_dialog_class():
    try:
        from lossview.gui.training.dialog import TrainDialog
    except ImportError as e:
        log.info("train dialog unavailable: %s", e)
        return None
    return TrainDialog


def open_train_dialog(win: MainWindow) -> None:
    cls = train_dialog_class()
    if cls is None:
        win.report_error("live training is not available in this build")
        return
    if win._train_dialog is None:
        dialog = win._train_dialog = cls(win)
        dialog.run_started.connect(win.live.start)
        dialog.run_updated.connect(win.live.update)
        # its plot is redrawn after each of the window's refreshes, in a turn of its own
        win.live.followers.append(dialog.plot_live)
        dialog.plot_follows_window = True
        dialog.run_finished.connect(lambda path: _on_training_finished(win, path))
    win._train_dialog.show()
    win._train_dialog.raise_()


def _on_training_finished(win: MainWindow, path: Any) -> None:
    """Replace the live view by the saved run, fully analysed (surface included), unless
    the window stopped following it (``close_run`` stopped the training)."""
    following = win.live.run is not None
    win.live.stop()
    if path and following:
        win.open_path(str(path), step=None)


def start_default_training(win: MainWindow) -> None:
    """``lossview demo``: open the train dialog and start its default problem."""
    open_train_dialog(win)
    dialog = win._train_dialog
    if dialog is None:
        return
    with contextlib.suppress(AttributeError, ValueError):  # else the dialog's own default
        dialog.set_problem(DEMO_PROBLEM)
    dialog.start()
