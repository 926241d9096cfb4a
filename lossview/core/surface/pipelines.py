"""Chunks of grid points evaluated on several single-threaded torch pipelines at once.

Why not torch's own threads: every operation of a chunk (a few hundred microseconds on
1 MB blocks) is split across the cores and joined again, and each core touches the other's
half of the block at the next operation. Measured on the issue's medium MLP (2 cores): one
pipeline with 2 intra-op threads 413 us a point, two pipelines with 1 thread each 366 us
(a point costs 741 us on one thread, so two pipelines scale perfectly); on the small MLP
the gain is larger (its 16k-element operations hardly parallelise inside). torch releases
the GIL inside each operation, so plain threads suffice.

Thread count: :func:`torch.set_num_threads` called inside a worker sets that thread's
OpenMP and MKL thread count (both are per-thread settings) but also the process-wide
default that threads started later inherit; the caller's value is restored as soon as
every worker has set its own, so nothing outside the workers changes.

Buffers: each pipeline keeps one :class:`Workspace` of output blocks reused from chunk to
chunk. Allocating fresh megabyte blocks for every chunk let glibc map and unmap them each
time (mmap threshold): the resulting page faults made the medium case 2.5x slower,
depending on what the process had allocated before (measured 1.85 s against 0.73 s).
"""

from __future__ import annotations

import itertools
import math
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch


class Workspace:
    """Reusable tensors of one pipeline, by key; grown when a larger one is asked for.
    ``memo``: anything else a pipeline keeps from chunk to chunk (views set up once)."""

    def __init__(self) -> None:
        self._bufs: dict[Any, torch.Tensor] = {}
        self.memo: dict[Any, Any] = {}

    def get(self, key: Any, shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
        n = math.prod(shape)
        b = self._bufs.get(key)
        if b is None or b.numel() < n or b.dtype != like.dtype or b.device != like.device:
            b = torch.empty(n, dtype=like.dtype, device=like.device)
            self._bufs[key] = b
        return b[:n].view(*shape)


def balanced_spans(n: int, chunk: int, workers: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` spans covering ``range(n)``, at most ``chunk`` long, their count a
    multiple of ``workers`` and their lengths within one of each other, so that no pipeline
    is left with one more chunk than the others (11 chunks on 2 pipelines cost 6 chunks'
    time: 9 %)."""
    if n <= 0:
        return []
    chunk, workers = max(1, int(chunk)), max(1, int(workers))
    count = -(-n // chunk)
    count = min(n, -(-count // workers) * workers)
    bounds = [n * k // count for k in range(count + 1)]
    return [(lo, hi) for lo, hi in itertools.pairwise(bounds) if hi > lo]


def run_chunks(work: Callable[[int, int, Workspace], Any], spans: Sequence[tuple[int, int]],
               workers: int, threads: int = 1) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(lo, hi, work(lo, hi, workspace))`` for every span, in completion order.

    The spans run on ``workers`` threads, each with ``threads`` torch threads and its own
    workspace, under ``torch.no_grad``; one worker that would use the caller's own thread
    count runs in the caller's thread. Closing the generator (cancel) stops the workers
    after their current span and waits for them; an exception in a worker is raised here.
    """
    workers = max(1, min(int(workers), len(spans)))
    threads = max(1, int(threads))
    if workers == 1 and threads == torch.get_num_threads():
        ws = Workspace()
        with torch.no_grad():
            for lo, hi in spans:
                yield lo, hi, work(lo, hi, ws)
        return
    tasks: queue.SimpleQueue = queue.SimpleQueue()
    for s in spans:
        tasks.put(s)
    results: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()
    ready = threading.Barrier(workers + 1)
    saved = torch.get_num_threads()

    def run() -> None:
        try:
            try:
                # get first: a thread's first torch call applies the process-wide default
                # to it (lazily), which would undo the set once the caller restores it
                torch.get_num_threads()
                torch.set_num_threads(threads)
            finally:
                ready.wait()
            ws = Workspace()
            with torch.no_grad():
                while not stop.is_set():
                    try:
                        lo, hi = tasks.get_nowait()
                    except queue.Empty:
                        break
                    results.put((lo, hi, work(lo, hi, ws), None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            results.put((0, 0, None, exc))

    pool = [threading.Thread(target=run, name=f"lossview-surface-{k}", daemon=True)
            for k in range(workers)]
    for t in pool:
        t.start()
    try:
        ready.wait()
    finally:
        torch.set_num_threads(saved)
    try:
        for _ in range(len(spans)):
            lo, hi, value, exc = results.get()
            if exc is not None:
                raise exc
            yield lo, hi, value
    finally:
        stop.set()
        for t in pool:
            t.join()
