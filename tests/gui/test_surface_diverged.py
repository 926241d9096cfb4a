"""The surface of a diverged run marks the grid points whose loss overflowed (issue 18).

The run: lossview's quadratic trained by full-batch gradient descent at lr 2.4, above the
stability limit 2/lambda_max = 2, one snapshot a step until the loss overflows. The
last finite snapshot's loss is within a factor 1.96 (one step's growth) of float32's
largest number, and the PCA plane reaches 15% of its span past it: there the loss
overflows. What a person sees is checked: the caption's words and count (the core's),
and the colour of the pixels drawn where the loss overflowed, in 2D and in 3D.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF

from lossview.core.io import open_run
from lossview.core.io.memory import run_from_arrays
from lossview.core.surface.results import RunSurface
from lossview.core.surface.runsurface import run_to_end as surface_to_end
from lossview.core.surface.runsurface import surface_for_run
from lossview.core.surface.scene import OVERFLOW_HATCH_RGB, OVERFLOW_RGB, build_scene
from lossview.core.tasks.jobs import scene_stream
from lossview.core.train.config import TrainConfig
from lossview.core.train.trainer import run_to_end, train
from lossview.gui.plotkit.export import qimage_to_array
from lossview.gui.surface import panel as surface_panel_module
from lossview.gui.surface.panel import SurfacePanel
from lossview.gui.timeline import Timeline

STEPS = 21


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "diverged"
    summary = run_to_end(train(TrainConfig("quadratic", problem_options={"dim": 8, "n": 64},
                                           lr=2.4, batch_size=None, steps=300, every=1), out))
    assert summary.status == "diverged"
    return open_run(out)


def core_surface(run, steps):
    return surface_to_end(surface_for_run(run, steps=steps, cache=False))


def make_panel(qtbot, run, contour, steps=STEPS):
    tl = Timeline()
    panel = SurfacePanel(tl)
    qtbot.addWidget(panel)
    panel.toolbar.set_grid_steps(steps)
    panel.set_contour(contour)
    panel.resize(560, 640)
    tl.set_steps(run.steps)
    panel.show()
    qtbot.waitExposed(panel)
    return panel, tl


def compute(qtbot, panel, run):
    with qtbot.waitSignal(panel.surface_ready, timeout=60000):
        panel.set_run(run, None)
    qtbot.waitUntil(lambda: not panel.is_busy(), timeout=10000)


def overflow_coloured(rgb: np.ndarray, tol: int = 12) -> np.ndarray:
    """Pixels of the 2D view's overflow patch: its fill or its hatching."""
    rgb = rgb.astype(int)
    return np.logical_or(*(np.abs(rgb - np.array(c)).max(axis=-1) <= tol
                           for c in (OVERFLOW_RGB, OVERFLOW_HATCH_RGB)))


def red_dominant(rgb: np.ndarray) -> np.ndarray:
    """The overflow colour under any shading (the 3D view scales it by its light):
    red more than twice green and blue. No colour of viridis is."""
    r, g, b = (rgb[..., k].astype(int) for k in range(3))
    return (r > 2 * g + 8) & (r > 2 * b + 8)


def test_no_colour_map_colour_passes_for_the_overflow_colour():
    import pyqtgraph as pg

    lut = pg.colormap.get("viridis").getLookupTable(nPts=256)[:, :3]
    for shade in (0.2, 0.6, 1.0):
        assert not red_dominant((lut * shade).round()).any()
        assert not overflow_coloured((lut * shade).round()).any()
    assert red_dominant(np.array([OVERFLOW_RGB, OVERFLOW_HATCH_RGB])).all()


def test_an_overflowed_point_is_not_filled_from_its_neighbour():
    a = b = np.linspace(-1, 1, 5)
    loss = np.add.outer(a**2, b**2)
    loss[4, :] = np.nan  # overflowed to NaN (the core says so)
    loss[0, 0] = np.inf
    t = np.zeros((0, 2))
    final = RunSurface(a, b, loss, t, np.zeros(0), np.zeros(0), np.zeros(0),
                       np.zeros((5, 5), bool), {}, "pca", None, nonfinite=~np.isfinite(loss))
    scene = build_scene(final, log=False)
    assert scene.complete and (scene.nonfinite == ~np.isfinite(loss)).all()
    assert np.isinf(scene.loss[4]).all() and scene.scale.ceiling == loss[np.isfinite(loss)].max()
    # a partial surface: NaN is "not evaluated yet", filled from the nearest point; inf
    # is an overflow already, and a point not evaluated next to it takes its look
    partial = RunSurface(a, b, np.where(np.isnan(loss), np.nan, loss), t, np.zeros(0),
                         np.zeros(0), np.zeros(0), np.zeros((5, 5), bool), {}, "pca", None)
    scene = build_scene(partial, log=False)
    assert not scene.complete and np.isfinite(scene.loss[4]).all()
    assert scene.nonfinite[0, 0] and scene.nonfinite.sum() == 1


