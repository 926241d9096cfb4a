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
* each block is walked in chunks of a few thousand columns widened to float64 (``W``);
  differences between snapshots are taken in float64 (exact for float32 weights) and every
  sum is accumulated in float64, so the distances equal those of
  :func:`~lossview.core.analysis.distances.distances` and the Gram matrix that of
  :func:`~lossview.core.analysis.gram.gram_steps` to float64 rounding. Each chunk costs
  one widening copy, three subtractions (``w_i - w_{i-1}``, ``w_i - w_last``,
  ``w_i - w_0``), five row-wise dot products (``np.vecdot``) and one ``T x T`` product of
  the ``w_i - w_0`` rows (the Gram matrix about the first snapshot: centring it on the
  mean is left to :meth:`Streamed.gram`, which double-centres, so no mean is taken).

Memory: the block (:data:`~lossview.core.analysis.gram.DEFAULT_BLOCK_BYTES`, 128 MiB, as
stored: float32 unless the weights are float64), two ``T x chunk`` float64 work arrays a
worker (:data:`WORK_BYTES` each up to 128 snapshots, 1,024 columns beyond) and ``T x T``
matrices, whatever the run's length and dtype.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

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
)
from lossview.core.io.ranges import SpanReader, run_ranges, spans_fit_float32
from lossview.core.run import Run

#: Bytes of one float64 ``T x chunk`` work array for few snapshots (chunk columns = this /
#: (8 T), 1,024 to 32,768). Each chunk costs about a dozen numpy calls whatever its width,
#: so few snapshots want wide chunks (measured on the bench_stream runs: 10 snapshots 2.14
#: s at 8,192 columns, 1.71 s at 32,768; 24 snapshots best at 8,192-16,384); many
#: snapshots want at least 1,024 columns for the ``T x T`` product (single-threaded
#: ``c @ c.T`` at T = 1,000: 34 GFlop/s with 262 columns, 80 with 1,024). Each worker holds
#: two.
WORK_BYTES = 3 * 2**20
_CW_MIN, _CW_MAX = 1024, 32768

#: Row-wise dot products ``a_i . b_i``: numpy 2's ``vecdot`` (3x faster than ``einsum``).
_rowdot = getattr(np, "vecdot", None) or (lambda a, b: np.einsum("ij,ij->i", a, b))


