"""Write the small checkpoint folders the reader tests open, with the real libraries.

Run once from the repository root (needs torch, lightning and transformers; the tests
themselves need only torch, safetensors and numpy)::

    python tests/data/make_fixtures.py

Every folder is rewritten from scratch. Everything is seeded, tiny (a few thousand
parameters) and CPU-only; nothing is downloaded (models are built from configs).

Folders written (all under tests/data/):

``torch_bare/``       bare ``model.state_dict()`` files ``model_1.pt`` ... ``model_20.pt``
                      (natural order differs from the lexical one), BatchNorm buffers included.
``torch_general/``    the PyTorch tutorial's general checkpoint (``epoch``, ``model_state_dict``,
                      ``optimizer_state_dict``, ``loss``) saved as ``epoch_N.tar``.
``torch_wrapped/``    ``{"state_dict": ...}`` files ``ckpt_100.pth`` ...
``lightning/``        ``lightning.pytorch.Trainer`` with ``ModelCheckpoint(every_n_train_steps=2,
                      save_top_k=-1)`` and ``CSVLogger``: ``lightning_logs/version_0/``.
``hf_trainer/``       ``transformers.Trainer`` output (``checkpoint-N/`` with ``model.safetensors``,
                      ``trainer_state.json``, optimizer, scheduler, RNG state, training args).
``hf_trainer_bin/``   the same run with ``pytorch_model.bin`` weights (see ``_hf_bin``).
``safetensors_dir/``  ``weights_step10.safetensors`` ... from ``safetensors.torch.save_file``.
``npz_dir/``          ``snap_5.npz`` ... from ``numpy.savez``.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent


def _fresh(name: str) -> Path:
    out = HERE / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return out


def _tiny_net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))


def _data(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]])) + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


def _sgd_steps(model: nn.Module, opt: torch.optim.Optimizer, x, y, n: int) -> float:
    loss = torch.tensor(0.0)
    for _ in range(n):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    return float(loss)


def make_torch() -> None:
    torch.manual_seed(0)
    x, y = _data()
    model = _tiny_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    out = _fresh("torch_bare")
    done = 0
    for step in (1, 2, 10, 20):
        _sgd_steps(model, opt, x, y, step - done)
        done = step
        torch.save(model.state_dict(), out / f"model_{step}.pt")

    torch.manual_seed(1)
    model = _tiny_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    out = _fresh("torch_general")
    for epoch in range(1, 4):
        loss = _sgd_steps(model, opt, x, y, 4)
        # https://pytorch.org/tutorials/beginner/saving_loading_models.html
        torch.save({"epoch": epoch, "model_state_dict": model.state_dict(),
                    "optimizer_state_dict": opt.state_dict(), "loss": loss},
                   out / f"epoch_{epoch}.tar")

    torch.manual_seed(2)
    model = _tiny_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    out = _fresh("torch_wrapped")
    for step in (100, 200, 300):
        _sgd_steps(model, opt, x, y, 3)
        torch.save({"state_dict": model.state_dict()}, out / f"ckpt_{step}.pth")


def make_lightning() -> None:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    class Regressor(pl.LightningModule):
        def __init__(self, hidden: int = 8, lr: float = 0.05) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = _tiny_net()

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=False)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    pl.seed_everything(0, verbose=False)
    x, y = _data(16)
    ds = torch.utils.data.TensorDataset(x, y)
    train = torch.utils.data.DataLoader(ds, batch_size=8)
    val = torch.utils.data.DataLoader(ds, batch_size=16)
    out = _fresh("lightning")
    logger = CSVLogger(save_dir=str(out), name="lightning_logs")
    ckpt = ModelCheckpoint(every_n_train_steps=2, save_top_k=-1)
    trainer = pl.Trainer(max_steps=6, logger=logger, callbacks=[ckpt], log_every_n_steps=1,
                         accelerator="cpu", devices=1, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(out))
    trainer.fit(Regressor(), train, val)


def make_hf() -> None:
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=16, max_position_embeddings=16, type_vocab_size=1,
                     num_labels=2)
    model = BertForSequenceClassification(cfg)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 32, (24, 8), generator=g)
    labels = (ids[:, 0] > 16).long()
    rows = [{"input_ids": ids[i], "attention_mask": torch.ones(8, dtype=torch.long),
             "labels": labels[i]} for i in range(len(ids))]
    out = _fresh("hf_trainer")
    args = TrainingArguments(
        output_dir=str(out), max_steps=6, save_steps=2, logging_steps=1, eval_strategy="steps",
        eval_steps=3, per_device_train_batch_size=8, per_device_eval_batch_size=24,
        learning_rate=1e-2, report_to=[], use_cpu=True, seed=0, disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=rows, eval_dataset=rows)
    trainer.train()
    _hf_bin(out)


def _hf_bin(src: Path) -> None:
    """The same checkpoints with ``pytorch_model.bin`` weights.

    transformers 5 always writes safetensors (``save_safetensors`` is gone); before it,
    ``save_safetensors=False`` made the Trainer call ``torch.save(state_dict,
    "pytorch_model.bin")``, which is exactly what this does with the saved weights.
    Optimizer and scheduler files are dropped to keep the fixture small; the RNG state
    and training arguments stay, so the test can check they are never unpickled.
    """
    from safetensors.torch import load_file

    out = _fresh("hf_trainer_bin")
    for ck in sorted(src.glob("checkpoint-*")):
        dst = out / ck.name
        dst.mkdir()
        for f in ck.iterdir():
            if f.name in ("optimizer.pt", "scheduler.pt", "model.safetensors"):
                continue
            shutil.copy2(f, dst / f.name)
        torch.save(load_file(str(ck / "model.safetensors")), dst / "pytorch_model.bin")


def make_plain() -> None:
    from safetensors.torch import save_file

    torch.manual_seed(3)
    x, y = _data()
    model = _tiny_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    out = _fresh("safetensors_dir")
    for step in (10, 20, 30, 40):
        _sgd_steps(model, opt, x, y, 10)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  str(out / f"weights_step{step}.safetensors"), metadata={"note": "plain file"})

    rng = np.random.default_rng(4)
    w = {"layer1.weight": rng.normal(size=(6, 3)).astype(np.float32),
         "layer1.bias": np.zeros(6, np.float32),
         "layer2.weight": rng.normal(size=(1, 6)).astype(np.float32)}
    out = _fresh("npz_dir")
    for k in (5, 10, 15, 100):  # natural order: snap_5 < snap_10 < snap_15 < snap_100
        np.savez(out / f"snap_{k}.npz", **w)
        w = {n: v + rng.normal(scale=0.05, size=v.shape).astype(np.float32) for n, v in w.items()}


def main() -> None:
    warnings.filterwarnings("ignore")
    make_torch()
    make_plain()
    make_lightning()
    make_hf()
    total = sum(f.stat().st_size for f in HERE.rglob("*") if f.is_file())
    print(json.dumps({"bytes": total}))


if __name__ == "__main__":
    main()
