"""lossview.Recorder: snapshots at the first step, every `every` steps and the last logged step."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import lossview
from lossview.core.errors import LossviewError
from lossview.core.io import open_run


def _loop(rec, model, n_steps, seen=None):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(0)
    for step in range(n_steps):
        x = torch.randn(16, 4, generator=g)
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if seen is not None:
            seen[step] = {k: v.detach().clone().numpy() for k, v in model.state_dict().items()}
        rec.log(step, loss=loss.item(), lr=0.1, note="text is skipped by readers")


def test_snapshots_and_metrics_of_every_log_call(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    seen: dict[int, dict] = {}
    with lossview.Recorder(tmp_path / "r", model, every=10, spec={"optimizer": "sgd"}) as rec:
        _loop(rec, model, 25, seen)
    run = open_run(tmp_path / "r")
    assert list(run.steps) == [0, 10, 20, 24]
    assert run.spec["status"] == "finished" and run.spec["optimizer"] == "sgd"
    assert run.spec["recorder"]["every"] == 10
    loss = run.metric("loss")
    assert list(loss.steps) == list(range(25))
    assert "note" not in run.metrics
    # the saved weights are the model's at the time of the log call
    for i, step in enumerate(run.steps):
        tensors = run.tensors(i)
        for k, v in seen[int(step)].items():
            np.testing.assert_array_equal(tensors[k], v)
    # BatchNorm statistics are stored as buffers, not weights
    assert "1.running_mean" in run.buffer_names and "1.running_mean" not in run.param_names
    assert run.n_params == sum(p.numel() for p in model.parameters())


def test_steps_not_starting_at_zero_and_last_step_on_the_grid(tmp_path):
    model = nn.Linear(3, 1)
    with lossview.Recorder(tmp_path / "r", model, every=5) as rec:
        for step in range(1, 21):
            rec.log(step, loss=float(step))
    assert list(open_run(tmp_path / "r").steps) == [1, 5, 10, 15, 20]  # no duplicate last


def test_an_exception_marks_the_run_failed_and_keeps_the_last_step(tmp_path):
    model = nn.Linear(3, 1)

    def train():
        with lossview.Recorder(tmp_path / "r", model, every=10) as rec:
            for step in range(13):
                rec.log(step, loss=1.0 / (step + 1))
            raise RuntimeError("user code failed")

    with pytest.raises(RuntimeError):
        train()
    run = open_run(tmp_path / "r")
    assert run.spec["status"] == "failed"
    assert list(run.steps) == [0, 10, 12]


def test_log_metrics_and_closed_recorder(tmp_path):
    model = nn.Linear(3, 1)
    rec = lossview.Recorder(tmp_path / "r", model, every=100)
    rec.log(0, loss=1.0)
    rec.log_metrics(0, val_loss=2.0)
    rec.update_spec(lr=0.01)
    rec.close()
    rec.close()  # idempotent
    with pytest.raises(LossviewError, match="closed"):
        rec.log(1, loss=0.5)
    run = open_run(tmp_path / "r")
    assert run.metric("val_loss").values.tolist() == [2.0] and run.spec["lr"] == 0.01
    lines = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert lines == [{"step": 0, "loss": 1.0}, {"step": 0, "val_loss": 2.0}]


def test_bad_arguments(tmp_path):
    with pytest.raises(LossviewError, match="every must be a positive integer"):
        lossview.Recorder(tmp_path / "a", nn.Linear(2, 2), every=0)
    with pytest.raises(LossviewError, match=r"torch\.nn\.Module"):
        lossview.Recorder(tmp_path / "b", {"w": 1})
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "precious.txt").write_text("keep")
    with pytest.raises(LossviewError, match="already exists"):
        lossview.Recorder(tmp_path / "c", nn.Linear(2, 2))
    assert (tmp_path / "c" / "precious.txt").read_text() == "keep"
