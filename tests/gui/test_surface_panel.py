"""Surface panel on a real run trained by lossview's trainer (quadratic, ~1 s)."""

from __future__ import annotations

import numpy as np
import pytest

from lossview.core.io import open_run
from lossview.core.io.memory import run_from_arrays
from lossview.core.surface.scene import build_scene, fill_missing, height_scale, outline_segments
from lossview.core.train.config import TrainConfig
from lossview.core.train.trainer import run_to_end, train
from lossview.gui.surface.panel import SurfacePanel
from lossview.gui.timeline import Timeline

STEPS = 21  # grid points per side; small so each test computes in well under a second


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mlp"
    run_to_end(train(TrainConfig("mlp", steps=200, every=20), out))
    return open_run(out)


@pytest.fixture(scope="module")
def quad_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "quad"
    run_to_end(train(TrainConfig("quadratic", steps=300, every=20, batch_size=8), out))
    return open_run(out)


def make_panel(qtbot, run=None, contour=True):
    tl = Timeline()
    panel = SurfacePanel(tl)
    qtbot.addWidget(panel)
    panel.toolbar.set_grid_steps(STEPS)
    panel.set_contour(contour)
    panel.resize(800, 600)
    if run is not None:
        tl.set_steps(run.steps)
    return panel, tl


def compute(qtbot, panel, run, timeout=60000):
    with qtbot.waitSignal(panel.surface_ready, timeout=timeout):
        panel.set_run(run, None)
    assert not panel.is_busy()


def test_fill_missing_uses_nearest_evaluated_point():
    z = np.full((5, 5), np.nan)
    z[0, 0], z[4, 4] = 1.0, 9.0
    f = fill_missing(z)
    assert f[1, 0] == 1.0 and f[3, 4] == 9.0 and np.isfinite(f).all()
    assert f[0, 0] == 1.0 and f[4, 4] == 9.0


def test_height_scale_clips_a_diverging_rim_in_linear_mode():
    z = np.ones((30, 30))
    z[:, :2] = 1e6  # a wall 6 orders of magnitude up on 7% of the grid
    z[10:20, 10:20] = 0.5
    lin = height_scale(z, log=False)
    assert lin.clipped and lin.ceiling < 1e6
    # the basin and the plain stay distinguishable: 0.5 -> 0, 1 -> top
    assert lin.unit(np.array([0.5]))[0] == 0.0 and lin.unit(np.array([1.0]))[0] == 1.0
    lg = height_scale(z, log=True)
    # log mode shows LOG_DECADES (6) decades above the minimum: 1e6 is just clipped
    assert lg.floor == pytest.approx(np.log10(0.5))
    assert lg.ceiling == pytest.approx(np.log10(0.5) + 6.0) and lg.clipped


def test_basin_outline_is_the_level_curve_of_the_basin_only():
    a = b = np.linspace(-2, 2, 41)
    A, B = np.meshgrid(a, b, indexing="ij")
    # two wells; the basin mask is the left one only
    loss = np.minimum((A + 1) ** 2 + B**2, (A - 1.2) ** 2 + B**2 + 0.01)
    mask = ((A + 1) ** 2 + B**2 <= 0.25) & (A < 0.1)
    seg = outline_segments(mask, a, b, loss, level=0.25)
    pts = seg[np.isfinite(seg).all(axis=1)]
    r = np.hypot(pts[:, 0] + 1, pts[:, 1])
    # on the circle of radius 0.5 around (-1, 0) (linear interpolation on a 0.1 grid)
    assert np.abs(r - 0.5).max() < 0.02
    assert (pts[:, 0] < 0).all()  # the right well is not outlined


def test_surface_of_a_real_run_and_honesty_readout(qtbot, quad_run):
    panel, _tl = make_panel(qtbot, quad_run)
    compute(qtbot, panel, quad_run)
    s = panel.surface
    assert s.loss.shape == (STEPS, STEPS) and np.isfinite(s.loss).all()
    scene = panel.scene
    assert scene.complete and scene.n_points == len(quad_run)
    assert np.isfinite(scene.true_loss).all() and (scene.true_loss > 0).all()
    # the PCA plane goes through the last snapshot: there, surface and true loss agree
    assert scene.traj_loss[-1] == pytest.approx(scene.true_loss[-1], rel=1e-4)
    assert "explains" in panel.honesty.summary.text()


