"""Shared fixtures. GUI tests run under Xvfb (pytest-xvfb); QSettings are isolated per test."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import traceback
import weakref
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """Without Xvfb and without a display, fall back to Qt's offscreen platform.

    pytest-xvfb (which runs first) sets DISPLAY when Xvfb is installed; only when it is
    missing and no display exists do GUI tests use ``offscreen``, where the OpenGL tests
    skip with a reason. Never both DISPLAY and offscreen (see DESIGN.md).
    """
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture(autouse=True)
def _kernels_as_in_a_fresh_process():
    """Every test starts as in a fresh process: the surface fast path's numba kernels not
    loaded and no savings forgone (they load once enough surfaces have run, which would
    make a test's path depend on the tests before it; test_mlp_kernels.py loads them)."""
    from lossview.core.surface import fastkernels

    fastkernels.reset()
    yield
    fastkernels.reset()


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, monkeypatch):
    """Keep QSettings and any config a test writes out of the user's home."""
    home = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.setenv("LOSSVIEW_SETTINGS_DIR", str(home))


# -- work left running after a test -------------------------------------------------------
# Modelled on napari's ``dangling_qthreads`` (napari/utils/_testsupport.py): a test that
# leaves a QThread, a non-daemon thread, a daemon thread of lossview's (``lossview-*``) or
# a child process running fails, naming what is left and where it was started. Work left
# behind goes on while the next tests run: its late signals paint into their widgets, it
# competes for the two cores, and Qt aborts ("QThread: Destroyed while thread is still
# running") when the application goes with one still running.

#: how long a test's stopped workers get to end after its teardown (seconds)
LEAK_GRACE = 3.0


def _where_started() -> str:
    """The innermost frames of this repository's code that started something."""
    root = str(Path(__file__).resolve().parent.parent)
    frames = [f for f in traceback.extract_stack()[:-2]
              if f.filename.startswith(root) and "conftest.py" not in f.filename]
    return " <- ".join(f"{Path(f.filename).relative_to(root)}:{f.lineno}"
                       for f in reversed(frames[-3:])) or "?"


def _child_pids(parent: int) -> set[int]:
    """Live (not zombie) children of ``parent``, from /proc (no psutil): the job
    processes a forkserver forked are its children, not ours."""
    out = set()
    for d in Path("/proc").glob("[0-9]*"):
        try:
            stat = (d / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        state, ppid = stat.rpartition(")")[2].split()[:2]
        if int(ppid) == parent and state != "Z":
            out.add(int(d.name))
    return out


def _process_name(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return f"pid {pid}"
    return f"pid {pid} ({cmd[:120]})"


def _long_lived_pids() -> set[int]:
    """multiprocessing's forkserver and resource tracker: started once, on first need
    (maybe during a test), and kept for the session on purpose (lossview starts the
    forkserver at launch so that jobs start in milliseconds: core/tasks/processes.py)."""
    from multiprocessing import forkserver, resource_tracker

    pids = {forkserver._forkserver._forkserver_pid, resource_tracker._resource_tracker._pid}
    return {p for p in pids if p}


def _job_pids() -> set[int]:
    """Children of the forkserver: every job of a ProcessWorker (core/tasks/processes.py)."""
    from multiprocessing import forkserver

    server = forkserver._forkserver._forkserver_pid
    return _child_pids(server) if server else set()


def _ours(thread: threading.Thread) -> bool:
    """A daemon thread of lossview's that must not outlive the test that started it (a
    Recorder's writer, a surface's pipeline); the app's import prewarming may."""
    return thread.name.startswith("lossview-") and thread.name != "lossview-prewarm"


def _leftovers(qthreads, threads_before, procs_before, pids_before) -> list[str]:
    import multiprocessing

    left = []
    for t, where in list(qthreads.items()):
        try:
            if t.isRunning():
                left.append(f"QThread {type(t).__name__} started at {where}")
        except RuntimeError:  # its C++ object is gone: it has ended
            pass
    left += [f"thread {t.name!r}" + ("" if t.daemon else " (non-daemon)")
             for t in threading.enumerate() if t not in threads_before and t.is_alive()
             and (not t.daemon or _ours(t))]
    procs = [p for p in multiprocessing.active_children() if p not in procs_before]
    left += [f"child process {p.name!r} (pid {p.pid})" for p in procs]
    known = {p.pid for p in procs} | _long_lived_pids() | pids_before
    pids = (_child_pids(os.getpid()) | _job_pids()) - known
    left += [f"child process {_process_name(pid)}" for pid in sorted(pids)]
    return left


def _stop_leftovers(qthreads, procs_before) -> None:
    """So that one leaking test does not break the next ones."""
    import multiprocessing
    import signal

    for p in set(multiprocessing.active_children()) - procs_before:
        p.kill()
        p.join(2)
    for pid in _job_pids():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for t in list(qthreads):
        with contextlib.suppress(RuntimeError):
            worker = getattr(t, "_worker", None)  # lossview.gui.workers' threads
            if worker is not None:
                worker.cancel()
            t.wait(5000)


@pytest.fixture(autouse=True)
def _no_dangling_work(request, monkeypatch):
    """Fail a test that leaves a QThread, a thread or a child process running (see
    above). Long-lived by design, and not counted: multiprocessing's forkserver and
    resource tracker (:func:`_long_lived_pids`), and what module or session fixtures
    started before the test (Xvfb, a Ray instance)."""
    import multiprocessing

    qthreads: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    qtcore = sys.modules.get("PySide6.QtCore")  # only where Qt is in use (never in core)
    if qtcore is not None:
        base_start = qtcore.QThread.start

        def start(self, *args):
            qthreads[self] = _where_started()
            base_start(self, *args)

        monkeypatch.setattr(qtcore.QThread, "start", start)
    threads_before = set(threading.enumerate())
    procs_before = set(multiprocessing.active_children())
    pids_before = _child_pids(os.getpid()) | _job_pids()
    yield
    deadline = time.monotonic() + LEAK_GRACE
    while True:
        left = _leftovers(qthreads, threads_before, procs_before, pids_before)
        if not left or time.monotonic() > deadline:
            break
        app = qtcore.QCoreApplication.instance() if qtcore is not None else None
        if app is not None:  # a worker's end is delivered to the GUI thread
            app.processEvents()
        time.sleep(0.02)
    if left:
        _stop_leftovers(qthreads, procs_before)
        pytest.fail(f"{request.node.nodeid} left running after its teardown "
                    f"(+{LEAK_GRACE:g} s): " + "; ".join(left)
                    + ". Stop and wait for it in the test or its fixture (a window: "
                    "shutdown(); a worker: cancel() then wait()).", pytrace=False)
