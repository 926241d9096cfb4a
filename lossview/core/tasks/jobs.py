"""The app's long jobs as module-level generators, so they can run in a child process.

No Qt here (a test checks it): :class:`~lossview.gui.workers.ProcessWorker` pickles
these functions by reference and the child imports this module, never Qt. Each yields
progress and returns its result, like every core generator; what they yield and
return is plain data (numpy arrays, dataclasses) that pickles.

A job on a run opened from disk gets ``(path, steps)`` and reopens it in the child
(:func:`reopen`, headers only), so that the parent pickles two short lists instead of the
whole Run; in-memory runs (live training) are sent whole (a Run pickles with its arrays).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossview.core.surface.scene import SurfaceScene, build_scene, grid_evaluated

#: partial surfaces are sent for drawing at most this often (the final one always)
PARTIAL_INTERVAL = 0.4


def can_reopen(run: Any) -> bool:
    """Whether a child process can open ``run`` again from its path (not an in-memory
    or live run)."""
    from lossview.core.io.memory import MemoryReader

    return (run is not None and not getattr(run, "live", False)
            and not isinstance(getattr(run, "reader", None), MemoryReader)
            and Path(run.path).exists())


def _as_run(run: Any) -> Any:
    """A job's ``run`` argument: a Run, or ``(path, steps)`` to :func:`reopen`."""
    return reopen(*run) if isinstance(run, tuple) else run


def reopen(path: str, steps: Sequence[int]) -> Any:
    """Open ``path`` in this (child) process, as the run of the snapshots ``steps``.

    A folder that a training loop is still writing has grown since the app opened it:
    the first ``len(steps)`` snapshots are the app's run. Any other difference is an
    error (the folder was rewritten).
    """
    from lossview.core.errors import LossviewError
    from lossview.core.io import open_run
    from lossview.core.run import Run

    run = open_run(path)
    want = [int(s) for s in steps]
    have = [int(s) for s in run.steps]
    if have == want:
        return run
    if have[:len(want)] != want:
        raise LossviewError(f"{path} changed on disk since it was opened: reopen it")
    return Run(run.path, run.format, run.snapshots[:len(want)], run.reader, run.param_shapes,
               run.buffer_names, run.metrics, run.spec, run.warnings)


# -- training ------------------------------------------------------------------------
#: what the train dialog shows of each built-in problem
CATALOG_KEYS = ("description", "default_optimizer", "default_lr", "default_momentum",
                "default_batch_size", "default_steps", "default_every")


def problem_catalog() -> Generator[str, None, dict[str, dict[str, Any]]]:
    """The built-in problems' descriptions and defaults, as plain data (the problems
    themselves need torch; the app asks a child, so its own process does not import it)."""
    from lossview.core.train.problems import PROBLEMS

    yield "problems"
    return {name: {k: getattr(cls, k) for k in CATALOG_KEYS} for name, cls in PROBLEMS.items()}


def train_stream(config: Any, out: str | Path):
    """Set up the trainer (validates, builds the problem), yield its run spec first, then
    its progress events; returns its summary."""
    from dataclasses import replace

    from lossview.core.train.trainer import Trainer

    # every step yields; the worker batches events, so no snapshot is ever skipped
    trainer = Trainer(replace(config, progress_interval=0.0), Path(out))
    yield trainer.run_spec()
    return (yield from trainer.run())


# -- loss surface --------------------------------------------------------------------
@dataclass
class SceneUpdate:
    """What the surface job sends: progress, and now and then a scene ready to draw."""

    fraction: float
    surface: Any = None
    scene: SurfaceScene | None = None


def scene_stream(make: Callable[[], Generator], log: bool, interval: float = PARTIAL_INTERVAL
                 ) -> Generator[SceneUpdate, None, SceneUpdate]:
    """Run the core's progressive surface and build the scenes to draw, off the GUI
    thread: at most one partial scene per ``interval`` seconds while the grid fills in,
    none once it is complete (only the trajectory's losses are still being evaluated),
    and the final one as the return value. Closing it closes the core generator."""
    gen = make()
    last, grid_done = 0.0, False
    try:
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                final = stop.value
                return SceneUpdate(1.0, final, build_scene(final, log))
            partial = getattr(p, "partial", None)
            now = time.monotonic()
            if partial is None or grid_done or now - last < interval:
                yield SceneUpdate(float(p.fraction))
                continue
            last = now
            # complete also where overflowed points are NaN (not "not evaluated yet")
            grid_done = grid_evaluated(partial)
            # no isolines on partial scenes (the contour view gets them with the final one)
            yield SceneUpdate(float(p.fraction), partial, build_scene(partial, log, False))
    finally:
        gen.close()


def surface_scenes(run: Any, log: bool, data: Any = None, **kwargs: Any
                   ) -> Generator[SceneUpdate, None, SceneUpdate]:
    """:func:`scene_stream` of ``surface_for_run(run, **kwargs)``; ``run`` is a Run, or
    ``(path, steps)`` to reopen in a child process (:func:`reopen`). ``data``: a
    :class:`~lossview.core.tasks.loader.DataFile` for a Hugging Face folder (its model rebuilt
    from config.json, in place of ``model_file``)."""
    from lossview.core.surface.runsurface import surface_for_run

    run = _as_run(run)
    if data is not None:
        from lossview.core.tasks.loader import data_source

        kwargs.pop("model_file", None)
        kwargs["source"] = data_source(run, data)
    return (yield from scene_stream(lambda: surface_for_run(run, **kwargs), log))


# -- analysis ------------------------------------------------------------------------
def analysis(run: Any, model_file: str | None = None) -> Generator[str, None, dict]:
    """:func:`lossview.core.tasks.loader.analyze_run` of ``run`` (a Run, or ``(path, steps)``)."""
    from lossview.core.tasks.loader import analyze_run

    return (yield from analyze_run(_as_run(run), model_file=model_file))


# -- sharpness -----------------------------------------------------------------------
def sharpness(run: Any, model_file: str | None = None, data: Any = None
              ) -> Generator[str, None, dict]:
    """:func:`lossview.core.tasks.loader.sharpness_table` of ``run`` (a Run or ``(path, steps)``);
    ``data``: a Hugging Face folder's :class:`~lossview.core.tasks.loader.DataFile`."""
    from lossview.core.tasks.loader import sharpness_table

    return (yield from sharpness_table(_as_run(run), model_file=model_file, data=data))


def run_arg(run: Any) -> tuple[Any, bool]:
    """What to pass a job for ``run``: ``((path, steps), True)`` where a child can reopen
    it, else ``(run, False)`` (the job then runs on a thread of the app)."""
    if can_reopen(run):
        return (str(run.path), [int(s) for s in run.steps]), True
    return run, False