def test_progressive_partial_surfaces_arrive_before_the_final(qtbot, quad_run):
    panel, _ = make_panel(qtbot, quad_run)
    panel.toolbar.set_grid_steps(41)  # not cached by other tests
    missing = []
    with qtbot.waitSignal(panel.surface_ready, timeout=60000):
        panel.set_run(quad_run, None)
        panel._worker.progress.connect(lambda items: missing.extend(
            float(np.isnan(u.surface.loss).mean()) for u in items if u.surface is not None))
    # coarse first: partial surfaces with unevaluated points, then the full grid
    # (the final surface comes with ``finished``; partial ones are sent while it fills in)
    assert missing and max(missing) > 0.5
    assert np.isfinite(panel.surface.loss).all() and panel.scene.complete


def test_cancel_keeps_what_was_drawn(qtbot, mlp_run):
    panel, _ = make_panel(qtbot, mlp_run)
    panel.toolbar.set_grid_steps(61)
    panel.set_run(mlp_run, None)
    assert panel.is_busy() and panel.toolbar.cancel_button.isVisibleTo(panel)
    with qtbot.waitSignal(panel.busy_changed, timeout=30000):
        panel.cancel()
    assert not panel.is_busy() and not panel._final
    assert "ancel" in panel.status.text() or "ancel" in panel.message.text()
    assert panel.toolbar.compute_button.isVisibleTo(panel)  # one click to resume


def test_marker_follows_the_timeline_without_recomputing(qtbot, quad_run):
    panel, tl = make_panel(qtbot, quad_run)
    compute(qtbot, panel, quad_run)
    surface, scene = panel.surface, panel.scene
    for i in (0, 5, len(quad_run) - 1):
        tl.set_index(i)
        np.testing.assert_allclose(panel.contour.marker_position(), scene.coords[i])
        x, _ = panel.contour.marker.getData()
        assert x[0] == pytest.approx(scene.coords[i, 0])
        assert panel.honesty.cursor.value() == pytest.approx(quad_run.steps[i])
    assert panel.surface is surface and panel.scene is scene and not panel.is_busy()


def test_contour_click_writes_back_to_the_timeline(qtbot, quad_run):
    panel, tl = make_panel(qtbot, quad_run)
    compute(qtbot, panel, quad_run)
    got = []
    tl.index_changed.connect(got.append)
    panel.contour.point_clicked.emit(3)
    assert tl.index == 3 and got == [3]


def test_log_z_redraws_without_recomputing(qtbot, quad_run):
    panel, _ = make_panel(qtbot, quad_run)
    compute(qtbot, panel, quad_run)
    surface = panel.surface
    panel.toolbar.log_box.setChecked(True)
    assert panel._worker is None  # nothing recomputed: the views are redrawn, a turn each
    qtbot.waitUntil(lambda: not panel.is_busy(), timeout=5000)
    assert panel.surface is surface and panel.scene.scale.log
    # the contour view (drawn in its own turn) shows log10 of the loss
    np.testing.assert_allclose(panel.contour.image.image.T, np.log10(surface.loss), rtol=1e-9)
    assert panel.scene.scale.floor == pytest.approx(np.log10(np.nanmin(surface.loss)))


def test_run_without_a_model_says_what_is_missing(qtbot):
    run = run_from_arrays(np.random.default_rng(0).normal(size=(6, 10)), name="foreign")
    panel, _ = make_panel(qtbot, run)
    with qtbot.waitSignal(panel.busy_changed, timeout=30000, check_params_cb=lambda b: not b):
        panel.set_run(run, None)
    # the "needs the model" page: a short sentence and the way out, not the core's long
    # line twice (it is the sentence's tooltip)
    assert panel.needs_model() and panel.needs_model_view.isVisibleTo(panel)
    view = panel.needs_model_view
    assert view.text.text() == "This folder holds weights only: the surface needs the model and data."
    assert view.attach_button.text() == "Attach model file…"
    assert "build_model" in view.what.toolTip() and "--model" in view.text.toolTip()
    assert panel.status.plain() == ""
    assert not panel.toolbar.compute_button.isVisibleTo(panel)  # it would only fail again
    with qtbot.waitSignal(panel.attach_requested, timeout=1000):
        view.attach_button.click()


