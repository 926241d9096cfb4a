"""Scalars from TensorBoard event files anywhere under a run (optional extra ``tensorboard``).

Where trainers put them:

* PyTorch Lightning's default logger: ``lightning_logs/version_N/events.out.tfevents.*``
  (tags as logged: ``train_loss``, ``val_loss``, ``train_loss_step``...; plus ``epoch``
  and ``hp_metric``, which are bookkeeping);
* Hugging Face ``Trainer(report_to=["tensorboard"])``: ``runs/<date>_<host>/`` (``train/loss``,
  ``train/learning_rate``, ``train/grad_norm``, ``eval/loss``, ``train/epoch``...);
* ``torch.utils.tensorboard.SummaryWriter()`` in a plain loop: ``runs/<date>_<host>/``
  (``Loss/train``; ``add_scalars`` writes one sub-folder per curve, ``Loss_train/``).

The files are read with tensorboard's own loader (``EventAccumulator``, every point kept;
it also drops the points a restarted run wrote over), imported only when event files
exist; without the package a warning names the extra. Each scalar tag becomes a series at
its step, under its own name (a ``add_scalars`` sub-folder's under the sub-folder's name).
Positions (``epoch``, ``train/epoch``, ``global_step``), runtimes, throughput, FLOPs and
Lightning's placeholder ``hp_metric`` (-1) and the HF Trainer's end-of-run mean
``train/train_loss`` are left out. When several TensorBoard runs sit
under the folder, the one beside the checkpoints is read (Lightning's ``version_N``), else
the newest, and the others are named in a warning.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from lossview.core.io.bookkeeping import POSITION_KEYS
from lossview.core.io.filescan import natural_key, one_line
from lossview.core.run import MetricSeries

EXTRA = "lossview[tensorboard]"
EVENT_PREFIX = "events.out.tfevents."
MAX_DEPTH = 5
_SKIP = re.compile(r"(runtime|per_second|flos)", re.I)
#: One number about the whole run, logged once at its end: the HF Trainer's mean loss.
_RUN_SUMMARIES = ("train/train_loss",)


def find_event_dirs(root: Path) -> list[Path]:
    """Folders under ``root`` (a few levels down, hidden ones skipped) holding event files."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        dirnames[:] = [d for d in dirnames if depth < MAX_DEPTH and not d.startswith(".")]
        if any(f.startswith(EVENT_PREFIX) for f in filenames):
            out.append(Path(dirpath))
    return sorted(out, key=lambda p: natural_key(str(p)))


def _runs(dirs: list[Path]) -> dict[Path, list[Path]]:
    """Event folders grouped by run: an ``add_scalars`` sub-folder belongs to the folder above."""
    runs: dict[Path, list[Path]] = {}
    for d in dirs:
        top = next((r for r in runs if r in d.parents), None)
        runs.setdefault(top or d, []).append(d)
    return runs


def _newest(d: Path) -> float:
    try:
        return max(f.stat().st_mtime for f in d.iterdir() if f.name.startswith(EVENT_PREFIX))
    except (OSError, ValueError):
        return 0.0


def _shared(a: Path, b: Path) -> int:
    n = 0
    for x, y in zip(a.parts, b.parts):
        if x != y:
            break
        n += 1
    return n


def choose_run(runs: dict[Path, list[Path]], near: Path | None) -> Path:
    """The run beside ``near`` (the checkpoints' folder: most path in common), then the newest."""
    return max(runs, key=lambda r: (_shared(r, near) if near is not None else 0,
                                    max(_newest(d) for d in runs[r]), natural_key(str(r))))


def _keep(tag: str, values: np.ndarray) -> bool:
    leaf = tag.rsplit("/", 1)[-1]
    if leaf in POSITION_KEYS or _SKIP.search(tag) or tag in _RUN_SUMMARIES:
        return False
    return not (tag == "hp_metric" and np.all(values == -1))


def _name(run: Path, d: Path, tag: str) -> str:
    if d == run:
        return tag
    rel = d.relative_to(run).as_posix()
    return rel if rel.startswith(tag.replace("/", "_") + "_") else f"{rel}/{tag}"


