"""Optimizer settings read from what users' loops saved: real torch optimizers, saved the way
the PyTorch tutorial, nanoGPT, timm, Lightning and the HF Trainer save them, checked against
the settings the test gave the optimizer (and closed-form schedules), never against the files."""

from __future__ import annotations

import argparse
import os
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from lossview.core.io import open_run
from lossview.core.io.optimizer import from_state_dict

KEYS = {"name", "lr", "momentum", "nesterov", "betas", "eps", "weight_decay", "source"}


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, generator=g)
    return x, x @ torch.tensor([[1.0], [-1.0], [2.0]])


def _train(model, opt, n=2):
    x, y = _data()
    loss = torch.tensor(0.0)
    for _ in range(n):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    return loss.item()


def _tutorial_run(folder, make_opt, epochs=3, sched=None):
    """The PyTorch tutorial's loop: train an epoch, step the scheduler, save the general
    checkpoint (epoch, model_state_dict, optimizer_state_dict, loss)."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = make_opt(model.parameters())
    scheduler = sched(opt) if sched else None
    folder.mkdir()
    for epoch in range(epochs):
        loss = _train(model, opt)
        if scheduler is not None:
            scheduler.step()
        torch.save({"epoch": epoch, "model_state_dict": model.state_dict(),
                    "optimizer_state_dict": opt.state_dict(), "loss": loss},
                   folder / f"epoch_{epoch}.pt")
    return folder


CASES = {
    "sgd": (lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
            {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "betas": None,
             "eps": None, "weight_decay": 1e-4}),
    "adam": (lambda p: torch.optim.Adam(p, lr=2e-3, betas=(0.8, 0.95), eps=1e-6),
             {"name": "adam", "lr": 2e-3, "momentum": None, "nesterov": None, "betas": [0.8, 0.95],
              "eps": 1e-6, "weight_decay": 0.0}),
    "adamw": (lambda p: torch.optim.AdamW(p, lr=3e-3, weight_decay=0.05),
              {"name": "adamw", "lr": 3e-3, "momentum": None, "nesterov": None,
               "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.05}),
    "rmsprop": (lambda p: torch.optim.RMSprop(p, lr=1e-3, alpha=0.9, eps=1e-6, momentum=0.5),
                {"name": "rmsprop", "lr": 1e-3, "momentum": 0.5, "nesterov": None, "betas": None,
                 "eps": 1e-6, "weight_decay": 0.0}),
    "adagrad": (lambda p: torch.optim.Adagrad(p, lr=0.1, weight_decay=1e-3),
                {"name": "adagrad", "lr": 0.1, "momentum": None, "nesterov": None, "betas": None,
                 "eps": 1e-10, "weight_decay": 1e-3}),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_tutorial_checkpoint_settings(tmp_path, kind):
    make, want = CASES[kind]
    run = open_run(_tutorial_run(tmp_path / kind, make))
    opt = run.spec["optimizer"]
    assert set(opt) == KEYS
    for k, v in want.items():
        assert opt[k] == (pytest.approx(v) if isinstance(v, float) else v), k
    assert "optimizer_state_dict" in opt["source"] and "epoch_2.pt" in opt["source"]
    assert "lr" not in run.metrics  # a constant lr is no series


def test_a_schedule_saved_per_file_becomes_the_lr_series(tmp_path):
    sched = lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5)  # noqa: E731
    run = open_run(_tutorial_run(tmp_path / "r", lambda p: torch.optim.SGD(p, lr=0.1),
                                 epochs=4, sched=sched))
    # saved after scheduler.step(): epoch e's file holds lr = 0.1 * 0.5 ** (e + 1)
    truth = [0.1 * 0.5 ** (e + 1) for e in range(4)]
    lr = run.metric("lr")
    assert lr.steps.tolist() == [0, 1, 2, 3] and run.step_unit == "epoch"
    np.testing.assert_allclose(lr.values, truth, rtol=1e-12)
    assert [lr.at(e) for e in range(4)] == pytest.approx(truth)
    opt = run.spec["optimizer"]
    assert opt["lr"] == pytest.approx(truth[-1])  # the last file's
    assert "differs" in opt["source"] and "epoch_3.pt" in opt["source"]
    assert "lr series" in opt["source"]


def test_a_logged_lr_beside_the_weights_is_kept(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    for e, lr in enumerate((0.3, 0.2, 0.1)):
        torch.save({"model_state_dict": model.state_dict(), "epoch": e, "lr": lr},
                   tmp_path / f"epoch_{e}.pt")
    run = open_run(tmp_path)
    np.testing.assert_allclose(run.metric("lr").values, [0.3, 0.2, 0.1])
    opt = run.spec["optimizer"]
    assert opt["name"] is None and opt["lr"] == pytest.approx(0.1)
    assert "'lr' in epoch_2.pt" in opt["source"]


def test_nanogpt_two_param_groups(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95))
    _train(model, opt)
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                "model_args": {"n_layer": 2}, "iter_num": 250, "best_val_loss": 1.5,
                "config": {"learning_rate": 6e-4, "beta2": 0.95}}, tmp_path / "ckpt.pt")
    run = open_run(tmp_path)
    assert run.steps.tolist() == [250] and run.step_unit == "step"
    opt_spec = run.spec["optimizer"]
    assert opt_spec["name"] == "adamw" and opt_spec["lr"] == pytest.approx(6e-4)
    assert opt_spec["betas"] == pytest.approx([0.9, 0.95])
    assert opt_spec["weight_decay"] == pytest.approx(0.1)
    assert "first of 2 param groups" in opt_spec["source"]


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023), as timm and others ship it: not a torch class."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                m = self.state[p].setdefault("exp_avg", torch.zeros_like(p))
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(torch.sign(b1 * m + (1 - b1) * p.grad), alpha=-group["lr"])
                m.mul_(b2).add_(p.grad, alpha=1 - b2)


def test_timm_args_name_an_optimizer_the_keys_cannot(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = Lion(model.parameters(), lr=3e-4, betas=(0.9, 0.98), weight_decay=0.01)
    _train(model, opt)
    args = argparse.Namespace(opt="lion", lr=3e-4, momentum=0.9, weight_decay=0.01,
                              opt_eps=None, opt_betas=None, model="linear")
    torch.save({"epoch": 4, "arch": "linear", "state_dict": model.state_dict(),
                "optimizer": opt.state_dict(), "args": args, "version": 2},
               tmp_path / "checkpoint-4.pth.tar")
    run = open_run(tmp_path)
    spec = run.spec["optimizer"]
    assert spec["name"] == "lion" and "args.opt" in spec["source"]
    assert spec["lr"] == pytest.approx(3e-4) and spec["betas"] == pytest.approx([0.9, 0.98])
    assert spec["weight_decay"] == pytest.approx(0.01)
    # a Lion state_dict alone says "betas" and nothing that names it
    assert from_state_dict(opt.state_dict())["name"] is None
    # timm's "momentum" is SGD; the state_dict's keys win over the args where they tell
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _train(model, sgd)
    args.opt = "momentum"
    torch.save({"epoch": 5, "state_dict": model.state_dict(), "optimizer": sgd.state_dict(),
                "args": args}, tmp_path / "checkpoint-5.pth.tar")
    spec = open_run(tmp_path / "checkpoint-5.pth.tar").spec["optimizer"]
    assert spec["name"] == "sgd" and spec["momentum"] == pytest.approx(0.9)


def _step_all(opt_cls, **kw):
    p = nn.Parameter(torch.randn(3, 3, generator=torch.Generator().manual_seed(0)))
    opt = opt_cls([p], **kw)

    def closure():
        opt.zero_grad()
        loss = (p ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return opt.state_dict()


@pytest.mark.parametrize(("cls", "name"), [
    ("SGD", "sgd"), ("Adam", "adam"), ("AdamW", "adamw"), ("RMSprop", "rmsprop"),
    ("Adagrad", "adagrad"), ("Adamax", "adamax"), ("NAdam", "nadam"), ("RAdam", "radam"),
    ("Adadelta", "adadelta"), ("ASGD", "asgd"), ("Rprop", "rprop"), ("LBFGS", "lbfgs")])
def test_every_torch_optimizer_family_is_told_from_its_state_dict(cls, name):
    assert from_state_dict(_step_all(getattr(torch.optim, cls), lr=0.01))["name"] == name


def test_adam_of_older_pytorch_without_decoupled_key(tmp_path):
    """Before PyTorch 2.6 Adam and AdamW saved the same keys: "adam", and the source says so."""
    sd = _step_all(torch.optim.AdamW, lr=0.01, weight_decay=0.01)
    for g in sd["param_groups"]:
        del g["decoupled_weight_decay"]
    s = from_state_dict(sd)
    assert s["name"] == "adam" and "AdamW" in s["why"]


def test_no_optimizer_saved_and_damaged_param_groups(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    (tmp_path / "bare").mkdir()
    torch.save(model.state_dict(), tmp_path / "bare" / "model_1.pt")
    assert "optimizer" not in open_run(tmp_path / "bare").spec
    (tmp_path / "odd").mkdir()
    torch.save({"model_state_dict": model.state_dict(), "step": 3,
                "optimizer_state_dict": {"state": {}, "param_groups": "junk"}},
               tmp_path / "odd" / "c.pt")
    run = open_run(tmp_path / "odd")
    assert run.steps.tolist() == [3] and "optimizer" not in run.spec


# -- Lightning: a real Trainer run (tests/data/make_optimizer_fixtures.py) ----------------------
LR, BETAS, EPS, WD, GAMMA = 0.01, (0.85, 0.99), 1e-7, 1e-3, 0.5


def test_lightning_optimizer_states_and_lr_monitor(data_dir):
    run = open_run(data_dir / "lightning_adam")
    opt = run.spec["optimizer"]
    assert opt["name"] == "adam" and opt["betas"] == pytest.approx(list(BETAS))
    assert opt["eps"] == pytest.approx(EPS) and opt["weight_decay"] == pytest.approx(WD)
    # StepLR(step_size=2) stepped every batch: after s updates the lr is LR * GAMMA ** (s // 2);
    # the spec's lr is the last checkpoint's (global_step 6)
    assert opt["lr"] == pytest.approx(LR * GAMMA ** 3)
    # LearningRateMonitor's column is the lr series: the lr of update s (0-based)
    lr = run.metric("lr")
    assert lr is run.metrics["lr-Adam"] and lr.steps.tolist() == list(range(6))
    np.testing.assert_allclose(lr.values, [LR * GAMMA ** (s // 2) for s in range(6)])
    assert "lr-Adam of metrics.csv" in opt["source"] and "optimizer_states[0]" in opt["source"]
    assert run.step_unit == "step"


def test_lightning_without_a_logged_lr_uses_each_checkpoints(data_dir, tmp_path):
    root = tmp_path / "l"
    shutil.copytree(data_dir / "lightning_adam", root)
    os.remove(root / "lightning_logs" / "version_0" / "metrics.csv")
    run = open_run(root)
    lr = run.metric("lr")
    assert lr.steps.tolist() == [2, 4, 6]
    np.testing.assert_allclose(lr.values, [LR * GAMMA ** (s // 2) for s in (2, 4, 6)])
    assert "each file's value is in the lr series" in run.spec["optimizer"]["source"]


def test_lightning_scheduler_state_without_optimizer_state(data_dir, tmp_path):
    src = data_dir / "lightning_adam" / "lightning_logs" / "version_0" / "checkpoints"
    for f in src.glob("*.ckpt"):
        ck = torch.load(f, weights_only=True)
        del ck["optimizer_states"]
        torch.save(ck, tmp_path / f.name)
    run = open_run(tmp_path)
    assert run.spec["optimizer"]["name"] is None
    assert run.spec["optimizer"]["lr"] == pytest.approx(LR * GAMMA ** 3)
    assert "lr_schedulers[0]['_last_lr']" in run.spec["optimizer"]["source"]
    np.testing.assert_allclose(run.metric("lr").values, [LR * GAMMA ** (s // 2) for s in (2, 4, 6)])


def test_lightning_fixture_sgd(data_dir):
    opt = open_run(data_dir / "lightning").spec["optimizer"]  # SGD(lr=0.05) in configure_optimizers
    assert (opt["name"], opt["lr"], opt["momentum"], opt["nesterov"]) == ("sgd", 0.05, 0.0, False)


# -- Hugging Face Trainer (tests/data/make_fixtures.py: learning_rate=1e-2, linear decay) ------
def test_hf_trainer_peak_lr_and_adamw_settings(data_dir):
    run = open_run(data_dir / "hf_trainer")
    opt = run.spec["optimizer"]
    assert opt["name"] == "adamw" and opt["lr"] == pytest.approx(1e-2)
    assert opt["betas"] == pytest.approx([0.9, 0.999]) and opt["eps"] == pytest.approx(1e-8)
    assert opt["weight_decay"] == 0.0
    assert "trainer_state.json" in opt["source"] and "checkpoint-6/optimizer.pt" in opt["source"]
    lr = run.metric("lr")  # the logged schedule: linear from 1e-2 to 0 over 6 steps
    assert lr is run.metrics["learning_rate"] and "lr" not in run.metrics
    np.testing.assert_allclose(lr.values, [1e-2 * (1 - (s - 1) / 6) for s in lr.steps.tolist()])


def test_hf_optimizer_file_needing_code_is_refused_and_the_log_still_gives_the_lr(data_dir,
                                                                                     tmp_path):
    root = tmp_path / "hf"
    shutil.copytree(data_dir / "hf_trainer", root)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    for ck in root.glob("checkpoint-*"):
        torch.save(Payload(), ck / "optimizer.pt")
    run = open_run(root)
    assert not marker.exists()
    assert run.spec["optimizer"]["lr"] == pytest.approx(1e-2)
    assert run.spec["optimizer"]["name"] is None and run.step_unit == "step"