def test_live_run_waits_for_the_end(qtbot):
    from .live_runs import as_live

    run = as_live(run_from_arrays(np.zeros((3, 4))))
    panel, _ = make_panel(qtbot, run)
    panel.set_run(run, None)
    assert not panel.is_busy() and "once the run has finished" in panel.message.text()
    # no surface, so no empty comparison plot under the message
    assert not panel.honesty.plot.isVisibleTo(panel) and panel.honesty.summary.text() == ""


def test_the_comparison_plot_appears_with_the_surface_in_the_space_kept_for_it(qtbot,
                                                                                quad_run):
    panel, _ = make_panel(qtbot, quad_run)
    panel.show()
    qtbot.waitExposed(panel)
    assert not panel.honesty.plot.isVisible()
    before = panel.honesty.plot.geometry()
    stack = panel.stack.geometry()
    compute(qtbot, panel, quad_run)
    assert panel.honesty.plot.isVisible() and "explains" in panel.honesty.summary.text()
    assert panel.honesty.plot.geometry() == before and panel.stack.geometry() == stack
    panel.set_run(None)  # the surface goes: its comparison goes with it
    assert not panel.honesty.plot.isVisible() and panel.honesty.summary.text() == ""
    assert panel.honesty.plot.geometry() == before


def test_build_scene_of_a_partial_surface_fills_holes(quad_run):
    from lossview.core.surface.runsurface import surface_for_run

    gen = surface_for_run(quad_run, steps=STEPS, cache=False)
    first = next(gen)
    gen.close()
    scene = build_scene(first.partial, log=False)
    assert not scene.complete and np.isfinite(scene.loss).all()


def gl_panel(qtbot, run):
    """A shown panel with its computed surface in the 3D view (skips only where no GL
    context can be created)."""
    panel, tl = make_panel(qtbot, run, contour=False)
    if panel.gl_reason is not None:
        pytest.skip(f"no OpenGL context: {panel.gl_reason}")
    panel.show()
    qtbot.waitExposed(panel)
    compute(qtbot, panel, run)
    assert panel.showing_3d()
    gl = panel.gl_view
    if not gl.view.isValid():
        pytest.skip("the GL widget has no valid context on this display")
    return panel, tl, gl


@pytest.mark.gl
def test_gl_view_renders_surface_and_marker(qtbot, quad_run):
    _panel, tl, gl = gl_panel(qtbot, quad_run)
    tl.set_index(0)
    p0 = gl.marker_position()
    tl.set_index(len(quad_run) - 1)
    # the 3D marker is throttled (at most ~30 redraws a second): the last move lands
    qtbot.waitUntil(lambda: not np.allclose(p0, gl.marker_position()), timeout=2000)
    p1 = gl.marker_position()
    assert not np.allclose(p0, p1)
    img = gl.grab_image()
    assert not img.isNull()
    from pyqtgraph import functions as fn

    img = img.convertToFormat(img.Format.Format_RGBA8888)  # held: arr is a view of it
    arr = fn.ndarray_from_qimage(img)
    colours = np.unique(arr[..., :3].reshape(-1, 3), axis=0)
    assert len(colours) > 50  # a shaded surface, not a blank frame
    # the marker's red is drawn somewhere in the frame
    red = (arr[..., 0] > 200) & (arr[..., 1] < 90) & (arr[..., 2] < 90)
    assert red.sum() > 20


@pytest.mark.gl
def test_the_whole_3d_scene_is_in_view_in_a_wide_short_panel(qtbot, quad_run):
    """At 1280 x 800 the 3D view is about three times as wide as high: with the camera
    framed for a squarer view the surface's top (and the loss axis) were cut off. The
    scene's box, its top included, projects inside the view at every shape, and a
    user's zoom is kept relative to the framing."""
    from lossview.gui.surface.gl_view import FLOOR_Z, HEIGHT

    panel, _tl, gl = gl_panel(qtbot, quad_run)
    box = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (FLOOR_Z, HEIGHT)])
    for w, h in ((900, 330), (700, 700), (1100, 420)):
        panel.resize(w, h)
        qtbot.waitUntil(lambda w=w: abs(panel.width() - w) <= 1, timeout=2000)
        qtbot.wait(20)
        view = gl.view
        xy = gl.project(box)
        assert np.isfinite(xy).all()
        assert (xy[:, 0] >= 0).all() and (xy[:, 0] <= view.width()).all(), (w, h, xy)
        assert (xy[:, 1] >= 0).all() and (xy[:, 1] <= view.height()).all(), (w, h, xy)
    d = gl.view.opts["distance"]
    gl.view.opts["distance"] = d / 2  # the user zooms in
    panel.resize(900, 330)
    qtbot.waitUntil(lambda: abs(panel.width() - 900) <= 1, timeout=2000)
    gl.reset_camera()
    assert gl.view.opts["distance"] > d / 2  # Reset view frames the scene again