@dataclass
class Streamed:
    """What :func:`stream_steps` measured: the distances of every snapshot and the Gram
    matrix of all ``n`` snapshots' weights minus a vector common to all of them (rows of
    snapshots with non-finite weights, ``bad``, are meaningless): :meth:`gram` centres it."""

    distances: Distances
    gram_all: np.ndarray
    bad: np.ndarray

    def gram(self, run: Run, indices: Sequence[int] | None = None) -> Gram:
        """The :class:`Gram` of ``indices`` (default all), as :func:`gram_steps` gives it:
        snapshots with non-finite weights dropped, the rest double-centred."""
        idx = np.arange(len(self.bad)) if indices is None else np.asarray(list(indices), dtype=np.int64)
        keep = idx[~self.bad[idx]]
        g = double_centre(self.gram_all[np.ix_(keep, keep)])
        g = 0.5 * (g + g.T)
        return Gram(keep, run.steps[keep], g, [int(i) for i in idx[self.bad[idx]]])


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
                 ) -> Generator[float, None, Streamed | None]:
    """The one pass; yields the fraction done, returns :class:`Streamed` (None if
    ``should_stop()`` became true)."""
    n, d = len(run), run.n_params
    spans = run_ranges(run)  # headers only
    if spans is not None:  # float32 where the weights widen exactly into it
        store = np.dtype(np.float32 if spans_fit_float32(spans[:1]) else np.float64)
    else:
        store = run.float_dtype
    item = store.itemsize
    max_cols = max(int(max_bytes // (2 * item * max(n, 1))), 1)  # two block buffers
    blocks = _blocks(run.param_shapes, max_cols) if n and d else []
    fill, share = yield from _block_reader(run, spans, store, len(blocks), should_stop)
    if fill is None:
        return None
    cw = int(min(_CW_MAX, max(_CW_MIN, WORK_BYTES // (8 * max(n, 1)))))
    sums = [_Sums(n, cw) for _ in range(_workers())]
    widths = [p[-1].col0 + p[-1].width for p in blocks]
    # two block buffers: the next block is read (by a thread: preadv and file reads release
    # the GIL) while this one is computed on
    bufs = [np.empty(n * max(widths, default=0), dtype=store) for _ in range(min(len(blocks), 2))]
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

    with (ThreadPoolExecutor(1) as ex, ThreadPoolExecutor(len(sums)) as pool,
          _one_blas_thread(len(sums)), _spill_closed(fill)):
        fut = ex.submit(read_block, 0) if blocks else None
        for b in range(len(blocks)):
            buf = fut.result()
            if stopped:
                return None
            if b + 1 < len(blocks):
                fut = ex.submit(read_block, b + 1)
            # the block's chunks shared among the workers (numpy and BLAS release the GIL)
            starts = list(range(0, widths[b], cw))
            parts = [starts[k::len(sums)] for k in range(len(sums))]
            for f in [pool.submit(sm.add, buf, part) for sm, part in zip(sums, parts)]:
                f.result()
            yield 1.0 - share + share * (b + 1) / len(blocks)
    tot = sums[0]
    for sm in sums[1:]:
        tot.merge(sm)
    return Streamed(_distances(tot.sq, tot.fi, tot.tf, tot.st, tot.cs, tot.bad), tot.g, tot.bad)


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


class _Sums:
    """One worker's float64 sums over the chunks it was given, and its work arrays."""

    def __init__(self, n: int, cw: int):
        self.n, self.cw = n, cw
        self.sq, self.fi, self.tf = np.zeros(n), np.zeros(n), np.zeros(n)
        self.st, self.cs = np.zeros(n), np.zeros(n)
        self.g = np.zeros((n, n))
        self.bad = np.zeros(n, dtype=bool)
        self.w, self.c = np.empty((n, cw)), np.empty((n, cw))

    def merge(self, o: _Sums) -> None:
        for k in ("sq", "fi", "tf", "st", "cs", "g"):
            getattr(self, k)[...] += getattr(o, k)
        self.bad |= o.bad

    def add(self, buf: np.ndarray, starts: Sequence[int]) -> None:
        """Add the chunks of ``buf`` (snapshots x columns) beginning at ``starts``.

        Every difference is taken in float64 (exact for float32 weights) and every sum of
        products accumulated in float64. The Gram matrix is that of the rows minus the
        chunk's first row (any row common to all rows: :meth:`Streamed.gram` double-centres,
        which removes it); its rows are the ``w_i - w_0`` of ``from_init``, computed once."""
        n, dot = self.n, _rowdot
        with np.errstate(invalid="ignore", over="ignore"):
            for a in starts:
                k = min(self.cw, buf.shape[1] - a)
                w, c = self.w[:, :k], self.c[:, :k]
                np.copyto(w, buf[:, a:a + k])  # widened to float64: exact differences below
                sq = dot(w, w)
                self.sq += sq
                if n >= 2:
                    u = c[1:]  # the updates w_i - w_{i-1}, in c's rows until c is needed
                    np.subtract(w[1:], w[:-1], out=u)
                    self.st[1:] += dot(u, u)
                    if n >= 3:
                        self.cs[2:] += dot(u[1:], u[:-1])
                np.subtract(w, w[-1], out=c)
                self.tf += dot(c, c)
                np.subtract(w, w[0], out=c)
                self.fi += dot(c, c)
                if np.isfinite(sq).all():
                    v = c[1:]  # row 0 is w_0 - w_0 = 0
                    self.g[1:, 1:] += v @ v.T
                    continue
                fin = np.isfinite(w).all(axis=1)  # a snapshot with non-finite weights here
                self.bad |= ~fin
                if not fin.any():
                    continue
                np.subtract(w, w[int(np.argmax(fin))], out=c)
                c[~fin] = 0.0
                self.g += c @ c.T


def _distances(sq, fi, tf, st, cs, bad) -> Distances:
    n = len(sq)
    norm = np.sqrt(sq)
    from_init, to_final, step = np.sqrt(fi), np.sqrt(tf), np.sqrt(st)
    if n:
        from_init[0] = step[0] = 0.0
    ratio = np.full(n, np.nan)
    cosine = np.full(n, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        if n >= 2:
            prev = norm[:-1]
            ratio[1:] = np.where(prev > 0, step[1:] / np.where(prev > 0, prev, 1.0), np.nan)
        if n >= 3:
            den = step[2:] * step[1:-1]
            cosine[2:] = np.where(den > 0, cs[2:] / np.where(den > 0, den, 1.0), np.nan)
    nonfinite = [int(i) for i in np.flatnonzero(bad | ~np.isfinite(sq))]
    return Distances(from_init, step, norm, nonfinite, to_final, cosine, ratio)


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


def stream(run: Run, max_bytes: int = DEFAULT_BLOCK_BYTES) -> Streamed:
    """:func:`stream_steps` run to the end."""
    from lossview.core.analysis.gram import drive

    return drive(stream_steps(run, max_bytes))
