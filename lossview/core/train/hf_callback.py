"""Hugging Face ``transformers`` TrainerCallback that records a run in lossview's format.

::

    from lossview.core.train.hf_callback import LossviewHFCallback
    trainer = transformers.Trainer(..., callbacks=[LossviewHFCallback(every=50)])

Snapshots: the initial weights (step 0), every ``every`` optimizer steps
(``state.global_step``) and the last step. Metrics: everything the Trainer logs
(``loss``, ``learning_rate``, ``grad_norm``, ``eval_loss``...) at its logging steps.
The run folder defaults to ``<output_dir>/lossview``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from lossview.core.train.recorder import Recorder


class LossviewHFCallback(TrainerCallback):
    def __init__(self, path: str | Path | None = None, every: int = 10, overwrite: bool = False) -> None:
        self.path = path
        self.every = every
        self.overwrite = overwrite
        self.recorder: Recorder | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
        if not state.is_world_process_zero or model is None:
            return
        path = self.path or Path(args.output_dir) / "lossview"
        spec = {"source": "hf-trainer", "max_steps": state.max_steps,
                "learning_rate": args.learning_rate, "seed": args.seed}
        self.recorder = Recorder(path, model, every=self.every, spec=spec, overwrite=self.overwrite,
                                 optimizer=kw.get("optimizer"))  # its settings, for the 2/lr check
        self.recorder.snapshot(state.global_step)
        self.recorder.last_step = state.global_step

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        rec = self.recorder
        if rec is not None and state.global_step % self.every == 0:
            rec.snapshot(state.global_step, epoch=state.epoch)
        if rec is not None:
            rec.last_step = state.global_step

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
        rec = self.recorder
        if rec is None or not logs:
            return
        vals = {k: float(v) for k, v in logs.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if state.epoch is not None:
            vals.setdefault("epoch", float(state.epoch))
        rec.log_metrics(int(state.global_step), **vals)

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.recorder is not None:
            self.recorder.last_step = state.global_step
            self.recorder.close("finished")
