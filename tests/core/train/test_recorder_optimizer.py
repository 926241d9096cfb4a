"""lossview.Recorder(..., optimizer=opt): the optimizer's settings in run.json, its lr per log call."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import lossview
from lossview.core.errors import LossviewError
from lossview.core.io import open_run


def _loop(rec, model, opt, sched, n, lr_kw=False):
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
    y = x.sum(1, keepdim=True)
    for step in range(n):
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec.log(step, loss=loss.item(), **({"lr": 0.5} if lr_kw else {}))
        sched.step()


def test_sgd_settings_and_the_lr_of_each_log_call(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                          weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.1)
    with lossview.Recorder(tmp_path / "r", model, every=5, optimizer=opt) as rec:
        _loop(rec, model, opt, sched, 10)
    saved = json.loads((tmp_path / "r" / "run.json").read_text())["optimizer"]
    assert saved["name"] == "sgd" and saved["class"] == "torch.optim.sgd.SGD"
    assert (saved["lr"], saved["momentum"], saved["nesterov"], saved["weight_decay"]) == (
        0.1, 0.9, True, 1e-4)
    assert saved["betas"] is None and saved["dampening"] == 0 and "params" not in saved
    run = open_run(tmp_path / "r")
    assert run.spec["optimizer"] == saved and run.step_unit == "step"
    # rec.log(step) ran before sched.step(): the lr of update `step` is 0.1 * 0.1 ** (step // 4)
    lr = run.metric("lr")
    assert lr.steps.tolist() == list(range(10))
    np.testing.assert_allclose(lr.values, [0.1 * 0.1 ** (s // 4) for s in range(10)], rtol=1e-12)


def test_adam_betas_and_an_lr_the_user_logs_wins(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.8, 0.95), weight_decay=0.02)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    with lossview.Recorder(tmp_path / "r", model, every=2, optimizer=opt,
                           spec={"optimizer": {"note": "from my config"}}) as rec:
        _loop(rec, model, opt, sched, 3, lr_kw=True)
    run = open_run(tmp_path / "r")
    o = run.spec["optimizer"]
    assert o["name"] == "adamw" and o["betas"] == [0.8, 0.95] and o["eps"] == 1e-8
    assert o["weight_decay"] == 0.02 and o["momentum"] is None and o["amsgrad"] is False
    assert o["note"] == "from my config" and "Recorder" in o["source"]
    assert run.metric("lr").values.tolist() == [0.5, 0.5, 0.5]


def test_not_an_optimizer(tmp_path):
    with pytest.raises(LossviewError, match=r"optimizer must be a torch\.optim\.Optimizer .*, not str"):
        lossview.Recorder(tmp_path / "r", nn.Linear(2, 1), optimizer="sgd")
