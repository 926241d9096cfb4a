"""A run that diverges at a known step, written to disk like lossview's trainer writes it."""

from __future__ import annotations

import json

import numpy as np

from lossview.core.analysis.distances import distances
from lossview.core.analysis.divergence import divergence
from lossview.core.io import RunWriter, open_run
from lossview.core.io.memory import run_from_arrays


def _diverging_run(path, blow_step=60, mark=True):
    """Two tensors; 'fc2.weight' grows x10 per snapshot from step 40; loss NaN at blow_step,
    weights NaN in the first snapshot after it."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(4, 3)).astype(np.float32)
    w2 = rng.normal(size=(2, 4)).astype(np.float32)
    with RunWriter(path, spec={"optimizer": {"name": "sgd", "lr": 3.0}}) as wr:
        for step in range(0, 100, 10):
            loss = float(np.sum(w2**2))
            wr.log(step, loss=loss if step < blow_step else float("nan"))
            if step > blow_step:
                w1 = w1 * np.nan
                w2 = w2 * np.nan
            wr.snapshot(step, {"fc1.weight": w1, "fc2.weight": w2})
            w1 = w1 * 1.01
            w2 = w2 * (10.0 if step >= 40 else 1.0)
        if mark:
            wr.update_spec(status="diverged", divergence_step=blow_step)
    return open_run(path)


def test_known_divergence_step_tensor_and_last_finite_snapshot(tmp_path):
    run = _diverging_run(tmp_path / "r")
    d = distances(run)
    assert d.nonfinite == [7, 8, 9]
    out = divergence(run, d.nonfinite)
    assert out["diverged"] and out["step"] == 60
    assert out["loss_step"] == 60 and out["weights_step"] == 70 and out["trainer_step"] == 60
    assert out["last_finite_snapshot"] == {"index": 6, "step": 60}
    assert out["first_nonfinite_tensors"] == ["fc1.weight", "fc2.weight"]
    fg = out["fastest_growing_tensor"]
    assert fg["name"] == "fc2.weight" and fg["between_steps"] == [50, 60]
    assert abs(fg["norm_ratio"] - 10.0) < 1e-4
    json.dumps(out, allow_nan=False)


def test_trainer_mark_alone_and_healthy_run(tmp_path):
    x = np.cumsum(np.ones((5, 3)), axis=0)
    run = run_from_arrays(x, steps=[0, 5, 10, 15, 20], spec={"status": "diverged", "divergence_step": 12})
    out = divergence(run, [])
    assert out["step"] == 12 and out["last_finite_snapshot"] == {"index": 2, "step": 10}
    healthy = divergence(run_from_arrays(x), [])
    assert healthy["step"] is None and healthy["diverged"] is False
