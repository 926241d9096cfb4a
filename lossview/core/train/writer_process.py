"""The Recorder's writer in a separate process: no file, JSON or safetensors work shares
the training loop's GIL.

The training thread appends records to a list and copies the weights at a snapshot
(one copy into one buffer); every ``handover_interval`` seconds (or sooner when
``handover_bytes`` of weights are held) it hands over what it holds, in order: pickled
(protocol 5, the arrays out of band) and written to the writer process's stdin, a
non-blocking pipe, by the training thread itself as far as the pipe takes it without
waiting; the rest, and everything after it until it is written, goes on a bounded queue
to a feeder thread that writes it (large writes, which release the GIL). So a small
model's hand-overs cost the loop one pickle and one write, and no thread switch (each one
handed to a thread was measured to cost the loop more than the write itself). The process
(``_writer_child.py`` under ``python -I -S``: standard library only, no numpy or torch,
so it starts in tens of milliseconds) continues the run folder the parent's
:class:`~lossview.core.io.native.RunWriter` created: it encodes the JSON lines and writes
the checkpoints (safetensors, the layout ``RunWriter`` writes) atomically, records before
the snapshot that follows them, exactly as the threaded writer does, so a run killed at
any moment is readable up to its last complete snapshot. It runs in its own session and
ignores SIGINT (Ctrl-C stops the training loop, whose ``close`` then finishes the
writes); if the parent dies, the process writes what it has received and exits, leaving
the run ``running``.

An error in the process (disk full, folder removed) is pickled to its stdout; a watcher
thread blocked on that pipe (it holds no GIL while waiting) hands it to the training
thread, which raises it at its next call (``log``/``snapshot``/``close``).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import struct
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lossview.core.errors import LossviewError
from lossview.core.train.snapshot_copy import Plan, copies

_HEAD = struct.Struct("<QI")
_CHUNK = 1 << 20  # chunks smaller than this are joined into one write
_CHILD = Path(__file__).with_name("_writer_child.py")
_DONE = b"\x00"  # the process's answer to "close" (an error is a pickle or text instead)



class ProcessWriter:
    """Same methods as :class:`~lossview.core.train.sinks.AsyncWriter` (the ones the
    Recorder uses), with the writing done by a child process.

    Bound on memory held for the writer (back-pressure: past it the training thread
    blocks until the writer catches up): at most ``max_pending`` hand-overs and at most
    ``max_pending_bytes`` of weights (or a single hand-over, if larger) are queued or being
    written to the pipe, plus the one being collected; a hand-over holds at most
    ``handover_interval`` seconds of records and snapshots, or ``handover_bytes`` of
    weights (a single larger snapshot is a hand-over of its own). The process holds one
    hand-over at a time.
    """

    def __init__(self, sink: Any, max_pending: int = 8, flush_interval: float = 1.0,
                 handover_interval: float = 0.02, handover_bytes: int = 32 << 20,
                 max_pending_bytes: int = 256 << 20) -> None:
        import os
        import queue
        import threading

        if not os.path.isfile(sys.executable) or getattr(sys, "frozen", False) or not _CHILD.is_file():
            raise OSError("no Python interpreter or writer script to start a process with")
        from lossview.core.io.native import CHECKPOINT_DIR, FORMAT_NAME

        self.sink = sink
        self.path = sink.path
        self.spec = sink.spec
        self._buf: list = []
        self._held: list = []
        self._held_bytes = 0
        self._interval = float(flush_interval)
        self._handover = float(handover_interval)
        self._handover_bytes = int(handover_bytes)
        self._max_bytes = int(max_pending_bytes)
        self._queued_bytes = 0  # weights queued or being written; guarded by _cond
        self._cond = threading.Condition()
        self._clock = time.perf_counter
        self._last = self._clock()
        self._error: BaseException | None = None
        self._reported = False
        self._closed = False
        self._q: queue.Queue = queue.Queue(maxsize=max_pending)
        sink.release()  # the process appends to metrics.jsonl from now on
        # the process fsyncs run.json first where the sink left that to it
        self._q.put((("open", str(self.path), CHECKPOINT_DIR, FORMAT_NAME,
                      not getattr(sink, "spec_synced", True)), 0))
        # entries queued (training thread) and written (feeder): equal when the feeder is
        # idle, and only then may the training thread write to the pipe itself
        self._sent, self._written = 1, 0
        self._out: Any = None  # the pipe, non-blocking, once the process runs (POSIX)
        self._proc: Any = None
        self._plan: Plan | None = None  # how the last snapshot was copied
        self._given: tuple = (None, None, None)  # the last params, buffers and both merged
        self._finished = threading.Event()  # the process wrote everything, or failed
        self._watcher = threading.Thread(target=self._watch, name="lossview-writer-watch", daemon=True)
        # the feeder starts the process: the training thread does not wait for fork + exec
        self._feeder = threading.Thread(target=self._feed, name="lossview-writer-feed", daemon=True)
        self._feeder.start()

    # -- training thread ---------------------------------------------------------------
    def log(self, step: int, **metrics: Any) -> None:
        """Queue one metrics record (tensors are converted to numbers now)."""
        self.record(step, metrics)

    def record(self, step: int, metrics: dict[str, Any]) -> None:
        """:meth:`log` with the metrics as a dict (kept: the caller does not reuse it)."""
        if self._error is not None:
            return self._raise()
        for k, v in metrics.items():
            if type(v) is not float and hasattr(v, "item"):
                metrics[k] = v.item()
        self._buf.append((step, metrics))
        if self._clock() - self._last > self._interval:
            self.flush()

    def snapshot(self, step: int, params: Mapping[str, Any], buffers: Mapping[str, Any] | None = None,
                 epoch: float | None = None) -> None:
        """Copy the weights now (into one buffer); they go to the writer with the records
        before them. ``params`` and ``buffers`` given again as the same dict objects are
        taken to hold the same entries (the Recorder's :class:`ModelTensors` gives new
        dicts when the model changed)."""
        if self._error is not None:
            return self._raise()
        self._hold_records()
        if buffers is None:
            buffers = {}
        if params is self._given[0] and buffers is self._given[1]:  # the Recorder's, unchanged
            tensors = self._given[2]
        else:
            tensors = {**params, **buffers}
            self._given = (params, buffers, tensors)
        plan = self._plan if self._plan is not None and self._plan.fits(tensors) else None
        if plan is None:
            plan = Plan.of(tensors)
            self._plan = plan
        if plan is not None:  # CPU tensors numpy can view: one copy into one buffer
            names, data, n = plan.names, [pickle.PickleBuffer(plan.copy())], plan.nbytes
        else:
            names, data, n = copies(tensors)
        epoch = None if epoch is None else float(epoch)  # the process has no numpy
        self._held_bytes += n
        self._held.append(("snapshot", (int(step), epoch, names, data, list(buffers))))
        if self._held_bytes >= self._handover_bytes or self._clock() - self._last > self._handover:
            self.flush()

    def flush(self) -> None:
        """Hand what is held to the feeder thread (blocks while the queue is full)."""
        self._raise()
        self._last = self._clock()
        self._hold_records()
        if self._held:
            held, n, self._held, self._held_bytes = self._held, self._held_bytes, [], 0
            self._send(("batch", held), n)

    def update_spec(self, **fields: Any) -> None:
        """Add fields to ``run.json`` (written by the process, in order with the rest)."""
        if self._closed:  # the process is gone: write it here
            self.sink.update_spec(**fields)
            return
        self._raise()
        self.spec.update(fields)
        self.flush()
        self._send(("spec", _run_json(self.spec)))

    def close(self, status: str = "finished", **fields: Any) -> None:
        """Write everything queued, mark the run ``status`` and wait for the process."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._error is None:
                self.flush()
                self.spec.update(status=status, **fields)
                self._send(("close", _run_json(self.spec)))
        except Exception:
            if self._error is None:
                raise
        finally:
            self._q.put(None)
            self._feeder.join()
            if self._proc is not None:
                self._finished.wait()
        if self._error is not None:
            # the process failed: mark the run as the threaded writer would; if that fails
            # too, the writer's own error is the one to report
            with contextlib.suppress(Exception):
                self.sink.close(status, **fields)
            self._raise()

    def _hold_records(self) -> None:
        if self._buf:
            buf, self._buf = self._buf, []
            self._held.append(("records", buf))

    def _send(self, item: Any, nbytes: int = 0) -> None:
        """Write ``item`` to the pipe now, as far as it takes it without blocking, if the
        feeder has written everything before it; queue the rest for the feeder."""
        if self._out is not None and self._written == self._sent:
            try:
                rest = _write_some(self._out, _frame(item))
            except OSError:  # the process is gone: the feeder finds out, the watcher says why
                rest = _frame(item)
            except Exception as e:  # noqa: BLE001 - e.g. a metric pickle cannot take
                self._error = self._error or e
                return self._raise()
            if not rest:
                return
            item = _Raw(rest)
        if nbytes:
            with self._cond:  # the byte bound (the queue's maxsize is the count bound)
                while (self._queued_bytes and self._queued_bytes + nbytes > self._max_bytes
                       and self._error is None):
                    self._cond.wait(0.5)
                self._queued_bytes += nbytes
        self._put(item, nbytes)

    def _put(self, item: Any, nbytes: int = 0) -> None:
        import queue

        self._sent += 1
        while True:  # blocks while full, but not forever if the process is gone
            try:
                self._q.put((item, nbytes), timeout=0.5)
                return
            except queue.Full:
                self._raise()

    def _raise(self) -> None:
        """Raise the writer's error once (as the threaded writer does); what is logged
        after that is dropped, and ``close`` marks the run without raising it again."""
        if self._error is not None and not self._reported:
            self._reported = True
            err = self._error
            if not isinstance(err, Exception):
                err = LossviewError(f"the run writer failed: {err!r}")
            raise err

    # -- feeder and watcher threads ----------------------------------------------------
    def _feed(self) -> None:
        import subprocess

        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(_CHILD)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                close_fds=False,  # Python's own fds are not inherited anyway; True costs ~5 ms
                start_new_session=sys.platform != "win32")  # Ctrl-C reaches the loop only
        except OSError as e:
            self._error = e
            with contextlib.suppress(Exception):
                self.sink.sync_spec()
            while (entry := self._q.get()) is not None:  # nothing will be written
                self._done(entry[1])
            return
        self._watcher.start()
        out = self._proc.stdin
        direct = False
        if hasattr(os, "set_blocking") and sys.platform != "win32":
            with contextlib.suppress(OSError):
                os.set_blocking(out.fileno(), False)  # the training thread's writes never wait
                direct = True
        broken = False
        while True:
            entry = self._q.get()
            if entry is None:
                break
            try:
                if not broken:
                    item = entry[0]
                    _write_all(out, item.chunks if isinstance(item, _Raw) else _frame(item))
            except (OSError, ValueError):  # the process is gone: the watcher says why
                broken = True
            except Exception as e:  # noqa: BLE001 - e.g. a metric pickle cannot take
                self._error = self._error or e
                broken = True
            self._done(entry[1])
            if direct:  # "open" is written: the training thread may write from now on
                self._out = out
        with contextlib.suppress(OSError):
            out.close()

    def _done(self, nbytes: int) -> None:
        self._written += 1
        if nbytes:
            with self._cond:
                self._queued_bytes -= nbytes
                self._cond.notify_all()

    def _watch(self) -> None:
        first = self._proc.stdout.read(1)
        if first == _DONE:  # run.json written: close() need not wait for the exit
            self._finished.set()
            self._proc.wait()
            self._proc.stdout.close()
            return
        data = first + self._proc.stdout.read()
        code = self._proc.wait()
        self._proc.stdout.close()
        if data or code != 0:
            self._error = _error_from(data, code)
            with self._cond:  # wake a training thread waiting for room
                self._cond.notify_all()
        self._finished.set()


