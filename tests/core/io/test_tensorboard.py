"""Metrics from TensorBoard event files, written by the real loggers: Lightning's default
TensorBoardLogger, ``torch.utils.tensorboard.SummaryWriter`` in a plain loop, and the HF
Trainer with ``report_to=["tensorboard"]``."""

import csv
import os
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn

from lossview.core.analysis.metric_names import LOSS, LR, VAL_LOSS
from lossview.core.io import open_run


def _data(n=64):
    torch.manual_seed(0)
    x = torch.randn(n, 2)
    return x, x.sum(1, keepdim=True) + 0.1 * torch.randn(n, 1)


def _f32(values):
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def test_lightning_default_logger(tmp_path):
    L = pytest.importorskip("lightning")
    from lightning.pytorch.callbacks import ModelCheckpoint

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
            self.train_logged, self.val_logged = [], []

        def training_step(self, batch, _):
            loss = nn.functional.mse_loss(self.net(batch[0]), batch[1])
            self.log("train_loss", loss, on_step=True, on_epoch=True)  # two tags
            self.train_logged.append((self.global_step, loss.item()))
            return loss

        def validation_step(self, batch, _):
            self.log("val_loss", nn.functional.mse_loss(self.net(batch[0]), batch[1]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    x, y = _data()
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    module = Module()
    trainer = L.Trainer(max_steps=12, accelerator="cpu", log_every_n_steps=1,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[ModelCheckpoint(every_n_train_steps=4, save_top_k=-1)],
                        val_check_interval=4, num_sanity_val_steps=0, default_root_dir=tmp_path)
    trainer.fit(module, dl, dl)  # logger left at its default: TensorBoard
    logs = tmp_path / "lightning_logs" / "version_0"
    assert list(logs.glob("events.out.tfevents.*")) and not (logs / "metrics.csv").exists()

    run = open_run(tmp_path)
    assert run.format == "lightning" and run.steps.tolist() == [4, 8, 12]
    # train_loss_step and _epoch as Lightning names them; no epoch, no hp_metric
    assert sorted(run.metrics) == ["train_loss_epoch", "train_loss_step", "val_loss"]
    loss = run.metric(*LOSS)
    assert loss is run.metrics["train_loss_step"]  # the step-level one is the loss
    steps, values = zip(*module.train_logged)
    assert loss.steps.tolist() == list(steps) == list(range(12))
    np.testing.assert_array_equal(loss.values, _f32(values))  # event files keep float32
    assert run.metric(*VAL_LOSS).steps.tolist() == [3, 7, 11]
    epoch_mean = run.metrics["train_loss_epoch"]
    assert epoch_mean.steps.tolist() == [7, 11]  # logged at each epoch's last step
    np.testing.assert_allclose(epoch_mean.values, [np.mean(values[:8]), np.mean(values[8:])],
                               rtol=1e-6)
    assert ("metrics: train_loss_epoch, train_loss_step, val_loss (TensorBoard "
            "lightning_logs/version_0); the loss is train_loss_step") in run.spec["opened_as"]
    assert run.warnings == []


def _loop(run_dir, monkeypatch, tags=("Loss/train", "Loss/val"), scalars=False, table=False):
    """A plain loop as in PyTorch's TensorBoard tutorial: ``SummaryWriter()`` (its default
    ``runs/<date>_<host>`` under the working directory) and state_dicts in checkpoints/."""
    from torch.utils.tensorboard import SummaryWriter

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    monkeypatch.chdir(run_dir)
    x, y = _data()
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    writer = SummaryWriter()
    logged = {"train": [], "val": [], "lr": []}
    rows = []
    for step in range(30):
        if step % 10 == 0:
            torch.save(model.state_dict(), run_dir / "checkpoints" / f"model_{step}.pt")
        i = torch.randint(0, 48, (8,))
        loss = nn.functional.mse_loss(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        logged["train"].append(loss.item())
        logged["lr"].append(sched.get_last_lr()[0])
        if scalars:  # one sub-folder per curve: runs/<date>/loss_train/
            writer.add_scalars("loss", {"train": loss.item()}, step)
        else:
            writer.add_scalar(tags[0], loss.item(), step)
            writer.add_scalar("lr", sched.get_last_lr()[0], step)
        if step % 5 == 4:
            with torch.no_grad():
                val = nn.functional.mse_loss(model(x[48:]), y[48:]).item()
            logged["val"].append(val)
            if scalars:
                writer.add_scalars("loss", {"val": val}, step)
            else:
                writer.add_scalar(tags[1], val, step)
        rows.append({"step": step, "loss": loss.item()})
        sched.step()
    writer.close()
    if table:
        with open(run_dir / "metrics.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, ["step", "loss"])
            w.writeheader()
            w.writerows(rows)
    return logged


def test_summary_writer_in_a_plain_loop(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    logged = _loop(run_dir, monkeypatch)
    for path in (run_dir, run_dir / "checkpoints"):  # the run, or its checkpoints folder
        run = open_run(path)
        assert run.format == "torch" and run.steps.tolist() == [0, 10, 20]
        assert sorted(run.metrics) == ["Loss/train", "Loss/val", "lr"]
        loss = run.metric(*LOSS)
        assert loss is run.metrics["Loss/train"]  # the tutorial's tag is the loss
        assert loss.steps.tolist() == list(range(30))
        np.testing.assert_array_equal(loss.values, _f32(logged["train"]))
        val = run.metric(*VAL_LOSS)
        assert val is run.metrics["Loss/val"] and val.steps.tolist() == [4, 9, 14, 19, 24, 29]
        np.testing.assert_array_equal(val.values, _f32(logged["val"]))
        np.testing.assert_array_equal(run.metric(*LR).values, _f32(logged["lr"]))
        assert run.warnings == []
        text = run.spec["opened_as"]
        assert "the loss is Loss/train" in text and "(TensorBoard runs/" in text


def test_add_scalars_folders_and_a_table_of_the_same_loss(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    logged = _loop(run_dir, monkeypatch, scalars=True, table=True)
    run = open_run(run_dir)
    # metrics.csv's loss; the events' loss_train repeats it point for point and is left out
    assert sorted(run.metrics) == ["loss", "loss_val"]
    np.testing.assert_allclose(run.metric(*LOSS).values, logged["train"], rtol=0)
    assert run.metric(*VAL_LOSS) is run.metrics["loss_val"]
    np.testing.assert_array_equal(run.metrics["loss_val"].values, _f32(logged["val"]))
    assert "TensorBoard runs/" in run.spec["opened_as"]
    assert ": 1 tag repeating series read elsewhere left out" in run.spec["opened_as"]


def test_several_writer_runs_read_the_newest(tmp_path, monkeypatch):
    from torch.utils.tensorboard import SummaryWriter

    run_dir = tmp_path / "run"
    _loop(run_dir, monkeypatch, tags=("loss", "val_loss"))
    old = next((run_dir / "runs").iterdir())
    os.utime(next(old.iterdir()), (time.time() - 3600,) * 2)
    with SummaryWriter(str(run_dir / "runs" / "rerun")) as w:
        for step in range(3):
            w.add_scalar("loss", 10.0 + step, step)
    run = open_run(run_dir)
    assert run.metric(*LOSS).values.tolist() == [10.0, 11.0, 12.0]
    assert run.warnings == [
        f"several TensorBoard runs here; read runs/rerun, ignored runs/{old.name}"]


def test_without_the_extra_a_warning_names_it(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    _loop(run_dir, monkeypatch)
    # tensorboard not installed: its import fails
    monkeypatch.setitem(sys.modules, "tensorboard.backend.event_processing.event_accumulator", None)
    run = open_run(run_dir)
    assert run.steps.tolist() == [0, 10, 20] and run.metrics == {}
    (w,) = run.warnings
    assert w.startswith("TensorBoard event files in runs/") and "lossview[tensorboard]" in w
    assert w in run.spec["opened_as"]


def test_hf_trainer_report_to_tensorboard(tmp_path):
    transformers = pytest.importorskip("transformers")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 1)

        def forward(self, x, labels=None):
            out = self.fc(x)
            return {"loss": nn.functional.mse_loss(out, labels), "logits": out}

    x, y = _data()
    ds = [{"x": a, "labels": b} for a, b in zip(x, y)]
    torch.manual_seed(0)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), max_steps=12, per_device_train_batch_size=8,
        logging_steps=2, learning_rate=0.05, report_to=["tensorboard"], save_steps=4,
        use_cpu=True, disable_tqdm=True, remove_unused_columns=False, seed=0)
    transformers.Trainer(model=Net(), args=args, train_dataset=ds).train()
    out = tmp_path / "hf"
    assert list(out.glob("runs/*/events.out.tfevents.*"))
    run = open_run(out)
    ref = sorted(run.metrics)
    assert "loss" in ref and "learning_rate" in ref and not any("/" in k for k in ref)
    assert "tags repeating series read elsewhere left out" in run.spec["opened_as"]
    loss = run.metrics["loss"]
    # without trainer_state.json, the event files give the same curve
    for f in out.rglob("trainer_state.json"):
        f.unlink()
    run = open_run(out)
    assert run.steps.tolist() == [4, 8, 12]
    tb = run.metric(*LOSS)
    assert tb is run.metrics["train/loss"]
    assert tb.steps.tolist() == loss.steps.tolist() == [2, 4, 6, 8, 10, 12]
    np.testing.assert_allclose(tb.values, loss.values, rtol=1e-6)
    assert run.metric(*LR) is run.metrics["train/learning_rate"]
