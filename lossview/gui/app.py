"""QApplication set-up and the ``run_app`` entry used by ``lossview open`` and ``demo``."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from lossview.gui.plotkit import style
from lossview.gui.window import settings

log = logging.getLogger("lossview.gui")

#: size of the window when rendering ``--screenshot`` (and of the PNG written)
SCREENSHOT_SIZE = (1600, 1000)


def app_icon() -> QIcon | None:
    try:
        from lossview.resources import path
    except ImportError:
        return None
    for name in ("lossview.svg", "lossview.png", "icons/lossview.svg", "icons/lossview.png"):
        p = path(name)
        if p.is_file():
            return QIcon(str(p))
    return None


def share_gl_contexts() -> None:
    """Let every OpenGL view share one set of GL resources (call before the QApplication).

    pyqtgraph compiles each shader program once and reuses its id; without shared
    contexts a second 3D view (the surface panel re-created, the sweep, a test after
    another) draws with an id that is invalid in its own context ("glUseProgram:
    invalid value") and shows nothing.
    """
    from PySide6.QtCore import Qt

    QCoreApplication.setAttribute(Qt.ApplicationAttribute.AA_ShareOpenGLContexts)


#: seconds a thread may hold the GIL while another waits (Python's default is 0.005)
GIL_SWITCH_INTERVAL = 0.001


def keep_a_core_for_the_gui() -> None:
    """Surfaces computed by the app use all cores but one: with every core computing, the
    panels' first paints of a run took 3x longer (docs/benchmarks.md)."""
    from lossview.core.surface.threads import set_thread_budget

    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 2
    set_thread_budget(max(1, cores - 1))


_GC = None


def collect_garbage_on_the_gui_thread() -> None:
    """Python's cycle collector runs only on the GUI thread, from a 1 s timer.

    Left automatic, it runs in whichever thread happens to allocate: a training or surface
    worker then destroyed Qt objects (garbage cycles holding widgets or plot items), and
    ``~QObject`` called back into Python from the wrong thread; seen as a worker thread
    stuck forever inside an import (torch._dynamo's, at the first optimizer) waiting for
    the GIL in ``Sbk_GetPyOverride``. pyqtgraph's ``GarbageCollector`` disables automatic
    collection and collects on a timer; objects alive now are frozen out of later
    collections, so a full collection stays short on the GUI thread.
    """
    global _GC
    if _GC is None:
        import gc

        from pyqtgraph.util.garbage_collector import GarbageCollector

        gc.collect()
        gc.freeze()
        _GC = GarbageCollector(interval=1.0)


def make_app(argv: list[str] | None = None, cls: type = QApplication) -> QApplication:
    """The QApplication (created once) with name, organisation, icon and theme.

    ``cls``: a QApplication subclass to create (benchmarks/_turnlog.py times events)."""
    QCoreApplication.setOrganizationName(settings.ORG)
    QCoreApplication.setApplicationName(settings.APP)
    app = QApplication.instance()
    if app is None:
        # PySide releases the GIL around every Qt call, so a GUI thread that paints
        # re-acquires it thousands of times a second; each time another thread holds it
        # (the readers of child jobs unpickling, or the jobs themselves where they run on
        # threads), the GUI waits up to the switch interval (default 5 ms). 1 ms shortened
        # the longest GUI-thread blocks while training live and while opening a run, when
        # jobs still ran on threads (docs/benchmarks.md, GUI responsiveness).
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL))
        share_gl_contexts()
        keep_a_core_for_the_gui()
        app = cls(argv if argv is not None else [sys.argv[0]])
        collect_garbage_on_the_gui_thread()
    icon = app_icon()
    if icon is not None:
        app.setWindowIcon(icon)
    style.apply(settings.theme(), app)
    return app


def choose_platform(offscreen: bool) -> None:
    """Before the QApplication, where no display is set (Linux: no ``DISPLAY`` or
    ``WAYLAND_DISPLAY``) and the user chose no Qt platform: Qt's offscreen one when
    ``offscreen`` (a screenshot or an export), else a one-line error naming the way out."""
    if QApplication.instance() is not None or os.environ.get("QT_QPA_PLATFORM") \
            or not sys.platform.startswith("linux") \
            or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    if not offscreen:
        from lossview.core.errors import LossviewError

        raise LossviewError("no display to show the window on (DISPLAY is not set); "
                            "lossview export RUN --png FILE renders without one")
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import qInstallMessageHandler

    def quiet(_mode, _context, message: str) -> None:  # the offscreen plugin's own notes
        if "does not support propagateSizeHints" not in message:
            sys.stderr.write(message + "\n")

    qInstallMessageHandler(quiet)


