"""Attaching a model file in the window (issue 19, item 5): a folder saved by a plain
PyTorch loop (``torch.save(model.state_dict(), ...)``) gets its surface and sharpness
without a relaunch; a broken file is one line and the run stays; the file is remembered
for the folder and re-attached when it is opened again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lossview.gui.window import settings

from .conftest import open_and_wait

torch = pytest.importorskip("torch")

GRID = 21  # surface grid points per side: small, so each surface takes well under a second

#: a model file as docs/surface.md's contract asks, for the loop in :func:`plain_torch_run`
MODEL_FILE = '''
import torch

def build_model():
    return torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))

def batches():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 3, generator=g)
    yield x, x.sum(dim=1, keepdim=True)

def loss_fn(outputs, targets):
    return torch.nn.functional.mse_loss(outputs, targets)
'''

#: broken model files, and what their one line says
BROKEN = {
    "syntax": ("def build_model(:\n    pass\n", "SyntaxError"),
    "no_build_model": ("def batches():\n    yield 1, 2\n", "does not define build_model()"),
    "float_targets_no_loss_fn": (MODEL_FILE.split("def loss_fn")[0], "defines no loss_fn"),
}


def plain_torch_run(root: Path) -> Path:
    """A project folder as a user leaves it: a plain training loop saved
    ``model.state_dict()`` every 4 steps into ``checkpoints/``; no loss was logged."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 3, generator=g)
    y = x.sum(dim=1, keepdim=True)
    (root / "checkpoints").mkdir(parents=True)
    for step in range(33):
        if step % 4 == 0:
            torch.save(model.state_dict(), root / "checkpoints" / f"model_{step}.pt")
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return root


@pytest.fixture
def project(tmp_path):
    return plain_torch_run(tmp_path / "project")


def open_needing_model(qtbot, window, path):
    window.surface_panel.toolbar.set_grid_steps(GRID)
    open_and_wait(qtbot, window, path)
    panel = window.surface_panel
    qtbot.waitUntil(panel.needs_model, timeout=60000)
    return panel


def wait_attached(qtbot, window, timeout=120000):
    with qtbot.waitSignal(window.run_loaded, timeout=timeout):
        pass
    qtbot.waitUntil(lambda: not window.is_computing(), timeout=timeout)


def test_attaching_a_model_file_gives_the_surface_and_sharpness(qtbot, window, project,
                                                                monkeypatch):
    panel = open_needing_model(qtbot, window, project)
    assert window.actions["attach_model"].isEnabled()
    assert window.actions["attach_model"].text() == "Attach &model file…"
    assert panel.needs_model_view.text.text() == \
        "This folder holds weights only: the surface needs the model and data."
    n = window.timeline.count
    assert n == 9 and curve_points(window.loss_panel.c_train).size == 0  # no loss logged
    assert curve_points(window.diagnostics_panel.c_sharp).size == 0
    model = project / "model.py"
    model.write_text(MODEL_FILE)

    # File → "Attach model file…", its file dialog answered with the file
    from lossview.gui.window import run_opening
    asked = []
    monkeypatch.setattr(run_opening.QFileDialog, "getOpenFileName",
                        lambda *a: asked.append(a[-1]) or (str(model), a[-1]))
    window.actions["attach_model"].trigger()
    assert asked == ["Python model file (*.py)"]
    wait_attached(qtbot, window)

    assert not panel.needs_model() and window.banner.isHidden()
    assert panel.scene is not None and panel.surface is not None
    assert np.isfinite(panel.surface.loss).all() and panel.surface.loss.shape == (GRID, GRID)
    assert panel.showing_3d() or panel.stack.currentWidget() is panel.contour
    assert window.timeline.count == n
    # the sharpness at a few snapshots, against the model's data
    assert len(curve_points(window.diagnostics_panel.c_sharp)) >= 2
    # the loss the folder did not log: the model's full-data loss at each snapshot
    xs = curve_points(window.loss_panel.c_train)
    assert list(xs) == list(range(0, 33, 4))
    assert window.report.loss_from_model == "loss_full"
    assert "model file model.py" in window.run_info.text()
    assert settings.model_file_for(project) == str(model.resolve())


def test_reopening_the_folder_reattaches_its_model_file(qtbot, window, project, tmp_path):
    model = project / "model.py"
    model.write_text(MODEL_FILE)
    settings.remember_model_file(project, model)
    window.surface_panel.toolbar.set_grid_steps(GRID)
    messages = []
    window.statusBar().messageChanged.connect(messages.append)
    open_and_wait(qtbot, window, project)
    assert any("model file model.py re-attached (remembered for this folder)" in m
               for m in messages)
    assert window.model_file == str(model.resolve())
    qtbot.waitUntil(lambda: not window.is_computing(), timeout=120000)
    assert not window.surface_panel.needs_model() and window.surface_panel.scene is not None
    # another folder does not get it
    other = plain_torch_run(tmp_path / "other")
    open_and_wait(qtbot, window, other)
    assert window.model_file is None
    qtbot.waitUntil(window.surface_panel.needs_model, timeout=60000)


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_model_file_is_one_line_and_the_run_stays(qtbot, window, project, kind):
    text, said = BROKEN[kind]
    panel = open_needing_model(qtbot, window, project)
    run, n = window.run, window.timeline.count
    bad = project / f"{kind}.py"
    bad.write_text(text)

    window.attach_model_file(str(bad))
    qtbot.waitUntil(window.banner.isVisible, timeout=60000)
    qtbot.waitUntil(lambda: not window.is_loading(), timeout=60000)

    line = window.banner.text()
    assert line.startswith(f"could not attach {kind}.py: ") and said in line
    assert "\n" not in line and "Traceback" not in line
    assert window.statusBar().currentMessage().startswith(f"could not attach {kind}.py")
    assert window.run is run and window.timeline.count == n  # nothing was replaced
    assert panel.needs_model() and window.model_file is None
    assert settings.model_file_for(project) is None


def curve_points(item) -> np.ndarray:
    x, _ = item.getData()
    return np.asarray([] if x is None else x)


def test_a_hugging_face_folder_is_told_it_needs_data(qtbot):
    from lossview.gui.surface.needs_model import NEEDS_DATA, NeedsModelView

    view = NeedsModelView()
    qtbot.addWidget(view)
    view.set_reason("loss surfaces need data: this Hugging Face folder's model is rebuilt "
                    "from its config.json when you pass --data FILE")
    assert view.text.text() == NEEDS_DATA and "--data FILE" in view.text.toolTip()


def test_a_remembered_model_file_that_now_fails_leaves_the_run_open(qtbot, window, project):
    bad = project / "model.py"
    bad.write_text(BROKEN["syntax"][0])
    settings.remember_model_file(project, bad)
    open_and_wait(qtbot, window, project)
    assert window.timeline.count == 9 and window.model_file is None
    assert window.banner.text().startswith("model file model.py not used: ")
    assert "SyntaxError" in window.banner.text()
    qtbot.waitUntil(window.surface_panel.needs_model, timeout=60000)
