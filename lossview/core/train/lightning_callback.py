"""PyTorch Lightning callback that records a run in lossview's format.

::

    from lossview.core.train.lightning_callback import LossviewCallback
    trainer = lightning.Trainer(callbacks=[LossviewCallback("runs/lit", every=10)])

Works with ``lightning`` (``lightning.pytorch``) or the older ``pytorch_lightning`` package,
whichever is installed (this module imports it; lossview itself never does).
Snapshots: the initial weights (step 0), every ``every`` optimizer steps
(``trainer.global_step``), and the last step. Metrics: the training-step loss and the
learning rate after each optimizer step, and every scalar in ``trainer.callback_metrics``
at the end of each validation run (``val_loss`` etc.).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

try:
    from lightning.pytorch import Callback as _Callback
except ImportError:  # pragma: no cover - the older package name
    from pytorch_lightning import Callback as _Callback

from lossview.core.train.recorder import Recorder


class LossviewCallback(_Callback):
    """Records into ``path`` (default: ``<trainer.default_root_dir>/lossview``)."""

    def __init__(self, path: str | Path | None = None, every: int = 10, overwrite: bool = False) -> None:
        super().__init__()
        self.path = path
        self.every = every
        self.overwrite = overwrite
        self.recorder: Recorder | None = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        path = self.path or Path(trainer.default_root_dir) / "lossview"
        spec = {"source": "lightning", "max_steps": trainer.max_steps, "max_epochs": trainer.max_epochs}
        opts = getattr(trainer, "optimizers", None) or [None]
        self.recorder = Recorder(path, pl_module, every=self.every, spec=spec, overwrite=self.overwrite,
                                 optimizer=opts[0])  # its settings, for the 2/lr check
        self.recorder.log(trainer.global_step, lr=_lr(trainer))

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        rec = self.recorder
        if rec is None:
            return
        step = int(trainer.global_step)
        if step == rec.last_step:
            return  # gradient accumulation: no optimizer step yet
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        rec.log(step, loss=None if loss is None else float(loss), lr=_lr(trainer),
                epoch=float(trainer.current_epoch))

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        rec = self.recorder
        if rec is None or trainer.sanity_checking:
            return
        vals = {k: float(v) for k, v in trainer.callback_metrics.items()
                if getattr(v, "numel", lambda: 1)() == 1}
        if vals:
            rec.log_metrics(int(trainer.global_step), **vals)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.recorder is not None:
            self.recorder.close("finished")

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if self.recorder is not None:
            self.recorder.close("failed")


def _lr(trainer: Any) -> float | None:
    try:
        return float(trainer.optimizers[0].param_groups[0]["lr"])
    except (IndexError, AttributeError, KeyError):
        return None
