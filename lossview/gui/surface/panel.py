"""Surface panel: the loss surface on a plane through the run, the path lifted onto it.

The surface is computed by the core (:func:`lossview.core.surface.runsurface.surface_for_run`,
cached there) in a child process (:func:`lossview.core.tasks.jobs.surface_scenes`, a thread where
the run cannot be reopened there): a coarse grid arrives first and is refined in place,
with a progress bar and a Cancel button (:mod:`lossview.gui.surface.toolbar`). The 3D view
(pyqtgraph.opengl) is used where an OpenGL context can be made; the 2D contour view is
used otherwise and is always one click away. Scrubbing the timeline moves only the
current-point marker: the surface is never recomputed on scrub. How a scene is drawn:
:mod:`lossview.gui.surface.drawing`.

A diverged run's surface is honest about it: grid points whose loss overflowed are drawn
in their own colour (not filled in, not the colour map's top), and the caption under the
surface (:mod:`lossview.gui.surface.caption`) says how many, which snapshots were left
out, and whether the surface is suspicious, in the core's words.

A folder of weights without its model shows a short "needs the model" page with a button
to attach a model file (:mod:`lossview.gui.surface.needs_model`; the window does the
attaching, on ``attach_requested``), not the core's long message twice; a Hugging Face
folder also gets "Use data file…" (``data_requested``): its model is rebuilt from its
config.json and the surface computed on the data file (:meth:`SurfacePanel.set_data`).
"""

from __future__ import annotations

import logging
from html import escape
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QLabel,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from lossview.core.analysis.report_model import RunReport
from lossview.core.surface.scene import SurfaceScene
from lossview.core.tasks.jobs import SceneUpdate, run_arg, surface_scenes
from lossview.gui.plotkit.frames import frames
from lossview.gui.surface.caption import SurfaceCaption
from lossview.gui.surface.contour import SurfaceContourView
from lossview.gui.surface.drawing import SurfaceDrawing
from lossview.gui.surface.honesty import HonestyPlot
from lossview.gui.surface.needs_model import NeedsModelView
from lossview.gui.surface.toolbar import SurfaceToolbar
from lossview.gui.timeline import Timeline
from lossview.gui.workers import GeneratorWorker, ProcessWorker, make_worker

log = logging.getLogger("lossview.gui")


