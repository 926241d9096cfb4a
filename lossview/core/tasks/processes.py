"""Core generators run in a child process, streamed back over a pipe (no Qt here).

Why a process and not a thread: every Python thread of the app shares one GIL with the
GUI thread. A worker training a model or evaluating a surface holds it between its torch
calls, and each time the GUI thread comes back from a Qt call it may wait up to the GIL
switch interval; a pyqtgraph repaint makes hundreds of such calls, so a paint that takes
2.5 ms alone took 6-11 ms beside a training thread and 9-15 ms beside pure Python
(docs/benchmarks.md). A child process has a GIL of its own.

Children are forked from a *forkserver*: a clean interpreter started once (it never ran
Qt or any thread of the app), which has already imported :data:`PRELOAD` (torch and
the core), so a job starts in milliseconds instead of the seconds a fresh ``spawn``
would take to import torch again. Elsewhere than on Linux, or in a frozen bundle, the GUI
falls back to threads (:func:`available`).

Protocol (child -> parent, one pickled tuple per message on a one-way pipe):
``("progress", [items...])`` (batched to at most one message per ``min_interval``),
``("result", value)``, ``("cancelled", None)``, ``("error", (line, traceback))`` (traceback None for
a LossviewError, an expected condition).
The parent asks to stop with a shared event, checked before every ``next()``: the
generator is closed at its current ``yield``, exactly as :class:`GeneratorWorker` does.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from lossview.core.errors import LossviewError

#: imported once by the forkserver, so that children start with them in memory
PRELOAD = ("numpy", "scipy.ndimage", "torch", "contourpy", "lossview.core.tasks.processes",
           "lossview.core.train.trainer", "lossview.core.surface.runsurface",
           "lossview.core.surface.stability", "lossview.core.analysis.report",
           )

#: children run at this much lower CPU priority: when the GUI thread needs a core (a
#: first 3D frame rasterised in software, a first paint) it gets it, instead of sharing
#: two cores with two busy jobs (a first 3D frame took 620 ms then, against ~100 ms).
#: Not 19: beside other busy processes of the user (a training run on every core) a
#: job at 19 gets ~1.5 % of a core and a surface never finishes; at 10, ~10 %.
NICE = 10

#: set ``LOSSVIEW_WORKERS=thread`` to run every job on a thread of the app instead
ENV = "LOSSVIEW_WORKERS"

_ctx = None
_ctx_lock = threading.RLock()


def available() -> bool:
    """True where jobs can run in forked children: Linux (where it is tested; forking a
    process that imported torch is not safe everywhere, macOS's system libraries among
    them), not disabled, not a frozen bundle (PyInstaller; its threads-only build is the
    one verified), and the shared semaphores the cancel event needs work (not in some
    containers)."""
    if os.environ.get(ENV, "").lower() == "thread" or getattr(sys, "frozen", False) \
            or not sys.platform.startswith("linux"):
        return False
    return "forkserver" in mp.get_all_start_methods() and _semaphores_work()


_semaphores: bool | None = None


def _semaphores_work() -> bool:
    global _semaphores
    if _semaphores is None:
        try:
            mp.get_context("forkserver").Event()
            _semaphores = True
        except (ImportError, OSError):  # "lacks a functioning sem_open implementation"
            _semaphores = False
    return _semaphores


def context(preload: tuple[str, ...] = ()):
    """The forkserver context, with :data:`PRELOAD` and ``preload`` (the caller's own job
    modules) set; created once, so ``preload`` counts only before the first job."""
    global _ctx
    if _ctx is None:
        # OpenMP threads that busy-wait after each parallel region steal the cores of
        # the other jobs and of the GUI; libgomp reads this when the server imports torch
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(list(dict.fromkeys(PRELOAD + tuple(preload))))
        _ctx = ctx
    return _ctx


_MAIN_KEYS = ("init_main_from_path", "init_main_from_name", "main_path")


@contextlib.contextmanager
def _without_main():
    """Children never re-run the parent's ``__main__``.

    multiprocessing normally re-imports the main script in every child (and in the
    forkserver), for functions defined there. Jobs are module-level functions of
    importable modules, and the app's main script may import Qt or start work at import
    time, so its preparation data is left out while a process of ours starts.
    """
    from multiprocessing import spawn

    with _ctx_lock:
        original = spawn.get_preparation_data

        def prep(name):
            data = original(name)
            for k in _MAIN_KEYS:
                data.pop(k, None)
            return data

        spawn.get_preparation_data = prep
        try:
            yield
        finally:
            spawn.get_preparation_data = original


def start_server(preload: tuple[str, ...] = ()) -> None:
    """Start the forkserver now (it imports :data:`PRELOAD` and ``preload`` in its own
    process), so that the first job does not wait for it. Safe to call more than once."""
    if available():
        from multiprocessing import forkserver

        context(preload)
        with _without_main():
            forkserver.ensure_running()


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def run_job(conn, cancel, func: Callable[..., Any], args: tuple, kwargs: dict,
            min_interval: float, settings: dict) -> None:
    """Child side: iterate ``func(*args, **kwargs)`` (a generator) and stream it to ``conn``.

    ``settings``: process-wide settings to copy from the parent first
    (``thread_budget``: see :func:`lossview.core.surface.threads.set_thread_budget`;
    ``nice``: added to the child's scheduling niceness).
    """
    if settings.get("nice") and hasattr(os, "nice"):
        with contextlib.suppress(OSError):
            os.nice(int(settings["nice"]))
    if hasattr(os, "SCHED_BATCH"):
        # Linux: a CPU-bound, non-interactive task that never preempts the GUI thread on
        # its wake-ups (the GUI's paints then start at once instead of after a time slice)
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    if "thread_budget" in settings:
        from lossview.core.surface.threads import set_thread_budget

        set_thread_budget(settings["thread_budget"])
    if settings.get("torch_threads") and "torch" in sys.modules:
        # each child has its own torch thread pool: two jobs at torch's default (one
        # thread per core) oversubscribed the cores and took 4x longer than in threads
        sys.modules["torch"].set_num_threads(int(settings["torch_threads"]))
    pending: list[Any] = []
    last = 0.0

    def flush() -> None:
        nonlocal pending
        if pending:
            conn.send(("progress", pending))
            pending = []

    try:
        gen = func(*args, **kwargs)
        try:
            while True:
                if cancel.is_set():
                    gen.close()
                    flush()
                    conn.send(("cancelled", None))
                    return
                try:
                    item = next(gen)
                except StopIteration as stop:
                    flush()
                    conn.send(("cancelled", None) if cancel.is_set() else ("result", stop.value))
                    return
                pending.append(item)
                now = time.monotonic()
                if now - last >= min_interval:
                    flush()
                    last = now
        finally:
            gen.close()
    except Exception as e:  # noqa: BLE001 - any failure becomes a message for the parent
        try:
            flush()
        except Exception:  # noqa: BLE001 - an unpicklable item: report the first error
            pending = []
        # an expected condition (a LossviewError: bad input, a missing model) is said in
        # one line; only unexpected failures carry their traceback to the parent's log
        expected = isinstance(e, LossviewError)
        conn.send(("error", (_one_line(e), None if expected else traceback.format_exc())))
    finally:
        conn.close()
        sys.stdout.flush()


def start(func: Callable[..., Any], args: tuple = (), kwargs: dict | None = None,
          min_interval: float = 1 / 30, name: str = "lossview-job", cancel=None):
    """Start ``func(*args, **kwargs)`` in a child; returns ``(process, conn, cancel)``.

    ``func`` and its arguments are pickled by reference: a module-level function of a
    module that does not import Qt (the child never imports Qt). ``cancel``: the event
    the child checks before each step (default: a new ``context().Event()``). Starting
    waits until the forkserver has imported :data:`PRELOAD` (about a second after
    :func:`start_server`), so a GUI calls this off its GUI thread.
    """
    from lossview.core.surface.threads import current_budget

    ctx = context()
    recv, send = ctx.Pipe(duplex=False)
    cancel = cancel if cancel is not None else ctx.Event()
    budget = current_budget()
    settings = {"thread_budget": budget, "nice": NICE,
                "torch_threads": budget or max(1, (os.cpu_count() or 2) - 1)}
    proc = ctx.Process(target=run_job, name=name, daemon=True,
                       args=(send, cancel, func, tuple(args), dict(kwargs or {}),
                             float(min_interval), settings))
    with _without_main():
        proc.start()
    send.close()  # the child holds the only writing end: EOF when it ends
    return proc, recv, cancel
