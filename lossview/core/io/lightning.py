"""PyTorch Lightning output: ``.ckpt`` checkpoints, the CSVLogger's ``metrics.csv`` and the
default TensorBoardLogger's event files (:mod:`lossview.core.io.tensorboard`).

A Lightning checkpoint is a ``torch.save`` dict with ``state_dict``, ``global_step`` and
``epoch`` (plus optimizer and loop state, which are not weights). Parameter names are
kept as stored (``net.0.weight``, ``model.encoder...``). Checkpoints usually sit in
``lightning_logs/version_N/checkpoints/`` beside ``version_N/metrics.csv``; when several
versions hold checkpoints, the newest (highest N) is opened and the others are named in
a warning. Optimizer settings come from each checkpoint's ``optimizer_states`` (or
``lr_schedulers[0]["_last_lr"]``); a ``LearningRateMonitor`` column (``lr-SGD``) is what
``run.metric("lr")`` finds.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np

from lossview.core.errors import NoCheckpointsError
from lossview.core.io.filescan import assemble_or_explain, natural_key, one_line
from lossview.core.io.optimizer import attach_from_snapshots
from lossview.core.io.tensorboard import add_event_metrics, find_event_dirs
from lossview.core.io.torchfiles import (
    TorchReader,
    checkpoint_info,
    scalar_series,
    scan_torch_files,
    snapshots_from_scan,
    unsafe_refusal,
)
from lossview.core.run import MetricSeries, Run

MAX_DEPTH = 5


def find_ckpts(root: Path) -> list[Path]:
    """``.ckpt`` files under ``root`` (at most a few folder levels down), natural order."""
    if root.is_file():
        return [root]
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        # do not descend further than MAX_DEPTH, nor into hidden folders
        keep = depth < MAX_DEPTH - 1
        dirnames[:] = [d for d in dirnames if keep and not d.startswith(".")]
        out += [Path(dirpath) / f for f in filenames
                if f.endswith(".ckpt") and not f.startswith(".")]
    return sorted(out, key=lambda p: natural_key(str(p.relative_to(root))))


def _version(p: Path) -> tuple[int, str]:
    for part in reversed(p.parts):
        m = re.fullmatch(r"version_(\d+)", part)
        if m:
            return int(m.group(1)), part
    return -1, ""


def pick_version(ckpts: list[Path]) -> tuple[list[Path], list[str]]:
    """Checkpoints of the newest ``version_N`` folder when there are several."""
    groups: dict[tuple[int, str], list[Path]] = {}
    for c in ckpts:
        groups.setdefault(_version(c), []).append(c)
    if len(groups) <= 1:
        return ckpts, []
    best = max(groups)
    others = sorted(v[1] or "(no version folder)" for v in groups if v != best)
    opened = best[1] or "the unversioned one"
    return groups[best], [f"several Lightning runs here; opened {opened}, "
                          f"ignored {', '.join(others)}"]


def find_metrics_csv(ckpts: list[Path], root: Path) -> Path | None:
    """The ``metrics.csv`` nearest above the checkpoints (not above ``root``'s parent)."""
    top = root if root.is_dir() else root.parent
    for c in ckpts[:1]:
        d = c.parent
        for _ in range(4):
            if (d / "metrics.csv").is_file():
                return d / "metrics.csv"
            if d == top.parent or d == d.parent:
                break
            d = d.parent
    found = list(top.rglob("metrics.csv")) if top.is_dir() else []
    return found[0] if len(found) == 1 else None


def read_metrics_csv(path: Path) -> tuple[dict[str, MetricSeries], list[str]]:
    """Series per column of a CSVLogger file; blank cells (other columns' rows) are skipped."""
    cols: dict[str, tuple[list[int], list[float]]] = {}
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error) as e:
        return {}, [f"ignored {path.name}: {one_line(e)}"]
    bad = 0
    for row in rows:
        try:
            step = int(float(row.get("step") or ""))
        except ValueError:
            bad += 1
            continue
        for k, v in row.items():
            if k in (None, "step", "epoch") or v in (None, ""):
                continue
            try:
                x = float(v)
            except ValueError:
                continue
            s, vals = cols.setdefault(k, ([], []))
            s.append(step)
            vals.append(x)
    warnings = [f"{path.name}: {bad} row(s) without a step skipped"] if bad else []
    out = {}
    for k, (s, v) in cols.items():
        order = np.argsort(np.asarray(s), kind="stable")
        out[k] = MetricSeries(np.asarray(s)[order], np.asarray(v)[order])
    return out, warnings