def test_the_contour_view_hatches_the_overflowed_cells_and_the_caption_counts_them(
        qtbot, diverged):
    truth = core_surface(diverged, STEPS)
    n = truth.n_nonfinite
    assert 0 < n < STEPS * STEPS
    panel, tl = make_panel(qtbot, diverged, contour=True)
    compute(qtbot, panel, diverged)
    tl.set_index(0)  # the marker (red) far from the overflowed edge
    caption = panel.status.plain()
    assert f"{n} of {STEPS * STEPS} grid points non-finite (loss overflowed)" in caption
    assert truth.skipped_text()[1:] in caption and "Left out 1 of" in caption
    assert (panel.surface.nonfinite == truth.nonfinite).all()
    # the snapshot left off the plane has no loss on it (not a grid corner's)
    assert np.isnan(panel.scene.traj_loss[-1]) and np.isinf(panel.scene.true_loss[-1])
    # nothing of the caption is cut off: it has the height its wrapped lines need
    assert panel.status.height() >= panel.status.heightForWidth(panel.status.width())

    plot = panel.contour.plot
    vb = plot.getPlotItem().getViewBox()
    qtbot.wait(50)
    arr = qimage_to_array(plot.grab().toImage())
    s = panel.scene

    def pixels(mask):
        out = []
        for i, j in np.argwhere(mask):
            p = plot.mapFromScene(vb.mapViewToScene(QPointF(s.alphas[i], s.betas[j])))
            p = plot.viewport().mapTo(plot, p)
            if 0 <= p.x() < arr.shape[1] and 0 <= p.y() < arr.shape[0]:
                out.append(arr[p.y(), p.x()])
        return np.array(out)

    bad = pixels(truth.nonfinite)
    assert len(bad) == n
    assert overflow_coloured(bad).mean() > 0.9 and red_dominant(bad).mean() > 0.9
    good = pixels(~truth.nonfinite)
    assert overflow_coloured(good).mean() < 0.02 and red_dominant(good).mean() < 0.02
    panel.shutdown()


@pytest.mark.gl
def test_the_3d_view_draws_the_overflowed_points_in_their_own_colour(qtbot, diverged):
    from pyqtgraph import functions as fn
    from PySide6.QtGui import QImage

    from lossview.gui.surface.gl_view import HEIGHT

    steps = 41  # two rows overflow: the cells between them are theirs alone
    truth = core_surface(diverged, steps)
    panel, tl = make_panel(qtbot, diverged, contour=False, steps=steps)
    if panel.gl_reason is not None:
        pytest.skip(f"no OpenGL context: {panel.gl_reason}")
    compute(qtbot, panel, diverged)
    gl = panel.gl_view
    if not gl.view.isValid():
        pytest.skip("the GL widget has no valid context on this display")
    tl.set_index(0)
    assert f"{truth.n_nonfinite} of {steps * steps} grid points non-finite" in panel.status.plain()
    img = gl.grab_image().convertToFormat(QImage.Format.Format_RGBA8888)
    arr = fn.ndarray_from_qimage(img)[..., :3].copy()
    s = panel.scene
    h = s.scale.unit(s.loss)
    # cell centres: cells whose four corners overflowed, and cells with none
    corners = [truth.nonfinite[:-1, :-1], truth.nonfinite[1:, :-1],
               truth.nonfinite[:-1, 1:], truth.nonfinite[1:, 1:]]
    all_bad, none_bad = np.logical_and.reduce(corners), ~np.logical_or.reduce(corners)
    assert all_bad.any()

    def pixels(mask):
        ij = np.argwhere(mask)
        ab = np.column_stack([(s.alphas[ij[:, 0]] + s.alphas[ij[:, 0] + 1]) / 2,
                              (s.betas[ij[:, 1]] + s.betas[ij[:, 1] + 1]) / 2])
        z = np.array([h[i:i + 2, j:j + 2].mean() for i, j in ij]) * HEIGHT
        xy = gl.project(np.column_stack([gl._xy(ab), z])).round().astype(int)
        ok = (xy[:, 0] >= 0) & (xy[:, 0] < arr.shape[1]) & (xy[:, 1] >= 0) & (xy[:, 1] < arr.shape[0])
        return arr[xy[ok, 1], xy[ok, 0]]

    bad = pixels(all_bad)
    assert len(bad) >= 10
    assert red_dominant(bad).mean() > 0.9
    assert red_dominant(pixels(none_bad)).mean() < 0.02
    panel.shutdown()


