"""Metrics that users' own loops write beside their checkpoints: a CSV or JSON-lines table.

Plain training loops log with ``csv.writer`` or pandas (``metrics.csv``, ``log.csv``), with
Keras' ``CSVLogger`` (``training.log``, a CSV with an ``epoch`` column) or one JSON object
per line (``metrics.jsonl``). A table is read when it has a position column (``step``,
``global_step``, ``iter``, ``iteration``, ``iter_num`` or ``epoch``) and at least one
numeric column besides; each numeric column becomes a series at those positions. Other
CSV/JSON files are left alone (named in a warning by the caller).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from lossview.core.io.filescan import one_line
from lossview.core.run import MetricSeries

#: Position columns, most specific first.
POSITION_COLUMNS = ("step", "global_step", "iter", "iteration", "iter_num", "epoch")
#: Files that may hold a metrics table (by suffix, or by name for Keras' CSVLogger).
TABLE_SUFFIXES = (".csv", ".jsonl", ".tsv")
TABLE_NAMES = ("training.log",)


def is_table_candidate(f: Path) -> bool:
    return f.suffix.lower() in TABLE_SUFFIXES or f.name in TABLE_NAMES


def _rows(path: Path) -> list[dict]:
    if path.suffix.lower() == ".jsonl":
        out = []
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if line:
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a torn last line of a run still being written
                    if isinstance(obj, dict):
                        out.append(obj)
        return out
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
        return list(csv.DictReader(fh, dialect=dialect))


def read_table(path: Path) -> tuple[dict[str, MetricSeries], str | None, list[str]]:
    """``(series by column, position column, warnings)``; empty when ``path`` is not a
    metrics table (no position column or no numeric column)."""
    try:
        rows = _rows(path)
    except (OSError, csv.Error, UnicodeError) as e:
        return {}, None, [f"ignored {path.name}: {one_line(e)}"]
    if not rows:
        return {}, None, []
    keys = {k for r in rows for k in r if k is not None}
    pos = next((c for c in POSITION_COLUMNS if c in keys), None)
    if pos is None:
        return {}, None, []
    cols: dict[str, tuple[list[float], list[float]]] = {}
    bad = 0
    for row in rows:
        try:
            at = float(row.get(pos))
        except (TypeError, ValueError):
            bad += 1
            continue
        for k, v in row.items():
            if k in (None, pos) or k in POSITION_COLUMNS or v in (None, ""):
                continue
            try:
                x = float(v)
            except (TypeError, ValueError):
                continue
            s, vals = cols.setdefault(k, ([], []))
            s.append(at)
            vals.append(x)
    out = {}
    for k, (s, v) in cols.items():
        steps = np.asarray(s, dtype=float)
        if not np.all(steps == np.round(steps)):
            continue  # fractional epochs (HF-style) are not snapshot positions
        order = np.argsort(steps, kind="stable")
        out[k] = MetricSeries(steps[order].astype(np.int64), np.asarray(v, dtype=float)[order])
    warnings = [f"{path.name}: {bad} row(s) without a {pos} skipped"] if bad and out else []
    return out, (pos if out else None), warnings


def folder_metrics(files: list[Path], epoch_offset: int = 0
                   ) -> tuple[dict[str, MetricSeries], list[Path], list[str]]:
    """Series from the metrics tables among ``files`` (a checkpoint folder's and its parent's
    plain files), the files used, and warnings. A column found in several tables keeps the
    first table's (files in natural order, the checkpoint folder's first). A table counted
    in epochs is shifted by ``epoch_offset`` (Keras: CSVLogger's 0-based epochs against
    ModelCheckpoint's 1-based ``{epoch}``)."""
    series: dict[str, MetricSeries] = {}
    used: list[Path] = []
    warnings: list[str] = []
    for f in files:
        if not is_table_candidate(f):
            continue
        m, pos, w = read_table(f)
        warnings += w
        if not m:
            continue
        used.append(f)
        for k, s in m.items():
            if pos == "epoch" and epoch_offset:
                s = MetricSeries(s.steps + epoch_offset, s.values)
            series.setdefault(k, s)
    return series, used, warnings
