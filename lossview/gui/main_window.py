"""The main window: start page, then loss / trajectory / surface / diagnostics panels on
one timeline. Opening a run loads and analyses it in a child process; errors land in the
status bar and the log with the file named, and the previous run stays on screen.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFileDialog, QLabel, QMainWindow, QSplitter, QStackedWidget,
                               QVBoxLayout, QWidget)

from lossview.core.analysis.verdicts import tag
from lossview.gui import settings
from lossview.gui.diagnostics_panel import DiagnosticsPanel
from lossview.gui.loader import load_and_analyze
from lossview.gui.sharpness_job import SharpnessJob
from lossview.gui.loss_panel import LossPanel
from lossview.gui.menus import build_menus
from lossview.gui.stagger import Stagger, lay_out_hidden, one_per_turn, settle
from lossview.gui.start_page import StartPage
from lossview.gui.timeline import Timeline
from lossview.gui.timeline_bar import TimelineBar
from lossview.gui.trajectory_panel import TrajectoryPanel
from lossview.gui.widgets import cache_plot_items
from lossview.gui.words import step_unit
from lossview.gui.window_messages import WindowMessages
from lossview.gui.workers import GeneratorWorker, ProcessWorker, make_worker

log = logging.getLogger("lossview.gui")


def _surface_panel_class():
    try:
        from lossview.gui.surface_panel import SurfacePanel
    except ImportError as e:  # the 3D panel is optional in a partial install
        log.info("surface panel unavailable: %s", e)
        return None
    return SurfacePanel


def _train_dialog_class():
    try:
        from lossview.gui.train_dialog import TrainDialog
    except ImportError as e:
        log.info("train dialog unavailable: %s", e)
        return None
    return TrainDialog


#: the built-in problem ``lossview demo`` trains live (its loss plateaus, the weights wander)
DEMO_PROBLEM = "mlp"


def demo_path() -> Path | None:
    try:
        from lossview.resources import path
    except ImportError:
        return None
    p = path("demo")
    return p if p.is_dir() and any(p.iterdir()) else None


class MainWindow(QMainWindow):
    """Signals: ``run_loaded(object run)`` after a run is shown; ``load_failed(str)``."""

    run_loaded = Signal(object)
    load_failed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("lossview")
        self.setAcceptDrops(True)
        self.timeline = Timeline(self)
        self.run: Any = None
        self.report: dict | None = None
        self._loader: GeneratorWorker | ProcessWorker | None = None
        self.sharpness = SharpnessJob(self)
        self.sharpness.progress.connect(self._on_load_progress)
        self.sharpness.measured.connect(self._on_sharpness)
        self.sharpness.failed.connect(self._on_sharpness_error)
        self._after_panels: Any = None  # started once a new run's panels are all shown
        self._sharpness_view = Stagger(self)  # shows a measured sharpness, a turn later
        self.model_file: str | None = None
        self._loading_path: str | None = None
        self._pending_step: int | None = None
        self._train_dialog = None
        self.stagger = Stagger(self)
        from lossview.gui.live_view import LiveView

        self.live = LiveView(self)

        self.start_page = StartPage()
        self.loss_panel = LossPanel(self.timeline)
        self.trajectory_panel = TrajectoryPanel(self.timeline)
        self.diagnostics_panel = DiagnosticsPanel(self.timeline)
        surface_cls = _surface_panel_class()
        if surface_cls is not None:
            self.surface_panel = surface_cls(self.timeline)
            ready = getattr(self.surface_panel, "surface_ready", None)
            if ready is not None:
                ready.connect(lambda: cache_plot_items(self.surface_panel))
        else:
            self.surface_panel = QLabel("The 3D loss surface is not available in this build.")
            self.surface_panel.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.timeline_bar = TimelineBar(self.timeline)

        self.messages = WindowMessages(self, self.cancel_loading)
        m = self.messages  # (its widgets, as the window's: tests and menus reach them so)
        self.banner, self.log_view, self.log_dock = m.banner, m.log_view, m.log_dock
        self.progress, self.cancel_btn, self.warn_btn = m.progress, m.cancel_btn, m.warn_btn

        self.top_split = QSplitter(Qt.Orientation.Horizontal)
        self.top_split.setObjectName("topSplit")
        for w in (self.loss_panel, self.trajectory_panel, self.surface_panel):
            self.top_split.addWidget(w)
        self.top_split.setSizes([560, 560, 480])
        self.main_split = QSplitter(Qt.Orientation.Vertical)
        self.main_split.setObjectName("mainSplit")
        self.main_split.addWidget(self.top_split)
        self.main_split.addWidget(self.diagnostics_panel)
        self.main_split.setSizes([600, 330])
        for s in (self.top_split, self.main_split):
            s.setChildrenCollapsible(False)
            s.setHandleWidth(5)

        self.workspace = QWidget()
        wl = QVBoxLayout(self.workspace)
        wl.setContentsMargins(0, 0, 0, 0)
        wl.setSpacing(0)
        wl.addWidget(self.banner)
        wl.addWidget(self.main_split, 1)
        wl.addWidget(self.timeline_bar)

        self.stack = QStackedWidget()
        self.stack.addWidget(self.start_page)
        self.stack.addWidget(self.workspace)
        self.setCentralWidget(self.stack)

        self.actions = build_menus(self)
        self.start_page.open_folder.connect(self.browse)
        self.start_page.open_path.connect(self.open_path)
        self.start_page.open_demo.connect(self.open_demo)
        self.start_page.train.connect(self.open_train_dialog)
        demo = demo_path()
        self.start_page.set_demo_available(demo is not None, "not shipped with this build")
        self.start_page.set_train_available(_train_dialog_class() is not None)
        self.start_page.set_recent(settings.recent_folders())
        self.timeline.count_changed.connect(self._sync_actions)
        self.resize(1600, 1000)
        self.restore_layout()
        self._sync_actions()
        # PyOpenGL is imported ahead of need (app.prewarm_imports); torch is not needed in
        # this process unless a run of torch files is read: the jobs run in children

    # -- opening ------------------------------------------------------------------
    def browse(self) -> None:
        start = settings.recent_folders()[:1]
        folder = QFileDialog.getExistingDirectory(self, "Open run folder",
                                                  str(Path(start[0]).parent) if start else "")
        if folder:
            self.open_path(folder)

    def open_demo(self) -> None:
        p = demo_path()
        if p is None:
            self.report_error("the demo run is not shipped with this build")
            return
        self.open_path(str(p), remember=False)

    def open_path(self, path: str | Path, step: int | None = None, remember: bool = True) -> None:
        """Load and analyse ``path`` in a child process; the current run stays until done."""
        path = str(Path(path).expanduser())
        self.cancel_loading()
        self._loading_path = path
        self._pending_step = step
        self._remember = remember
        self.log_message(f"opening {path}")
        model_file = self.model_file
        # opened and analysed in a child process (its parsing and Python-level loops
        # would hold the GIL against this thread); the run and report come back pickled
        worker = make_worker(load_and_analyze, path, model_file, parent=self)
        worker.progress.connect(self._on_load_progress)
        worker.finished.connect(lambda result, w=worker: self._on_loaded(w, path, result))
        worker.errored.connect(lambda msg, w=worker: self._on_load_error(w, path, msg))
        worker.done.connect(lambda w=worker: self._on_load_done(w))
        self._loader = worker
        self._set_busy(True, f"Opening {Path(path).name}…")
        worker.start()
        if self.isVisible() and self.stack.currentWidget() is not self.workspace:
            # while the run loads: the panels laid out, so the switch to them only paints
            one_per_turn(lay_out_hidden(self.workspace, self.stack.currentWidget()), self)

    def cancel_loading(self) -> None:
        w = self._loader
        if w is not None:
            w.cancel()
            self._loader = None
            self._set_busy(False)

    def is_loading(self) -> bool:
        return self._loader is not None

    def _on_load_progress(self, items: list) -> None:
        if items:
            self.statusBar().showMessage(str(items[-1]))

    def _on_loaded(self, worker: GeneratorWorker | ProcessWorker, path: str, result: Any) -> None:
        if worker is not self._loader:
            return  # superseded
        run, report = result
        if self._remember:
            settings.add_recent(path)
            self.start_page.set_recent(settings.recent_folders())
        self.set_run(run, report, step=self._pending_step)
        self.statusBar().showMessage(
            f"{run.name}: {len(run)} snapshots, {run.n_params:,} parameters", 8000)
        if SharpnessJob.possible(run, report, self.model_file):
            self._after_panels = lambda: self._measure_sharpness(run, report)

    def set_model_file(self, path: str | None) -> None:
        """A Python file building the model and data for foreign runs (``--model``): it
        enables the loss surface and sharpness. It runs the user's code, by their choice."""
        self.model_file = str(path) if path else None
        f = getattr(self.surface_panel, "set_model_file", None)
        if callable(f):
            f(self.model_file)

    # -- sharpness (needs the model: after the panels are shown) ------------------
    def _measure_sharpness(self, run: Any, report: dict) -> None:
        self.diagnostics_panel._note("sharp", "measuring sharpness…")
        self.sharpness.start(run, report, self.model_file)

    def _on_sharpness(self, run: Any, report: dict, table: dict) -> None:
        # shown in a turn of its own: the result arrives in a pass over posted events that
        # may be repainting what the turn before changed (a surface refinement step: 78
        # ms with this plot)
        self._sharpness_view.run([lambda: self._show_sharpness(run, report)], later=True)

    def _show_sharpness(self, run: Any, report: dict) -> None:
        """The measured sharpness, and core's answers and diagnosis recomputed with it
        (:class:`SharpnessJob` refreshed them): the plot, the verdict tags, the text."""
        if run is not self.run:
            return
        self.diagnostics_panel.show_answers(run, report)
        settle(self.diagnostics_panel)  # laid out before it paints, so it paints once
        verdict = ((report.get("answers") or {}).get("stability") or {}).get("verdict")
        self.statusBar().showMessage(f"Sharpness measured: {tag(verdict)}", 8000)

    def _on_sharpness_error(self, run: Any, message: str) -> None:
        if run is self.run:
            self.diagnostics_panel.set_sharpness(run, None, message)
            self.log_message(f"sharpness of {run.path}: {message}", warning=True)

    def is_computing(self) -> bool:
        """Anything still working on the shown run (loading, showing it panel by panel,
        sharpness, surface)."""
        return (self.is_loading() or self.stagger.active or self.sharpness.busy
                or self._sharpness_view.active or self.surface_busy())

    def _on_load_error(self, worker: GeneratorWorker | ProcessWorker, path: str,
                       message: str) -> None:
        if worker is not self._loader:
            return
        self.report_error(f"could not open {path}: {message}")
        self.load_failed.emit(message)

    def _on_load_done(self, worker: GeneratorWorker | ProcessWorker) -> None:
        if worker is self._loader:
            self._loader = None
            self._set_busy(False)
        worker.deleteLater()

    def _set_busy(self, busy: bool, text: str = "") -> None:
        self.messages.set_busy(busy, text)

    # -- showing a run ------------------------------------------------------------
    def set_run(self, run: Any, report: dict | None, step: int | None = None) -> None:
        """Show ``run`` in every panel; ``step`` picks the snapshot (default: the last).

        The timeline switches at once, the window to the panels in the first turn; the
        panels get the run one at a time and each panel's plots are revealed one per
        event-loop turn (:class:`Stagger`), so the GUI thread paints about one plot per
        turn instead of the whole window in one block. ``run_loaded`` is emitted once the
        last panel has it.
        """
        self.timeline.set_playing(False)
        if run is not self.run:
            self.sharpness.cancel()
        self.run, self.report = run, report
        self.banner.hide()
        self.timeline_bar.set_steps(run.steps, [s.epoch for s in run.snapshots],
                                    unit=step_unit(run, report))
        index = len(run) - 1 if step is None else run.index_of_step(int(step))
        self.setWindowTitle(f"{run.name} — lossview")
        switch = self.stack.currentWidget() is not self.workspace
        self.messages.reset_warnings()
        for w in run.warnings:
            self.log_message(f"warning: {run.path}: {w}", warning=True)
        self._sync_actions()
        # the surface panel last: it starts a worker at once (see _after_panels)
        panels = [p for p in (self.loss_panel, self.trajectory_panel, self.diagnostics_panel,
                              self.surface_panel) if hasattr(p, "set_run")]
        self._after_panels = None

        def show(panel: QWidget):
            def step() -> QWidget:
                panel.set_run(run, report)
                return panel  # its other plots are revealed one per turn
            return step

        def finish() -> None:
            cache_plot_items(self.surface_panel)
            self.timeline.set_count(len(run))
            self.timeline.set_index(index)
            self._sync_actions()
            after, self._after_panels = self._after_panels, None
            if after is not None:
                after()
            self.run_loaded.emit(run)

        def to_workspace() -> None:  # from the start page: the (veiled) panels, alone
            self.stack.setCurrentWidget(self.workspace)

        # the loss curves first (what the user looks at first), one plot per turn; the
        # first step (the switch from the start page, a re-layout of every panel, 15-20
        # ms, or the loss panel, ~10 ms and its paint) not in this turn, which already
        # delivered the loader's result (10-30 ms)
        steps = [show(p) for p in panels] + [finish]
        self.stagger.run(([to_workspace] if switch else []) + steps, veil=tuple(panels),
                         later=True)

    def panels(self) -> list[QWidget]:
        return [self.loss_panel, self.trajectory_panel, self.surface_panel, self.diagnostics_panel]

    def surface_busy(self) -> bool:
        f = getattr(self.surface_panel, "is_busy", None)
        return bool(f()) if callable(f) else False

    # -- messages -----------------------------------------------------------------
    def log_message(self, text: str, warning: bool = False) -> None:
        self.messages.log(text, warning)

    def report_error(self, text: str) -> None:
        """Say what went wrong where the user is looking; never raises."""
        on_start_page = self.stack.currentWidget() is self.start_page
        self.messages.error(text, on_banner=not on_start_page)
        if on_start_page:
            self.start_page.show_message(text)

    # -- training (GUI-B's dialog) ------------------------------------------------
    def open_train_dialog(self) -> None:
        cls = _train_dialog_class()
        if cls is None:
            self.report_error("live training is not available in this build")
            return
        if self._train_dialog is None:
            self._train_dialog = cls(self)
            self._train_dialog.run_started.connect(self.live.start)
            self._train_dialog.run_updated.connect(self.live.update)
            # its plot is redrawn after each of the window's refreshes, in a turn of its own
            self.live.followers.append(self._train_dialog.plot_live)
            self._train_dialog.plot_follows_window = True
            self._train_dialog.run_finished.connect(self._on_training_finished)
        self._train_dialog.show()
        self._train_dialog.raise_()

    def _on_training_finished(self, path: Any) -> None:
        """Replace the live view by the saved run, fully analysed (surface included)."""
        self.live.stop()
        if path:
            self.open_path(str(path), step=None)

    def start_default_training(self) -> None:
        """``lossview demo``: open the train dialog and start its default problem."""
        self.open_train_dialog()
        dialog = self._train_dialog
        if dialog is None:
            return
        try:
            dialog.set_problem(DEMO_PROBLEM)
        except (AttributeError, ValueError):
            pass  # keep the dialog's own default problem
        dialog.start()

    # -- layout, drag and drop, close --------------------------------------------
    def _sync_actions(self, *_: Any) -> None:
        has_run = self.run is not None
        for name in ("export_csv", "export_anim", "close_run", "export_window", "export_loss",
                     "export_trajectory", "export_surface", "export_diagnostics"):
            a = self.actions.get(name)
            if a is not None:
                a.setEnabled(has_run)

    def close_run(self) -> None:
        self.timeline.set_playing(False)
        self.stagger.cancel()  # a staggered set_run still running stops here
        self.run = self.report = None
        self.timeline.set_count(0)
        self.loss_panel.clear()
        self.trajectory_panel.clear()
        self.diagnostics_panel.clear()
        self.stack.setCurrentWidget(self.start_page)
        self.setWindowTitle("lossview")
        self._sync_actions()

    def restore_layout(self) -> None:
        geo = settings.read_bytes("window/geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        for key, split in (("window/top_split", self.top_split),
                           ("window/main_split", self.main_split)):
            b = settings.read_bytes(key)
            if b is not None:
                split.restoreState(b)
        state = settings.read_bytes("window/state")
        if state is not None:
            self.restoreState(state)

    def save_layout(self) -> None:
        settings.write_bytes("window/geometry", self.saveGeometry())
        settings.write_bytes("window/state", self.saveState())
        settings.write_bytes("window/top_split", self.top_split.saveState())
        settings.write_bytes("window/main_split", self.main_split.saveState())

    def reset_layout(self) -> None:
        self.top_split.setSizes([560, 560, 480])
        self.main_split.setSizes([600, 330])
        self.log_dock.hide()

    def dragEnterEvent(self, e) -> None:  # noqa: N802 - Qt override
        if e.mimeData().hasUrls() and any(u.isLocalFile() for u in e.mimeData().urls()):
            e.acceptProposedAction()

    def dropEvent(self, e) -> None:  # noqa: N802 - Qt override
        paths = [u.toLocalFile() for u in e.mimeData().urls() if u.isLocalFile()]
        if paths:
            e.acceptProposedAction()
            self.open_path(paths[0])

    def shutdown(self, msecs: int = 5000) -> None:
        """Stop every worker (loading, surface, training) and wait for them."""
        self.timeline.set_playing(False)
        w = self._loader
        self.cancel_loading()
        if w is not None:
            w.wait(msecs)
        self.sharpness.cancel(msecs)
        self.live.stop()
        self.live.wait(msecs)
        stop = getattr(self.surface_panel, "shutdown", None)
        if callable(stop):
            stop(msecs)
        if self._train_dialog is not None:
            f = getattr(self._train_dialog, "shutdown", None)
            if callable(f):
                f(msecs)
            self._train_dialog.close()

    def closeEvent(self, e) -> None:  # noqa: N802 - Qt override
        self.save_layout()
        self.shutdown()
        super().closeEvent(e)