def view_3d_line() -> str:
    """One line saying how the surface panel shows the surface (after the QApplication)."""
    from PySide6.QtGui import QGuiApplication

    from lossview.gui.surface.gl_window import gl_renderer, gl_unavailable_reason

    offscreen = QGuiApplication.platformName() in ("offscreen", "minimal")
    reason = gl_unavailable_reason()
    if reason is None:
        where = "offscreen OpenGL" if offscreen else "OpenGL"
        return f"3D view: {where}" + (f" ({gl_renderer()})" if gl_renderer() else "")
    return (f"3D view not available{' without a display' if offscreen else ''} ({reason}): "
            "the surface is shown as a contour map")


def install_excepthook(window) -> None:
    """Unexpected exceptions in slots go to the window's log and status bar, not a crash."""
    previous = sys.excepthook

    def hook(etype, value, tb):
        if issubclass(etype, KeyboardInterrupt):
            previous(etype, value, tb)
            return
        log.error("unexpected error:\n%s", "".join(traceback.format_exception(etype, value, tb)))
        try:
            line = (str(value).strip().splitlines() or [etype.__name__])[0]
            window.report_error(f"unexpected error: {etype.__name__}: {line}")
        except Exception:  # noqa: BLE001 - the window cannot report it: the default hook does
            previous(etype, value, tb)

    sys.excepthook = hook


#: the window is up by then, and no 3D surface can be ready yet (loading, analysis and the
#: first grid take longer), so the first one finds PyOpenGL imported
PREWARM_DELAY_MS = 300
#: imported ahead of need: PyOpenGL with pyqtgraph's GL items (the first 3D surface,
#: ~110 ms of the GUI thread), after lossview's GL module has set PyOpenGL's options.
#: Not torch: training, surfaces and sharpness run in child processes, the train dialog's
#: problem list comes from one (gui/training/problem_catalog.py), so only reading
#: torch-format checkpoints imports it here.
PREWARM_MODULES = ("lossview.gui.surface.gl_window", "lossview.gui.surface.gl_view", "OpenGL.GL",
                   "pyqtgraph.opengl")


def prewarm_imports() -> None:
    """Import :data:`PREWARM_MODULES` on a background thread, so that the first 3D
    surface does not stop the window for an import.

    Last stop this raced a training thread's first torch._dynamo import and stalled a test;
    the stall was the cycle collector destroying Qt objects on a non-GUI thread, which
    :func:`collect_garbage_on_the_gui_thread` now prevents. Needing a module while its
    import runs waits for it (Python's import lock), no longer than without it. A module
    that fails to import here is reported where it is needed, as before.
    """
    import importlib
    import threading

    done = threading.Event()

    def run() -> None:
        for name in PREWARM_MODULES:
            try:
                importlib.import_module(name)
            except Exception:
                log.debug("prewarm: %s not importable", name, exc_info=True)
        done.set()

    threading.Thread(target=run, name="lossview-prewarm", daemon=True).start()

    def probe() -> None:
        # then, on the GUI thread, whether a 3D view can be made (cached; its context was
        # made before the window showed, by probe_gl): not in the first surface's turn
        if not done.is_set():
            QTimer.singleShot(100, probe)
            return
        from lossview.gui.surface.gl_window import gl_unavailable_reason, shader_warmers

        gl_unavailable_reason()
        from lossview.gui.plotkit.frames import frames

        # one per frame: each compiles a shader program
        frames().submit(QCoreApplication.instance(), "warm-up",
                        [*shader_warmers(), freeze_start_up_objects])

    QTimer.singleShot(100, probe)


def probe_gl() -> None:
    """Make the throw-away OpenGL context that says whether a 3D view can be made
    (:func:`lossview.gui.surface.gl_window.probe_context`) now, before the window shows: it is
    ~40 ms of the GUI thread (the driver loading), which made it the longest turn while a
    run opened; before the first paint, nobody waits on a window for it. PyOpenGL is
    still imported on a background thread (:func:`prewarm_imports`)."""
    from lossview.gui.surface.gl_window import probe_context

    probe_context()


