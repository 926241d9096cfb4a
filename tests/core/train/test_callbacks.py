"""The Lightning callback and the Hugging Face TrainerCallback, against the real libraries."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lossview.core.io import open_run


def _data(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return x, (x.sum(1) > 0).long()


def test_lightning_callback_records_a_run(tmp_path):
    L = pytest.importorskip("lightning.pytorch")
    from lossview.core.train.callbacks import LossviewCallback

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))

        def training_step(self, batch, idx):
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, idx):
            x, y = batch
            self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    x, y = _data()
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    torch.manual_seed(0)
    module = Module()
    init = {k: v.detach().clone().numpy() for k, v in module.named_parameters()}
    cb = LossviewCallback(tmp_path / "lit", every=10)
    trainer = L.Trainer(max_steps=25, callbacks=[cb], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                        val_check_interval=8, num_sanity_val_steps=0, default_root_dir=tmp_path)
    trainer.fit(module, dl, dl)
    run = open_run(tmp_path / "lit")
    assert run.spec["status"] == "finished" and run.spec["source"] == "lightning"
    # the optimizer's settings, for the stability answer's 2/lr
    assert run.spec["optimizer"]["name"] == "sgd" and run.spec["optimizer"]["lr"] == pytest.approx(0.05)
    assert list(run.steps) == [0, 10, 20, 25]
    for k, v in init.items():  # step 0 holds the initial weights
        np.testing.assert_array_equal(run.params(0)[k], v)
    final = {k: v.detach().numpy() for k, v in module.named_parameters()}
    for k, v in final.items():
        np.testing.assert_array_equal(run.params(3)[k], v)
    loss = run.metric("loss")
    assert list(loss.steps) == list(range(1, 26)) and np.isfinite(loss.values).all()
    assert run.metric("lr").values[-1] == pytest.approx(0.05)
    assert len(run.metric("val_loss")) >= 3  # validation every 8 batches


def test_hf_trainer_callback_records_a_run(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from lossview.core.train.callbacks import LossviewHFCallback

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x, labels=None):
            logits = self.fc(x)
            loss = nn.functional.cross_entropy(logits, labels)
            return {"loss": loss, "logits": logits}

    x, y = _data()
    ds = [{"x": a, "labels": b} for a, b in zip(x, y)]
    torch.manual_seed(0)
    model = Net()
    init = {k: v.detach().clone().numpy() for k, v in model.named_parameters()}
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), max_steps=25, per_device_train_batch_size=8,
        logging_steps=5, learning_rate=0.05, report_to=[], save_strategy="no", use_cpu=True,
        disable_tqdm=True, remove_unused_columns=False, seed=0)
    cb = LossviewHFCallback(every=10)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=ds, callbacks=[cb])
    trainer.train()
    run = open_run(tmp_path / "hf" / "lossview")  # default folder under output_dir
    assert run.spec["status"] == "finished" and run.spec["source"] == "hf-trainer"
    # the Trainer's default optimizer is AdamW: recorded, so 2/lr is not misapplied
    assert run.spec["optimizer"]["name"] == "adamw"
    assert list(run.steps) == [0, 10, 20, 25]
    for k, v in init.items():
        np.testing.assert_array_equal(run.params(0)[k], v)
    for k, v in model.named_parameters():
        np.testing.assert_array_equal(run.params(3)[k], v.detach().numpy())
    loss = run.metric("loss")
    assert list(loss.steps) == [5, 10, 15, 20, 25] and np.isfinite(loss.values).all()
    assert run.metric("learning_rate") is not None
