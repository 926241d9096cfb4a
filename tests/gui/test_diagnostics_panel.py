"""Diagnostics panel: distances, MSD with its fitted power law, the pairwise matrix and the
diagnosis, against numbers computed here from the same weights."""

import numpy as np
import pytest

from lossview.core.analysis import verdicts as V
from lossview.core.analysis.report import refresh_answers
from lossview.core.tasks.loader import pairwise_distances
from lossview.gui.panels.diagnostics_panel import DiagnosticsPanel
from lossview.gui.panels.diagnostics_plots import msd_fit_line
from lossview.gui.timeline import Timeline


def test_fit_line_recovers_a_power_law():
    lags = np.array([1, 2, 4, 8, 16, 32], float)
    msd = 3.0 * lags**0.7
    x, y = msd_fit_line(lags, msd, 0.7, (2, 16))
    np.testing.assert_allclose(x, [2, 16])
    np.testing.assert_allclose(y, 3.0 * x**0.7)


def test_pairwise_matrix_is_the_euclidean_distance(loaded):
    run, _ = loaded
    gen = pairwise_distances(run, max_points=10)
    def drain():
        while True:
            next(gen)

    with pytest.raises(StopIteration) as stop:
        drain()
    res = stop.value.value
    idx = res["indices"]
    assert idx[0] == 0 and idx[-1] == len(run) - 1 and len(idx) == 10
    v = np.stack([run.vector(i) for i in idx])
    direct = np.linalg.norm(v[:, None] - v[None], axis=-1)
    np.testing.assert_allclose(res["matrix"], direct, atol=1e-9)


#: lr * lambda / 2 = 0.25, 0.9, 0.95: at the edge of stability at the last two snapshots
SHARP = {"steps": [0, 100, 200], "sharpness": [5.0, 18.0, 19.0], "lr": [0.1, 0.1, 0.1]}


@pytest.fixture
def panel(qtbot, loaded):
    tl = Timeline()
    p = DiagnosticsPanel(tl)
    qtbot.addWidget(p)
    p.resize(1200, 320)
    p.show()
    run, report = loaded
    tl.set_steps(run.steps)
    p.set_run(run, report)
    return p, tl, run, report


def test_panel_draws_the_report(panel):
    p, tl, run, report = panel
    np.testing.assert_allclose(p.c_init.yData, report["distance"]["from_init"][1:])
    np.testing.assert_array_equal(p.c_init.xData, run.steps[1:])
    d = report["diffusion"]
    ok = (np.asarray(d["lags"]) > 0) & (np.asarray(d["msd"]) > 0)
    np.testing.assert_allclose(p.c_msd.yData, np.asarray(d["msd"])[ok])
    assert p.image.image.shape == (len(run), len(run))
    assert np.allclose(p.image.image, p.image.image.T)
    # no model, so no sharpness: the plot says what is missing
    assert p.notes["sharp"][1].toPlainText().startswith("not available")
    html = p.diagnosis.toPlainText()
    assert report["diagnosis"] and report["diagnosis"][0][:30] in html
    tl.set_index(5)
    assert p.cursors[0].value() == run.steps[5] and p.pair_hline.value() == run.steps[5]


def test_msd_tag_and_fit_come_from_the_weights_answer(panel):
    p, _, run, report = panel
    rep = dict(report)
    lags = np.array([10, 20, 40, 80], float)
    rep["diffusion"] = {"lags": lags.tolist(), "msd": (2 * lags).tolist(), "exponent": 1.0,
                        "fit_lag_range": [10, 80], "segment_start_step": 100}
    weights = {"verdict": "diffusing", "msd_long_lag_slope": 1.0, "segment": [100, 290]}
    rep["answers"] = dict(report["answers"], weights=weights)
    p.set_run(run, rep)
    assert p.msd_text.toPlainText() == f"{V.tag('diffusing')}\nlong-lag slope 1.00"
    np.testing.assert_allclose(p.c_fit.yData, 2 * p.c_fit.xData)
    assert "(from step 100)" in p.p_msd.titleLabel.text
    # the panel never judges the number itself: the words are the verdict's, whatever
    # the exponent (the old panel called 0.8 "confined" and core "diffusing")
    for verdict, slope in (("confined", 0.3), ("drifting", 1.9), ("undetermined", 0.6)):
        rep["answers"] = dict(rep["answers"], weights=dict(weights, verdict=verdict,
                                                           msd_long_lag_slope=slope))
        p.set_run(run, rep)
        assert p.msd_text.toPlainText() == f"{V.tag(verdict)}\nlong-lag slope {slope:.2f}"