@pytest.mark.gl
def test_the_first_3d_surface_arrives_one_kind_of_item_per_frame(qtbot, quad_run):
    """On a software renderer the first frame of each kind of item compiles its drawing
    code (5-20 ms each): the view's first frame draws nothing (it is being exposed and
    sized), then the floor, the surface, the path and the markers, each in a later frame."""
    panel, _tl = make_panel(qtbot, quad_run, contour=False)
    if panel.gl_reason is not None:
        pytest.skip(f"no OpenGL context: {panel.gl_reason}")
    panel.show()
    qtbot.waitExposed(panel)
    gl = panel.gl_view  # made now, shown when the first surface is drawn
    shown = []

    def drawn(item) -> bool:  # shown, with something to draw (lines and points: data)
        if not hasattr(item, "pos"):
            return item.visible()
        return item.visible() and item.pos is not None and len(item.pos) > 0

    def frame(_orig=gl.view.frame):
        shown.append({name for name in ("floor", "surface", "path", "marker")
                      if drawn(getattr(gl, name))})
        _orig()

    gl.view.frame = frame  # paintGL calls self.frame()
    compute(qtbot, panel, quad_run)
    firsts = [next(i for i, s in enumerate(shown) if name in s)
              for name in ("floor", "surface", "path", "marker")]
    assert shown[0] == set()
    assert 0 < firsts[0] < firsts[1] < firsts[2] < firsts[3]
    assert shown[-1] == {"floor", "surface", "path", "marker"}
    panel.shutdown()


@pytest.mark.gl
def test_clicking_a_point_in_the_3d_view_moves_the_timeline(qtbot, quad_run):
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtGui import QImage
    from PySide6.QtTest import QTest

    _panel, tl, gl = gl_panel(qtbot, quad_run)
    last = len(quad_run) - 1
    tl.set_index(last)
    qtbot.waitUntil(lambda: np.allclose(gl.marker_position(), gl._path_pos[last]), timeout=2000)
    # the projection is the renderer's: the red marker is drawn where project() says
    from pyqtgraph import functions as fn

    img = gl.grab_image().convertToFormat(QImage.Format.Format_RGBA8888)
    arr = fn.ndarray_from_qimage(img)  # a view of img's pixels: img is held
    red = (arr[..., 0] > 200) & (arr[..., 1] < 90) & (arr[..., 2] < 90)
    ys, xs = np.nonzero(red)
    px, py = gl.project(gl.marker_position()[None, :])[0]
    near = np.hypot(xs - px, ys - py) < 15  # the marker is 15 px wide
    assert near.sum() > 40
    assert abs(xs[near].mean() - px) < 2 and abs(ys[near].mean() - py) < 2
    # a click on snapshot 2's point selects it; a drag from there turns the camera only
    x, y = gl.project(gl._path_pos[2][None, :])[0]
    assert gl.point_at(x, y) == 2 and gl.point_at(x + 40, y + 40) in (None, *range(len(quad_run)))
    QTest.mouseClick(gl.view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     QPoint(round(x), round(y)))
    assert tl.index == 2
    QTest.mousePress(gl.view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     QPoint(round(x), round(y)))
    QTest.mouseMove(gl.view, QPoint(round(x) + 30, round(y)))
    QTest.mouseRelease(gl.view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                       QPoint(round(x) + 30, round(y)))
    assert tl.index == 2


FALLBACK_SCRIPT = r"""
import sys, tempfile
from PySide6.QtWidgets import QApplication
app = QApplication([])
import lossview.gui  # noqa: F401  (PySide6 workarounds)
from lossview.core.io import open_run
from lossview.core.train.config import TrainConfig
from lossview.core.train.trainer import run_to_end, train
from lossview.gui.surface.panel import SurfacePanel
from lossview.gui.timeline import Timeline
out = tempfile.mkdtemp() + "/q"
run_to_end(train(TrainConfig("quadratic", steps=40, every=20), out))
run = open_run(out)
tl = Timeline(); tl.set_steps(run.steps)
p = SurfacePanel(tl)
p.toolbar.set_grid_steps(21)
done = []
p.surface_ready.connect(lambda: (done.append(1), app.quit()))
p.set_run(run, None)
if not done:
    app.exec()
print("REASON", p.gl_reason)
print("TOGGLE", p.toolbar.view_button.isEnabled(), p.toolbar.view_button.isChecked())
print("SHOWN", type(p.stack.currentWidget()).__name__, p.gl_view is None)
"""


