"""Long runs of large models take the Gram matrix of an even subsample (``gram_rows``):
the weights question's answer must not change with it. Processes with a known truth
(random walk, drift on top of it, a walk whose steps shrink) of 600 snapshots, analysed
with every snapshot in the Gram matrix and with the budget that 1,000 x 1M weights meet
(128 evenly spaced ones)."""

from __future__ import annotations

import numpy as np
import pytest

import lossview.core.analysis.stream as stream_module
from lossview.core.analysis.report import analyze
from lossview.core.io.memory import run_from_arrays

T, D = 600, 400


def _walk(kind: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(T, D))
    if kind == "drift":  # |v|^2 T^2 = 3 T D: three times the diffusion's displacement
        steps[:, 0] += np.sqrt(3.0 * D / T)
    if kind == "converging":  # step lengths fall 30x over the run
        steps *= np.geomspace(1.0, 1 / 30, T)[:, None]
    return run_from_arrays(np.cumsum(steps, axis=0), steps=list(range(0, 10 * T, 10)))


@pytest.mark.parametrize(("kind", "verdict"), [("walk", "diffusing"), ("drift", "drifting"),
                                               ("converging", "converging")])
def test_the_subsampled_gram_gives_the_full_gram_s_answer(kind, verdict, monkeypatch):
    full = analyze(_walk(kind))
    monkeypatch.setattr(stream_module, "GRAM_BUDGET", 1)
    sub = analyze(_walk(kind))
    assert "of_snapshots" not in full["pca"] and sub["pca"]["of_snapshots"] == T
    assert len(sub["pca"]["indices"]) == stream_module.FULL_GRAM_SNAPSHOTS
    a, b = full["answers"]["weights"], sub["answers"]["weights"]
    assert a["verdict"] == b["verdict"] == verdict, (a["sentence"], b["sentence"])
    # the distances are every snapshot's either way
    assert sub["distance"]["from_init"] == full["distance"]["from_init"]
    # a random walk's PCA: PC1 ~ 6/pi^2 of the variance (science.md section 2), both ways
    if kind == "walk":
        for r in (full, sub):
            assert r["pca"]["explained_variance_ratio"][0] == pytest.approx(6 / np.pi**2, abs=0.12)
    if kind == "drift":  # net^2 over the second half ~ 1 + 3/2 times the diffusive part
        for w in (a, b):
            assert w["displacement_excess"] == pytest.approx(2.5, rel=0.25)