def fake_surface(loss, nonfinite, **notes):
    """A final surface through 4 snapshots (what the core would return), as the job's
    generator: no partials, then the final scene."""
    a = b = np.linspace(-1, 1, loss.shape[0])
    coords = np.zeros((4, 2))
    final = RunSurface(a, b, loss, coords, np.zeros(4), np.ones(4), np.ones(4),
                       np.zeros(loss.shape, bool), {}, "pca", (0.6, 0.3), nonfinite=nonfinite,
                       steps=np.arange(4), **notes)

    def job(run, log, **_kwargs):
        def core():
            return final
            yield  # a generator that yields nothing

        return (yield from scene_stream(core, log))

    return job


def test_a_surface_with_nothing_finite_is_a_one_line_message(qtbot, monkeypatch):
    run = run_from_arrays(np.zeros((4, 3)), spec={"problem": {"name": "quadratic"}})
    loss = np.full((STEPS, STEPS), np.inf)
    loss[::2] = np.nan
    monkeypatch.setattr(surface_panel_module, "surface_scenes",
                        fake_surface(loss, np.ones(loss.shape, bool)))
    panel, _ = make_panel(qtbot, run, contour=False)
    compute(qtbot, panel, run)
    assert panel.stack.currentWidget() is panel.message
    assert "Nothing finite to draw" in panel.message.text()
    assert f"all {STEPS * STEPS} grid points" in panel.message.text()
    assert f"{STEPS * STEPS} of {STEPS * STEPS} grid points non-finite" in panel.status.plain()
    assert not panel.honesty.plot.isVisibleTo(panel)
    panel.set_contour(True)  # the other view: still the message
    assert panel.stack.currentWidget() is panel.message


def test_suspicious_surface_and_the_loss_used_are_in_the_caption(qtbot, monkeypatch):
    run = run_from_arrays(np.zeros((4, 3)), spec={"problem": {"name": "quadratic"}})
    loss = np.full((STEPS, STEPS), 0.6931)
    why = "the surface is constant (loss 0.6931 at all 441 finite grid points): check loss_fn"
    note = "loss_fn not given: cross-entropy, since targets are integer class indices"
    skipped = [{"step": 3, "reason": "non-finite weights (NaN in w)"}]
    monkeypatch.setattr(surface_panel_module, "surface_scenes",
                        fake_surface(loss, np.zeros(loss.shape, bool), suspicious=why,
                                     loss_note=note, skipped=skipped))
    panel, _ = make_panel(qtbot, run, contour=True)
    panel.resize(430, 640)  # as narrow as the panel gets in a 1280-pixel window
    compute(qtbot, panel, run)
    lines = panel.status.plain().splitlines()
    assert lines == ["Left out 1 of 4 snapshots from step 3 on (non-finite weights (NaN in w))",
                     f"Suspicious: {why}", note]  # (not "Loss_fn": a name from code)
    assert note.startswith("loss_fn not given")
    assert "non-finite" not in panel.status.text().split("Left out")[0]  # no overflow line
    qtbot.waitUntil(lambda: panel.status.height()
                    >= panel.status.heightForWidth(panel.status.width()), timeout=2000)


MODEL_FILE = '''
import torch
from torch import nn
def build_model():
    return nn.Linear(3, 1)
def batches():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, generator=g)
    return [(x, x.sum(1, keepdim=True))]
def loss_fn(outputs, targets):
    return torch.nn.functional.mse_loss(outputs, targets)
'''


def test_a_run_with_no_finite_snapshot_says_so_in_one_line(qtbot, tmp_path):
    """A user's folder whose every checkpoint holds NaN weights: the core's reason, no
    traceback, and no hint to pass a model file (one was passed)."""
    import torch

    folder = tmp_path / "ckpt"
    folder.mkdir()
    for step in (10, 20):
        torch.save({"weight": torch.full((1, 3), float("nan")), "bias": torch.zeros(1)},
                   folder / f"model_{step}.pt")
    (tmp_path / "model.py").write_text(MODEL_FILE)
    run = open_run(folder)
    panel, _ = make_panel(qtbot, run, contour=True)
    panel.set_model_file(str(tmp_path / "model.py"))
    with qtbot.waitSignal(panel.busy_changed, timeout=60000, check_params_cb=lambda b: not b):
        panel.set_run(run, None)
    text = panel.message.text()
    assert panel.stack.currentWidget() is panel.message
    assert "Cannot compute the loss surface" in text
    assert "no snapshot has finite weights and a finite loss" in text
    assert "Traceback" not in text and "--model" not in text
