"""The panels show core's words only (issue 18): the verdict tags, the stability limit and
the diagnosis a person reads are those of ``lossview.core.analysis`` for the same run.

Runs are made here with a known truth (a random walk, a constant-velocity drift, a
stationary Ornstein-Uhlenbeck process, geometrically shrinking steps), analysed by
core's ``analyze``, and the texts on screen are compared with ``verdicts.tag`` of the
report's verdicts.
"""

from __future__ import annotations

import html
import re

import numpy as np
import pytest

from lossview.core.analysis import verdicts as V
from lossview.core.analysis.report import analyze, refresh_answers
from lossview.core.io.memory import run_from_arrays
from lossview.gui.panels.diagnostics_panel import DiagnosticsPanel
from lossview.gui.plotkit import style
from lossview.gui.timeline import Timeline

#: a 4-6-3 MLP: two Linear layers, so exploration modulo permutation is measured
SHAPES = {"fc1.weight": (6, 4), "fc1.bias": (6,), "fc2.weight": (3, 6), "fc2.bias": (3,)}
DIM = sum(int(np.prod(s)) for s in SHAPES.values())


def _walk(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "diffusing":  # i.i.d. steps: MSD ~ lag
        return np.cumsum(rng.normal(size=(n, DIM)), axis=0)
    if kind == "drifting":  # constant velocity: MSD ~ lag^2
        return np.arange(n)[:, None] * rng.normal(size=DIM) + 0.05 * rng.normal(size=(n, DIM))
    if kind == "confined":  # stationary OU (AR(1), a = 0.5): the MSD saturates
        x = np.empty((n, DIM))
        x[0] = rng.normal(size=DIM)
        for i in range(1, n):
            x[i] = 0.5 * x[i - 1] + np.sqrt(0.75) * rng.normal(size=DIM)
        return x
    if kind == "converging":  # steps shrinking by 0.8 a snapshot: a limit exists
        return np.cumsum(rng.normal(size=(n, DIM)) * (0.8 ** np.arange(n))[:, None], axis=0)
    raise ValueError(kind)


def make_run(kind: str, n: int = 40, every: int = 10, spec: dict | None = None,
             metrics: dict | None = None, seed: int = 0):
    x = _walk(kind, n, np.random.default_rng(seed)) + 0.3
    snaps = []
    for row in x:
        t, o = {}, 0
        for k, s in SHAPES.items():
            m = int(np.prod(s))
            t[k] = row[o:o + m].reshape(s)
            o += m
        snaps.append(t)
    return run_from_arrays(snaps, steps=[i * every for i in range(n)], spec=spec or {},
                           metrics=metrics, name=kind)


@pytest.fixture
def panel(qtbot):
    tl = Timeline()
    p = DiagnosticsPanel(tl)
    qtbot.addWidget(p)
    p.resize(1200, 320)
    p.show()

    def show(run, report):
        tl.set_steps(run.steps)
        p.set_run(run, report)
        return p

    return show


def plain(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


@pytest.mark.parametrize("kind", ["diffusing", "drifting", "confined", "converging"])
def test_the_msd_tag_is_cores_weights_verdict(panel, kind):
    run = make_run(kind)
    report = analyze(run)
    weights = report["answers"]["weights"]
    assert weights["verdict"] == kind  # the truth, made above
    p = panel(run, report)
    tag, number = p.msd_text.toPlainText().split("\n")
    assert tag == V.tag(kind)
    # with the number that decided it, and in the colour of the verdict's role
    if kind == "converging":
        assert number == f"step length ×{weights['step_length_trend']:.2g}"
    else:
        assert number == f"long-lag slope {weights['msd_long_lag_slope']:.2f}"
    assert style.role_color(V.role(kind)) in p.msd_text.toHtml()
    # the dashed power law has core's long-lag slope
    fx, fy = p.c_fit.xData, p.c_fit.yData  # (getData: log10 of them, on log axes)
    slope = np.log(fy[1] / fy[0]) / np.log(fx[1] / fx[0])
    assert slope == pytest.approx(weights["msd_long_lag_slope"])
    # and the diagnosis text says the same verdict, bold in the same colour
    html = p.diagnosis.toHtml()
    assert weights["sentence"] in p.diagnosis.toPlainText()
    assert re.search(rf"<span[^>]*font-weight:\s*(700|bold)[^>]*>{kind}</span>", html), html


def test_exploration_raw_and_modulo_permutation_over_time(panel):
    run = make_run("diffusing")
    report = analyze(run)
    ex = report["answers"]["exploration"]
    assert ex["steps"] and ex["relabel_scale"] > 0
    p = panel(run, report)
    np.testing.assert_array_equal(p.c_raw_last.xData, ex["steps"])
    raw = np.asarray(ex["raw_to_last"], float)
    np.testing.assert_allclose(p.c_raw_last.yData, np.where(raw > 0, raw, np.nan))
    np.testing.assert_allclose(p.c_aligned_last.yData[:-1], ex["aligned_to_last"][:-1])
    np.testing.assert_allclose(p.c_relabel.yData, ex["relabel_scale"])
    legend = [label.text for _, label in p.expl_legend.items]
    assert legend == ["raw", "modulo permutation", "relabelled copies"]
    assert p.notes["expl"][1].toPlainText() == ""
    assert p.p_expl.getAxis("bottom").labelText == "step"
    # a run whose exploration was not measured says why, in core's words: the reason's
    # first clause on the plot (the detail is in the diagnosis, which has the room)
    single = run_from_arrays(np.cumsum(np.random.default_rng(1).normal(size=(30, 5)), 0))
    rep = analyze(single)
    p.set_run(single, rep)
    assert p.c_raw_last.xData is None or not len(p.c_raw_last.xData)
    note = " ".join(p.notes["expl"][1].toPlainText().split())  # wrapped to the plot
    reason = rep["answers"]["exploration"]["reason"]
    assert note == " ".join(f"not measured: {reason.split(' (', 1)[0]}".split())
    assert note == "not measured: weight matching needs a chain of Linear/Conv layers"
    assert reason in rep["answers"]["exploration"]["sentence"]


def _sharpness_table(steps, lam, lr, optimizer="sgd", momentum=0.0):
    return {"steps": list(steps), "sharpness": list(lam), "lr": [lr] * len(steps),
            "optimizer": optimizer, "momentum": momentum, "reason": None}


def test_sgd_limit_line_tag_and_legend_are_cores(panel):
    lr, beta = 0.1, 0.9
    run = make_run("diffusing", spec={"optimizer": {"name": "sgd", "lr": lr, "momentum": beta}})
    # lr * lambda / (2 + 2 beta) = 0.2 .. 1.5: above the limit at the last two snapshots
    table = _sharpness_table([0, 130, 260, 390], [7.6, 20.0, 52.0, 57.0], lr, momentum=beta)
    report = refresh_answers(dict(analyze(run), sharpness=table))
    stab = report["answers"]["stability"]
    assert stab["verdict"] == "unstable"
    p = panel(run, report)
    assert plain(p.p_sharp.titleLabel.text) == f"sharpness · {V.tag('unstable')}"
    assert style.role_color("bad") in p.p_sharp.titleLabel.text
    np.testing.assert_allclose(p.c_limit.yData, (2 + 2 * beta) / lr)
    np.testing.assert_allclose(stab["lr_limit"], (2 + 2 * beta) / 57.0)
    legend = [html.unescape(label.text) for _, label in p.sharp_legend.items]
    assert legend == [f"limit: lr < {V.limit_formula(beta)}"]
    assert p.notes["sharp"][1].toPlainText() == p.limit_text.toPlainText() == ""
    assert stab["sentence"] in p.p_sharp.toolTip()


def test_adam_shows_no_limit_line_and_says_why(panel):
    run = make_run("diffusing", spec={"optimizer": {"name": "adam", "lr": 1e-3}})
    table = _sharpness_table([0, 200, 390], [50.0, 900.0, 2500.0], 1e-3, optimizer="adam")
    report = refresh_answers(dict(analyze(run), sharpness=table))
    stab = report["answers"]["stability"]
    assert stab["lr_limit"] is None and stab["verdict"] == "unknown"
    p = panel(run, report)
    assert p.c_sharp.yData.tolist() == [50.0, 900.0, 2500.0]
    assert p.c_limit.xData is None or len(p.c_limit.xData) == 0
    assert p.sharp_legend.items == []
    assert p.limit_text.toPlainText() == "2/lr does not apply to adam"
    assert plain(p.p_sharp.titleLabel.text) == f"sharpness · {V.tag('unknown')}"


def test_an_epoch_run_says_epoch_on_every_axis(qtbot, panel):
    from lossview.gui.panels.loss_panel import LossPanel
    from lossview.gui.panels.trajectory_panel import TrajectoryPanel
    from lossview.gui.window.timeline_bar import TimelineBar

    steps = np.arange(40)
    loss = {"loss": (steps, 1.0 / (1 + steps)), "lr": (steps, np.full(40, 0.1))}
    run = make_run("diffusing", every=1, spec={"step_unit": "epoch"}, metrics=loss)
    report = analyze(run)
    assert report["step_unit"] == "epoch"
    p = panel(run, report)
    labels = [pl.getAxis("bottom").labelText for pl in p.plots]
    assert labels == ["epoch", "epoch", "lag (epochs)", "epoch", "epoch"]
    assert "from epoch" in p.p_msd.titleLabel.text
    assert p.sharp_legend.items == []  # nothing measured: no limit in the legend
    tl = Timeline()
    lp, tp, bar = LossPanel(tl), TrajectoryPanel(tl), TimelineBar(tl)
    for w in (lp, tp, bar):
        qtbot.addWidget(w)
    tl.set_steps(run.steps)
    bar.set_labels(unit=report["step_unit"])
    lp.set_run(run, report)
    tp.set_run(run, report)
    tl.set_index(5)
    assert lp.p_lr.getAxis("bottom").labelText == "epoch"
    assert tp.colorbar.getAxis("left").labelText == "epoch"
    assert bar.readout.text().startswith("epoch <b>5</b>") and "step" not in bar.readout.text()


def test_the_measured_sharpness_refreshes_what_the_window_says(qtbot, window, run_path, tmp_path):
    """The app measures sharpness after the panels show; core then recomputes the answers
    and the diagnosis, so the window says what ``lossview analyze --json`` says."""
    import json
    import subprocess
    import sys

    from .conftest import open_and_wait
    from .test_main_window import MODEL_FILE

    f = tmp_path / "model.py"
    f.write_text(MODEL_FILE)
    window.set_model_file(str(f))
    open_and_wait(qtbot, window, run_path)
    qtbot.waitUntil(lambda: not window.is_computing(), timeout=60000)
    out = subprocess.run([sys.executable, "-m", "lossview", "analyze", str(run_path), "--json",
                          "--model", str(f)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    cli = json.loads(out.stdout)
    shown = window.report  # the typed report, replaced when the sharpness came
    stab = shown.answers.stability
    assert stab.verdict == cli["answers"]["stability"]["verdict"] != "unknown"
    assert stab.sentence == cli["answers"]["stability"]["sentence"]
    assert shown.diagnosis == tuple(cli["diagnosis"])
    text = window.diagnostics_panel.diagnosis.toPlainText()
    for sentence in cli["diagnosis"]:
        assert sentence in text
    p = window.diagnostics_panel
    assert plain(p.p_sharp.titleLabel.text) == f"sharpness · {V.tag(stab['verdict'])}"
    assert len(p.c_limit.yData) and html.unescape(p.sharp_legend.items[0][1].text) \
        == f"limit: lr < {V.limit_formula(0.0)}"
