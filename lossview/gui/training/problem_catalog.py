"""The built-in problems as the train dialog lists them, fetched without importing torch.

The problems are torch modules; their descriptions and default settings are asked of a
child process once at start-up (:func:`prefetch`, :func:`lossview.core.tasks.jobs.problem_catalog`),
so that opening the dialog neither imports torch into the app (1.2 s of Python holding the
GIL against the GUI thread) nor waits for it. Where jobs run on threads, or the child
fails, :func:`get` builds the catalogue here instead.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("lossview.gui")

_catalog: dict[str, dict[str, Any]] | None = None
_worker: Any = None

#: how long :func:`get` waits for a fetch in flight (the job server imports torch first)
WAIT_MS = 15000


def prefetch() -> None:
    """Start fetching the catalogue in a child process (once; a no-op on threads)."""
    global _worker
    if _catalog is not None or _worker is not None:
        return
    from lossview.core.tasks.jobs import problem_catalog
    from lossview.gui.workers import ProcessWorker, make_worker

    w = make_worker(problem_catalog)
    if not isinstance(w, ProcessWorker):
        return
    w.errored.connect(lambda msg: log.info("problem catalogue: %s", msg))
    _worker = w
    w.start()


def get() -> dict[str, dict[str, Any]]:
    """``{problem name: {"description": ..., "default_lr": ..., ...}}``, in menu order."""
    global _catalog, _worker
    if _catalog is None and _worker is not None:
        if _worker.wait(WAIT_MS) and isinstance(_worker.result, dict):
            _catalog = _worker.result
        _worker = None
    if _catalog is None:
        from lossview.core.tasks.jobs import problem_catalog

        gen = problem_catalog()
        try:
            while True:
                next(gen)
        except StopIteration as stop:
            _catalog = stop.value
    return _catalog
