"""A bare state_dict folder (no loss logged anywhere) with a model file: the model file's
full-data loss at each snapshot becomes the loss series, and the answers use it (issue 18,
item 5). The truth is the loss computed here, at the saved weights."""

from __future__ import annotations

import numpy as np
import torch
import user_runs as ur


def test_bare_state_dicts_get_the_full_data_loss_as_their_loss_series(tmp_path, capsys):
    x, y = ur.linreg_data()
    model_file = ur.write_model_file(tmp_path / "linreg_model.py", ur.LINREG_SRC, x, y)
    folder = tmp_path / "run"
    folder.mkdir()
    with ur.one_thread():
        model = ur.model_from_source(ur.LINREG_SRC, seed=6)
        opt = torch.optim.SGD(model.parameters(), lr=0.02)
        truth = {}
        for t in range(301):
            loss = torch.nn.functional.mse_loss(model(x), y)
            if t % 10 == 0:  # how users save: the weights only
                torch.save(model.state_dict(), folder / f"model_{t}.pt")
                truth[t] = loss.item()
            opt.zero_grad()
            loss.backward()
            opt.step()
    losses = np.array(list(truth.values()))
    assert losses[-1] < 0.05 * losses[0]  # truth: a run that learned
    rep = ur.analyze(capsys, folder, model_file)
    series = rep["metrics"]["loss_full"]
    assert series["steps"] == list(truth)
    np.testing.assert_allclose(series["values"], losses, rtol=1e-5)
    loss = rep["answers"]["loss"]
    # truth: the loss still falls at the end (an ill-conditioned quadratic: condition 1,270)
    assert losses[-1] < 0.95 * losses[-5]
    assert loss["metric"] == "loss_full" and loss["verdict"] == "improving"
    assert loss["sentence"].startswith("The loss is still improving")
    # without the model file the same folder has no loss, and says so
    rep2 = ur.analyze(capsys, folder)
    assert "loss_full" not in rep2["metrics"]
    assert rep2["answers"]["loss"]["verdict"] == "unknown"
    assert "no loss" in rep2["answers"]["loss"]["sentence"]
