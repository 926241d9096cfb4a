"""Loss tables that users' own loops write beside their checkpoints (csv.writer, pandas,
Keras' CSVLogger, JSON lines) are read as metrics, so the answers have a loss to work on."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from lossview.core.io import open_run


def _loop(folder, n=60, every=10, name="model_{}.pt", key=None):
    """A plain SGD loop on a linear regression; returns the logged (step, loss, lr) rows."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 3), torch.randn(64, 1)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    rows = []
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(n + 1):
        loss = torch.nn.functional.mse_loss(model(x), y)
        rows.append((t, loss.item(), 0.05))
        if t % every == 0:
            obj = (model.state_dict() if key is None
                   else {key: t // every, "model_state_dict": model.state_dict()})
            torch.save(obj, folder / name.format(t // every if key == "epoch" else t))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return rows


def test_a_metrics_csv_beside_the_checkpoints_is_the_loss(tmp_path):
    rows = _loop(tmp_path)
    with open(tmp_path / "metrics.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "loss", "lr"])
        w.writerows(rows)
    run = open_run(tmp_path)
    loss = run.metric("loss")
    assert loss.steps.tolist() == [r[0] for r in rows]
    np.testing.assert_allclose(loss.values, [r[1] for r in rows], rtol=1e-6)
    assert run.metric("lr").values[0] == pytest.approx(0.05)
    assert not any("metrics.csv" in w for w in run.warnings)  # read, not "ignored"
    assert run.spec["metrics_files"] == [str(tmp_path / "metrics.csv")]


def test_jsonl_one_level_up_from_a_checkpoint_sub_folder(tmp_path):
    rows = _loop(tmp_path / "ckpt")
    with open(tmp_path / "log.jsonl", "w") as fh:
        for t, l, _ in rows:
            fh.write(json.dumps({"iter": t, "train_loss": l}) + "\n")
        fh.write('{"iter": 61, "train_lo')  # a torn last line of a run being written
    for opened in (tmp_path, tmp_path / "ckpt"):
        run = open_run(opened)
        s = run.metric("train_loss")
        assert s is not None and len(s) == len(rows), opened
        assert s.values[-1] == pytest.approx(rows[-1][1], rel=1e-6)


def test_keras_csvlogger_training_log_at_epochs(tmp_path):
    rows = _loop(tmp_path, name="epoch_{}.pt", key="epoch")
    with open(tmp_path / "training.log", "w", newline="") as fh:  # CSVLogger's format
        w = csv.writer(fh)
        w.writerow(["epoch", "loss", "val_loss"])
        for e in range(7):
            w.writerow([e, rows[10 * e][1], 2 * rows[10 * e][1]])
    run = open_run(tmp_path)
    assert run.step_unit == "epoch" and run.steps.tolist() == list(range(7))
    assert run.metric("val_loss").values.tolist() == pytest.approx([2 * rows[10 * e][1] for e in range(7)])


def test_a_csv_without_a_position_column_is_left_alone(tmp_path):
    _loop(tmp_path)
    (tmp_path / "predictions.csv").write_text("id,pred\n1,0.5\n2,0.7\n")
    run = open_run(tmp_path)
    assert run.metric("pred") is None and "pred" not in run.metrics
    assert any("predictions.csv" in w for w in run.warnings)
