"""Where the trainer writes when no run folder is wanted: memory (live runs, tests)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


class MemorySink:
    """Same methods as :class:`~lossview.core.io.native.RunWriter`, kept in memory."""

    path = None

    def __init__(self, spec: Mapping[str, Any] | None = None) -> None:
        self.spec: dict[str, Any] = {"status": "running", **(spec or {})}
        self.records: list[dict[str, Any]] = []
        self.snapshots: list[tuple[int, dict[str, np.ndarray]]] = []
        self.buffer_names: list[str] = []

    def update_spec(self, **fields: Any) -> None:
        self.spec.update(fields)

    def log(self, step: int, **metrics: Any) -> None:
        self.records.append({"step": int(step), **{k: v for k, v in metrics.items() if v is not None}})

    def snapshot(self, step: int, params: Mapping[str, Any], buffers: Mapping[str, Any] | None = None,
                 epoch: float | None = None) -> None:
        self.buffer_names = sorted(buffers or {})
        self.snapshots.append((int(step), _copy({**params, **(buffers or {})})))

    def close(self, status: str = "finished", **fields: Any) -> None:
        self.spec.update(status=status, **fields)

    def run(self):
        """The recorded run as a :class:`~lossview.core.run.Run`."""
        from pathlib import Path

        from lossview.core.io.memory import MemoryReader
        from lossview.core.run import MetricSeries, Run, Snapshot

        cols: dict[str, tuple[list[int], list[float]]] = {}
        for rec in self.records:
            for k, v in rec.items():
                if k != "step":
                    s, vals = cols.setdefault(k, ([], []))
                    s.append(rec["step"])
                    vals.append(float(v))
        metrics = {k: MetricSeries(np.asarray(s), np.asarray(v)) for k, (s, v) in cols.items()}
        snaps = [Snapshot(step=s, source=Path("memory"), meta={"index": i})
                 for i, (s, _) in enumerate(self.snapshots)]
        first = self.snapshots[0][1] if self.snapshots else {}
        shapes = {k: tuple(v.shape) for k, v in first.items()
                  if k not in self.buffer_names and np.issubdtype(v.dtype, np.floating)}
        buffers = [k for k in first if k not in shapes]
        return Run(Path("memory"), "memory", snaps, MemoryReader([a for _, a in self.snapshots]),
                   shapes, buffers, metrics, {**self.spec, "name": "memory"}, cache_size=0)


class BackgroundSnapshots:
    """Wraps a RunWriter so snapshots are written (serialised, fsync'ed, renamed) by a
    background thread while training goes on; ``log`` and ``update_spec`` stay synchronous.

    ``snapshot`` takes numpy copies, so the caller may keep changing its tensors. At most
    ``max_pending`` snapshots wait in the queue (then ``snapshot`` blocks: back-pressure
    from a slow disk). An error in the thread is raised at the next call. ``close`` waits
    for every queued snapshot before marking the run finished, so a completed run is whole
    and a killed one is readable up to its last renamed snapshot.
    """

    def __init__(self, writer: Any, max_pending: int = 8) -> None:
        import queue
        import threading

        self.writer = writer
        self.path = writer.path
        self.spec = writer.spec
        self._q: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="lossview-snapshots", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._q.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    self.writer.snapshot(*item)
            except BaseException as e:  # noqa: BLE001 - handed to the training thread
                self._error = e
            finally:
                self._q.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def update_spec(self, **fields: Any) -> None:
        self.writer.update_spec(**fields)

    def log(self, step: int, **metrics: Any) -> None:
        self.writer.log(step, **metrics)

    def snapshot(self, step: int, params: Mapping[str, Any], buffers: Mapping[str, Any] | None = None,
                 epoch: float | None = None) -> None:
        self._raise()
        self._q.put((int(step), _copy(params), _copy(buffers or {}), epoch))

    def flush(self) -> None:
        """Wait until every queued snapshot is on disk."""
        self._q.join()
        self._raise()

    def close(self, status: str = "finished", **fields: Any) -> None:
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()
        try:
            self._raise()
        finally:
            self.writer.close(status, **fields)


def _copy(tensors: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for k, v in tensors.items():
        if hasattr(v, "detach"):
            v = v.detach().cpu()
            if str(v.dtype) == "torch.bfloat16":
                v = v.float()
            v = v.numpy()
        out[k] = np.array(v, copy=True)
    return out
