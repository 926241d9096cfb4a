"""Opening runs for the main window, and attaching a model file to the shown one.

A run is opened and analysed in a child process (:func:`lossview.core.tasks.loader.load_and_analyze`);
the run shown stays until the new one is ready, and stays if opening fails. A folder
holding several runs gets a chooser (:class:`~lossview.gui.window.run_chooser.RunChooser`).

**Model files.** A folder of weights has no model: its surface and sharpness need a
Python file that builds the model and yields batches (docs/surface.md, the same contract
as ``--model``). File → "Attach model file…" (or the surface panel's button) reopens the
shown run with it: the file is checked in the child (it runs the user's code there), and
only if it passes does the run with its report replace the shown one: the loss from the
model's data where the folder logged none, then the surface and the sharpness. A file
that fails is said in one line and the run stays as it was. An attached file is
remembered per run folder (:func:`lossview.gui.window.settings.remember_model_file`) and
re-attached when the folder is opened again, which the status line says. ``--model``
(:meth:`RunOpener.set_cli_model_file`) applies to every folder opened, as before.

**Data files.** A Hugging Face folder (config.json) needs no code: its model is rebuilt
from the config, and "Use data file…" (the surface panel's button,
:meth:`RunOpener.use_data_file`) reopens the shown run with a text or JSON-lines file
in the same way: checked in the child (a text shorter than one block, labels that do not
fit, transformers missing: one line, the run stays), remembered per folder in place of a
model file, re-attached when the folder is opened again. ``--data`` (with
``--block-size``, :meth:`RunOpener.set_cli_data_file`) applies to every folder opened
that has no ``--model``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QFileDialog

from lossview.core.analysis.report_model import RunReport
from lossview.core.tasks.loader import DataFile, Opened, Preview, SeveralRuns, load_and_analyze
from lossview.gui.window import settings
from lossview.gui.window.run_chooser import RunChooser
from lossview.gui.window.run_info import short_line
from lossview.gui.window.sharpness_job import SharpnessJob
from lossview.gui.workers import GeneratorWorker, ProcessWorker, make_worker

if TYPE_CHECKING:
    from lossview.gui.window.main_window import MainWindow


@dataclass
class _Request:
    path: str
    step: int | None
    remember: bool
    model_file: str | None
    attach: bool = False  # attaching a model file to the shown run
    model_note: str = ""  # how the model file was chosen, for the status line
    data: DataFile | None = None  # a Hugging Face folder's data file (no model file)

    @property
    def what(self) -> str:
        """The model or data file's name, as the status line and errors say it."""
        if self.model_file:
            return Path(self.model_file).name
        return f"data file {self.data.name}" if self.data is not None else ""


#: a run still being analysed this long after it was opened is shown as a preview (its loss
#: curves) until its report comes; one analysed sooner is shown once, whole (a preview
#: then the report paint every panel twice: ~100 ms of the GUI thread and a flash)
PREVIEW_AFTER_MS = 600

#: what "Use data file…" offers (docs/surface.md, Hugging Face folders)
DATA_FILTER = "Text or JSON lines (*.txt *.jsonl *.json);;All files (*)"


