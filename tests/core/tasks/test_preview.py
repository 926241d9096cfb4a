"""Opening a run yields a preview before its analysis: the run's own records and its
loss plateau, every analysis of the weights marked as being computed, and no answer.
Checked on a user's plain PyTorch loop saved the usual way (a state_dict per snapshot
and a metrics.csv), against the full analysis of the same folder."""

import csv

import numpy as np
import pytest
import torch
from generators import finish
from torch import nn

from lossview.core.analysis.report_model import RunReport
from lossview.core.tasks.loader import Opened, Preview, load_and_analyze


def user_run(folder, steps=300, every=20, lr=0.1):
    """A plain PyTorch loop: an MLP on a fixed regression task, a checkpoint every
    ``every`` steps under ckpt/, the loss of every step in metrics.csv."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    y = torch.sin(x @ torch.randn(8, 1, generator=g))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    (folder / "ckpt").mkdir(parents=True)
    rows = []
    for step in range(steps + 1):
        if step % every == 0:
            torch.save(model.state_dict(), folder / "ckpt" / f"step_{step}.pt")
        if step == steps:
            break
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        rows.append((step, loss.item()))
    with open(folder / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss"])
        w.writerows(rows)
    return folder, rows


def test_the_preview_comes_before_the_analysis_with_the_runs_own_records(tmp_path):
    folder, rows = user_run(tmp_path / "mine")
    items, opened = finish(load_and_analyze(folder))
    previews = [i for i in items if isinstance(i, Preview)]
    assert len(previews) == 1 and isinstance(opened, Opened)
    first = items.index(previews[0])
    assert all(isinstance(i, str) for i in items[:first])  # opening only, before it
    assert any(isinstance(i, str) and "analysis" in i for i in items[first + 1:])
    pv = previews[0]
    rep = RunReport.of(pv.report)
    final = RunReport.of(opened.report)
    # the run's own records, as the full report has them
    np.testing.assert_array_equal(rep.steps, np.arange(0, 301, 20))
    assert rep.n_params == 8 * 16 + 16 + 16 + 1 == final.n_params
    logged = pv.report["metrics"]["loss"]
    assert logged == opened.report["metrics"]["loss"]
    np.testing.assert_allclose(logged["values"], [v for _, v in rows])
    # the plateau is read from the loss alone: the same as the full analysis finds
    assert rep.plateau.step == final.plateau.step
    # no analysis of the weights, and no answer, until the analysis ends
    assert rep.pca.coords is None and rep.distance.from_init is None
    assert rep.pairwise.matrix is None and rep.diffusion.exponent is None
    for part in (rep.pca, rep.diffusion, rep.pairwise, rep.distance, rep.permutation):
        assert part["reason"] == "being computed"
    assert rep.answers.weights.verdict is None and rep.answers.stability.verdict is None
    assert rep.diagnosis == ("Analysing 16 snapshots of 161 parameters (0.1 MiB as float32, "
                             "read once): the distances, the PCA of the trajectory and the "
                             "answers follow.",)
    assert str(pv) == "analysing 16 snapshots (161 parameters)"
    # the full report has what the preview said was being computed
    assert final.pca.coords is not None and len(final.distance.from_init) == 16


def test_a_failed_analysis_turns_the_preview_into_its_reason(tmp_path):
    folder, _ = user_run(tmp_path / "mine", steps=60)
    items, _ = finish(load_and_analyze(folder))
    pv = next(i for i in items if isinstance(i, Preview))
    failed = RunReport.of(pv.failed("out of memory reading step 40"))
    assert failed.pca.reason == "the analysis failed: out of memory reading step 40"
    assert failed.diagnosis == ("No analysis of the weights: out of memory reading step 40",)
    assert failed.metrics == RunReport.of(pv.report).metrics  # the loss curves stay


@pytest.mark.parametrize(("n_params", "n", "size"), [(161, 16, "0.1 MiB"),
                                              (11_000_000, 24, "1007.1 MiB"),
                                              (124_000_000, 10, "4.6 GiB")])
def test_the_preview_says_how_much_the_pass_reads(n_params, n, size):
    """Said from the headers: no snapshot is read for the preview (the reader here holds
    nothing at all)."""
    from lossview.core.analysis.preview import preview_report
    from lossview.core.run import Run, Snapshot

    snaps = [Snapshot(step=10 * i, source=None) for i in range(n)]
    run = Run("big", "torch", snaps, reader=None, param_shapes={"w": (n_params,)})
    (said,) = preview_report(run)["diagnosis"]
    assert said.startswith(f"Analysing {n} snapshots of {n_params:,} parameters ({size} as "
                           "float32, read once)")
