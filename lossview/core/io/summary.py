"""What the loader did, in one line: ``run.spec["opened_as"]``.

Built once in core, when the run is assembled (:func:`lossview.core.io.common.assemble_run`),
and shown as is by ``lossview analyze`` (its first line; ``--json``: key ``opened_as``) and
the GUI. It says the format, the files used, the steps, where each metric came from,
which series is the loss, what was normalised or widened, what bookkeeping was kept as
metadata, and every file skipped or note, with why (the run's warnings)::

    opened as torch: 4 checkpoints in checkpoints/ (model_0.pt … model_300.pt), steps
    0–300; metrics: loss (metrics.csv), Loss/train (TensorBoard runs/May01); the loss is
    Loss/train; ignored 1 file (...): data.pt

Also the common names a series is found under (:func:`alias_common_names`): a TensorBoard
``Loss/train`` or ``train_loss_step`` is the run's loss when nothing is logged as ``loss``.
"""

from __future__ import annotations

import re
from pathlib import Path

from lossview.core.analysis.metric_names import GRAD_NORM, LOSS, LR, VAL_LOSS
from lossview.core.io.naming import natural_key

#: Where a format's series come from when the reader did not say.
_DEFAULT_SOURCE = {"lossview": "metrics.jsonl", "hf-trainer": "trainer_state.json",
                   "hf-pretrained": "trainer_state.json", "accelerate": "trainer_state.json",
                   "torch": "the checkpoint files", "lightning": "the checkpoint files"}
_TRAIN = {"train", "training", "tr"}
_VAL = {"val", "valid", "validation", "eval", "test", "dev"}


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[/_.\-\s]+", name.lower()) if t]


def role(name: str) -> str | None:
    """``"loss"``, ``"val_loss"``, ``"lr"`` or ``"grad_norm"`` for a tag logged under another
    spelling (``Loss/train``, ``eval/loss``, ``train/learning_rate``...), else None."""
    t = _tokens(name)
    if "loss" in t:
        if _VAL & set(t):
            return "val_loss"
        return "loss" if len(set(t) - _TRAIN - {"loss", "step", "epoch", "batch"}) == 0 else None
    if ("lr" in t or ("learning" in t and "rate" in t)) and not {
            "momentum", "weight", "decay", "beta", "betas", "scale", "warmup"} & set(t):
        return "lr"
    if ("grad" in t and "norm" in t) or "gradnorm" in t or "grad_norm" in name.lower():
        return "grad_norm"
    return None


def alias_common_names(run) -> None:
    """Where the run logged no series under the names the analyses look up (``loss``,
    ``val_loss``, ``lr``, ``grad_norm``), point ``run.metric_aliases`` at the series of the
    same role under another spelling (step-level before epoch-level, then name order)."""
    for names in (LOSS, VAL_LOSS, LR, GRAD_NORM):
        if run.metric(*names) is not None:
            continue
        want = "loss" if names is LOSS else names[0]
        cands = [k for k in run.metrics if role(k) == want and len(run.metrics[k])]
        if cands:
            best = min(cands, key=lambda k: ("epoch" in _tokens(k), natural_key(k)))
            run.metric_aliases[names[0]] = best


def _rel(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root if root.is_dir() else root.parent).as_posix()
    except ValueError:
        return p.name


def _files(run) -> str:
    snaps = run.snapshots
    if not snaps:  # a live run before its first snapshot
        return "no checkpoint yet"
    rels = [_rel(Path(s.source), run.path) for s in snaps]
    folders = {r.rsplit("/", 1)[0] if "/" in r else "" for r in rels}
    per = max((len(s.meta.get("files") or [s.source]) for s in snaps), default=1)
    if len(folders) == 1 and (folder := folders.pop()):
        names = [r.rsplit("/", 1)[1] for r in rels]
        where = f" in {folder}/"
    else:
        names, where = rels, ""
    shown = names[0] if len(names) == 1 else f"{names[0]} … {names[-1]}"
    each = f", {per} files each" if per > 1 else ""
    return f"{len(snaps)} checkpoint{'s' if len(snaps) != 1 else ''}{where} ({shown}{each})"


def _positions(run) -> str:
    unit = run.step_unit
    steps = run.steps.tolist()
    if not steps:
        return f"no {unit}s yet"
    if len(steps) == 1:
        return f"{unit} {steps[0]}"
    return f"{unit}s {steps[0]}–{steps[-1]}"


def _metrics(run) -> list[str]:
    if not run.metrics:
        return ["no metrics", *list(run.spec.get("metric_notes") or [])]
    sources: dict[str, list[str]] = {}
    placed: set[str] = set()
    for label, names in (run.spec.get("metric_sources") or {}).items():
        names = [n for n in names if n in run.metrics]
        if names:
            sources[label] = names
            placed.update(names)
    rest = [n for n in run.metrics if n not in placed]
    if rest:
        label = _DEFAULT_SOURCE.get(run.format, "")
        sources.setdefault(label, []).extend(rest)
    groups = [", ".join(sorted(names, key=natural_key)) + (f" ({label})" if label else "")
              for label, names in sources.items()]
    out = ["metrics: " + "; ".join(groups), *list(run.spec.get("metric_notes") or [])]
    alias = run.metric_aliases.get(LOSS[0])
    if alias and run.metric(*LOSS) is run.metrics.get(alias):
        out.append(f"the loss is {alias}")
    return out


def opened_as(run) -> str:
    """The one-line account of how ``run`` was opened (see the module docstring)."""
    if not run.snapshots:  # a live run before its first snapshot
        parts = [f"opened as {run.format}: no checkpoints yet"]
    else:
        parts = [f"opened as {run.format}: {_files(run)}, {_positions(run)}"]
    parts += _metrics(run)
    parts += [str(s) for s in run.spec.get("normalised") or []]
    meta = run.spec.get("checkpoint_meta")
    if meta:
        keys = ", ".join(list(meta)[:8]) + (" ..." if len(meta) > 8 else "")
        parts.append(f"kept as metadata, not metrics: {keys}")
    parts += run.warnings
    return "; ".join(" ".join(str(p).split()) for p in parts if p)
