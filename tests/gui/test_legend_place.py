"""The loss legend goes where it hides the least of the curves."""

import numpy as np
import pytest

from lossview.gui.plotkit.legend_place import CORNERS, anchor_args, best_corner, covered, samples

X = np.arange(1000.0)
BOX = (0.3, 0.3)


def test_a_falling_loss_leaves_the_top_right_empty():
    falling = (X, 2.0 * np.exp(-X / 100) + 0.1)
    assert best_corner([falling], BOX) == "top-right"
    pts = samples([falling], log_y=False)
    assert covered(pts, "top-right", BOX) == 0
    assert covered(pts, "bottom-right", BOX) > 100  # the tail lies along the bottom


def test_a_diverging_loss_keeps_the_legend_off_its_climb():
    # flat, then blowing up over the last 10 % of the steps: top-right and bottom-right
    # both hold data, the left corners only the flat part's low values in bottom-left
    diverging = (X, np.where(X < 900, 1.0, 1.0 + (X - 900) ** 2 / 100))
    corner = best_corner([diverging], BOX)
    assert corner == "top-left"
    pts = samples([diverging], log_y=False)
    assert covered(pts, corner, BOX) == 0


def test_a_sparse_curve_counts_along_its_whole_length():
    # a two-point validation curve crossing the top right is not invisible to the count
    dense_low = (X, np.full_like(X, 0.0))
    sparse_diagonal = (np.array([0.0, 999.0]), np.array([0.0, 1.0]))
    pts = samples([dense_low, sparse_diagonal], log_y=False)
    assert covered(pts, "top-right", BOX) > 0
    assert best_corner([dense_low, sparse_diagonal], BOX) == "top-left"


def test_log_y_is_counted_in_decades():
    # an exponential decay: in linear y it hugs the bottom after the first ~150 steps; in
    # decades it is a straight diagonal from the top left to the bottom right, which
    # leaves the bottom-left corner empty
    decay = (X, np.exp(-X / 100))
    lin, log = samples([decay], log_y=False), samples([decay], log_y=True)
    assert covered(lin, "bottom-left", BOX) > 50  # steps ~120-300 of the grid
    assert covered(log, "bottom-left", BOX) == 0
    np.testing.assert_allclose(log[:400, 1], 1 - np.linspace(0, 1, 400), atol=1e-9)
    # non-positive values are dropped on a log axis, NaN on both
    bad = (X, np.where(X % 2 == 0, -1.0, np.nan))
    assert samples([bad], log_y=True).shape == (0, 2)
    assert samples([bad], log_y=False).shape[0] == 402  # the -1s: a linear axis shows them


def test_a_placed_legend_moves_only_for_a_clearly_emptier_corner():
    # every curve is sampled alike: one short curve in the top right, two in each other
    # corner, and a middle line that sets the bounds
    def at(x0, x1, y):
        return (np.linspace(x0, x1, 50), np.full(50, float(y)))

    curves = [at(0, 999, 0.5), at(950, 999, 1)]
    for x0, x1, y in ((0, 50, 0), (950, 999, 0), (0, 50, 1)):
        curves += [at(x0, x1, y), at(x0, x1, y)]
    pts = samples(curves, log_y=False)
    assert covered(pts, "top-right", BOX) * 2 == covered(pts, "bottom-left", BOX)
    assert best_corner(curves, BOX) == "top-right"
    assert best_corner(curves, BOX, current="bottom-left") == "bottom-left"
    assert best_corner(curves, BOX, current="bottom-left", stickiness=0.6) == "top-right"


def test_x_bounds_frame_a_growing_run():
    # a run 30 % of the way through a fixed frame: the right of the frame is empty
    growing = (X[:300], np.linspace(1.0, 0.0, 300))
    assert best_corner([growing], BOX) == "top-right"  # in the data's own bounds
    pts = samples([growing], False, x_bounds=(0.0, 999.0))
    assert pts[:, 0].max() == pytest.approx(299 / 999)
    assert covered(pts, "bottom-right", BOX) == 0


@pytest.mark.parametrize("corner", CORNERS)
def test_anchor_args_put_the_legend_inside_its_corner(corner):
    a = anchor_args(corner, margin=8)
    right, top = corner.endswith("right"), corner.startswith("top")
    assert a["itemPos"] == a["parentPos"] == (1 if right else 0, 0 if top else 1)
    assert a["offset"] == (-8 if right else 8, 8 if top else -8)


def test_the_loss_panel_places_its_legend_away_from_the_curves(qtbot):
    from lossview.core.io.memory import run_from_arrays
    from lossview.gui.panels.loss_panel import LossPanel
    from lossview.gui.timeline import Timeline

    steps = list(range(0, 1000, 10))
    p = LossPanel(Timeline())
    qtbot.addWidget(p)
    p.resize(600, 500)
    p.show()
    qtbot.waitExposed(p)
    vb = p.p_loss.getViewBox()
    for values, want in (([2 * np.exp(-s / 100) + 0.1 for s in steps], "top-right"),
                         ([1.0 if s < 900 else 1 + (s - 900) ** 2 / 100 for s in steps],
                          "top-left")):
        p.log_y.setChecked(False)
        run = run_from_arrays(np.cumsum(np.ones((5, 3)), axis=0),
                              metrics={"loss": (steps, values)})
        p.set_run(run, None)
        assert p.legend_corner == want
        # ... and it is drawn there: its box inside that quarter of the plot
        qtbot.waitUntil(lambda: True, timeout=100)
        qtbot.wait(50)
        box = p.legend.mapRectToScene(p.legend.boundingRect())
        view = vb.mapRectToScene(vb.boundingRect())
        assert (box.center().x() > view.center().x()) == want.endswith("right")
        assert (box.center().y() < view.center().y()) == want.startswith("top")
