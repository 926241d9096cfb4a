"""One pass over a run feeding every weight-space analysis: distances and the Gram matrix.

``analyze`` needs, from the weights, the per-snapshot distances of
:mod:`lossview.core.analysis.distances` and the centred Gram matrix of
:mod:`lossview.core.analysis.gram` (PCA, pairwise distances, diffusion, stationarity).
Computed one after the other they read every snapshot twice, and formats that can only be
read whole (torch, Hugging Face) were copied to a temporary spill file in between. Here
both come from one walk over column blocks of the ``T x D`` snapshot matrix:

* the block of every snapshot is read straight from the files by byte range where the
  files allow it (:mod:`lossview.core.io.ranges`: native and Hugging Face safetensors,
  torch zip files; bfloat16 widened exactly into the block), so each byte of each file is
  read once and no snapshot is decoded whole; other formats are read once each, into the
  block itself when one block holds the run, else into the Gram spill file;
* each block is walked in chunks of a few thousand columns
  (:mod:`lossview.core.analysis.chunk_sums`); differences between snapshots are taken in
  float64 (exact for float32 weights) and every sum is accumulated in float64, so the
  distances equal those of :func:`~lossview.core.analysis.distances.distances` and the
  Gram matrix that of :func:`~lossview.core.analysis.gram.gram_steps` to float64
  rounding. Large runs get the chunk's five distance sums in one compiled pass (numba),
  small ones by numpy; then one product of the ``w_r - w_0`` rows of the snapshots ``r``
  of the Gram matrix (about the first snapshot: centring it on the mean is left to
  :meth:`Streamed.gram`, which double-centres, so no mean is taken).
* the Gram matrix costs ``m / 2`` multiply-adds a weight of each of its ``m`` snapshots,
  the distances a few: a long run of a large model forms it of an even subsample
  (:func:`gram_rows`), the distances of every snapshot.

Memory: the block (:data:`~lossview.core.analysis.gram.DEFAULT_BLOCK_BYTES`, 128 MiB, as
stored: float32 unless the weights are float64), two ``rows x chunk`` float64 work arrays
a worker (:data:`~lossview.core.analysis.chunk_sums.WORK_BYTES` each; rows: the Gram
matrix's for the compiled pass, every snapshot for numpy's, at least 64 columns) and
``m x m`` matrices, whatever the run's length and dtype.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from lossview.core.analysis import chunk_sums
from lossview.core.analysis.chunk_sums import Sums, distances
from lossview.core.analysis.distances import Distances
from lossview.core.analysis.gram import (
    _STOPPED,
    DEFAULT_BLOCK_BYTES,
    Gram,
    _blocks,
    _in_memory,
    _spill_reader,
    double_centre,
    scaled,
    subsample,
)
from lossview.core.io.ranges import SpanReader, run_ranges, spans_fit_float32
from lossview.core.run import Run

#: Runs of up to this many snapshots always get the Gram matrix of all of them.
FULL_GRAM_SNAPSHOTS = 128
#: Multiply-adds (``m^2 d / 2`` for ``m`` snapshots of ``d`` weights) a longer run's Gram
#: matrix may cost: 2**32, 0.1-0.2 s of float64 products on the 2-core VM of
#: docs/benchmarks.md. The Gram matrix costs ``m / 2`` multiply-adds a weight of each of
#: its snapshots where the distances cost a few, so past ~100 snapshots it, not the read,
#: sets the pass's time: 1,000 snapshots of 1M weights took 11-13 s for it alone against
#: 0.4-2.4 s to read them. Small models keep every snapshot (the demo's 3,466 weights up
#: to ~1,500 of them); 1M weights keep 128 of 1,000 (PCA, pairwise distances, diffusion
#: and stationarity on every 8th snapshot; distances of every snapshot stay exact).
GRAM_BUDGET = 2**32
#: At most this many snapshots in the Gram matrix, whatever the budget.
MAX_GRAM_SNAPSHOTS = 2000


@dataclass
class Streamed:
    """What :func:`stream_steps` measured: the distances of every snapshot and the Gram
    matrix of the snapshots ``rows`` (all, or an even subsample of a long run), their
    weights minus a vector common to all of them (rows of snapshots with non-finite
    weights, ``bad``, are meaningless): :meth:`gram` centres it."""

    distances: Distances
    gram_all: np.ndarray
    bad: np.ndarray
    rows: np.ndarray

    def gram(self, run: Run, indices: Sequence[int] | None = None) -> Gram:
        """The :class:`Gram` of ``indices`` (default: every snapshot of ``rows``), as
        :func:`gram_steps` gives it: snapshots with non-finite weights dropped, the rest
        double-centred. ``indices`` must be among ``rows``."""
        idx = self.rows if indices is None else np.asarray(list(indices), dtype=np.int64)
        pos = np.searchsorted(self.rows, idx)
        if len(idx) and (pos.max() >= len(self.rows) or (self.rows[pos] != idx).any()):
            raise ValueError("the pass computed no Gram matrix rows for some of these snapshots")
        ok = ~self.bad[idx]
        keep, pos = idx[ok], pos[ok]
        g = double_centre(self.gram_all[np.ix_(pos, pos)])
        g = 0.5 * (g + g.T)
        return Gram(keep, run.steps[keep], g, [int(i) for i in idx[~ok]])


def gram_rows(n: int, d: int) -> np.ndarray:
    """The snapshots whose Gram matrix the pass forms, of a run of ``n`` snapshots of ``d``
    weights: all of them when there are at most :data:`FULL_GRAM_SNAPSHOTS` or their Gram
    matrix costs at most :data:`GRAM_BUDGET` multiply-adds, else as many evenly spread ones
    (the first and last kept) as that budget allows, at least ``FULL_GRAM_SNAPSHOTS`` and
    at most :data:`MAX_GRAM_SNAPSHOTS`."""
    m = n
    if n > FULL_GRAM_SNAPSHOTS and n * n * max(d, 1) > 2 * GRAM_BUDGET:
        m = max(FULL_GRAM_SNAPSHOTS, math.isqrt(2 * GRAM_BUDGET // max(d, 1)))
    return subsample(n, min(m, MAX_GRAM_SNAPSHOTS))


def _block_reader(run: Run, spans, store: np.dtype, n_blocks: int,
                  should_stop: Callable[[], bool] | None):
    """``(fill, progress share)``: ``fill(i, pieces, row)`` writes snapshot ``i``'s part of a
    block into ``row``. A generator: yields spill progress first when there is a spill."""
    if spans is not None:
        reader = SpanReader(spans)
        index = {n: k for k, n in enumerate(run.param_names)}
        rows = {n: (int(np.prod(s[1:], dtype=np.int64)) if len(s) > 1 else 1)
                for n, s in run.param_shapes.items()}

        def ranged(i, pieces, row):
            for p in pieces:
                reader.read(i, index[p.name], p.row0 * rows[p.name], p.width,
                            row[p.col0:p.col0 + p.width])

        ranged.keep_alive = reader  # type: ignore[attr-defined]
        return ranged, 1.0

    def whole(i, pieces, row):  # one block holds the run: a block row is the flat vector
        run.vector(i, out=row, cache=False)

    if n_blocks == 1 or _in_memory(run):
        if n_blocks == 1:
            return whole, 1.0

        def from_memory(i, pieces, row):
            t = run.tensors(i)
            for p in pieces:
                a = np.asarray(t[p.name])
                a = a.reshape(a.shape[0], -1) if a.ndim else a.reshape(1, 1)
                row[p.col0:p.col0 + p.width] = a[p.row0:p.row1].reshape(-1)

        return from_memory, 1.0
    spilled = yield from scaled(_spill_reader(run, np.arange(len(run)), store, should_stop), 0.5)
    if spilled is _STOPPED:
        return None, 0.0
    if spilled is None:  # no room on disk: every block reads the snapshots again
        from lossview.core.analysis.gram import _row_reader

        return _row_reader(run)[0], 0.5
    return spilled, 0.5


def stream_steps(run: Run, max_bytes: int = DEFAULT_BLOCK_BYTES,
                 should_stop: Callable[[], bool] | None = None,
                 rows: Sequence[int] | None = None, compiled: bool | None = None,
                 ) -> Generator[float, None, Streamed | None]:
    """The one pass; yields the fraction done, returns :class:`Streamed` (None if
    ``should_stop()`` became true). ``rows``: the snapshots of the Gram matrix (default
    :func:`gram_rows`). ``compiled``: the chunk sums by the compiled pass of
    :mod:`~lossview.core.analysis.chunk_sums` (True), by numpy (False), or compiled for
    runs large enough to repay loading it (:func:`~lossview.core.analysis.chunk_sums.worth`)
    where numba imports (None)."""
    n, d = len(run), run.n_params
    rows = gram_rows(n, d) if rows is None else np.unique(np.asarray(list(rows), dtype=np.int64))
    spans = run_ranges(run)  # headers only
    if spans is not None:  # float32 where the weights widen exactly into it
        store = np.dtype(np.float32 if spans_fit_float32(spans[:1]) else np.float64)
    else:
        store = run.float_dtype
    item = store.itemsize
    max_cols = max(int(max_bytes // (2 * item * max(n, 1))), 1)  # two block buffers
    blocks = _blocks(run.param_shapes, max_cols) if n and d else []
    want = compiled or (compiled is None and chunk_sums.worth(n * d))
    # the compiled pass is loaded (numba's import and cache: ~0.5 s) while the first block
    # is read, in a thread of its own (the reads release the GIL)
    kern_f = None
    if want:
        loader = ThreadPoolExecutor(1)
        kern_f = loader.submit(chunk_sums.warm, store)
        loader.shutdown(wait=False)
    fill, share = yield from _block_reader(run, spans, store, len(blocks), should_stop)
    if fill is None:
        return None
    widths = [p[-1].col0 + p[-1].width for p in blocks]
    # two block buffers: the next block is read (by a thread: preadv and file reads release
    # the GIL) while this one is computed on
    bufs = [np.empty(n * max(widths, default=0), dtype=store) for _ in range(min(len(blocks), 2))]
    sums: list[Sums] = []
    stopped = False

    def read_block(b: int) -> np.ndarray:
        nonlocal stopped
        buf = bufs[b % 2][:n * widths[b]].reshape(n, widths[b])
        for i in range(n):
            if stopped or (should_stop is not None and should_stop()):
                stopped = True
                break
            fill(i, blocks[b], buf[i])
        return buf

    workers = _workers()
    with (ThreadPoolExecutor(1) as ex, ThreadPoolExecutor(workers) as pool,
          _one_blas_thread(workers), _spill_closed(fill)):
        fut = ex.submit(read_block, 0) if blocks else None
        for b in range(len(blocks)):
            buf = fut.result()
            if stopped:
                return None
            if b + 1 < len(blocks):
                fut = ex.submit(read_block, b + 1)
            if not sums:
                kern = kern_f.result() if kern_f is not None else None
                if kern is None and compiled:
                    raise ImportError("the compiled pass needs numba")
                sums = [Sums(n, rows, kern) for _ in range(workers)]
                cw = sums[0].cw
            # the block's chunks shared among the workers (numpy, BLAS and the compiled
            # pass release the GIL)
            starts = list(range(0, widths[b], cw))
            parts = [starts[k::len(sums)] for k in range(len(sums))]
            for f in [pool.submit(sm.add, buf, part) for sm, part in zip(sums, parts)]:
                f.result()
            yield 1.0 - share + share * (b + 1) / len(blocks)
    tot = sums[0] if sums else Sums(n, rows, None)
    for sm in sums[1:]:
        tot.merge(sm)
    return Streamed(distances(tot.sq, tot.fi, tot.tf, tot.st, tot.cs, tot.bad), tot.g, tot.bad, rows)


def _workers() -> int:
    """Threads sharing a block's chunks: the CPUs this process may use, at most 4."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(n, 4))


@contextmanager
def _one_blas_thread(workers: int):
    """BLAS single-threaded while several workers multiply (no oversubscription)."""
    if workers <= 1:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


@contextmanager
def _spill_closed(reader: Any) -> Generator[None, None, None]:
    """Close the spill file behind ``reader`` (if any: its ``keep_alive``) when the pass
    ends, not whenever the reader is garbage collected (a ResourceWarning)."""
    try:
        yield
    finally:
        spill_file = getattr(reader, "keep_alive", None)
        if spill_file is not None:
            spill_file.close()


def stream(run: Run, max_bytes: int = DEFAULT_BLOCK_BYTES, **options: Any) -> Streamed:
    """:func:`stream_steps` run to the end (``options``: its ``rows`` and ``compiled``)."""
    from lossview.core.analysis.gram import drive

    return drive(stream_steps(run, max_bytes, **options))
