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


class AsyncWriter:
    """Runs the slow part of recording in a background thread: JSON lines, snapshot files
    (serialise, fsync, rename) and, optionally, an evaluation of each snapshot.

    The training thread only appends records to a list and takes numpy copies of the
    weights; everything is handed over in order, so the metrics up to a snapshot are in
    ``metrics.jsonl`` before that snapshot's file appears (a killed run is readable up to its
    last complete snapshot). Records and snapshots are held and handed over together: at
    a snapshot if the last hand-over is older than ``handover_interval`` seconds, by
    :meth:`flush`, and at least every ``flush_interval`` seconds while logging (waking the
    writer for every snapshot, and writing every record with its own system call, passed
    the GIL back and forth with the training thread: +37 % against +22 % on the trainer
    benchmark). At most ``max_pending`` hand-overs wait in the queue (then the caller
    blocks: back-pressure from a slow disk). An error in the thread is raised at the next
    call.

    Parameters
    ----------
    sink : a RunWriter or :class:`MemorySink`.
    evaluate : ``evaluate(params, buffers) -> {name: value}`` run on every snapshot in the
        thread; its result is logged at the snapshot's step and kept for :meth:`results`.
    row_keys : names of the values of :meth:`log_row` tuples (after the step).
    """

    def __init__(self, sink: Any, evaluate: Any = None, row_keys: tuple[str, ...] = (),
                 max_pending: int = 8, flush_interval: float = 1.0,
                 handover_interval: float = 0.1) -> None:
        import collections
        import queue
        import threading
        import time

        self.sink = sink
        self.path = getattr(sink, "path", None)
        self.spec = sink.spec
        self._evaluate = evaluate
        self._keys = row_keys
        self._buf: list = []
        self._held: list = []  # records and snapshots not yet handed to the writer
        self._handover = float(handover_interval)
        self._q: queue.Queue = queue.Queue(maxsize=max_pending)
        self._results: collections.deque = collections.deque()
        self._error: BaseException | None = None
        self._clock = time.perf_counter
        self._interval = flush_interval
        self._last_flush = self._clock()
        self._thread = threading.Thread(target=self._work, name="lossview-writer", daemon=True)
        self._thread.start()

    # -- training thread ---------------------------------------------------------------
    def log(self, step: int, **metrics: Any) -> None:
        """Queue one metrics record (tensors are converted to numbers now)."""
        for k, v in metrics.items():
            if hasattr(v, "item"):
                metrics[k] = v.item()
        self._buf.append((int(step), metrics))
        if self._clock() - self._last_flush > self._interval:
            self.flush()

    def log_row(self, row: tuple) -> None:
        """Queue ``(step, *values)`` with values named by ``row_keys`` (the fast path)."""
        self._buf.append(row)

    def flush_if_due(self) -> None:
        """:meth:`flush` if the last hand-over is older than ``flush_interval``."""
        if self._clock() - self._last_flush > self._interval:
            self.flush()

    def flush(self) -> None:
        """Hand the queued records (and snapshots) to the writer thread."""
        self._raise()
        self._last_flush = self._clock()
        self._hand_over()

    def _hold_records(self) -> None:
        if self._buf:
            buf, self._buf = self._buf, []
            self._held.append(("records", buf))

    def _hand_over(self) -> None:
        self._hold_records()
        if self._held:
            held, self._held = self._held, []
            self._q.put(("batch", held))

    def snapshot(self, step: int, params: Mapping[str, Any], buffers: Mapping[str, Any] | None = None,
                 epoch: float | None = None) -> None:
        """Copy the weights now; they are handed to the writer with the records before
        them, at most ``handover_interval`` seconds later (see the class docstring)."""
        self._hold_records()
        self._held.append(("snapshot", (int(step), _copy(params), _copy(buffers or {}), epoch)))
        if self._clock() - self._last_flush > self._handover:
            self.flush()

    def results(self) -> list[tuple[int, dict[str, float]]]:
        """Evaluations finished since the last call: ``[(step, {name: value}), ...]``."""
        out = []
        while self._results:
            out.append(self._results.popleft())
        return out

    def wait(self) -> None:
        """Flush and wait until everything queued is written."""
        self.flush()
        self._q.join()
        self._raise()

    def update_spec(self, **fields: Any) -> None:
        self.sink.update_spec(**fields)

    def close(self, status: str = "finished", **fields: Any) -> None:
        """Write everything queued, stop the thread, then mark the run with ``status``."""
        try:
            if self._thread.is_alive():
                self._hand_over()
                self._q.put(None)
                self._thread.join()
            self._raise()
        finally:
            self.sink.close(status, **fields)

    def _log_many(self, records: list) -> None:
        many = getattr(self.sink, "log_many", None)
        if many is not None:
            many(records)
        else:
            for step, metrics in records:
                self.sink.log(step, **metrics)

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    # -- writer thread -----------------------------------------------------------------
    def _work(self) -> None:
        keys = self._keys
        while True:
            item = self._q.get()
            try:
                if item is None:
                    return
                if self._error is not None:
                    continue
                for kind, payload in item[1]:
                    if kind == "records":
                        self._log_many([rec if isinstance(rec[1], dict)
                                        else (rec[0], dict(zip(keys, rec[1:])))
                                        for rec in payload])
                    else:
                        step, params, buffers, epoch = payload
                        self.sink.snapshot(step, params, buffers, epoch)
                        if self._evaluate is not None:
                            m = self._evaluate(params, buffers)
                            self.sink.log(step, **m)
                            self._results.append((step, m))
            except BaseException as e:  # noqa: BLE001 - handed to the training thread
                self._error = e
            finally:
                self._q.task_done()


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
