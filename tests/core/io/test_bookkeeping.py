"""Checkpoint dicts carry bookkeeping beside the weights: positions place the snapshot,
run descriptions go to ``run.spec["checkpoint_meta"]``, only measurements become series.
Dicts shaped exactly as nanoGPT's ``train.py`` and timm's ``CheckpointSaver`` save them."""

import argparse
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from lossview.core.io import open_run


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 4))


def _train(model, opt, n=3):
    for _ in range(n):
        loss = model(torch.randn(16, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _weights(model):
    return {k: v.detach().clone().numpy() for k, v in model.state_dict().items()}


def test_nanogpt_checkpoints(tmp_path):
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1)
    # nanoGPT's train.py: model_args and config are plain dicts, best_val_loss a 0-d tensor
    model_args = {"n_layer": 2, "n_head": 2, "n_embd": 8, "block_size": 16, "bias": False,
                      "vocab_size": 65, "dropout": 0.0}
    config = {"out_dir": "out", "eval_interval": 250, "batch_size": 12, "learning_rate": 6e-4,
              "max_iters": 5000, "compile": False, "dataset": "shakespeare_char"}
    saved, best = {}, []
    best_val_loss = 1e9
    for iter_num in (0, 250, 500):
        _train(model, opt)
        val = torch.tensor(4.2 - iter_num / 400)  # losses['val'] is a tensor
        best_val_loss = min(best_val_loss, val)
        best.append(float(best_val_loss))
        checkpoint = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "model_args": model_args,
            "iter_num": iter_num,
            "best_val_loss": best_val_loss,
            "config": config,
        }
        torch.save(checkpoint, tmp_path / f"ckpt_{iter_num}.pt")
        saved[iter_num] = _weights(model)
    run = open_run(tmp_path)
    assert run.format == "torch" and run.steps.tolist() == [0, 250, 500]
    assert run.step_unit == "step"
    assert sorted(run.metrics) == ["best_val_loss"]  # not iter_num
    np.testing.assert_allclose(run.metric("best_val_loss").values, best, rtol=1e-7)
    meta = run.spec["checkpoint_meta"]
    assert meta["model_args"] == model_args and meta["config"] == config
    for i, it in enumerate((0, 250, 500)):
        for k, v in saved[it].items():
            np.testing.assert_array_equal(run.params(i)[k], v)
    assert run.spec["optimizer"]["name"] == "adamw"
    assert run.warnings == []
    # nanoGPT writes one ckpt.pt that it overwrites: a single snapshot at iter_num
    one = open_run(tmp_path / "ckpt_500.pt")
    assert one.steps.tolist() == [500] and sorted(one.metrics) == ["best_val_loss"]


def _timm_args():
    # what timm's train.py parses (a subset; the real Namespace has ~150 fields)
    return argparse.Namespace(model="resnet18", opt="sgd", lr=0.1, momentum=0.9,
                              weight_decay=2e-5, epochs=4, eval_metric="top1", seed=42,
                              batch_size=128, sched="cosine", pretrained=False)


@pytest.mark.parametrize("eval_metric", ["top1", "loss"])
def test_timm_checkpoint_saver(tmp_path, eval_metric):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-5)
    args = _timm_args()
    args.eval_metric = eval_metric
    metrics, saved = [70.0, 74.5, 76.25, 75.5], {}
    best_epoch = int(np.argmax(metrics))
    for epoch, metric in enumerate(metrics):
        _train(model, opt)
        # timm.utils.CheckpointSaver._save
        save_state = {
            "epoch": epoch,
            "arch": type(model).__name__.lower(),
            "state_dict": model.state_dict(),
            "optimizer": opt.state_dict(),
            "version": 2,
        }
        save_state["arch"] = args.model
        save_state["args"] = args
        save_state["metric"] = metric
        f = tmp_path / f"checkpoint-{epoch}.pth.tar"
        torch.save(save_state, f)
        saved[epoch] = _weights(model)
        shutil.copy(f, tmp_path / "last.pth.tar")  # timm hard-links or copies these two
        if epoch == best_epoch:
            shutil.copy(f, tmp_path / "model_best.pth.tar")
    run = open_run(tmp_path)
    assert run.steps.tolist() == [0, 1, 2, 3] and run.step_unit == "epoch"
    name = f"val_{eval_metric}"  # timm's 'metric' is args.eval_metric on the eval set
    assert sorted(run.metrics) == [name]  # not version, not epoch
    np.testing.assert_array_equal(run.metric(name).values, metrics)
    if eval_metric == "loss":
        from lossview.core.analysis.metric_names import VAL_LOSS

        assert run.metric(*VAL_LOSS) is run.metrics["val_loss"]
    meta = run.spec["checkpoint_meta"]
    assert meta["version"] == 2 and meta["arch"] == "resnet18"
    assert meta["args"] == vars(args)
    assert [s.source.name for s in run.snapshots] == [f"checkpoint-{e}.pth.tar" for e in range(4)]
    for i in range(4):
        np.testing.assert_array_equal(run.params(i)["2.weight"], saved[i]["2.weight"])
    # last and best are copies of numbered checkpoints: left out, and said so
    assert sorted(run.warnings) == [
        "left out last.pth.tar: a copy of epoch 3 (checkpoint-3.pth.tar)",
        f"left out model_best.pth.tar: a copy of epoch {best_epoch} "
        f"(checkpoint-{best_epoch}.pth.tar)"]
    assert run.spec["optimizer"]["name"] == "sgd" and run.spec["optimizer"]["lr"] == 0.1


def test_other_counters_are_positions_not_metrics(tmp_path):
    model = _model()
    for _k, epoch in enumerate((1, 2, 3)):
        torch.save({"model_state_dict": model.state_dict(), "epoch": epoch,
                    "global_step": 100 * epoch, "batch_idx": 99, "tokens_seen": 51200 * epoch,
                    "seed": 1234, "loss": 1.0 / epoch, "lr": 0.01, "run_name": "baseline",
                    "amp": True}, tmp_path / f"step_{100 * epoch}.pt")
    run = open_run(tmp_path)
    assert run.steps.tolist() == [100, 200, 300]
    assert [s.epoch for s in run.snapshots] == [1.0, 2.0, 3.0]
    assert sorted(run.metrics) == ["loss", "lr"]
    assert run.snapshots[2].meta["positions"] == {"epoch": 3.0, "global_step": 300.0,
                                                  "batch_idx": 99.0, "tokens_seen": 153600.0}
    assert run.spec["checkpoint_meta"] == {"seed": 1234, "run_name": "baseline", "amp": True}