def test_contour_view_is_used_where_opengl_is_unavailable(tmp_path):
    """Qt's offscreen platform has no OpenGL: the panel must fall back to 2D by itself."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["QT_QPA_PLATFORM"] = "offscreen"
    out = subprocess.run([sys.executable, "-c", FALLBACK_SCRIPT], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert "offscreen" in lines["REASON"] and "no OpenGL" in lines["REASON"]
    assert lines["TOGGLE"] == "False True"  # 3D button disabled, contour chosen
    assert lines["SHOWN"] == "SurfaceContourView True"


def test_bilinear_heights_match_scipys_grid_interpolator():
    """The 3D view lifts the path with surface_data.bilinear (no scipy.interpolate import
    on the GUI thread); inside and outside the grid it gives scipy's numbers."""
    from scipy.interpolate import RegularGridInterpolator

    from lossview.core.surface.scene import bilinear

    rng = np.random.default_rng(3)
    xs = np.sort(rng.uniform(-2, 3, 13))
    ys = np.linspace(-1.0, 1.5, 9)
    z = rng.normal(size=(13, 9))
    pts = np.column_stack([rng.uniform(-3, 4, 500), rng.uniform(-2, 2.5, 500)])
    pts[:3] = [[xs[0], ys[0]], [xs[-1], ys[-1]], [xs[5], ys[4]]]  # grid nodes, exactly
    ref = RegularGridInterpolator((xs, ys), z, bounds_error=False, fill_value=None)(pts)
    np.testing.assert_allclose(bilinear(xs, ys, z, pts), ref, rtol=1e-12, atol=1e-12)
    assert bilinear(xs, ys, z, pts[:3])[2] == z[5, 4]
    assert np.isnan(bilinear(xs, ys, z, np.array([[np.nan, 0.0]]))).all()


def test_isolines_lie_on_their_level_and_reach_the_grid_edge():
    """iso_segments (contourpy): every point is on the level set (bilinear interpolation
    of the grid there gives the level), and a level set that leaves the grid ends on its
    edge instead of being dropped."""
    from lossview.core.surface.scene import bilinear, iso_segments

    a = np.linspace(-1.0, 1.0, 41)
    b = np.linspace(-1.0, 1.5, 31)
    z = a[:, None] ** 2 + 0.5 * (b[None, :] - 0.8) ** 2  # the 0.3 ellipse crosses b = 1.5
    seg = iso_segments(z, 0.3, a, b)
    pts = seg[np.isfinite(seg).all(axis=1)]
    assert len(pts) > 50
    np.testing.assert_allclose(bilinear(a, b, z, pts), 0.3, atol=1e-12)
    assert np.isclose(pts[:, 1].max(), 1.5)  # ends on the top edge
    # a closed curve inside the grid comes back to its start
    inner = iso_segments(a[:, None] ** 2 + b[None, :] ** 2, 0.25, a, b)
    ring = inner[np.isfinite(inner).all(axis=1)]
    np.testing.assert_allclose(ring[0], ring[-1], atol=1e-12)
    assert len(iso_segments(z, 99.0, a, b)) == 0  # no such level: nothing


def test_toolbar_choices_recompute_once_each_and_reject_unknown_values(qtbot, quad_run):
    panel, _ = make_panel(qtbot, quad_run)
    compute(qtbot, panel, quad_run)
    starts = []
    panel.busy_changed.connect(lambda busy: busy and starts.append(panel.current_plane()))
    panel.set_plane("random")
    panel.toolbar.set_grid_steps(31)
    assert starts == ["random", "random"]  # one computation per change, none per redraw
    assert panel._worker is not None and panel.toolbar.grid_steps() == 31
    with pytest.raises(ValueError, match="unknown plane"):
        panel.set_plane("hessian")
    with pytest.raises(ValueError, match="not one of"):
        panel.toolbar.set_grid_steps(17)
    assert panel.current_plane() == "random" and panel.toolbar.grid_steps() == 31
    panel.shutdown()