def read_run(run: Path, dirs: list[Path]) -> dict[str, MetricSeries]:
    """Every kept scalar tag of one run's event folders, as series at their steps."""
    from tensorboard.backend.event_processing import event_accumulator as ea

    guidance = {ea.SCALARS: 0, ea.TENSORS: 0, ea.HISTOGRAMS: 1, ea.IMAGES: 1,
                ea.AUDIO: 1, ea.COMPRESSED_HISTOGRAMS: 1}
    out: dict[str, MetricSeries] = {}
    for d in dirs:
        acc = ea.EventAccumulator(str(d), size_guidance=guidance)
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            events = acc.Scalars(tag)
            steps = np.array([e.step for e in events], dtype=np.int64)
            values = np.array([e.value for e in events], dtype=np.float64)
            if len(steps) and _keep(tag, values):
                order = np.argsort(steps, kind="stable")
                out[_name(run, d, tag)] = MetricSeries(steps[order], values[order])
    return out


def event_metrics(root: Path, near: Path | None = None
                  ) -> tuple[dict[str, MetricSeries], Path | None, list[str]]:
    """``(series, the run folder read, warnings)`` from the event files under ``root``."""
    if not root.is_dir():
        return {}, None, []
    dirs = find_event_dirs(root)
    if not dirs:
        return {}, None, []
    runs = _runs(dirs)
    run = choose_run(runs, near)
    rel = run.relative_to(root).as_posix() if run != root else "."
    try:
        import tensorboard.backend.event_processing.event_accumulator  # noqa: F401
    except ImportError:
        return {}, None, [f"TensorBoard event files in {rel} not read: they need the optional "
                          f"extra {EXTRA} (pip install '{EXTRA}')"]
    warnings = []
    if len(runs) > 1:
        others = ", ".join(r.relative_to(root).as_posix() for r in runs if r != run)
        warnings.append(f"several TensorBoard runs here; read {rel}, ignored {others}")
    try:
        series = read_run(run, runs[run])
    except Exception as e:  # noqa: BLE001 - a damaged event file is named, never fatal
        return {}, None, [*warnings, f"ignored TensorBoard events in {rel}: {one_line(e)}"]
    return series, run, warnings


def _same(a: MetricSeries, b: MetricSeries) -> bool:
    """The same points (event files keep float32: compare to its precision)."""
    return (len(a) == len(b) and np.array_equal(a.steps, b.steps)
            and np.allclose(a.values, b.values, rtol=1e-6, atol=1e-12, equal_nan=True))


def add_event_metrics(metrics: dict[str, MetricSeries], root: Path, warnings: list[str],
                      spec: dict, near: Path | None = None, shown_from: Path | None = None
                      ) -> None:
    """Add the event files' series under ``root`` to ``metrics`` (in place): a tag whose name
    is already there keeps the other source's series, a tag repeating another series point
    for point (HF's ``train/loss`` = ``trainer_state.json``'s ``loss``) is left out.
    ``spec["metric_sources"]`` gets ``"TensorBoard <folder>"`` (relative to ``shown_from``,
    else ``root``) with the names added, ``spec["metric_notes"]`` a sentence on the tags left
    out as repeats; ``near`` is the checkpoints' folder."""
    series, run, w = event_metrics(root, near)
    warnings += w
    if run is None:
        return
    added, repeats = [], 0
    for name, s in series.items():
        if name in metrics or any(_same(s, m) for m in metrics.values()):
            repeats += 1
            continue
        metrics[name] = s
        added.append(name)
    base = shown_from or root
    rel = run.relative_to(base).as_posix() if base in run.parents else run.name
    spec.setdefault("metric_sources", {})[f"TensorBoard {rel}"] = added
    if repeats:
        spec.setdefault("metric_notes", []).append(
            f"TensorBoard {rel}: {repeats} tag{'s' if repeats != 1 else ''} repeating series "
            f"read elsewhere left out")