class SurfacePanel(SurfaceDrawing, QWidget):
    """Loss surface around the run with the trajectory, basin and current point.

    Parameters
    ----------
    timeline : the shared :class:`Timeline`; the marker follows ``index_changed`` and a
        click on the contour view writes back with ``set_index``.

    Signals
    -------
    surface_ready() : the final surface of the current run and plane is drawn.
    busy_changed(bool) : a computation started or ended.
    attach_requested() : "Attach model file…" pressed in the "needs the model" state.
    data_requested() : "Use data file…" pressed there (a Hugging Face folder).
    """

    surface_ready = Signal()
    busy_changed = Signal(bool)
    attach_requested = Signal()
    data_requested = Signal()

    def __init__(self, timeline: Timeline, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.timeline = timeline
        self.run: Any = None
        self.report: RunReport | None = None
        self.model_file: str | None = None
        self.data: Any = None  # a Hugging Face folder's DataFile (lossview.core.tasks.loader)
        self.surface: Any = None  # the last RunSurface drawn (partial or final)
        self.scene: SurfaceScene | None = None
        self._final = False
        self._failed = False  # the last computation said "Cannot compute"
        self._worker: GeneratorWorker | ProcessWorker | None = None
        self._retired: list = []  # cancelled workers, possibly still stopping
        self._gl_view = None
        self._gl_reason: str | None = "not checked yet"
        self._build_ui()
        timeline.index_changed.connect(self._on_index)
        self._show_message("Open a run to see its loss surface.")

    # -- construction --------------------------------------------------------------
    def _build_ui(self) -> None:
        self.toolbar = bar = SurfaceToolbar()
        bar.settings_changed.connect(self.recompute)
        bar.log_toggled.connect(lambda _on: self._draw(self.surface))
        bar.view_toggled.connect(lambda _contour: self._show_view())
        bar.reset_requested.connect(self.reset_camera)
        bar.cancel_requested.connect(self.cancel)
        bar.compute_requested.connect(self.recompute)

        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setTextFormat(Qt.TextFormat.RichText)
        self.message.setMargin(24)
        self.needs_model_view = NeedsModelView()
        self.needs_model_view.attach_requested.connect(self.attach_requested)
        self.needs_model_view.data_requested.connect(self.data_requested)
        self.contour = SurfaceContourView()
        self.contour.point_clicked.connect(self.timeline.set_index)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.message)
        self.stack.addWidget(self.needs_model_view)
        self.stack.addWidget(self.contour)
        self.honesty = HonestyPlot(self.timeline)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.stack)
        split.addWidget(self.honesty)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        split.setChildrenCollapsible(False)
        split.setSizes([800, 190])
        self.honesty.setMaximumHeight(260)
        self.status = SurfaceCaption()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(bar)
        lay.addWidget(split, 1)
        lay.addWidget(self.status)

    def _ensure_gl(self, with_scene: bool = True) -> bool:
        """Create the 3D view on first need; False (with the reason kept) if impossible.
        ``with_scene``: give a new view the current scene at once."""
        if self._gl_view is not None:
            return True
        if self._gl_reason == "not checked yet":
            from lossview.gui.surface.gl_window import gl_unavailable_reason

            self._gl_reason = gl_unavailable_reason()
        if self._gl_reason is not None:
            self.toolbar.set_gl_unavailable(self._gl_reason)
            return False
        from lossview.gui.surface.gl_view import SurfaceGLView

        self._gl_view = SurfaceGLView()
        self._gl_view.view.busy = self.is_busy
        self._gl_view.point_clicked.connect(self.timeline.set_index)
        self.stack.addWidget(self._gl_view)
        if with_scene and self.scene is not None:
            self._gl_view.set_scene(self.scene)
        return True

    # -- public API ----------------------------------------------------------------
    @property
    def gl_view(self):
        """The 3D view, or None where OpenGL is unavailable (see :attr:`gl_reason`)."""
        self._ensure_gl()
        return self._gl_view

    @property
    def gl_reason(self) -> str | None:
        self._ensure_gl()
        return self._gl_reason

    def set_model_file(self, path: str | None, recompute: bool = True) -> None:
        """A user model file for foreign runs (``--model``, or attached in the window);
        recomputes if a run is open and ``recompute``."""
        self.model_file = path
        if recompute and self.run is not None:
            self.recompute()

    def set_data(self, data: Any, recompute: bool = True) -> None:
        """A data file (:class:`~lossview.core.tasks.loader.DataFile`) for a Hugging Face folder:
        the surface of its model rebuilt from config.json, on that data."""
        self.data = data
        if recompute and self.run is not None:
            self.recompute()

    def needs_model(self) -> bool:
        """Showing the "needs the model" page (a folder of weights, no model file)."""
        return self.stack.currentWidget() is self.needs_model_view

    def set_waiting(self, text: str) -> None:
        """No run to compute yet (the window shows a run whose analysis still runs):
        ``text`` in place of the surface."""
        self.set_run(None)
        self._show_message(text)

    def set_run(self, run: Any, report: RunReport | None = None) -> None:
        """Show ``run``: start computing its surface (a live, growing run waits)."""
        same = run is not None and run is self.run
        self.report = RunReport.of(report)
        if same and (self._final or self.is_busy() or run.live):
            return  # a report update, or a live run growing: nothing to recompute
        self._cancel_worker()
        frames().cancel(self)
        self.run = run
        self.surface = None
        self.scene = None
        self._final = False
        self.status.clear()
        if run is None:
            self._show_message("Open a run to see its loss surface.")
            return
        if run.live:
            self._show_message("Training in progress: the loss surface is computed "
                               "once the run has finished.")
            return
        if len(run) < 1:
            self._show_message("This run has no snapshots, so there is no surface to show.")
            return
        self.recompute()

    def is_busy(self) -> bool:
        """True while a surface is being computed or drawn."""
        return self._worker is not None or frames().active(self, "draw")

    def current_plane(self) -> str:
        return self.toolbar.plane()

    def set_plane(self, plane: str) -> None:
        self.toolbar.set_plane(plane)

    def set_contour(self, on: bool) -> None:
        """Show the 2D contour view (True) or the 3D surface (False, if available)."""
        self.toolbar.set_contour(on)
        self._show_view()

    def showing_3d(self) -> bool:
        return self._gl_view is not None and self.stack.currentWidget() is self._gl_view

    def reset_camera(self) -> None:
        if self.showing_3d():
            self._gl_view.reset_camera()
        else:
            self.contour.reset_camera()

    def recompute(self) -> None:
        """(Re)start computing the surface of the current run on the chosen plane."""
        if self.run is None or self.run.live:
            return
        self._cancel_worker()
        self._final = False
        self._failed = False
        run, plane, steps = self.run, self.toolbar.plane(), self.toolbar.grid_steps()
        kwargs: dict[str, Any] = {"plane": plane, "steps": steps, "model_file": self.model_file}
        if self.data is not None and not self.model_file:
            kwargs["data"] = self.data
        if plane == "post-plateau":
            start = self._plateau_index()
            if start is None:
                self.scene = None
                self.surface = None
                self._show_message("No loss plateau was found in this run, so there is no "
                                   "post-plateau segment to take a plane from.")
                return
            kwargs["start_index"] = start
        log_z = self.toolbar.log_z()
        arg, in_child = run_arg(run)
        worker = make_worker(surface_scenes, arg, log_z, parent=self, in_child=in_child,
                             **kwargs)
        worker.progress.connect(self._on_progress)
        worker.finished.connect(self._on_finished)
        worker.errored.connect(self._on_error)
        worker.cancelled.connect(self._on_cancelled)
        worker.done.connect(lambda w=worker: self._on_done(w))
        self._worker = worker
        self.toolbar.set_progress(0.0)
        self._set_busy_ui(True)
        if self.scene is None:
            self._show_message(f"Computing the loss surface on a {steps}×{steps} grid…")
        self.status.clear()
        worker.start()
        self.busy_changed.emit(True)
        if not self.toolbar.wants_contour() and self._gl_view is None:
            # the 3D view is made now, in a frame of its own (probe, GL window class, items:
            # ~10-40 ms), not in the turn that shows the first surface
            frames().submit(self, "make 3D", [lambda: self._ensure_gl(with_scene=False)])

    def cancel(self) -> None:
        """Stop the computation; the part evaluated so far stays drawn."""
        if self._worker is not None:
            self._worker.cancel()

    def shutdown(self, msecs: int = 5000) -> None:
        """Cancel and wait for the worker (call when the window closes)."""
        for w in [self._worker, *self._retired]:
            if w is not None:
                w.cancel()
                w.wait(msecs)
        self._retired = []

    # -- worker callbacks (GUI thread) ---------------------------------------------
    def _on_progress(self, items: list) -> None:
        if self.sender() is not self._worker or not items:
            return
        self.toolbar.set_progress(items[-1].fraction)
        drawable = [u for u in items if u.scene is not None]
        if drawable:
            self._draw(drawable[-1].surface, drawable[-1].scene)

    def _on_finished(self, update: SceneUpdate) -> None:
        if self.sender() is not self._worker:
            return
        self._final = True
        self.toolbar.set_progress(1.0)
        self._draw(update.surface, update.scene)
        self.status.set_status(None)

    def _on_error(self, message: str) -> None:
        if self.sender() is not self._worker:
            return
        has_model = (self.run is None or self.run.spec.get("problem") or self.model_file
                     or self.data is not None)
        if not has_model and self.scene is None:
            # an expected state, not an error: said once, in a few words, with the way out
            log.debug("surface: %s", message)
            self.needs_model_view.set_reason(message)
            self.stack.setCurrentWidget(self.needs_model_view)
            self.honesty.clear()
            self.status.set_status(None)
        elif self.scene is None:  # the message in place of the surface says it
            self._failed = True  # the same run and plane would fail the same way
            self._show_message(f"<b>Cannot compute the loss surface:</b> {escape(message)}")
            self.status.set_status(None)
        else:  # the part drawn stays; the caption says why it is not finished
            self.status.set_status(f"Surface: {message}")

    def _on_cancelled(self) -> None:
        if self.sender() is not self._worker:
            return
        if self.scene is None:
            self._show_message("Surface computation cancelled. Press Compute to start again.")
        self.status.set_status("Cancelled: showing the part of the grid evaluated so far.")

    def _on_done(self, worker: GeneratorWorker | ProcessWorker) -> None:
        if worker is not self._worker:
            return
        self._worker = None
        self._set_busy_ui(False)
        self.busy_changed.emit(False)
        if self._final and not frames().active(self, "draw"):
            self.surface_ready.emit()  # else the last drawing step emits it

    def _set_busy_ui(self, busy: bool) -> None:
        # no Compute in the "needs the model" state, nor after "Cannot compute": it would
        # only fail again (another plane or grid starts a new computation by itself)
        self.toolbar.set_busy(busy, can_compute=self.run is not None and not self._final
                              and not self.needs_model() and not self._failed)

    def _cancel_worker(self) -> None:
        w = self._worker
        if w is not None:
            # its late signals are ignored (sender check); done() of the old worker
            # no longer matches self._worker; a child still computing a second later
            # is killed (a tile can take seconds to reach its next yield)
            w.stop()
            self._retired = [r for r in self._retired if r.is_running()] + [w]
            self._worker = None
            self._set_busy_ui(False)
            self.busy_changed.emit(False)

    def _plateau_index(self) -> int | None:
        step = self.report.plateau.step if self.report is not None else None
        if step is None or self.run is None:
            return None
        return int(self.run.index_of_step(int(step)))

