"""The loss panel's curves from a run's metrics (Qt-free): which logged series is the
training loss, the mini-batch loss, validation, gradient norm, update norm and lr."""

from __future__ import annotations

from typing import Any

import numpy as np

from lossview.core.analysis import metric_names as names

TRAIN_NAMES, RAW_NAMES = names.TRAIN_LOSS + names.BATCH_LOSS, names.BATCH_LOSS
Series = tuple[np.ndarray, np.ndarray]


def _first(run: Any, wanted: tuple[str, ...]) -> tuple[str | None, Series | None]:
    m = run.metrics
    for n in wanted:
        s = m.get(n)
        if s is not None and len(s):
            return n, (np.asarray(s.steps, float), np.asarray(s.values, float))
    s = run.metric(*wanted) if hasattr(run, "metric") else None  # the readers' aliases
    if s is not None and len(s):
        return wanted[0], (np.asarray(s.steps, float), np.asarray(s.values, float))
    return None, None


def panel_series(run: Any) -> tuple[dict[str, Series], str]:
    """``({"raw"|"train"|"val"|"grad"|"update"|"lr": (x, y)}, training loss's name)``."""
    train_name, train = _first(run, TRAIN_NAMES)
    raw_name, raw = _first(run, RAW_NAMES)
    if raw_name != train_name and raw is not None and train is not None and len(raw[0]) <= len(train[0]):
        raw = None  # only a mini-batch loss: shown faint, with its smoothed version as train
    out: dict[str, Series] = {}
    for key, val in (("raw", raw), ("train", train), ("val", _first(run, names.VAL_LOSS)[1]),
                     ("grad", _first(run, names.GRAD_NORM)[1]),
                     ("update", _first(run, names.UPDATE_NORM)[1]), ("lr", _first(run, names.LR)[1])):
        if val is not None:
            out[key] = val
    opt = (getattr(run, "spec", None) or {}).get("optimizer") or {}
    lr = opt.get("lr") if isinstance(opt, dict) else None
    steps = np.asarray(run.steps, float)
    if "lr" not in out and isinstance(lr, (int, float)) and len(steps):
        # the lr saved with the optimizer's settings (constant as far as lossview knows)
        out["lr"] = (steps[[0, -1]], np.array([float(lr), float(lr)]))
    return out, train_name or "train"
