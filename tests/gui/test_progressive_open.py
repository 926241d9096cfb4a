"""A run whose analysis takes seconds is shown at once: its loss curves first, the
trajectory, diagnostics and surface saying they are being computed, then the analysed
run replaces it (issue 21: "the window opens such runs progressively"). A run analysed
within PREVIEW_AFTER_MS is shown once, whole. The slow analysis here is real: a user's
folder of bare state_dicts (no loss logged) with a model file whose forward pass takes
0.4 s, so the loss of each snapshot is evaluated through it."""

import torch
from torch import nn

from lossview.gui.window.run_opening import PREVIEW_AFTER_MS

from .conftest import open_and_wait, write_run
from .model_files import linear_model_file

#: the model of bare_folder's checkpoints, whose every forward pass takes 0.4 s: the
#: loss of each of the 7 snapshots makes the analysis last ~3 s
SLOW_MODEL_FILE = linear_model_file(forward_sleep=0.4)


def bare_folder(path, n=6):
    """A plain PyTorch loop's checkpoints, the model of SLOW_MODEL_FILE, nothing else."""
    torch.manual_seed(0)
    model = nn.Sequential()
    model.fc = nn.Linear(4, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(64, 4)
    (path / "ckpt").mkdir(parents=True)
    for step in range(n * 10 + 1):
        if step % 10 == 0:
            torch.save(model.state_dict(), path / "ckpt" / f"step_{step}.pt")
        loss = ((model(x) - 2.0 * x.repeat(1, 2)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return path


def test_a_slow_analysis_shows_the_run_first_then_its_analysis(qtbot, window, tmp_path):
    model = tmp_path / "slow_model.py"
    model.write_text(SLOW_MODEL_FILE)
    window.set_model_file(str(model))
    folder = bare_folder(tmp_path / "mine")
    loaded = []
    window.run_loaded.connect(loaded.append)
    traj, diag = window.trajectory_panel, window.diagnostics_panel
    window.open_path(str(folder))
    # the preview: the run is on screen, its weights' analysis said to be under way
    qtbot.waitUntil(lambda: window.run is not None, timeout=20000)
    assert loaded == [] and window.is_loading()
    assert window.timeline.count == 7
    qtbot.waitUntil(lambda: window.stack.currentWidget() is window.workspace, timeout=5000)
    qtbot.waitUntil(lambda: "being computed" in traj.note.toPlainText(), timeout=5000)
    assert traj.note.toPlainText() == "trajectory not available: being computed"
    qtbot.waitUntil(lambda: "Analysing 7 snapshots" in diag.diagnosis.toPlainText(),
                    timeout=5000)
    assert diag.notes["dist"][1].toPlainText() == "not available: being computed"
    assert diag.notes["expl"][1].toPlainText() == "not measured: being computed"
    assert "computed once the run's analysis is done" in window.surface_panel.message.text()
    # then the analysed run, in place of the preview
    qtbot.waitUntil(lambda: len(loaded) == 1, timeout=60000)
    qtbot.waitUntil(lambda: len(traj._coords) == 7, timeout=10000)
    assert "being computed" not in traj.note.toPlainText()
    assert "Analysing" not in diag.diagnosis.toPlainText()
    curve = window.loss_panel.c_train  # the model's full-data loss at each snapshot
    assert len(curve.yData) == 7 and curve.yData[-1] < curve.yData[0]
    window.surface_panel.cancel()


def test_a_quick_analysis_is_shown_once_whole(qtbot, window, tmp_path):
    shown = []
    orig = window.set_run
    window.set_run = lambda run, report, step=None, preview=False: (
        shown.append(preview), orig(run, report, step=step, preview=preview))
    path = write_run(tmp_path / "walk")
    open_and_wait(qtbot, window, path)
    qtbot.wait(PREVIEW_AFTER_MS + 100)
    assert shown == [False]