def test_sharpness_against_two_over_lr(panel):
    p, _, run, report = panel
    rep = refresh_answers(dict(report, sharpness=SHARP))
    p.set_run(run, rep)
    np.testing.assert_allclose(p.c_sharp.yData, [5, 18, 19])
    np.testing.assert_allclose(p.c_limit.yData, 2 / 0.1)  # over the lr logged as 0.1
    np.testing.assert_array_equal(p.c_limit.xData, run.metric("lr").steps)
    assert p.notes["sharp"][1].toPlainText() == ""
    # lr * lambda / 2 = 0.9, 0.95 at the last two snapshots: core says "edge", so does the title
    assert rep["answers"]["stability"]["verdict"] == "edge"
    assert V.tag("edge") in p.p_sharp.titleLabel.text


def test_sharpness_of_a_run_still_training_says_when_it_comes(panel):
    """A live run's sharpness is measured on the saved run: no "needs the model" there."""
    from lossview.core.io.memory import run_from_arrays

    p, _, run, report = panel
    from .live_runs import as_live

    live = as_live(run_from_arrays(np.zeros((5, 3)), steps=[0, 10, 20, 30, 40],
                                   spec={"problem": "mlp"}))
    p.set_run(live, {})
    note = p.notes["sharp"][1]
    assert note.toPlainText() == "measured once training has finished"
    # one sentence in place of the plot: its axes are hidden, and it lies inside the view
    assert not p.p_sharp.getAxis("left").isVisible()
    vb = p.p_sharp.getViewBox()
    assert vb.boundingRect().contains(note.mapRectToItem(vb, note.boundingRect()))
    p.set_run(run, dict(report, sharpness=None))  # a saved run without a model: why not
    text = p.notes["sharp"][1].toPlainText()
    assert text.startswith("not available:") and "needs the model" in text


def test_a_longer_title_does_not_resize_the_plots(panel, qtbot):
    """The sharpness arriving retitles its plot ("... at the edge of stability"): the plots keep
    their geometry (a wider title used to widen its column and re-render every axis)."""
    p, _, run, report = panel
    qtbot.waitExposed(p)
    qtbot.wait(50)
    plots = (p.p_dist, p.p_msd, p.p_sharp, p.p_pair)
    before = [pl.geometry() for pl in plots]
    rep = refresh_answers(dict(report, sharpness=SHARP))
    p.show_answers(run, rep)
    qtbot.wait(50)
    assert V.tag("edge") in p.p_sharp.titleLabel.text
    after = [pl.geometry() for pl in plots]
    assert after == before


def _diverging_torch_loop(root, lr=80.0, steps=60, every=10):
    """A user's plain loop that saves state_dicts and blows up (lr far above 2/lambda)."""
    import torch
    from torch import nn

    (root / "ckpt").mkdir(parents=True)
    torch.manual_seed(0)
    x = torch.randn(512, 10)
    y = (x[:, :3].sum(1) > 0).long()
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 2))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for i in range(steps + 1):
        idx = torch.randint(0, 512, (32,))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        if i % every == 0:
            torch.save(model.state_dict(), root / "ckpt" / f"step_{i}.pt")
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_a_diverged_runs_one_finite_distance_is_said_not_hidden(qtbot, tmp_path):
    """A run with finite weights at steps 0 and 10 only: the distance plot cannot draw a
    curve on its log axis, and says the one distance there is instead of claiming there
    are fewer than 2 finite snapshots."""
    import torch

    from lossview.core.analysis.report import analyze
    from lossview.core.io import open_run

    _diverging_torch_loop(tmp_path / "run")
    run = open_run(tmp_path / "run")
    states = [torch.load(tmp_path / "run" / "ckpt" / f"step_{s}.pt") for s in run.steps]
    finite = [all(torch.isfinite(t).all() for t in s.values()) for s in states]
    assert finite[:2] == [True, True] and not any(finite[2:])  # the story this test needs
    truth = float(torch.sqrt(sum(((states[1][k].double() - states[0][k].double()) ** 2).sum()
                                 for k in states[0])))
    tl = Timeline()
    p = DiagnosticsPanel(tl)
    qtbot.addWidget(p)
    p.resize(1200, 320)
    p.show()
    tl.set_steps(run.steps)
    p.set_run(run, analyze(run))
    qtbot.waitUntil(lambda: "from init" in p.notes["dist"][1].toPlainText(), timeout=5000)
    text = p.notes["dist"][1].toPlainText()
    assert f"{truth:.3g} from init at step 10" in text
    assert "one snapshot with finite weights after the first" in text
    assert len(p.c_init.xData if p.c_init.xData is not None else []) == 0