def open_lightning(path: Path, within: Path | None = None) -> Run:
    """The run at ``path``; its checkpoints are the ``.ckpt`` files under ``within`` (the
    sub-folder detection chose, e.g. ``lightning_logs``) or under ``path``."""
    ckpts = find_ckpts(within or path)
    ckpts, warnings = pick_version(ckpts)
    unsafe: list[Path] = []
    found, w = scan_torch_files(ckpts, unsafe)
    if not found and (why := unsafe_refusal(within or path, unsafe, len(ckpts))) is not None:
        raise NoCheckpointsError(why)
    warnings += w
    # ModelCheckpoint(save_last=True) repeats the newest checkpoint as last.ckpt: dropped
    entries, w = snapshots_from_scan(found, note_copies=False)
    warnings += w
    metrics = scalar_series(entries)
    sources: dict[str, list[str]] = {"stored in the checkpoints": list(metrics)}
    csv_path = find_metrics_csv(ckpts, path)
    top = path if path.is_dir() else path.parent
    if csv_path is not None:
        m, w = read_metrics_csv(csv_path)
        metrics.update(m)
        warnings += w
        sources[_relative(csv_path, top)] = list(m)  # its columns replace stored scalars
        sources["stored in the checkpoints"] = [n for n in sources["stored in the checkpoints"]
                                                if n not in m]
    spec = {"source": "lightning", "metrics_file": str(csv_path) if csv_path else None,
            "metric_sources": sources}
    # the default logger (TensorBoard): version_N/events.out.tfevents.*, beside or instead
    # of a CSVLogger's metrics.csv (whose columns win where both logged a name)
    add_event_metrics(metrics, _events_root(ckpts, top), warnings, spec,
                      near=ckpts[0].parent if ckpts else None, shown_from=top)
    monitor = lr_monitor_series(metrics)
    if info := checkpoint_info(entries):  # hyper_parameters, pytorch-lightning_version
        spec["checkpoint_meta"] = info
    run = assemble_or_explain(path, "lightning", entries, TorchReader("lightning"), metrics, spec,
                              warnings)
    if monitor is not None and run.metric("lr") is None:
        run.metric_aliases["lr"] = monitor
    attach_from_snapshots(run)
    if monitor is not None and isinstance(run.spec.get("optimizer"), dict):
        where = next((csv_path.name if csv_path is not None and k == _relative(csv_path, top)
                      else k for k, v in sources.items() if monitor in v), "the logs")
        run.spec["optimizer"]["source"] += f"; the lr series is {monitor} of {where}"
    return run


def _relative(p: Path, top: Path) -> str:
    try:
        return p.relative_to(top).as_posix()
    except ValueError:
        return p.name


def _events_root(ckpts: list[Path], top: Path) -> Path:
    """The ``version_N`` folder of the checkpoints when it holds event files (so the other
    versions' are not read), else the run's folder."""
    if ckpts:
        v = next((d for d in ckpts[0].parents if re.fullmatch(r"version_\d+", d.name)), None)
        if v is not None and find_event_dirs(v):
            return v
    return top


def lr_monitor_series(metrics: dict[str, MetricSeries]) -> str | None:
    """The column Lightning's ``LearningRateMonitor`` logged for the first optimizer's first
    param group (``lr-SGD``, ``lr-Adam/pg1``, ``lr-AdamW-0``...), if any."""
    names = sorted((k for k in metrics if re.fullmatch(r"lr-[^/]+(/pg1)?", k)
                    and not re.search(r"-(momentum|weight_decay)(/pg\d+)?$", k)), key=natural_key)
    return names[0] if names else None
