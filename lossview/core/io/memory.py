"""Runs held in memory: synthetic trajectories for tests, and live training in the GUI."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lossview.core.run import MetricSeries, Run, Snapshot, TensorDict


class MemoryReader:
    format = "memory"

    def __init__(self, tensors: Sequence[TensorDict]) -> None:
        self._tensors = list(tensors)

    def read(self, snapshot: Snapshot) -> TensorDict:
        return self._tensors[int(snapshot.meta["index"])]


def run_from_arrays(
    weights: np.ndarray | Sequence[Mapping[str, np.ndarray]],
    steps: Sequence[int] | None = None,
    metrics: Mapping[str, tuple[Sequence[int], Sequence[float]] | MetricSeries] | None = None,
    spec: Mapping[str, Any] | None = None,
    name: str = "memory",
    format: str = "memory",
) -> Run:
    """A Run over in-memory weights.

    ``weights`` is either a ``[T, D]`` array (one flat vector per snapshot, named ``"w"``)
    or a sequence of ``{name: array}`` dicts with identical names and shapes.
    ``metrics`` maps a name to ``(steps, values)`` or a :class:`MetricSeries`.
    """
    if isinstance(weights, np.ndarray):
        tensors = [{"w": np.asarray(row)} for row in weights]
    else:
        tensors = [{k: np.asarray(v) for k, v in d.items()} for d in weights]
    steps = list(range(len(tensors))) if steps is None else [int(s) for s in steps]
    if len(steps) != len(tensors):
        raise ValueError(f"{len(steps)} steps for {len(tensors)} snapshots")
    snaps = [Snapshot(step=s, source=Path(name), meta={"index": i}) for i, s in enumerate(steps)]
    series = {
        k: v if isinstance(v, MetricSeries) else MetricSeries(np.asarray(v[0]), np.asarray(v[1]))
        for k, v in (metrics or {}).items()
    }
    first = tensors[0] if tensors else {}
    shapes = {k: tuple(v.shape) for k, v in first.items() if np.issubdtype(v.dtype, np.floating)}
    buffers = [k for k in first if k not in shapes]
    return Run(Path(name), format, snaps, MemoryReader(tensors), shapes, buffers, series,
               dict(spec or {}, name=name), cache_size=0)
