"""Menus and keyboard shortcuts of the main window."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMessageBox

from lossview.gui.window import settings

if TYPE_CHECKING:
    from lossview.gui.window.main_window import MainWindow


def build_menus(win: MainWindow) -> dict[str, QAction]:
    acts: dict[str, QAction] = {}
    tl = win.timeline

    def act(name, text, slot, shortcut=None, menu=None, tip=""):
        a = QAction(text, win)
        if shortcut:
            a.setShortcut(QKeySequence(shortcut))
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        if tip:
            a.setStatusTip(tip)
        a.triggered.connect(slot)
        if menu is not None:
            menu.addAction(a)
        win.addAction(a)  # shortcuts work even when the menu bar is hidden
        acts[name] = a
        return a

    mb = win.menuBar()
    m = mb.addMenu("&File")
    act("open", "&Open run folder…", win.browse, QKeySequence.StandardKey.Open, m)
    act("demo", "Open the &demo run", win.open_demo, None, m)
    act("train", "&Train a problem…", win.open_train_dialog, "Ctrl+T", m)
    recent = m.addMenu("Open &recent")

    def fill_recent():
        recent.clear()
        paths = settings.recent_folders()
        for p in paths:
            a = recent.addAction(p)
            a.triggered.connect(lambda _=False, p=p: win.open_path(p))
        if not paths:
            recent.addAction("(none)").setEnabled(False)

    recent.aboutToShow.connect(fill_recent)
    act("attach_model", "Attach &model file…", win.choose_model_file, None, m,
        "A Python file that builds the model and yields batches, for the loss surface and "
        "sharpness of a folder of weights (runs its code; see docs/surface.md)")
    m.addSeparator()
    exp = m.addMenu("&Export")
    act("export_window", "Window as PNG…", lambda: export_png(win, win), "Ctrl+Shift+S", exp)
    act("export_loss", "Loss panel as PNG…", lambda: export_png(win, win.loss_panel), None, exp)
    act("export_trajectory", "Trajectory panel as PNG…",
        lambda: export_png(win, win.trajectory_panel), None, exp)
    act("export_surface", "Surface panel as PNG…", lambda: export_png(win, win.surface_panel),
        None, exp)
    act("export_diagnostics", "Diagnostics panel as PNG…",
        lambda: export_png(win, win.diagnostics_panel), None, exp)
    exp.addSeparator()
    act("export_csv", "Metrics as CSV…", lambda: export_csv(win), None, exp)
    act("export_anim", "Timeline animation (GIF/MP4)…", lambda: export_animation(win), None, exp)
    m.addSeparator()
    act("close_run", "&Close run", win.close_run, QKeySequence.StandardKey.Close, m)
    act("quit", "&Quit", win.close, QKeySequence.StandardKey.Quit, m)

    v = mb.addMenu("&View")
    v.addAction(win.log_dock.toggleViewAction())
    act("reset_layout", "Reset layout", win.reset_layout, None, v)
    theme_menu = v.addMenu("Theme (applies on restart)")
    group = QActionGroup(win)
    for name in settings.THEMES:
        a = theme_menu.addAction(name.capitalize())
        a.setCheckable(True)
        a.setChecked(settings.theme() == name)
        group.addAction(a)
        a.triggered.connect(lambda _=False, n=name: _set_theme(win, n))

    p = mb.addMenu("&Playback")
    act("play", "Play / pause", tl.toggle_playing, Qt.Key.Key_Space, p)
    act("prev", "Previous snapshot", lambda: tl.step_by(-1), Qt.Key.Key_Left, p)
    act("next", "Next snapshot", lambda: tl.step_by(1), Qt.Key.Key_Right, p)
    act("back10", "Back 10 snapshots", lambda: tl.step_by(-10), "Shift+Left", p)
    act("fwd10", "Forward 10 snapshots", lambda: tl.step_by(10), "Shift+Right", p)
    act("home", "First snapshot", tl.home, Qt.Key.Key_Home, p)
    act("end", "Last snapshot", tl.end, Qt.Key.Key_End, p)

    h = mb.addMenu("&Help")
    act("about", "About lossview", lambda: _about(win), None, h)
    return acts


def _set_theme(win: MainWindow, name: str) -> None:
    settings.set_theme(name)
    win.statusBar().showMessage(f"Theme set to {name}; it applies when lossview restarts.", 8000)


def _about(win: MainWindow) -> None:
    from lossview._version import __version__

    QMessageBox.about(win, "About lossview",
                      f"<b>lossview {__version__}</b><p>Loss curves, weight-trajectory PCA and "
                      "loss surfaces on one timeline.</p><p>Settings: "
                      f"{settings.settings_file()}</p>")


def _ask(win: MainWindow, title: str, suffix: str, filt: str) -> str | None:
    name = (win.run.name if win.run is not None else "lossview") + suffix
    path, _ = QFileDialog.getSaveFileName(win, title, str(Path.home() / name), filt)
    return path or None


def export_png(win: MainWindow, widget) -> None:
    from lossview.gui.plotkit.export import save_png

    path = _ask(win, "Export PNG", ".png", "PNG image (*.png)")
    if path:
        _guard(win, lambda: save_png(widget, path), path)


def export_csv(win: MainWindow) -> None:
    from lossview.core.io.export_csv import write_metrics_csv

    if win.run is None:
        return
    path = _ask(win, "Export metrics", ".csv", "CSV (*.csv)")
    if path:
        _guard(win, lambda: write_metrics_csv(win.run, path), path)


def export_animation(win: MainWindow) -> None:
    from lossview.gui.plotkit.export import save_animation

    if win.run is None:
        return
    path = _ask(win, "Export animation", ".gif", "GIF animation (*.gif);;MP4 video (*.mp4)")
    if path:
        _guard(win, lambda: save_animation(win, path), path)


def _guard(win: MainWindow, fn, path: str) -> None:
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - an export failure is a message, not a crash
        win.report_error(f"could not write {path}: {e}")
    else:
        win.statusBar().showMessage(f"wrote {path}", 8000)
