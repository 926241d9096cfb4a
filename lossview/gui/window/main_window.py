"""The main window: start page, then loss / trajectory / surface / diagnostics panels on
one timeline. Opening a run loads and analyses it in a child process
(:mod:`lossview.gui.window.run_opening`, which also attaches model files and asks which run to
open in a folder of several); errors land in the status bar and the log with the file
named, and the previous run stays on screen.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QMainWindow, QStackedWidget, QWidget

from lossview.core.analysis.report_model import RunReport
from lossview.core.analysis.verdicts import tag
from lossview.gui.panels.diagnostics_panel import DiagnosticsPanel
from lossview.gui.panels.loss_panel import LossPanel
from lossview.gui.panels.trajectory_panel import TrajectoryPanel
from lossview.gui.panels.words import step_unit
from lossview.gui.plotkit.frames import frames
from lossview.gui.plotkit.layout import lay_out_hidden
from lossview.gui.plotkit.widgets import cache_plot_items
from lossview.gui.timeline import Timeline
from lossview.gui.window import layout, settings, training_actions
from lossview.gui.window.menus import build_menus
from lossview.gui.window.messages import WindowMessages
from lossview.gui.window.run_info import RunInfo
from lossview.gui.window.run_opening import RunOpener
from lossview.gui.window.sharpness_job import SharpnessJob
from lossview.gui.window.start_page import StartPage
from lossview.gui.window.timeline_bar import TimelineBar

log = logging.getLogger("lossview.gui")


def _surface_panel_class():
    try:
        from lossview.gui.surface.panel import SurfacePanel
    except ImportError as e:  # the 3D panel is optional in a partial install
        log.info("surface panel unavailable: %s", e)
        return None
    return SurfacePanel


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
        self.report: RunReport | None = None  # the shown run's; replaced, never changed
        self.opener = RunOpener(self)
        self.sharpness = SharpnessJob(self)
        self.sharpness.progress.connect(self._on_load_progress)
        self.sharpness.measured.connect(self._on_sharpness)
        self.sharpness.failed.connect(self._on_sharpness_error)
        self._after_panels: Any = None  # started once a new run's panels are all shown
        self.model_file: str | None = None  # the shown run's (``--model``, or attached)
        self.data_file: Any = None  # the shown Hugging Face folder's DataFile (``--data``)
        self._train_dialog = None
        from lossview.gui.training.live_view import LiveView

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
            attach = getattr(self.surface_panel, "attach_requested", None)
            if attach is not None:
                attach.connect(self.choose_model_file)
                self.surface_panel.data_requested.connect(self.opener.choose_data_file)
        else:
            self.surface_panel = QLabel("The 3D loss surface is not available in this build.")
            self.surface_panel.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.timeline_bar = TimelineBar(self.timeline)

        self.messages = WindowMessages(self, self.cancel_loading)
        m = self.messages  # (its widgets, as the window's: tests and menus reach them so)
        self.banner, self.log_view, self.log_dock = m.banner, m.log_view, m.log_dock
        self.progress, self.cancel_btn, self.warn_btn = m.progress, m.cancel_btn, m.warn_btn
        self.run_info = RunInfo()  # the run's name and "ⓘ": how the loader opened it
        self.statusBar().insertPermanentWidget(0, self.run_info)

        layout.build_workspace(self)  # the splitters, the banner and the timeline bar

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
        self.start_page.set_train_available(training_actions.train_dialog_class() is not None)
        self.start_page.set_recent(settings.recent_folders())
        self.timeline.count_changed.connect(self._sync_actions)
        self.resize(1600, 1000)
        self.restore_layout()
        self._sync_actions()
        # PyOpenGL is imported ahead of need (app.prewarm_imports); torch is not needed in
        # this process unless a run of torch files is read: the jobs run in children

    # -- opening ------------------------------------------------------------------
    def browse(self) -> None:
        self.opener.browse()

    def open_demo(self) -> None:
        p = demo_path()
        if p is None:
            self.report_error("the demo run is not shipped with this build")
            return
        self.open_path(str(p), remember=False)

    def open_path(self, path: str | Path, step: int | None = None, remember: bool = True) -> None:
        """Load and analyse ``path`` in a child process (its parsing and Python-level loops
        would hold the GIL against this thread); the current run stays until done."""
        self.opener.open_path(path, step=step, remember=remember)
        if self.isVisible() and self.stack.currentWidget() is not self.workspace:
            # while the run loads: the panels laid out, so the switch to them only paints
            frames().submit(self, "lay out", lay_out_hidden(self.workspace,
                                                           self.stack.currentWidget()))

    def cancel_loading(self) -> None:
        self.opener.cancel()

    def is_loading(self) -> bool:
        return self.opener.is_loading()

    def _on_load_progress(self, items: list) -> None:
        if items:
            self.messages.show_progress(str(items[-1]))

    def set_model_file(self, path: str | None) -> None:
        """``--model``: a Python file building the model and data, used for every folder
        opened; it enables the loss surface and sharpness. It runs the user's code, by
        their choice."""
        self.opener.set_cli_model_file(path)
        self.model_file = str(path) if path else None
        f = getattr(self.surface_panel, "set_model_file", None)
        if callable(f):
            f(self.model_file)

    def choose_model_file(self) -> None:
        """File → "Attach model file…" (a file dialog, then :meth:`attach_model_file`)."""
        self.opener.choose_model_file()

    def attach_model_file(self, path: str | Path) -> None:
        """Attach the model file ``path`` to the shown run: checked, then the run is
        reopened with it (surface, sharpness, loss); on failure one line, the run stays."""
        self.opener.attach_model_file(path)

    # -- sharpness (needs the model: after the panels are shown) ------------------
    def _measure_sharpness(self, run: Any, report: RunReport) -> None:
        self.diagnostics_panel._note("sharp", "measuring sharpness…")
        self.sharpness.start(run, report, self.model_file, self.data_file)

    def _on_sharpness(self, run: Any, report: RunReport, table: dict) -> None:
        # shown in a frame of its own: the result arrives in a pass over posted events that
        # may be repainting what the turn before changed (a surface refinement step: 78
        # ms with this plot)
        # (the panel it returns is laid out before it paints, so it paints once)
        frames().submit(self, "sharpness", [lambda: self._show_sharpness(run, report)],
                        reveal=False)

    def _show_sharpness(self, run: Any, report: RunReport) -> QWidget | None:
        """The measured sharpness, and core's answers and diagnosis recomputed with it
        (:class:`SharpnessJob` made the new report): the plot, the verdict tags, the text."""
        if run is not self.run:
            return None
        self.report = report
        self.diagnostics_panel.show_answers(run, report)
        verdict = report.answers.stability.verdict
        self.statusBar().showMessage(f"Sharpness measured: {tag(verdict)}", 8000)
        return self.diagnostics_panel

    def _on_sharpness_error(self, run: Any, message: str) -> None:
        if run is self.run:
            self.diagnostics_panel.set_sharpness(run, None, message)
            self.log_message(f"sharpness of {run.path}: {message}", warning=True)

    def is_computing(self) -> bool:
        """Anything still working on the shown run (loading, showing it panel by panel,
        sharpness, surface)."""
        return (self.is_loading() or frames().active(self) or self.sharpness.busy
                or self.surface_busy())

    def _set_busy(self, busy: bool, text: str = "") -> None:
        self.messages.set_busy(busy, text)

    # -- showing a run ------------------------------------------------------------
    def set_run(self, run: Any, report: RunReport | dict | None, step: int | None = None,
                preview: bool = False) -> None:
        """Show ``run`` in every panel with its ``report`` (a report dict is read into a
        :class:`RunReport`); ``step`` picks the snapshot (default: the last).

        ``preview``: the run while its analysis runs (``report``: core's preview, the loss
        curves and the plateau, every other part "being computed"); the surface waits for
        the analysed run, and ``run_loaded`` is not emitted.

        The timeline gets the run's steps at once; the switch to the panels, each panel's
        new run and each of its plots' reveal are steps of the window's update path, one
        per frame (:mod:`~lossview.gui.plotkit.frames`), so the GUI thread paints about one
        plot per turn instead of the whole window in one block. ``run_loaded`` is emitted
        once the last panel has it.
        """
        self.timeline.set_playing(False)
        if run is not self.run:
            self.sharpness.cancel()
        report = RunReport.of(report)
        self.run, self.report = run, report
        self.banner.hide()
        self.timeline.set_steps(run.steps)
        self.timeline_bar.set_labels([s.epoch for s in run.snapshots], unit=step_unit(run, report))
        index = len(run) - 1 if step is None else run.index_of_step(int(step))
        self.setWindowTitle(f"{run.name} — lossview")
        self.run_info.set_run(run, self.model_file, bool(report and report.loss_from_model))
        switch = self.stack.currentWidget() is not self.workspace
        self.messages.reset_warnings()
        for w in run.warnings:
            self.log_message(f"warning: {run.path}: {w}", warning=True)
        self._sync_actions()
        # the surface panel last: it starts a worker at once (see _after_panels)
        panels = [p for p in (self.loss_panel, self.trajectory_panel, self.diagnostics_panel,
                              self.surface_panel) if hasattr(p, "set_run")]
        if preview and self.surface_panel in panels:
            panels.remove(self.surface_panel)
            self.surface_panel.set_waiting(
                "The loss surface is computed once the run's analysis is done.")
        self._after_panels = None

        def show(panel: QWidget):
            def step() -> QWidget:
                panel.set_run(run, report)
                return panel  # its other plots are revealed one per turn
            return step

        def finish() -> None:
            cache_plot_items(self.surface_panel)
            self.timeline.set_index(index)
            self._sync_actions()
            after, self._after_panels = self._after_panels, None
            if after is not None:
                after()
            if not preview:
                self.run_loaded.emit(run)

        def to_workspace() -> None:  # from the start page: the (veiled) panels, alone
            frames().finish(self, "lay out")  # a quick run came before it was done
            self.stack.setCurrentWidget(self.workspace)

        # the loss curves first (what the user looks at first); the first step (the switch
        # from the start page, a re-layout of every panel, 15-20 ms, or the loss panel, ~10
        # ms and its paint) not in this turn, which delivered the loader's result (10-30 ms)
        steps = [show(p) for p in panels] + [finish]
        frames().submit(self, "run", ([to_workspace] if switch else []) + steps,
                        veil=panels)

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

    # -- training (the train dialog: lossview.gui.window.training_actions) -----------------
    def open_train_dialog(self) -> None:
        training_actions.open_train_dialog(self)

    def start_default_training(self) -> None:
        """``lossview demo``: open the train dialog and start its default problem."""
        training_actions.start_default_training(self)

    # -- layout, drag and drop, close --------------------------------------------
    def _sync_actions(self, *_: Any) -> None:
        has_run = self.run is not None
        for name in ("attach_model", "export_csv", "export_anim", "close_run", "export_window",
                     "export_loss", "export_trajectory", "export_surface", "export_diagnostics"):
            a = self.actions.get(name)
            if a is not None:
                a.setEnabled(has_run)

    def close_run(self) -> None:
        """Close the shown run; every job for it stops, unwaited for, and nothing of it
        arrives afterwards: opening, sharpness, surface, live analysis (each killed if
        still running a second later) and the training followed (its folder stays)."""
        self.timeline.set_playing(False)
        frames().cancel(self)  # a run still being shown panel by panel stops here
        self._after_panels = None
        self.cancel_loading()
        self.sharpness.cancel()
        if self.live.run is not None and self._train_dialog is not None:
            self._train_dialog.training.stop()  # within one step; the folder stays
        self.live.stop()  # no longer followed: not reopened when it ends
        if hasattr(self.surface_panel, "set_run"):
            self.surface_panel.set_run(None)  # its worker stopped, its message shown
        self.run = self.report = None
        self.timeline.set_steps([])
        self.loss_panel.clear()
        self.trajectory_panel.clear()
        self.diagnostics_panel.clear()
        self.stack.setCurrentWidget(self.start_page)
        self.setWindowTitle("lossview")
        self.run_info.set_run(None)
        self._sync_actions()

    def restore_layout(self) -> None:
        layout.restore(self)

    def save_layout(self) -> None:
        layout.save(self)

    def reset_layout(self) -> None:
        layout.reset(self)

    def dragEnterEvent(self, e) -> None:
        if e.mimeData().hasUrls() and any(u.isLocalFile() for u in e.mimeData().urls()):
            e.acceptProposedAction()

    def dropEvent(self, e) -> None:
        paths = [u.toLocalFile() for u in e.mimeData().urls() if u.isLocalFile()]
        if paths:
            e.acceptProposedAction()
            self.open_path(paths[0])

    def shutdown(self, msecs: int = 5000) -> None:
        """Stop every worker (loading, surface, training) and wait for them."""
        self.timeline.set_playing(False)
        w = self.opener.worker
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

    def closeEvent(self, e) -> None:
        self.save_layout()
        self.shutdown()
        super().closeEvent(e)

