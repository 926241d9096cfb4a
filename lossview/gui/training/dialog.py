"""Train dialog: configure a built-in problem, train it live, or sweep learning rates.

A single run is trained by :class:`~lossview.gui.training.live.LiveTraining`; the dialog
re-emits its signals, so the main window can show the growing run in every panel:

- ``run_started(LiveRun)`` then ``run_updated(LiveRun)`` (at most ~30 per second);
- ``run_finished(Path)`` with the saved native run folder (finished, diverged or stopped).

With "Compare learning rates" checked, the runs at lr x each multiplier are trained one
after another in one worker and drawn in the dialog (:class:`SweepView`): paths in a
shared PCA basis and the loss curves, a diverging run marked with its step and the
lr·sharpness > 2 stability limit. ``sweep_finished(list[Path])`` carries the folders.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from lossview.core.analysis.sweep import (
    DEFAULT_MULTIPLIERS,
    parse_multipliers,
    run_sweep,
    sweep_folder_names,
)
from lossview.core.errors import LossviewError
from lossview.gui.plotkit.frames import frames
from lossview.gui.plotkit.widgets import LazyProgressBar, choose
from lossview.gui.training.form_fields import default_runs_folder, float_spin, stamp, tilde, unique_folder
from lossview.gui.training.live import LiveTraining
from lossview.gui.training.sweep_view import SweepView
from lossview.gui.training.train_plot import TrainingLossPlot
from lossview.gui.workers import GeneratorWorker, ProcessWorker, make_worker

#: the dialog's own loss plot is redrawn at most this often (the run itself updates ~30/s),
#: unless the main window follows the run and redraws it (``plot_follows_window``)
PLOT_INTERVAL = 0.25


class TrainDialog(QDialog):
    """Train a built-in problem live (or sweep its learning rate); see the module docstring."""

    run_started = Signal(object)
    run_updated = Signal(object)
    run_finished = Signal(object)
    sweep_finished = Signal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Train a model")
        self.setModal(False)
        from lossview.core.train.names import OPTIMIZERS
        from lossview.gui.training import problem_catalog
        self._problems = problem_catalog.get()
        self.training = LiveTraining(self)
        self.training.run_started.connect(self.run_started)
        self.training.run_updated.connect(self.run_updated)
        self.training.run_finished.connect(self.run_finished)
        self.training.progress.connect(self._on_progress)
        self.training.failed.connect(self._on_failed)
        self.training.finished.connect(self._on_single_finished)
        self.sweep_worker: GeneratorWorker | ProcessWorker | None = None
        self.sweep_paths: list[Path] = []
        self.sweep_summaries: list | None = None
        self.failed_message: str | None = None

        # -- settings ------------------------------------------------------------------
        self.problem_box = QComboBox()
        for name in self._problems:
            self.problem_box.addItem(name, name)
        self.description = QLabel()
        self.description.setWordWrap(True)
        self.description.setStyleSheet("color: palette(placeholder-text);")
        self.description.setMinimumWidth(320)
        self.optimizer_box = QComboBox()
        self.optimizer_box.addItems(list(OPTIMIZERS))
        self.lr_spin = float_spin(1e-6, 100.0, 6, "Step size of the optimizer.")
        self.momentum_spin = float_spin(0.0, 0.999, 3,
                                         "SGD/RMSprop momentum; Adam's beta1 when nonzero.")
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(0, 1_000_000)
        self.batch_spin.setSpecialValueText("full batch")
        self.batch_spin.setToolTip("Samples per step (0 = the whole training set).")
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 10_000_000)
        self.steps_spin.setToolTip("Number of optimizer updates.")
        self.every_spin = QSpinBox()
        self.every_spin.setRange(1, 1_000_000)
        self.every_spin.setToolTip("Save the weights every this many steps (plus the first "
                                   "and the last).")
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setToolTip("Seeds the data, the initial weights and the batch order.")
        # the home folder as ~, the field the whole column wide and the button under it:
        # the path's start (/root/.loc...) was cut off in a field beside the button
        self.folder_edit = QLineEdit(tilde(default_runs_folder()))
        self.folder_edit.setToolTip("Runs are saved in a new folder inside this one.")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        folder_row = QHBoxLayout()
        folder_row.addStretch(1)
        folder_row.addWidget(browse)
        self.sweep_check = QCheckBox("Compare learning rates")
        self.sweep_check.setToolTip("Train one run per multiplier of the learning rate, in "
                                    "sequence, and overlay them in one PCA basis.")
        self.mult_edit = QLineEdit(", ".join(f"{m:g}" for m in DEFAULT_MULTIPLIERS))
        self.mult_edit.setToolTip("Multipliers of the learning rate, e.g. 1, 3, 10.")
        self.mult_edit.setEnabled(False)
        self.sweep_check.toggled.connect(self.mult_edit.setEnabled)
        self.sweep_check.toggled.connect(self._on_mode)
        sweep_row = QHBoxLayout()
        sweep_row.addWidget(self.sweep_check)
        sweep_row.addWidget(QLabel("lr ×"))
        sweep_row.addWidget(self.mult_edit, 1)

        form = QFormLayout()
        form.addRow("Problem", self.problem_box)
        form.addRow("", self.description)
        form.addRow("Optimizer", self.optimizer_box)
        form.addRow("Learning rate", self.lr_spin)
        form.addRow("Momentum", self.momentum_spin)
        form.addRow("Batch size", self.batch_spin)
        form.addRow("Steps", self.steps_spin)
        form.addRow("Snapshot every", self.every_spin)
        form.addRow("Seed", self.seed_spin)
        form.addRow("Save in", self.folder_edit)
        form.addRow("", folder_row)
        form.addRow("", sweep_row)

        # -- live view -----------------------------------------------------------------
        self.loss_plot = TrainingLossPlot()
        self.loss_curve, self.full_curve = self.loss_plot.loss_curve, self.loss_plot.full_curve
        self.sweep_view = SweepView()
        self.views = QStackedWidget()
        self.views.addWidget(self.loss_plot)
        self.views.addWidget(self.sweep_view)
        self.views.setMinimumSize(520, 300)

        self.progress = LazyProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel("Ready.")
        self.status.setWordWrap(True)
        # two lines, whatever the text: progress rewrites it up to 30 times a second, and
        # a label that changes height re-lays out the dialog and repaints its plot
        self.status.setFixedHeight(2 * self.status.fontMetrics().lineSpacing() + 4)
        self.status.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.start_button = QPushButton("Start")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.setToolTip("Stop within one step; the run keeps what was saved.")
        self.stop_button.clicked.connect(self.stop)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(close)

        top = QHBoxLayout()
        left = QWidget()
        left.setLayout(form)
        left.setMaximumWidth(480)
        top.addWidget(left)
        top.addWidget(self.views, 1)
        lay = QVBoxLayout(self)
        lay.addLayout(top, 1)
        lay.addWidget(self.progress)
        lay.addLayout(buttons)
        self.resize(1100, 640)

        self.problem_box.currentIndexChanged.connect(self._fill_defaults)
        self._last_plot = 0.0
        #: set by a window that follows the run: it calls :meth:`plot_live` in a turn of
        #: its own after each of its refreshes (drawn from the progress events, the plot
        #: and its repaint often fell in the turn that repainted the window's loss panel)
        self.plot_follows_window = False
        self._steps: list[float] = []
        self._loss: list[float] = []
        self._fill_defaults()

    # -- settings ------------------------------------------------------------------
    def _fill_defaults(self) -> None:
        info = self._problems[self.problem_box.currentData()]
        self.description.setText(info["description"])
        self.optimizer_box.setCurrentText(info["default_optimizer"])
        self.lr_spin.setValue(info["default_lr"])
        self.momentum_spin.setValue(info["default_momentum"])
        self.batch_spin.setValue(info["default_batch_size"] or 0)
        self.steps_spin.setValue(info["default_steps"])
        self.every_spin.setValue(info["default_every"])

    def set_problem(self, name: str) -> None:
        choose(self.problem_box, name, f"unknown problem {name!r}")

    def config(self) -> Any:
        """The TrainConfig the form describes."""
        from lossview.core.train.config import TrainConfig

        return TrainConfig(
            problem=str(self.problem_box.currentData()),
            optimizer=self.optimizer_box.currentText(),
            lr=float(self.lr_spin.value()),
            momentum=float(self.momentum_spin.value()),
            batch_size=int(self.batch_spin.value()) or None,
            steps=int(self.steps_spin.value()),
            every=int(self.every_spin.value()),
            seed=int(self.seed_spin.value()),
        )

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(
            self, "Save runs in", str(Path(self.folder_edit.text()).expanduser()))
        if d:
            self.folder_edit.setText(tilde(d))

    def _on_mode(self, sweep: bool) -> None:
        self.views.setCurrentWidget(self.sweep_view if sweep else self.loss_plot)

    # -- control -------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.training.is_running() or self.sweep_worker is not None

    def start(self) -> None:
        """Start training (or the sweep) with the current settings."""
        if self.is_running():
            return
        # the configuration is checked (and the problem's data loaded) by the trainer in
        # the worker process; a bad value comes back through ``failed`` as one line
        try:
            config = self.config()
            parent = Path(self.folder_edit.text()).expanduser()
            parent.mkdir(parents=True, exist_ok=True)
            name = f"{config.problem}-{stamp()}"
            if self.sweep_check.isChecked():
                mults = parse_multipliers(self.mult_edit.text())
                self._start_sweep(config, mults, unique_folder(parent, name + "-lr-sweep"))
            else:
                self._start_single(config, unique_folder(parent, name))
        except (LossviewError, ValueError, OSError) as e:
            self._on_failed(str(e).splitlines()[0] if str(e) else type(e).__name__)
            return
        self._set_running(True)

    def _start_single(self, config: Any, folder: Path) -> None:
        self.failed_message = None
        self._steps, self._loss = [], []
        self.loss_plot.reset(config.steps if isinstance(config.steps, int) else None)
        self.status.setText(f"Training into {folder} …")
        self.training.start(config, folder)

    def _start_sweep(self, config: Any, mults: list[float], base: Path) -> None:
        self.failed_message = None
        lrs = [float(config.lr) * m for m in mults]
        self.sweep_paths = sweep_folder_names(base, lrs)
        self.sweep_summaries = None
        base.mkdir(parents=True, exist_ok=True)
        self.sweep_view.reset(lrs, float(config.momentum))
        self._sweep_total = len(lrs)
        worker = make_worker(run_sweep, config, lrs, list(self.sweep_paths), parent=self)
        worker.progress.connect(self._on_sweep_events)
        worker.finished.connect(self._on_sweep_finished)
        worker.errored.connect(self._on_failed)
        worker.done.connect(self._on_sweep_done)
        self.sweep_worker = worker
        self.status.setText(f"Sweeping lr = {', '.join(f'{x:.4g}' for x in lrs)} into {base} …")
        worker.start()

    def stop(self) -> None:
        """Stop within one step; saved snapshots stay on disk."""
        self.training.stop()
        if self.sweep_worker is not None:
            self.sweep_worker.cancel()

    def shutdown(self, msecs: int = 10000) -> None:
        """Stop and wait (call before the application quits)."""
        self.stop()
        self.training.wait(msecs)
        if self.sweep_worker is not None:
            self.sweep_worker.wait(msecs)

    def closeEvent(self, event) -> None:
        # closing the dialog does not stop a run the main window is showing live;
        # the main window calls shutdown() when the application quits
        super().closeEvent(event)

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        for w in (self.problem_box, self.optimizer_box, self.lr_spin, self.momentum_spin,
                  self.batch_spin, self.steps_spin, self.every_spin, self.seed_spin,
                  self.folder_edit, self.sweep_check):
            w.setEnabled(not running)
        self.mult_edit.setEnabled(not running and self.sweep_check.isChecked())
        if running:
            self.progress.setValue(0)

    # -- single run callbacks --------------------------------------------------------
    def _on_progress(self, ev: Any) -> None:
        self.progress.setValue(int(1000 * ev.fraction))
        run = self.training.run
        now = time.monotonic()
        if ev.status != "running":
            self._plot_final()
        elif not self.plot_follows_window and now - self._last_plot >= PLOT_INTERVAL:
            self._last_plot = now
            self.plot_live()
        self.status.setText(f"step {ev.step} / {ev.total}   loss {ev.loss:.4g}   "
                            f"{len(run) if run is not None else 0} snapshots")

    def _plot_final(self) -> None:
        """The last plot of a run, in a frame after the turn that ends it (whose progress
        event and re-enabled form repaint the whole dialog: together 40-48 ms)."""
        frames().submit(self, "final plot", [self.plot_live])

    def plot_live(self) -> None:
        """Draw the training run's loss so far."""
        if self.training.run is not None:
            self.loss_plot.show_run(self.training.run)

    def _on_single_finished(self, summary: Any) -> None:
        self._set_running(False)
        self._plot_final()
        path = self.training.path
        if self.training.error is not None:
            return  # the failure message stays
        if summary is None:
            self.status.setText(f"Stopped. Saved in {path}")
        elif summary.status == "diverged":
            self.status.setText(f"Diverged at step {summary.divergence_step} "
                                f"(lr = {summary.config.lr:g}). Saved in {path}")
        else:
            self.status.setText(f"Finished {summary.steps_done} steps in "
                                f"{summary.elapsed:.1f} s. Saved in {path}")

    def _on_failed(self, message: str) -> None:
        self.status.setText(f"<span style='color:#c0392b'>Cannot train: {message}</span>")
        self.failed_message = message
        if not self.is_running():
            self._set_running(False)

    # -- sweep callbacks ---------------------------------------------------------------
    def _on_sweep_events(self, events: list) -> None:
        self.sweep_view.add_events(events)
        events = [e for e in events if e.progress is not None]
        if not events:
            return
        ev = events[-1]
        frac = (ev.index + ev.progress.fraction) / max(ev.n_runs, 1)
        self.progress.setValue(int(1000 * frac))
        self.status.setText(f"run {ev.index + 1} / {ev.n_runs} (lr = {ev.lr:.4g}): "
                            f"step {ev.progress.step} / {ev.progress.total}")

    def _on_sweep_finished(self, summaries: list) -> None:
        self.sweep_summaries = summaries

    def _on_sweep_done(self) -> None:
        worker = self.sweep_worker
        self.sweep_worker = None
        if worker is not None:
            worker.wait()
        self.sweep_view.finish()
        self._set_running(False)
        if self.sweep_summaries is not None:
            self.progress.setValue(1000)
        done = [p for p in self.sweep_paths if (p / "run.json").is_file()]
        if self.failed_message is not None and self.sweep_summaries is None:
            self.sweep_finished.emit(done)
            return
        notes = [f"lr = {r.lr:.4g} {t}." for i, r in enumerate(self.sweep_view.runs)
                 if (t := self.sweep_view.divergence_text(i))]
        notes += [f"lr = {r.lr:.4g}: the loss did not fall." for i, r in
                  enumerate(self.sweep_view.runs) if self.sweep_view.stalled(i)]
        lead = "Sweep stopped." if self.sweep_summaries is None else "Sweep finished."
        self.status.setText("  ".join([lead, *notes]))
        self.sweep_finished.emit(done)