def freeze_start_up_objects() -> None:
    """Move every object alive now out of the cycle collector's sight (``gc.freeze``).

    The modules imported after :func:`collect_garbage_on_the_gui_thread` froze the first
    ones (PyOpenGL, pyqtgraph.opengl, the window's own objects: ~330,000 objects) sat in
    the collector's middle generation, and its next pass over them was one 194 ms stop
    of the GUI thread, in the middle of a scrub. Called once the start-up imports are
    done; the frozen objects are still freed when their last reference goes.
    """
    import gc

    gc.freeze()


def start_job_server() -> None:
    """Start the forkserver that training, surfaces and sharpness run in
    (:mod:`lossview.core.tasks.processes`); where that fails, they run on threads instead."""
    from lossview.core.tasks import processes
    from lossview.gui.training import problem_catalog
    try:
        # the app's job functions and what they import beyond the core
        processes.start_server(preload=("lossview.core.tasks.jobs", "lossview.core.tasks.loader"))
    except Exception as e:  # noqa: BLE001 - any failure falls back to threads
        log.warning("could not start the job server (%s); jobs run on threads", e)
        os.environ[processes.ENV] = "thread"
    problem_catalog.prefetch()
    if processes.available():
        single_threaded_blas()  # after the imports above, which load scipy's own BLAS


def single_threaded_blas() -> None:
    """One BLAS thread in the app's own process, where the jobs run in children.

    The window's numpy work is small (smoothing a curve, colours, a bilinear lift), and
    BLAS's threads waited for cores the jobs were using: the loss panel's smoothing took
    14 ms instead of 1 while a surface and the sharpness computed (its set_run: 29 ->
    11 ms). The children keep their own thread pools (the forkserver is a separate
    process). threadpoolctl (joblib's) finds and limits every BLAS loaded so far
    (numpy's and scipy's are separate libraries).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency; without it only slower
        return
    threadpool_limits(limits=1, user_api="blas")


def run_app(path: str | None = None, step: int | None = None, screenshot: str | None = None,
            demo: bool = False, train: bool = False, model_file: str | None = None,
            size: tuple[int, int] | None = None, data: str | None = None,
            block_size: int | None = None, say_3d: bool = False) -> int:
    """Show the main window and run the event loop; returns the exit status.

    ``screenshot``: once every panel is populated at ``step`` (the surface computation
    included), write the window as a PNG to that file and exit 0 (1 if loading failed);
    ``size`` is the window's size for it (default :data:`SCREENSHOT_SIZE`).
    ``data`` (with ``block_size``): a data file for Hugging Face folders opened without a
    model file (their model rebuilt from config.json; ``lossview open --data``).
    Without a display, ``screenshot`` renders on Qt's offscreen platform
    (:func:`choose_platform`); ``say_3d``: print how the 3D view is shown
    (:func:`view_3d_line`, ``lossview export``).
    """
    from lossview.gui.window.main_window import MainWindow, demo_path

    choose_platform(offscreen=bool(screenshot))
    app = make_app()
    probe_gl()
    if screenshot and say_3d:
        print(view_3d_line(), flush=True)
    win = MainWindow()
    install_excepthook(win)
    if model_file:
        win.set_model_file(model_file)
    if data:
        win.opener.set_cli_data_file(data, block_size)
    if screenshot:
        win.resize(*(size or SCREENSHOT_SIZE))
    win.show()
    status = {"code": 0}
    if screenshot:
        from lossview.gui.plotkit.export import screenshot_when_ready

        screenshot_when_ready(win, Path(screenshot), status)
    if demo and path is None:
        if train and _can_train():
            QTimer.singleShot(0, win.start_default_training)
        else:
            p = demo_path()
            if p is None and screenshot:
                from lossview.core.errors import LossviewError

                raise LossviewError("the demo run is not shipped with this build")
            QTimer.singleShot(0, win.open_demo)
    elif path is not None:
        QTimer.singleShot(0, lambda: win.open_path(path, step=step))
    # the process that jobs are forked from imports torch in its own process meanwhile
    QTimer.singleShot(0, start_job_server)
    if not screenshot:
        QTimer.singleShot(PREWARM_DELAY_MS, prewarm_imports)
    code = app.exec()
    _teardown(win)
    return status["code"] or code


def _teardown(win) -> None:
    """Delete the window while Qt is alive: letting the interpreter's final garbage
    collection destroy pyqtgraph items after QApplication can abort the process."""
    import gc

    import shiboken6

    win.hide()
    if shiboken6.isValid(win):
        shiboken6.delete(win)
    gc.collect()


def _can_train() -> bool:
    try:
        import lossview.gui.training.dialog  # noqa: F401
    except ImportError:
        return False
    return True
