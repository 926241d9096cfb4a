"""Write the real Lightning run that the optimizer-settings tests open (tests/data/lightning_adam/).

Run once from the repository root (needs torch and lightning; the tests need only torch)::

    python tests/data/make_optimizer_fixtures.py

``lightning_adam/``  ``lightning.pytorch.Trainer`` with ``Adam(lr=0.01, betas=(0.85, 0.99),
                     eps=1e-7, weight_decay=1e-3)`` and ``StepLR(step_size=2, gamma=0.5)``
                     stepped every batch, ``LearningRateMonitor(logging_interval="step")``,
                     ``ModelCheckpoint(every_n_train_steps=2, save_top_k=-1)`` and
                     ``CSVLogger``, 6 steps: ``lightning_logs/version_0/``.

The tests check what lossview reads against these settings, not against the files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
LR, BETAS, EPS, WD, GAMMA, EVERY = 0.01, (0.85, 0.99), 1e-7, 1e-3, 0.5, 2


def make_lightning_adam() -> None:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    class Regressor(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=False)
            return loss

        def configure_optimizers(self):
            opt = torch.optim.Adam(self.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WD)
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=EVERY, gamma=GAMMA)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    pl.seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]])
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    out = HERE / "lightning_adam"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    trainer = pl.Trainer(max_steps=6, logger=CSVLogger(save_dir=str(out), name="lightning_logs"),
                         callbacks=[ModelCheckpoint(every_n_train_steps=2, save_top_k=-1),
                                    LearningRateMonitor(logging_interval="step")],
                         log_every_n_steps=1, accelerator="cpu", devices=1,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=str(out))
    trainer.fit(Regressor(), train)


if __name__ == "__main__":
    make_lightning_adam()