class RunOpener(QObject):
    """Opens runs into ``win`` (a :class:`MainWindow`); see the module docstring."""

    def __init__(self, win: MainWindow) -> None:
        super().__init__(win)
        self.win = win
        self.worker: GeneratorWorker | ProcessWorker | None = None
        self.cli_model_file: str | None = None
        self.cli_data: DataFile | None = None
        #: ``(run, path)``: the path the shown run was opened from (its model file is
        #: remembered under it; a project folder's run may be in a sub-folder)
        self.source: tuple[Any, str] | None = None
        self.chooser: RunChooser | None = None
        self._preview: Preview | None = None  # the opening run's, until shown or replaced
        self.previewed = False  # the run shown is the opening one's preview
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(PREVIEW_AFTER_MS)
        self._preview_timer.timeout.connect(self._show_preview)

    # -- opening --------------------------------------------------------------------
    def browse(self) -> None:
        """File → Open: a folder dialog starting beside the latest run."""
        start = settings.recent_folders()[:1]
        folder = QFileDialog.getExistingDirectory(self.win, "Open run folder",
                                                  str(Path(start[0]).parent) if start else "")
        if folder:
            self.win.open_path(folder)

    def open_path(self, path: str | Path, step: int | None = None, remember: bool = True,
                  model_file: str | None = None, attach: bool = False,
                  data: DataFile | None = None) -> None:
        """Load and analyse ``path`` in a child process; the current run stays until done.
        ``model_file`` (or ``data``): this one, else ``--model``'s (``--data``'s), else the
        one remembered for ``path``."""
        path = str(Path(path).expanduser())
        self.cancel()
        note = ""
        if model_file is None and data is None:
            model_file, data, note = self._model_file_for(path)
        req = _Request(path, step, remember, model_file, attach, note, data)
        win = self.win
        attached = model_file or (data.path if data is not None else "")
        win.log_message(f"{'attaching ' + attached + ' to' if attach else 'opening'} {path}")
        worker = make_worker(load_and_analyze, path, model_file, data, parent=self)
        worker.progress.connect(lambda items, w=worker: self._on_progress(w, req, items))
        worker.finished.connect(lambda result, w=worker: self._on_loaded(w, req, result))
        worker.errored.connect(lambda msg, w=worker: self._on_error(w, req, msg))
        worker.done.connect(lambda w=worker: self._on_done(w))
        self.worker = worker
        what = f"Attaching {Path(attached).name}" if attach else f"Opening {Path(path).name}"
        win._set_busy(True, f"{what}…")
        worker.start()

    def _model_file_for(self, path: str) -> tuple[str | None, DataFile | None, str]:
        """``(model_file, data, note)`` for opening ``path``: the command line's, else
        the one remembered for the folder (``note`` says so, or that it is gone)."""
        if self.cli_model_file:
            return self.cli_model_file, None, ""
        if self.cli_data is not None:
            return None, self.cli_data, ""
        remembered, data = settings.model_file_for(path), None
        if not remembered:
            stored = settings.data_file_for(path)
            if not stored:
                return None, None, ""
            remembered, data = stored[0], DataFile(*stored)
        what = "data file" if data is not None else "model file"
        if not Path(remembered).is_file():
            return None, None, f"the {what} remembered for this folder, {remembered}, is gone"
        note = f"{what} {Path(remembered).name} re-attached (remembered for this folder)"
        return (None, data, note) if data is not None else (remembered, None, note)

    def cancel(self) -> None:
        """Stop opening: nothing of it arrives afterwards (its signals are dropped), and
        its child is killed if it has not ended a second later."""
        self._preview_timer.stop()
        self._preview = None
        self.previewed = False
        w = self.worker
        if w is not None:
            w.stop()
            self.worker = None
            self.win._set_busy(False)

    def is_loading(self) -> bool:
        return self.worker is not None

    def _on_progress(self, worker: Any, req: _Request, items: list) -> None:
        if worker is not self.worker:
            return
        for item in items:
            if isinstance(item, Preview) and not req.attach:  # (attaching: the run stays)
                self._preview = item
                self._preview_timer.start()
        self.win._on_load_progress(items)

    def _show_preview(self) -> None:
        """The opening run's loss curves while its analysis runs (``PREVIEW_AFTER_MS``)."""
        pv = self._preview
        if pv is None or self.worker is None:
            return
        self.previewed = True
        self.win.set_run(pv.run, pv.report, preview=True)
        self.win.statusBar().showMessage(f"{pv.run.name}: {pv}…", 15000)

    def _on_loaded(self, worker: Any, req: _Request, result: Opened | SeveralRuns) -> None:
        if worker is not self.worker:
            return  # superseded
        self._preview_timer.stop()
        self._preview = None
        win = self.win
        index = win.timeline.index
        if self.previewed and req.step is None and win.run is not None \
                and 0 <= index < len(win.run):
            # the user may have scrubbed the preview: the analysed run opens there
            req.step = int(win.run.steps[index])
        self.previewed = False
        if isinstance(result, SeveralRuns):
            self._choose(req, result)
            return
        name = req.what
        if req.attach and result.model_error:
            # the shown run stays as it was: nothing of it is replaced
            win.report_error(f"could not attach {name}: {result.model_error}")
            return
        if req.remember:
            settings.add_recent(req.path)
            win.start_page.set_recent(settings.recent_folders())
        if req.attach:  # one or the other is remembered for the folder
            settings.remember_model_file(req.path, req.model_file)
            data = req.data if not req.model_file else None
            settings.remember_data_file(req.path, data and data.path, data and data.block_size)
        self.source = (result.run, req.path)
        win.model_file, win.data_file = result.model_file, result.data
        panel = win.surface_panel
        for setter, value in (("set_model_file", result.model_file), ("set_data", result.data)):
            if callable(getattr(panel, setter, None)):
                getattr(panel, setter)(value, recompute=False)  # set_run computes it
        run, report = result.run, RunReport.of(result.report)
        win.set_run(run, report, step=req.step)
        status = [short_line(run)]
        if result.model_file and report.loss_from_model:
            status.append("the loss is the model's on its data")
        if req.attach:
            status.append(f"{'' if result.data else 'model file '}{name} attached")
        elif req.model_note and not result.model_error:
            status.append(req.model_note)  # re-attached, or the remembered file is gone
        win.log_message(f"{run.path}: " + short_line(run))
        win.statusBar().showMessage("; ".join(status), 15000)
        after = []  # once the panels show the run (the banner is over them, not the start page)
        if result.model_error:
            error = (f"{'model file ' if req.model_file else ''}{name} not used: "
                     f"{result.model_error}")
            after.append(lambda: win.report_error(error))
        if SharpnessJob.possible(run, report, result.model_file, result.data):
            after.append(lambda: win._measure_sharpness(run, report))
        if after:
            win._after_panels = lambda: [f() for f in after]

    def _on_error(self, worker: Any, req: _Request, message: str) -> None:
        if worker is not self.worker:
            return
        self._preview_timer.stop()
        pv, self._preview = self._preview, None
        if self.previewed and pv is not None:  # its loss curves stay, said as unanalysed
            self.previewed = False
            self.win.set_run(pv.run, pv.failed(message), preview=True)
            if callable(getattr(self.win.surface_panel, "set_waiting", None)):
                self.win.surface_panel.set_waiting("No loss surface: the run's analysis failed.")
            self.win.report_error(f"could not analyse {req.path}: {message}")
            self.win.load_failed.emit(message)
            return
        self.win.report_error(f"could not open {req.path}: {message}")
        self.win.load_failed.emit(message)

    def _on_done(self, worker: Any) -> None:
        if worker is self.worker:
            self.worker = None
            self.win._set_busy(False)
        worker.deleteLater()

    # -- several runs in one folder -------------------------------------------------
    def _choose(self, req: _Request, several: SeveralRuns) -> None:
        """Ask which run to open; Cancel opens nothing (the shown run stays)."""
        self.win.log_message(several.message)
        if self.chooser is not None:
            self.chooser.deleteLater()
        self.chooser = dialog = RunChooser(several.path, several.choices, self.win)

        def accepted() -> None:
            chosen = dialog.chosen()
            if chosen is not None:
                self.open_path(chosen, step=req.step, remember=req.remember)

        def rejected() -> None:
            self.win.statusBar().showMessage(
                f"Nothing opened: {Path(several.path).name} holds several runs", 8000)

        dialog.accepted.connect(accepted)
        dialog.rejected.connect(rejected)
        dialog.open()

    # -- model files ------------------------------------------------------------------
    def set_cli_model_file(self, path: str | None) -> None:
        """``--model FILE.py``: used for every folder opened (not remembered)."""
        self.cli_model_file = str(path) if path else None

    def set_cli_data_file(self, path: str | None, block_size: int | None = None) -> None:
        """``--data FILE [--block-size N]``: used for every folder opened without a model
        file (not remembered); a folder it does not fit says so in one line."""
        self.cli_data = DataFile(str(Path(path).expanduser()), block_size) if path else None

    def choose_data_file(self) -> None:
        """"Use data file…": pick a text or JSON-lines file, then :meth:`use_data_file`."""
        run = self.win.run
        data = getattr(self.win, "data_file", None)
        start = data.path if data is not None else (str(run.path) if run is not None else "")
        path, _ = QFileDialog.getOpenFileName(self.win, "Use data file", start, DATA_FILTER)
        if path:
            self.use_data_file(path)

    def use_data_file(self, path: str | Path, block_size: int | None = None) -> None:
        """Reopen the shown Hugging Face folder with the data file ``path``: its model
        rebuilt from config.json, checked on that data first (in a child process); on
        success its surface and sharpness are computed and the file is remembered for
        the folder; on failure one line says why and the run stays."""
        self._reopen_with(None, DataFile(str(Path(path).expanduser()), block_size))

    def choose_model_file(self) -> None:
        """File → "Attach model file…": pick a .py file, then :meth:`attach_model_file`."""
        run = self.win.run
        start = self.win.model_file or (str(run.path) if run is not None else "")
        path, _ = QFileDialog.getOpenFileName(self.win, "Attach model file", start,
                                              "Python model file (*.py)")
        if path:
            self.attach_model_file(path)

    def attach_model_file(self, path: str | Path) -> None:
        """Reopen the shown run with the model file ``path`` (checked first, in a child
        process); on success its surface and sharpness are computed and the file is
        remembered for the folder; on failure one line says why and the run stays."""
        self._reopen_with(str(Path(path).expanduser()), None)

    def _reopen_with(self, model_file: str | None, data: DataFile | None) -> None:
        win = self.win
        run = win.run
        what = "a model file" if model_file else "a data file"
        if run is None:
            win.report_error(f"open a run first: {what} is attached to the run shown")
            return
        if run.live or not Path(run.path).exists():
            win.report_error(f"{what} is attached to a run saved on disk; this run "
                             "is not (yet)")
            return
        step = int(run.steps[win.timeline.index]) if 0 <= win.timeline.index < len(run) else None
        src = self.source[1] if self.source is not None and self.source[0] is run else run.path
        self.open_path(str(src), step=step, remember=False, model_file=model_file,
                       attach=True, data=data)
