"""Trajectory panel: the report's PCA drawn point for point, the random-walk baseline from
theory, the current marker following the timeline and clicks writing back."""

import numpy as np
import pytest

from lossview.core.analysis.pca import random_walk_ratios_even
from lossview.core.analysis.verdicts import similarity_words
from lossview.gui.panels.trajectory_panel import TrajectoryPanel, random_walk_baseline
from lossview.gui.timeline import Timeline


def test_random_walk_baseline_is_cores():
    # core's baseline for these snapshots where the report has it, else its closed form
    # (docs/science.md section 2: T = 1000 exact values)
    assert random_walk_baseline({"random_walk": {"baseline_ratio": [0.5, 0.2, 0.1]}}, 50, 2) \
        .tolist() == [0.5, 0.2]
    np.testing.assert_allclose(random_walk_baseline({}, 1000, 5),
                               [0.60793, 0.15198, 0.06755, 0.03800, 0.02432], atol=6e-6)
    np.testing.assert_allclose(random_walk_baseline({}, 100, 2), random_walk_ratios_even(100)[:2])


@pytest.fixture
def panel(qtbot, loaded):
    tl = Timeline()
    p = TrajectoryPanel(tl)
    qtbot.addWidget(p)
    p.resize(600, 600)
    p.show()
    run, report = loaded
    tl.set_steps(run.steps)
    p.set_run(run, report)
    return p, tl, run, report


def test_points_are_the_pca_coordinates(panel):
    p, _tl, run, report = panel
    coords = np.asarray(report["pca"]["coords"])
    x, y = p.scatter.getData()
    np.testing.assert_allclose(x, coords[:, 0])
    np.testing.assert_allclose(y, coords[:, 1])
    evr = report["pca"]["explained_variance_ratio"]
    assert p.plot.getAxis("bottom").labelText.startswith(f"PC1  ({100 * evr[0]:.1f}%")
    # post-plateau segment highlighted: starts at the first snapshot at/after the plateau
    wx, _ = p.wander.getData()
    first = int(np.searchsorted(run.steps, report["plateau"]["step"]))
    np.testing.assert_allclose(wx, coords[first:, 0])


def test_baseline_bars_and_random_walk_dots(panel, qtbot):
    p, _, _run, report = panel
    evr = np.asarray(report["pca"]["explained_variance_ratio"][:5])
    # drawn in the turn after the trajectory (see TrajectoryPanel.set_run)
    qtbot.waitUntil(lambda: len(p.bars.opts["height"]) == len(evr), timeout=2000)
    np.testing.assert_allclose(p.bars.opts["height"], evr)
    _, rw = p.rw.getData()
    np.testing.assert_allclose(rw, report["pca"]["random_walk"]["baseline_ratio"][:len(evr)])
    sim = report["pca"]["random_walk_similarity"]
    assert f"{sim:.2f}" in p.similarity.text()
    # the words are core's, the same the diagnosis uses
    assert similarity_words(sim) in p.similarity.text()


def test_marker_follows_timeline_and_click_writes_back(panel):
    p, tl, _run, report = panel
    coords = np.asarray(report["pca"]["coords"])
    tl.set_index(9)
    x, y = p.current.getData()
    assert (x[0], y[0]) == pytest.approx(tuple(coords[9, :2]))
    pts = p.scatter.points()
    p.scatter.sigClicked.emit(p.scatter, [pts[21]], None)
    assert tl.index == 21
    x, _ = p.current.getData()
    assert x[0] == pytest.approx(coords[21, 0])


def test_moving_the_marker_never_changes_the_view_range(panel, qtbot):
    # a range change re-renders every cached curve: it made 1 % of scrub steps 60-90 ms
    p, tl, run, _ = panel
    vb = p.plot.getViewBox()
    qtbot.wait(20)
    before = vb.viewRange()
    for i in range(len(run)):
        tl.set_index(i)
        vb.updateAutoRange()
        assert vb.viewRange() == before, i