def _frame(gl):
    """Render one frame of the GL window as paintGL does; its pixels (RGB, top row first)."""
    from OpenGL import GL

    v = gl.view
    v.makeCurrent()
    x, y, w, h = v.getViewport()
    GL.glViewport(x, y, w, h)  # as Qt does before paintGL
    v.frame()
    GL.glReadBuffer(GL.GL_BACK)
    data = GL.glReadPixels(0, 0, w, h, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE)
    v.doneCurrent()
    return np.frombuffer(data, np.uint8).reshape(h, w, 4)[::-1, :, :3]


def _full_frame(gl):
    """The whole scene drawn afresh offscreen (no cache), RGB."""
    from pyqtgraph import functions as fn
    from PySide6.QtGui import QImage

    img = gl.grab_frame().convertToFormat(QImage.Format.Format_RGBA8888)
    # a copy: the array is a view of the image's pixels, which go with the image
    return fn.ndarray_from_qimage(img)[..., :3].copy()


def _differ(a, b):
    """Fraction of pixels that differ clearly between two frames."""
    return float((np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 40).mean())


def _red_centre(arr):
    ys, xs = np.nonzero((arr[..., 0] > 200) & (arr[..., 1] < 90) & (arr[..., 2] < 90))
    return np.array([xs.mean(), ys.mean()]), len(xs)


@pytest.mark.gl
def test_the_copy_is_prepared_in_a_quiet_moment_only_once_nothing_computes(qtbot, quad_run):
    """The 3D view prepares its copy (two steps, ~10-20 ms each on llvmpipe) in quiet
    moments, but not while the app computes: a compile on a CPU shared with a worker
    blocked the GUI thread a third longer. The panel's view asks the panel."""
    from lossview.gui.surface.gl_view import SurfaceGLView
    from lossview.gui.surface.gl_window import WARM_DELAY_MS

    panel, _tl, gl = gl_panel(qtbot, quad_run)
    assert gl.view.busy is not None and not gl.view.busy()
    view = SurfaceGLView()
    qtbot.addWidget(view)
    view.resize(320, 240)
    busy = [True]
    view.view.busy = lambda: busy[0]
    view.view.set_moving_items((view.marker,))
    view.set_scene(panel.scene)
    view.show()
    qtbot.waitExposed(view)
    qtbot.wait(5 * WARM_DELAY_MS)  # quiet moments came and went, all of them busy
    assert view.view._warmed == 0 and not view.view.copying
    busy[0] = False
    qtbot.waitUntil(lambda: view.view.copying, timeout=5000)
    # while the panel computes a surface its view is busy
    panel.toolbar.log_box.setChecked(True)
    assert gl.view.busy()
    qtbot.waitUntil(lambda: not panel.is_busy(), timeout=30000)
    assert not gl.view.busy()
    panel.shutdown()


@pytest.mark.gl
def test_scrub_frames_reuse_the_still_scene_and_match_a_full_frame(qtbot, quad_run):
    """The 3D view draws the surface and path and keeps a copy when the camera or the
    scene changed; while only the marker moves it draws the copy and the marker on top
    (software renderers; forced on here)."""
    from lossview.gui.surface.gl_window import software_rendering

    panel, tl, gl = gl_panel(qtbot, quad_run)
    v = gl.view
    if software_rendering():  # the panel prepared the copy before it said surface_ready
        assert v.copying
    v.set_moving_items((gl.drop, gl.marker_halo, gl.marker))
    tl.set_index(0)
    # (elsewhere the copy is prepared in quiet moments; until then frames are drawn whole)
    qtbot.waitUntil(lambda: v.copying, timeout=5000)
    qtbot.wait(50)  # the marker's throttle idle: set_current applies at once
    # no event is processed from here on: each frame is the one _frame renders
    first = _frame(gl)  # the still part changed (set_moving_items): drawn and copied
    drawn = v.still_frames
    assert drawn >= 1
    last = len(quad_run) - 1
    gl.set_current(last)
    assert np.allclose(gl.marker_position(), gl._path_pos[last])
    moved = _frame(gl)
    assert v.still_frames == drawn  # the marker moved, the surface was not drawn again
    # the marker is where the projection puts it, and the rest is the full frame's
    centre, n = _red_centre(moved)
    assert n > 40
    assert np.abs(centre - gl.project(gl._path_pos[last][None, :])[0]).max() < 2
    full = _full_frame(gl)
    assert full.shape == moved.shape
    assert _differ(full, moved) < 0.002  # antialiasing of a few edges at most
    assert _differ(first, moved) > 0  # the marker did move
    # turning the camera draws the frame whole (and copies it); the next one copies
    v.orbit(25, 0)
    turned = _frame(gl)
    assert v.still_frames == drawn + 1
    assert _differ(turned, moved) > 0.05 and _differ(_full_frame(gl), turned) < 0.002
    again = _frame(gl)
    assert v.still_frames == drawn + 1 and _differ(again, turned) < 0.002
    # a new scene (log z) is drawn too, not the copy of the old one
    with qtbot.waitSignal(panel.surface_ready, timeout=30000):
        panel.toolbar.log_box.setChecked(True)
    log_frame = _frame(gl)
    assert _differ(_full_frame(gl), log_frame) < 0.002
    assert _differ(turned, log_frame) > 0.05
    panel.shutdown()


