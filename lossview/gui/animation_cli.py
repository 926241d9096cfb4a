"""``lossview export --gif``: open a run in a window, wait for every panel, animate."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication


def _settle(win, max_s: float = 60.0) -> None:
    """Let throttled views (the surface marker) catch up before a frame is grabbed."""
    import time

    t0 = time.monotonic()
    QApplication.processEvents()
    while win.surface_busy() and time.monotonic() - t0 < max_s:
        QApplication.processEvents()
        time.sleep(0.01)


def export_animation(path: str, out: Path, max_frames: int = 60,
                     size: tuple[int, int] | None = None) -> int:
    """Write ``out`` (.gif or .mp4) from the run at ``path``; ``size``: the window's size
    (default ``SCREENSHOT_SIZE``). Without a display, on Qt's offscreen platform; prints
    how the 3D view is shown (``app.view_3d_line``)."""
    from lossview.gui.app import (
        SCREENSHOT_SIZE,
        _teardown,
        choose_platform,
        make_app,
        probe_gl,
        view_3d_line,
    )
    from lossview.gui.plotkit.export import save_animation, when_ready
    from lossview.gui.window.main_window import MainWindow

    choose_platform(offscreen=True)
    app = make_app()
    probe_gl()
    print(view_3d_line(), flush=True)
    win = MainWindow()
    win.resize(*(size or SCREENSHOT_SIZE))
    win.show()
    status = {"code": 0}

    def ready() -> None:
        win.statusBar().clearMessage()  # transient messages are not part of the frames
        try:
            save_animation(win, out, max_frames=max_frames, wait=lambda: _settle(win))
        except Exception as e:  # noqa: BLE001 - any export failure is one line and exit 2
            failed(str(e))
            return
        QTimer.singleShot(0, win.close)

    def failed(msg: str) -> None:
        sys.stderr.write(f"lossview export: error: {msg}\n")
        status["code"] = 2
        QTimer.singleShot(0, win.close)

    when_ready(win, ready, failed)
    QTimer.singleShot(0, lambda: win.open_path(path))
    code = app.exec()
    _teardown(win)
    return status["code"] or code