def _run_json(spec: Mapping[str, Any]) -> str:
    """``run.json``'s text, as ``atomic_write_json`` writes it."""
    from lossview.core.io.atomic import _jsonable

    return json.dumps(spec, indent=2, sort_keys=False, default=_jsonable) + "\n"


def _error_from(data: bytes, code: int) -> BaseException:
    if data:
        try:
            err = pickle.loads(data)
            if isinstance(err, BaseException):
                return err
        except Exception:  # noqa: BLE001 - fall back to the text
            pass
        return LossviewError(f"the run writer failed: {data[-500:].decode(errors='replace')}")
    return LossviewError(f"the run writer process exited with code {code}")


class _Raw:
    """The part of a frame the pipe did not take: written by the feeder as it is."""

    __slots__ = ("chunks",)

    def __init__(self, chunks: list) -> None:
        self.chunks = chunks


def _frame(item: Any) -> list:
    """The frame of ``item`` as a few buffers: the head and pickle joined with the small
    out-of-band buffers (up to ``_CHUNK``), each large buffer as it is (not copied)."""
    bufs: list = []
    data = pickle.dumps(item, protocol=5, buffer_callback=bufs.append)
    views = [b.raw() for b in bufs]
    head = _HEAD.pack(len(data), len(views)) + struct.pack(f"<{len(views)}Q", *(v.nbytes for v in views))
    out: list = []
    pending: list = [head, data]
    size = len(head) + len(data)
    for v in views:
        if v.nbytes >= _CHUNK:
            out.append(b"".join(pending))
            pending, size = [], 0
            out.append(v)
        else:
            pending.append(v)
            size += v.nbytes
            if size >= _CHUNK:
                out.append(b"".join(pending))
                pending, size = [], 0
    if pending:
        out.append(b"".join(pending))
    return out


def _write_some(out: Any, chunks: list) -> list:
    """Write ``chunks`` to the non-blocking ``out`` until it would block; what is left."""
    for i, c in enumerate(chunks):
        mv = memoryview(c).cast("B")
        while mv.nbytes:
            n = out.write(mv)  # None: the pipe is full
            if not n:
                return [mv, *chunks[i + 1:]]
            mv = mv[n:]
    return []


def _write_all(out: Any, chunks: list) -> None:
    """Write ``chunks`` to ``out``, waiting for room where it is non-blocking."""
    import select

    while chunks := _write_some(out, chunks):
        select.select([], [out], [])