@pytest.mark.gl
def test_a_ridge_hides_the_slope_behind_it_in_the_window_as_in_the_export(qtbot):
    """The window's frames, whole and the scrub's copy, are the export's: a ridge in front
    of the slope behind it hides it (the window and the copy have depth buffers; without,
    triangles drawn later covered nearer ones: a QOpenGLWindow gets none unless asked),
    and the copy is drawn at the window's size after an export."""
    from lossview.core.surface.scene import SurfaceScene
    from lossview.gui.surface.gl_view import SurfaceGLView
    from lossview.gui.surface.gl_window import gl_unavailable_reason

    if gl_unavailable_reason() is not None:
        pytest.skip(f"no OpenGL context: {gl_unavailable_reason()}")
    view = SurfaceGLView()
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.view.busy = lambda: True  # the copy is prepared only when this test says so
    g = np.linspace(-1, 1, 41)
    a, b = np.meshgrid(g, g, indexing="ij")
    # a bowl crossed by two ridges: whichever order the triangles come in, one ridge
    # stands in front of slopes drawn after it
    ridges = np.exp(-(a - 0.1) ** 2 / 0.01) + np.exp(-(b + 0.1) ** 2 / 0.01)
    loss = 0.5 * (a**2 + b**2) + 1.5 * ridges
    empty = np.empty((0, 2))
    view.set_scene(SurfaceScene(g, g, loss, height_scale(loss, False), empty, np.empty(0),
                                np.empty(0), np.empty(0), empty, True))
    view.show()
    qtbot.waitExposed(view)
    v = view.view
    # its context is made at its first frame; then a frame at its laid-out size (the
    # window system's buffers follow a resize at the next swap)
    qtbot.waitUntil(lambda: v.isValid() and v.size() == view.container.size(), timeout=5000)
    with qtbot.waitSignal(v.frameSwapped, timeout=5000):
        v.update()
    assert v.context().format().depthBufferSize() >= 16
    v.moving = ()  # every frame drawn whole, straight into the window
    whole = _frame(view)
    full = _full_frame(view)
    assert whole.shape == full.shape

    def wrong_pixels(frame) -> int:  # without a depth buffer: 60-70 along a ridge's top
        return int((np.abs(frame.astype(int) - full).max(axis=2) > 20).sum())

    assert wrong_pixels(whole) <= 5
    # the scrub's copy, drawn into a framebuffer object, prepared right after an export
    # (whose renderToArray left its own larger viewport current: the copy held a corner
    # of the scene until the camera moved)
    v.set_moving_items((view.marker,))
    assert not v.copying
    v.warm_step()
    v.warm_step()
    assert v.copying
    copied = _frame(view)
    assert v.still_frames >= 1
    assert wrong_pixels(copied) <= 5


def test_a_surface_that_cannot_be_computed_offers_no_compute_button(qtbot, tmp_path):
    """Two snapshots: a PCA plane needs three. The panel says so in place of the surface
    and offers no Compute (it would fail the same way); another plane computes by itself."""
    out = tmp_path / "two"
    run_to_end(train(TrainConfig("quadratic", steps=10, every=10), out))
    run = open_run(out)
    assert len(run) == 2
    panel, _ = make_panel(qtbot, run)
    panel.show()
    panel.set_run(run, None)
    qtbot.waitUntil(lambda: not panel.is_busy() and "Cannot compute" in panel.message.text(),
                    timeout=60000)
    assert "needs at least 3 snapshots" in panel.message.text()
    assert not panel.toolbar.compute_button.isVisible()
