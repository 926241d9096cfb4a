"""Images and animations of the window or one panel, and the wait for a window to be
fully drawn before one is taken (:func:`when_ready`).

PNGs come from ``QWidget.grab()``; the 3D surface view renders in a native child window
that ``grab()`` does not see, so its own frame is painted in at its place. Animations
step the timeline through the run, grab the window at each frame and write a GIF
(imageio, optional extra ``lossview[export]``) or an MP4 (ffmpeg on PATH).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPoint, QRect, QTimer
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QApplication, QWidget

from lossview.core.errors import LossviewError


def grab_image(widget: QWidget) -> QImage:
    QApplication.processEvents()
    img = widget.grab().toImage()
    views = [w for w in [widget, *widget.findChildren(QWidget)]
             if getattr(w, "is_gl_container", False) and w.isVisible()]
    if views and not img.isNull():
        painter = QPainter(img)
        try:
            for v in views:
                frame = v.grab_image()
                if not frame.isNull():
                    painter.drawImage(QRect(v.mapTo(widget, QPoint(0, 0)), v.size()), frame)
        finally:
            painter.end()
    return img


def save_png(widget: QWidget, path: str | Path) -> Path:
    path = Path(path)
    img = grab_image(widget)
    if img.isNull() or not img.save(str(path), "PNG"):
        raise LossviewError(f"could not write {path}")
    return path


def qimage_to_array(img: QImage) -> np.ndarray:
    """``(h, w, 3)`` uint8 RGB copy of a QImage."""
    img = img.convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), dtype=np.uint8, count=bpl * h).reshape(h, bpl)
    return buf[:, : w * 3].reshape(h, w, 3).copy()


def frame_indices(count: int, max_frames: int) -> list[int]:
    if count <= 0:
        return []
    n = min(count, max_frames)
    return sorted(set(np.linspace(0, count - 1, n).round().astype(int).tolist()))


def save_animation(win, path: str | Path, max_frames: int = 120, fps: float = 12.0,
                   widget: QWidget | None = None,
                   wait: Callable[[], None] | None = None) -> Path:
    """Step ``win.timeline`` through the run and write the frames as GIF or MP4."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise LossviewError(f"{path}: animations are .gif or .mp4")
    if suffix == ".gif":
        try:
            import imageio.v3 as iio
        except ImportError:
            raise LossviewError("GIF export needs imageio: pip install 'lossview[export]'") from None
    elif shutil.which("ffmpeg") is None:
        raise LossviewError("MP4 export needs ffmpeg on PATH (or export a .gif)")
    widget = widget or win
    tl = win.timeline
    was = tl.index
    tl.set_playing(False)
    frames = []
    try:
        for i in frame_indices(tl.count, max_frames):
            tl.set_index(i)
            if wait is not None:
                wait()
            frames.append(qimage_to_array(grab_image(widget)))
    finally:
        tl.set_index(was)
    if not frames:
        raise LossviewError("no snapshots to animate")
    h = min(f.shape[0] for f in frames) // 2 * 2
    w = min(f.shape[1] for f in frames) // 2 * 2
    frames = [f[:h, :w] for f in frames]
    if suffix == ".gif":
        iio.imwrite(path, np.stack(frames), duration=1000.0 / fps, loop=0)
    else:
        _write_mp4(path, frames, fps)
    return path


def _write_mp4(path: Path, frames: list[np.ndarray], fps: float) -> None:
    h, w = frames[0].shape[:2]
    cmd = ["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-", "-pix_fmt", "yuv420p",
           "-vcodec", "libx264", str(path)]
    proc = subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames),
                          capture_output=True, check=False)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise LossviewError(f"ffmpeg failed: {msg[-1] if msg else proc.returncode}")


def when_ready(win, on_ready, on_failed, timeout_s: float = 600.0) -> None:
    """Call ``on_ready()`` once a run is loaded and nothing (surface included) is computing
    for half a second; ``on_failed(message)`` if loading fails or it times out."""
    state = {"loaded": False, "quiet": 0, "elapsed": 0.0}
    timer = QTimer(win)
    timer.setInterval(100)

    def failed(msg: str) -> None:
        timer.stop()
        on_failed(msg)

    def loaded(_run) -> None:
        state["loaded"] = True
        state["quiet"] = 0

    def poll() -> None:
        state["elapsed"] += 0.1
        if state["elapsed"] > timeout_s:
            failed(f"timed out after {timeout_s:.0f} s waiting for the panels")
            return
        if not state["loaded"] or win.is_computing():
            state["quiet"] = 0
            return
        state["quiet"] += 1
        if state["quiet"] >= 5:
            timer.stop()
            on_ready()

    win.run_loaded.connect(loaded)
    win.load_failed.connect(failed)
    timer.timeout.connect(poll)
    timer.start()


def screenshot_when_ready(win, out: Path, status: dict) -> None:
    """Write the window to ``out`` once every panel is drawn (:func:`when_ready`), then
    close it; a failure goes to stderr in one line and sets ``status["code"]`` to 2."""
    def failed(msg: str) -> None:
        sys.stderr.write(f"lossview: error: {msg}\n")
        status["code"] = 2
        QTimer.singleShot(0, win.close)

    def ready() -> None:
        win.statusBar().clearMessage()  # transient messages are not part of the picture
        try:
            save_png(win, out)
        except Exception as e:  # noqa: BLE001 - any export failure is one line and exit 2
            failed(str(e))
            return
        QTimer.singleShot(0, win.close)

    when_ready(win, ready, failed)