def test_choosing_components(panel):
    p, _, _, report = panel
    assert [p.pc_x.itemText(i) for i in range(p.pc_x.count())][:2] == ["PC1", "PC2"]
    p.pc_x.setCurrentIndex(1)
    p.pc_y.setCurrentIndex(0)
    coords = np.asarray(report["pca"]["coords"])
    x, y = p.scatter.getData()
    np.testing.assert_allclose(x, coords[:, 1])
    np.testing.assert_allclose(y, coords[:, 0])


def test_higher_components_are_choosable(panel):
    p, _, _, report = panel
    coords_k = np.asarray(report["pca"]["coords_k"])
    assert coords_k.shape[1] >= 3
    assert p.pc_x.count() == coords_k.shape[1]
    p.pc_x.setCurrentIndex(2)
    x, _ = p.scatter.getData()
    np.testing.assert_allclose(x, coords_k[:, 2])
    evr = report["pca"]["explained_variance_ratio"]
    assert p.plot.getAxis("bottom").labelText.startswith("PC3")
    assert f"{100 * evr[2]:.1f}%" in p.plot.getAxis("bottom").labelText


def test_without_pca_says_why(qtbot):
    from lossview.core.io.memory import run_from_arrays

    run = run_from_arrays(np.zeros((2, 3)))
    p = TrajectoryPanel(Timeline())
    qtbot.addWidget(p)
    p.set_run(run, {"pca": None})
    assert p.note.toPlainText().startswith("trajectory not available: fewer than 3 snapshots")
    assert len(p.scatter.getData()[0]) == 0
    # one sentence, not axes from 0 to 1, a colour bar and an empty spectrum
    p.resize(400, 500)
    p.show()
    qtbot.waitExposed(p)
    assert not p.plot.getAxis("left").isVisible() and not p.plot.getAxis("bottom").isVisible()
    assert not p.colorbar.isVisible()
    assert not p.base_canvas.isVisible() and not p.pc_x.isVisible()
    vb = p.plot.getViewBox()
    assert vb.boundingRect().contains(p.note.mapRectToItem(vb, p.note.boundingRect()))


def test_a_newer_run_drops_the_baseline_still_to_be_drawn(panel, qtbot):
    """Two runs shown in one turn: the deferred baseline is the second run's."""
    p, _, run, report = panel
    other = dict(report, pca=dict(report["pca"], explained_variance_ratio=[0.5, 0.3, 0.2],
                                  random_walk_similarity=0.12))
    p.set_run(run, report)
    p.set_run(run, other)
    qtbot.wait(50)
    np.testing.assert_allclose(p.bars.opts["height"], [0.5, 0.3, 0.2])
    assert "0.12" in p.similarity.text()


def test_a_long_run_s_subsampled_pca_says_how_many_snapshots_it_shows(qtbot, tmp_path, monkeypatch):
    # a run over the Gram budget (here lowered to what 1,000 x 1M weights meet): PCA of an
    # even subsample, said beside the title; a full run says nothing there
    import lossview.core.analysis.stream as stream_module
    from lossview.core.analysis.report import analyze
    from lossview.core.io import RunWriter, open_run

    rng = np.random.default_rng(0)
    w = rng.normal(size=40).astype(np.float32)
    with RunWriter(tmp_path / "r") as wr:
        for i in range(150):
            wr.snapshot(i, {"w": w})
            w = w + rng.normal(size=40).astype(np.float32) * 1e-2
    run = open_run(tmp_path / "r")
    full = analyze(run)
    monkeypatch.setattr(stream_module, "GRAM_BUDGET", 1)
    sub = analyze(run)
    assert sub["pca"]["of_snapshots"] == 150 and len(sub["pca"]["indices"]) == 128
    tl = Timeline()
    p = TrajectoryPanel(tl)
    qtbot.addWidget(p)
    p.show()
    tl.set_steps(run.steps)
    p.set_run(run, sub)
    assert p.sampled.isVisible() and "128 of 150 snapshots" in p.sampled.text()
    assert len(p.scatter.getData()[0]) == 128
    p.set_run(run, full)
    assert "of_snapshots" not in full["pca"] and p.sampled.text() == ""
    assert len(p.scatter.getData()[0]) == 150
