"""Metrics of a run as one CSV table (no Qt: used by ``lossview export --csv`` too)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np


def metrics_table(run: Any) -> tuple[list[str], list[list[Any]]]:
    """Header and rows: one row per logged step, one column per metric ('' when absent)."""
    names = sorted(run.metrics)
    all_steps = np.unique(np.concatenate(
        [np.asarray(run.metrics[n].steps, dtype=np.int64) for n in names]
        or [np.array([], dtype=np.int64)]))
    col_of = {int(s): k for k, s in enumerate(all_steps)}
    cols = {n: [""] * len(all_steps) for n in names}
    for n in names:
        s = run.metrics[n]
        for st, v in zip(np.asarray(s.steps).tolist(), np.asarray(s.values, float).tolist()):
            cols[n][col_of[int(st)]] = repr(v) if math.isfinite(v) else str(v).lower()
    rows = [[int(st)] + [cols[n][k] for n in names] for k, st in enumerate(all_steps)]
    return ["step", *names], rows


def write_metrics_csv(run: Any, path: str | Path) -> Path:
    """Write :func:`metrics_table` to ``path`` (atomically: temp file then rename)."""
    path = Path(path)
    header, rows = metrics_table(run)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    tmp.replace(path)
    return path
