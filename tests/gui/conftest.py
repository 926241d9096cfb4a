"""Fixtures for the GUI tests: real run folders written by RunWriter, analysed for real."""

from __future__ import annotations

import numpy as np
import pytest

from lossview.core.io import RunWriter, open_run
from lossview.gui.app import share_gl_contexts

share_gl_contexts()  # before pytest-qt's qapp exists, as the app does before its QApplication


@pytest.fixture(scope="session", autouse=True)
def _gc_on_the_gui_thread(qapp):
    """As the app does (``collect_garbage_on_the_gui_thread``): a cycle collection in a
    worker thread destroyed the previous tests' widgets there and hung a training thread."""
    from lossview.gui.app import collect_garbage_on_the_gui_thread

    collect_garbage_on_the_gui_thread()
    yield
    _delete_widgets(qapp)


def _delete_widgets(qapp) -> None:
    """Delete every window left over while the application still exists.

    A run of only the GL tests ended in a segfault: ``~QApplication``, destroying a
    panel the tests had left, reached ``QWindowContainer::toplevelAboutToBeDestroyed``
    with the 3D view's GL window already deleted (gdb backtrace; PySide counts that
    window as owned by Python, ``Shiboken.ownedByPython``, although its container owns it
    in C++). Deleted here, in order, the windows go with their containers.
    """
    import gc

    from PySide6.QtCore import QCoreApplication, QEvent

    for w in qapp.topLevelWidgets():
        if w.isVisible():  # pyqtgraph's PlotWidget.close() fails the second time
            w.close()
        w.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()


def write_run(path, n_snap=30, every=10, seed=0, nan_from=None):
    """A run whose weights drift, then diffuse: loss falls, then is flat with noise.

    Snapshots every ``every`` steps; ``nan_from``: loss is NaN from that step on.
    """
    rng = np.random.default_rng(seed)
    w = {"fc.weight": rng.normal(size=(8, 4)), "fc.bias": np.zeros(8)}
    drift = {k: rng.normal(size=v.shape) for k, v in w.items()}
    with RunWriter(path, {"name": path.name, "optimizer": {"name": "sgd", "lr": 0.1}}) as wr:
        for step in range(n_snap * every):
            phase = step < n_snap * every // 2
            for k in w:
                w[k] = w[k] + (0.05 * drift[k] if phase else 0) + 0.02 * rng.normal(size=w[k].shape)
            loss = 0.05 + np.exp(-step / 40.0) + 0.01 * rng.random()
            if nan_from is not None and step >= nan_from:
                loss = float("nan")
            rec = {"loss": loss, "grad_norm": 1.0 + 0.1 * rng.random(), "lr": 0.1}
            if step % every == 0:
                rec["train_loss"] = 0.05 + np.exp(-step / 40.0)
                rec["val_loss"] = 0.08 + np.exp(-step / 40.0)
                wr.snapshot(step, w, epoch=step / 100)
            wr.log(step, **rec)
    return path


def analyse(path):
    from lossview.core.tasks.loader import analyze_run

    run = open_run(path)
    gen = analyze_run(run)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return run, stop.value


@pytest.fixture
def run_path(tmp_path):
    return write_run(tmp_path / "walk")


@pytest.fixture
def loaded(run_path):
    return analyse(run_path)


@pytest.fixture
def window(qtbot):
    from PySide6.QtWidgets import QApplication

    from lossview.gui.window.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    # Xvfb has no window manager: activate explicitly so window shortcuts fire
    win.windowHandle().requestActivate()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=5000)
    yield win
    win.shutdown()


def open_and_wait(qtbot, win, path, step=None, timeout=30000):
    with qtbot.waitSignal(win.run_loaded, timeout=timeout):
        win.open_path(str(path), step=step)
    qtbot.waitUntil(lambda: not win.is_loading(), timeout=timeout)
