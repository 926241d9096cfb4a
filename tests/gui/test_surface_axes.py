"""The 3D view reads on its own: axes labelled α, β and loss with round values, and a
legend of what is drawn over the surface with the loss each colour stands for."""

from __future__ import annotations

import numpy as np
import pytest

from lossview.core.surface.scene import SurfaceScene, height_scale
from lossview.gui.surface.gl_axes import LABEL_OFFSET, axis_labels, nice_ticks


def scene(with_path: bool = True, with_basin: bool = True, log: bool = False) -> SurfaceScene:
    a = np.linspace(-3.5, 1.5, 31)
    b = np.linspace(-0.3, 0.25, 31)
    aa, bb = np.meshgrid(a, b, indexing="ij")
    loss = 0.07 + 0.05 * (aa + 1) ** 2 + 8 * bb**2
    coords = np.column_stack([np.linspace(-3, 1, 6), np.linspace(0.2, 0.0, 6)]) \
        if with_path else np.empty((0, 2))
    n = len(coords)
    basin = np.array([[-1.5, -0.1], [-0.5, -0.1], [-0.5, 0.1], [-1.5, 0.1], [-1.5, -0.1]]) \
        if with_basin else np.empty((0, 2))
    return SurfaceScene(a, b, loss, height_scale(loss, log), coords, np.ones(n), np.ones(n),
                        np.zeros(n), basin, True)


def test_ticks_are_round_values_inside_the_range_away_from_the_corners():
    assert list(nice_ticks(-3.47, 1.51)) == [-2.0, -1.0, 0.0]
    assert list(nice_ticks(-0.312, 0.252)) == [-0.2, 0.0]
    assert list(nice_ticks(0.0, 1.0)) == [0.25, 0.5, 0.75]
    for lo, hi in ((-3.47, 1.51), (0.0733, 0.805), (-1.2, -1.1), (1e-4, 3e-3)):
        t = nice_ticks(lo, hi)
        span = hi - lo
        assert 2 <= len(t) <= 3
        assert ((t >= lo + 0.12 * span - 1e-12) & (t <= hi - 0.12 * span + 1e-12)).all()


def test_labels_name_the_axes_and_say_the_values_where_they_are():
    s = scene()
    labels = axis_labels(s, -0.03, 0.9)
    assert [lab.text for lab in labels if lab.title] == ["α", "β", "loss"]
    ticks = [lab for lab in labels if not lab.title]
    # α along the front edge (β = -1 side), at x = -1 + 2 (v - a0) / (a1 - a0)
    alphas = [lab for lab in ticks if lab.at[1] == -1 - LABEL_OFFSET]
    assert [lab.text for lab in alphas] == ["-2", "-1", "0"]
    for lab in alphas:
        assert lab.at[0] == pytest.approx(-1 + 2 * (float(lab.text) + 3.5) / 5.0)
    betas = [lab for lab in ticks if lab.at[0] == 1 + LABEL_OFFSET]
    assert [lab.text for lab in betas] == ["-0.2", "0"]
    # the loss axis: values at their heights on the linear height scale
    loss = [lab for lab in ticks if -1 - LABEL_OFFSET < lab.at[0] < -1]
    assert len(loss) >= 2
    lo, hi = float(s.loss.min()), float(s.loss.max())
    for lab in loss:
        assert lab.at[2] == pytest.approx(0.9 * (float(lab.text) - lo) / (hi - lo))


def test_log_height_scale_labels_are_losses_not_their_logarithms():
    s = scene(log=True)
    loss = [lab for lab in axis_labels(s, -0.03, 0.9)
            if not lab.title and -1 - LABEL_OFFSET < lab.at[0] < -1]
    vals = [float(lab.text) for lab in loss]
    assert all(float(s.loss.min()) * 0.999 <= v <= float(s.loss.max()) * 1.001 for v in vals)


def _view(qtbot, sc: SurfaceScene):
    from lossview.gui.surface.gl_view import SurfaceGLView
    from lossview.gui.surface.gl_window import gl_unavailable_reason

    if gl_unavailable_reason() is not None:
        pytest.skip(f"no OpenGL context: {gl_unavailable_reason()}")
    view = SurfaceGLView()
    qtbot.addWidget(view)
    view.resize(450, 300)
    view.set_scene(sc)
    view.show()
    qtbot.waitExposed(view)
    qtbot.waitUntil(lambda: view.view.isValid(), timeout=5000)
    return view


@pytest.mark.gl
def test_the_legend_lists_what_is_drawn_and_the_colour_scale(qtbot):
    view = _view(qtbot, scene())
    legend = view.legend
    assert legend.entries == ["trajectory", "start", "current point", "flat basin"]
    lo, hi = legend.scale
    s = view.scene
    assert float(lo) == pytest.approx(float(s.loss.min()), rel=1e-2)
    assert float(hi) == pytest.approx(float(s.loss.max()), rel=1e-2)
    view.set_scene(scene(with_path=False, with_basin=False))
    assert legend.entries == []  # nothing drawn over the surface: nothing listed
    assert legend.scale is not None
    # the legend is part of the widget's picture (what an export shows), under the frame
    img = view.grab_image()
    assert (img.width(), img.height()) == (view.width(), view.height())
    assert legend.geometry().top() >= view.container.geometry().bottom()


@pytest.mark.gl
def test_axis_labels_are_drawn_inside_the_view_where_the_camera_puts_them(qtbot):
    from pyqtgraph import functions as fn
    from PySide6.QtGui import QImage

    view = _view(qtbot, scene())
    w, h = view.view.width(), view.view.height()
    frame = fn.ndarray_from_qimage(
        view.grab_frame().convertToFormat(QImage.Format.Format_RGBA8888))[..., :3].astype(int)
    seen = fn.ndarray_from_qimage(
        view.grab_image().convertToFormat(QImage.Format.Format_RGBA8888))[..., :3].astype(int)
    y0 = view.container.y()
    labels = view._labels
    points = view.project(view._label_pos)
    drawn = 0
    for lab, (x, y) in zip(labels, points):
        assert 0 <= x < w and 0 <= y < h, lab.text  # the default camera sees every label
        xi, yi = int(x), int(y)
        box = (slice(max(yi - 5, 0), yi + 6), slice(max(xi - 8, 0), xi + 9))
        crop = seen[y0:y0 + h][box]
        # text in the foreground colour (dark on the light theme) where the frame had none
        if (np.abs(crop - frame[box]).max(axis=2) > 60).sum() >= 3:
            drawn += 1
    assert drawn >= len(labels) - 1  # (a label may fall on a dark part of the surface)
