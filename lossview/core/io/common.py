"""Turning per-file tensor listings into a consistent Run."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lossview.core.errors import InconsistentSnapshotsError, NoCheckpointsError
from lossview.core.run import (
    STEP_UNITS,
    MetricSeries,
    Reader,
    Run,
    Snapshot,
    is_buffer_name,
    is_float_dtype,
)

#: name -> (shape, dtype string) of the tensors in one file, read without loading data.
TensorInfo = Mapping[str, tuple[tuple[int, ...], str]]


def split_params(
    info: TensorInfo, buffer_names: Sequence[str] = ()
) -> tuple[dict[str, tuple[int, ...]], list[str]]:
    """Floating-point trainable parameters (name -> shape) and the names kept apart."""
    explicit = set(buffer_names)
    params: dict[str, tuple[int, ...]] = {}
    buffers: list[str] = []
    for name, (shape, dtype) in info.items():
        if name in explicit or is_buffer_name(name) or not is_float_dtype(dtype):
            buffers.append(name)
        else:
            params[name] = tuple(int(s) for s in shape)
    return params, buffers


def step_unit(snapshots: Sequence[Snapshot]) -> str:
    """``"epoch"`` when every snapshot's position is an epoch (the reader took it from an
    ``epoch`` key or an epoch in the file name: ``meta["position"]``), else ``"step"``."""
    if snapshots and all(s.meta.get("position") == "epoch" for s in snapshots):
        return "epoch"
    return "step"


def _describe_difference(ref: dict, other: dict) -> str:
    missing = [n for n in ref if n not in other]
    extra = [n for n in other if n not in ref]
    reshaped = [f"{n} {list(other[n])} vs {list(ref[n])}" for n in ref if n in other and other[n] != ref[n]]
    parts = []
    if missing:
        parts.append("missing " + ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else ""))
    if extra:
        parts.append("extra " + ", ".join(extra[:3]) + (" ..." if len(extra) > 3 else ""))
    if reshaped:
        parts.append("shape " + "; ".join(reshaped[:2]) + (" ..." if len(reshaped) > 2 else ""))
    return ", ".join(parts)


def assemble_run(
    path: Path,
    format: str,
    entries: Sequence[tuple[Snapshot, TensorInfo]],
    reader: Reader,
    metrics: Mapping[str, MetricSeries] | None = None,
    spec: Mapping[str, Any] | None = None,
    warnings: Sequence[str] = (),
    buffer_names: Sequence[str] = (),
) -> Run:
    """Build a Run from snapshots and their tensor listings.

    Snapshots whose parameter names or shapes disagree with the majority are dropped
    with a warning naming the file and the tensors; without a strict majority the
    folder is refused with the same detail. Snapshots are sorted by step (then epoch,
    then file name) and duplicate steps keep the later file. ``spec["step_unit"]`` is set
    (see :func:`step_unit`) unless the spec already says ``"step"`` or ``"epoch"``.
    ``spec["opened_as"]`` is the one-line account of what was read and skipped
    (:mod:`lossview.core.io.summary`); readers that change the run afterwards rebuild it.
    """
    warnings = list(warnings)
    if not entries:
        raise NoCheckpointsError(f"no checkpoints found in {path}")
    from lossview.core.io.normalise import normalise_entries  # wrapper prefixes, bf16 notes
    entries, reader, spec, buffer_names = normalise_entries(entries, reader, spec, buffer_names)
    signatures = []
    for _snap, info in entries:
        params, _ = split_params(info, buffer_names)
        signatures.append(params)
    keys = [tuple((n, s) for n, s in p.items()) for p in signatures]
    counts = Counter(keys)
    (best, n_best), *rest = counts.most_common()
    if rest and rest[0][1] == n_best:
        a = next(i for i, k in enumerate(keys) if k == best)
        b = next(i for i, k in enumerate(keys) if k == rest[0][0])
        raise InconsistentSnapshotsError(
            f"snapshots disagree and no layout is in the majority: {entries[a][0].source.name} vs "
            f"{entries[b][0].source.name}: {_describe_difference(signatures[a], signatures[b])}"
        )
    ref = dict(best)
    if not ref:
        raise NoCheckpointsError(f"no floating-point weights found in the checkpoints in {path}")
    kept: list[tuple[Snapshot, TensorInfo]] = []
    for (snap, info), key, params in zip(entries, keys, signatures):
        if key == best:
            kept.append((snap, info))
        else:
            warnings.append(
                f"skipped {snap.source.name}: its tensors differ from the other {n_best} "
                f"snapshots ({_describe_difference(ref, params)})"
            )
    kept.sort(key=lambda e: (e[0].step, -math.inf if e[0].epoch is None else e[0].epoch))
    unique: dict[int, tuple[Snapshot, TensorInfo]] = {}
    for e in kept:
        if e[0].step in unique:
            warnings.append(
                f"two snapshots at step {e[0].step}: kept {e[0].source.name}, "
                f"ignored {unique[e[0].step][0].source.name}"
            )
        unique[e[0].step] = e
    ordered = list(unique.values())
    _, buffers = split_params(ordered[0][1], buffer_names)
    spec = dict(spec or {})
    if spec.get("step_unit") not in STEP_UNITS:
        spec["step_unit"] = step_unit([s for s, _ in ordered])
    run = Run(
        path=path,
        format=format,
        snapshots=[s for s, _ in ordered],
        reader=reader,
        param_shapes=ref,
        buffer_names=buffers,
        metrics=metrics,
        spec=spec,
        warnings=warnings,
    )
    from lossview.core.io.summary import alias_common_names, opened_as

    alias_common_names(run)  # Loss/train, eval/loss, train/learning_rate... are findable
    run.spec["opened_as"] = opened_as(run)  # what the loader did, in one line
    return run
