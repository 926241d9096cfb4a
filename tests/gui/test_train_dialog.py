"""Train dialog: a real short training run, Stop, and the learning-rate sweep."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lossview.core.analysis.sweep import divergence_label, parse_multipliers, shared_pca
from lossview.core.io import open_run
from lossview.gui.training.dialog import TrainDialog
from lossview.gui.training.sweep_view import COLORS


@pytest.fixture
def dialog(qtbot, tmp_path):
    d = TrainDialog()
    qtbot.addWidget(d)
    d.folder_edit.setText(str(tmp_path))
    yield d
    d.shutdown()


def test_problem_defaults_and_description(dialog):
    from lossview.core.train.problems import PROBLEMS

    dialog.set_problem("quadratic")
    q = PROBLEMS["quadratic"]
    assert dialog.lr_spin.value() == pytest.approx(q.default_lr)
    assert dialog.steps_spin.value() == q.default_steps
    assert "quadratic" in dialog.description.text()
    dialog.set_problem("linreg")
    assert dialog.batch_spin.value() == 0 and dialog.config().batch_size is None


def test_the_form_reads_whole_and_the_plot_says_what_comes(qtbot, tmp_path, monkeypatch):
    """At its default size on a 1280x800 screen the description and the Save in path show
    whole (the path was cut off at its start); before a run the plot is one sentence."""
    from pathlib import Path

    from lossview.gui.training import dialog as module
    from lossview.gui.training.train_plot import NO_RUN

    monkeypatch.setenv("HOME", str(tmp_path))
    runs = tmp_path / ".local" / "share" / "lossview" / "runs"
    monkeypatch.setattr(module, "default_runs_folder", lambda: runs)
    d = TrainDialog()
    qtbot.addWidget(d)
    d.set_problem("quadratic")
    d.show()
    qtbot.waitExposed(d)
    assert d.width() <= 1280 and d.height() <= 800
    field = d.folder_edit
    assert field.text() == "~/.local/share/lossview/runs"
    assert field.fontMetrics().horizontalAdvance(field.text()) < field.contentsRect().width() - 8
    assert Path(field.text()).expanduser() == runs  # where start() makes the run's folder
    label = d.description
    need = label.heightForWidth(label.width())
    assert label.height() >= need  # every wrapped line of the description is shown
    plot = d.loss_plot
    assert plot.note.toPlainText() == NO_RUN
    assert not plot.getAxis("left").isVisible() and not plot.getAxis("bottom").isVisible()
    plot.reset(100)  # a run starts: axes, no sentence
    assert plot.note.toPlainText() == "" and plot.getAxis("left").isVisible()
    d.sweep_check.setChecked(True)  # the sweep's two plots say what will come, too
    assert [n.toPlainText() for n in d.sweep_view.notes] == [
        "Each run's path in the weights, in one PCA basis.",
        "Each run's loss: press Start to train one run per learning rate."]
    assert not d.sweep_view.loss_plot.getAxis("left").isVisible()
    d.sweep_view.reset([0.1, 0.3])
    assert d.sweep_view.notes[1].toPlainText() == ""
    assert d.sweep_view.loss_plot.getAxis("left").isVisible()


def test_live_run_grows_then_is_saved(qtbot, dialog):
    dialog.set_problem("mlp")
    dialog.steps_spin.setValue(300)
    dialog.every_spin.setValue(20)
    started, sizes = [], []
    dialog.run_started.connect(started.append)
    dialog.run_updated.connect(lambda r: sizes.append(len(r)))
    with qtbot.waitSignal(dialog.run_finished, timeout=120000) as blocker:
        dialog.start()
        assert dialog.is_running() and not dialog.start_button.isEnabled()
    path = blocker.args[0]
    live = started[0]
    # step 0, every 20, and the last: 16 snapshots, all mirrored live
    assert len(live) == 16 and not live.live and live.status == "finished"
    assert sizes == sorted(sizes) and sizes[-1] == 16
    saved = open_run(path)
    assert list(saved.steps) == list(live.steps)
    np.testing.assert_array_equal(saved.vector(7), live.vector(7))
    assert json.loads((path / "run.json").read_text())["status"] == "finished"
    loss = live.metrics["loss"]
    assert len(loss) == 300 and np.isfinite(loss.values).all()
    # full-data losses of the snapshots (evaluated in the trainer's background thread)
    # reach the live run with the values the folder logged
    full = live.metrics["train_loss"]
    disk = saved.metrics["train_loss"]
    assert len(full) == 16
    np.testing.assert_array_equal(full.steps, disk.steps)
    np.testing.assert_allclose(full.values, disk.values, rtol=1e-6)
    assert dialog.start_button.isEnabled()
    # the run's last plot, every step of it, comes in a turn after the one that ended it
    qtbot.waitUntil(lambda: len(dialog.loss_curve.xData) == 300, timeout=2000)
    np.testing.assert_array_equal(dialog.loss_curve.xData, loss.steps)
    # the plot's y range was held steady (not auto-ranged at every redraw) and holds
    # every loss it drew (log10 units)
    vb = dialog.loss_plot.getPlotItem().getViewBox()
    lo, hi = vb.viewRange()[1]
    assert not vb.autoRangeEnabled()[1]
    drawn = np.log10(np.concatenate([loss.values, full.values]))
    assert lo <= drawn.min() and drawn.max() <= hi


def test_stop_keeps_what_was_saved(qtbot, dialog):
    dialog.set_problem("mlp")
    dialog.steps_spin.setValue(1_000_000)  # would take hours
    dialog.every_spin.setValue(10)
    got = []
    dialog.run_updated.connect(lambda r: got.append(len(r)))
    with qtbot.waitSignal(dialog.run_finished, timeout=60000) as blocker:
        dialog.start()
        qtbot.waitUntil(lambda: bool(got) and got[-1] >= 3, timeout=60000)
        dialog.stop()
    spec = json.loads((blocker.args[0] / "run.json").read_text())
    assert spec["status"] == "stopped" and spec["stopped_step"] < 1_000_000
    saved = open_run(blocker.args[0])
    assert len(saved) >= 3 and np.isfinite(saved.vector(len(saved) - 1)).all()
    assert "Stopped" in dialog.status.text()


def test_bad_setting_is_reported_not_raised(qtbot, dialog, tmp_path):
    dialog.set_problem("linreg")
    dialog.batch_spin.setValue(10_000)  # more than the 20 samples
    with qtbot.waitSignal(dialog.training.finished, timeout=60000):
        dialog.start()
    assert not dialog.is_running() and "Cannot train" in dialog.status.text()
    assert "batch_size" in dialog.status.text() and dialog.start_button.isEnabled()
    assert list(tmp_path.iterdir()) == []  # no half-made run folder


def test_lr_sweep_marks_the_diverging_run(qtbot, dialog):
    dialog.set_problem("quadratic")  # largest curvature exactly 1: GD diverges for lr > 2
    dialog.steps_spin.setValue(200)
    dialog.every_spin.setValue(10)
    dialog.lr_spin.setValue(0.3)
    dialog.sweep_check.setChecked(True)
    dialog.mult_edit.setText("1, 3, 10")
    with qtbot.waitSignal(dialog.sweep_finished, timeout=120000) as blocker:
        dialog.start()
    paths = blocker.args[0]
    assert len(paths) == 3
    view = dialog.sweep_view
    lrs = [r.lr for r in view.runs]
    assert lrs == pytest.approx([0.3, 0.9, 3.0])
    # only lr = 3 > 2/lambda_max diverges, and it is labelled with the stability limit
    assert [r.diverged_at is not None for r in view.runs] == [False, False, True]
    text = view.divergence_text(2)
    assert text.startswith(f"diverged at step {view.runs[2].diverged_at}")
    # sharpness measured by Lanczos at the common start: the quadratic's exact 1.0
    assert view.sharpness == pytest.approx(1.0, rel=1e-3)
    assert text.endswith("lr 3 above the limit 2/λ_max = 2") and text in dialog.status.text()
    statuses = [json.loads((p / "run.json").read_text())["status"] for p in paths]
    assert statuses == ["finished", "finished", "diverged"]
    # the stable runs share one basis: their paths are finite and start at the same point
    c0, c1 = view.pca.coords[0], view.pca.coords[1]
    assert np.isfinite(c0).all() and np.isfinite(c1).all()
    np.testing.assert_allclose(c0[0], c1[0], atol=1e-9)
    assert len(view._marks) == 4  # cross + label in both plots
    # the legend says which side of the limit each lr lies, in core's words
    legend = view.legend.text()
    assert (f"lr = 3 <i>(diverged at step {view.runs[2].diverged_at:,}; above the limit "
            "2/λ_max = 2)</i>") in legend
    assert "lr = 0.3 <i>(below the limit 2/λ_max = 2)</i>" in legend
    assert "lr = 0.9 <i>(below the limit 2/λ_max = 2)</i>" in legend


def test_shared_pca_matches_numpy_and_ignores_a_blow_up():
    rng = np.random.default_rng(1)
    a = np.cumsum(rng.normal(size=(20, 8)), axis=0)
    b = np.cumsum(rng.normal(size=(15, 8)), axis=0)
    both = np.concatenate([a, b])
    y = both - both.mean(0)
    _, s, vt = np.linalg.svd(y, full_matrices=False)
    res = shared_pca([a, b])
    ref = y @ vt[:2].T
    # same coordinates up to the sign of each component
    for k in range(2):
        sign = np.sign(ref[0, k] * res.coords[0][0, k])
        np.testing.assert_allclose(res.coords[0][:, k] * sign, ref[:20, k], atol=1e-9)
    assert res.explained[0] == pytest.approx(s[0] ** 2 / (s**2).sum())
    # a diverging run that reaches 1e20 is kept out of the fit
    c = a.copy()
    c[10:] *= 1e20
    c[-1] = np.nan
    res2 = shared_pca([a, b, c], diverged=[False, False, True])
    assert res2.used[2][:10].all() and not res2.used[2][10:].any()
    assert np.isnan(res2.coords[2][-1]).all()


def test_parse_multipliers_and_label():
    assert parse_multipliers("1, 3x, 10") == [1.0, 3.0, 10.0]
    with pytest.raises(ValueError):
        parse_multipliers("1, -2")
    assert divergence_label(31, 5.0, 1.0) == \
        "diverged at step 31: lr 5 above the limit 2/λ_max = 2"
    assert divergence_label(31, 5.0, 1.0, momentum=0.9).endswith(
        "above the limit (2+2·0.9)/λ_max = 3.8")
    # at the common start the lr was inside the limit: the label says so (the sharpness
    # grew on the way: progressive sharpening)
    assert divergence_label(1200, 1.0, 1.0).endswith("lr 1 below the limit 2/λ_max = 2")
    assert divergence_label(7, 1.0, None) == "diverged at step 7"


def test_sweep_view_says_which_run_stalled(qtbot):
    from lossview.core.analysis.sweep import SweepEvent
    from lossview.core.train.trainer import TrainProgress
    from lossview.gui.training.sweep_view import SweepView

    view = SweepView()
    qtbot.addWidget(view)
    view.reset([0.1, 1.0])
    steps = np.arange(200)
    falling = 2.3 * np.exp(-steps / 40.0) + 0.01
    flat = np.full(200, 2.3) + 0.01 * np.sin(steps)
    for i, loss in enumerate((falling, flat)):
        ev = TrainProgress(step=200, total=200, loss=float(loss[-1]), elapsed=0.0,
                           status="finished", metrics={"step": steps, "loss": loss},
                           snapshot_step=0, params={"w": np.array([float(i), 0.0])})
        view.add_events([SweepEvent(i, 2, [0.1, 1.0][i], ev)])
    view.finish()
    assert [view.stalled(0), view.stalled(1)] == [False, True]
    assert view.divergence_text(0) is None and view.divergence_text(1) is None
    # one legend above both plots, in the runs' colours, with what became of each
    text = view.legend.text()
    first, second = text.split("&nbsp;&nbsp;&nbsp; ")
    assert COLORS[0] in first and "lr = 0.1" in first and "(" not in first
    assert COLORS[1] in second and "lr = 1 <i>(loss did not fall)</i>" in second
    assert view.pca_plot.plotItem.legend is None and view.loss_plot.plotItem.legend is None


APP_SCRIPT = r"""
import sys, tempfile, time
from lossview.gui.app import make_app, prewarm_imports, start_job_server
app = make_app()
from lossview.gui.window.main_window import MainWindow
win = MainWindow(); win.show(); app.processEvents()
start_job_server()         # as run_app does once the window shows
prewarm_imports()          # PyOpenGL on a background thread ...
win.open_train_dialog()    # ... while the dialog opens and training starts at once
dlg = win._train_dialog
dlg.set_problem("quadratic"); dlg.steps_spin.setValue(200); dlg.every_spin.setValue(20)
dlg.folder_edit.setText(tempfile.mkdtemp())
saved = []  # the run reopened from its folder once training ended (not the LiveRun)
win.run_loaded.connect(lambda run: saved.append(run) if run.path.is_dir()
                       and not hasattr(run, "append_snapshot") else None)
dlg.start()
t = time.monotonic()
while time.monotonic() - t < 90 and not (saved and not win.is_computing()):
    app.processEvents(); time.sleep(0.005)
print("SAVED", bool(saved), len(saved[-1]) if saved else 0)
print("SURFACE", win.surface_panel._final, "SHARPNESS", bool(win.report and win.report.sharpness))
print("TORCH", "torch" in sys.modules)
win.shutdown(); win.close()
"""


def test_training_and_the_saved_runs_surface_leave_torch_out_of_the_app(tmp_path):
    """Training, the surface and sharpness run in child processes and the dialog's
    problem list comes from one: the app's own process trains a run, shows it saved with
    its surface and sharpness, and never imports torch (whose 1.2 s import and every
    training step would hold the GIL against the GUI thread)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", APP_SCRIPT], cwd=tmp_path,
                         capture_output=True, text=True, timeout=150)
    assert "SAVED True 11" in out.stdout, out.stdout + out.stderr[-2000:]
    assert "SURFACE True SHARPNESS True" in out.stdout, out.stdout + out.stderr[-2000:]
    assert "TORCH False" in out.stdout, out.stdout + out.stderr[-2000:]
