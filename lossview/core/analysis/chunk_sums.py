"""What one chunk of the snapshot matrix adds to the streaming pass's sums (:class:`Sums`),
by numpy or in one compiled pass over the chunk (numba).

Each chunk of the snapshot matrix (``T`` snapshots x ``k`` columns, float32 or float64 as
stored) needs, for every snapshot ``i``, five float64 sums over the chunk's columns:
``|w_i|^2``, ``|w_i - w_0|^2``, ``|w_i - w_last|^2``, ``|w_i - w_{i-1}|^2`` and
``(w_i - w_{i-1}) . (w_{i-1} - w_{i-2})``, and the rows ``w_r - w_0`` (float64) of the
snapshots that enter the Gram matrix. numpy does that in about a dozen passes over
``T x k`` float64 work arrays (a widening copy, three subtractions, five row-wise dot
products): about 2 ns an element here, 5-8x the bare read of the snapshots. Compiled, it
is one pass reading each stored element once from cache-resident rows: 0.6-0.7 ns an
element on one thread (measured on the 2-core VM of docs/benchmarks.md).

The numbers do not change: every element is widened to float64 before it is subtracted
(exact for float32 weights) and every sum is accumulated in float64, as numpy's path
does; only the order of the additions differs (``reassoc`` lets the compiler vectorise the
sums), a difference of float64 rounding (tests: equal to numpy's to 1e-12). No other
fast-math flag is set, so non-finite weights give the same NaN/inf sums as numpy's path.

Why numba: the pass is memory-bound element-wise arithmetic with five reductions, which
no numpy or torch call fuses; numba compiles it from Python with no compiler on the
user's machine (wheels for every platform lossview supports), and caches the machine
code beside this module (``cache=True``), so only the first run of an installation pays
the ~1 s compilation. It is imported lazily, only for runs large enough to repay loading
it (:data:`MIN_ELEMENTS`); where it cannot be imported the numpy path runs instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lossview.core.analysis.distances import Distances

#: Bytes of one float64 ``rows x chunk`` work array (chunk columns = this / (8 rows),
#: 1,024 to 32,768, down to 64 for numpy's path of a very long run; rows: every snapshot
#: for numpy's path, the Gram matrix's for the compiled one). Each chunk costs about a
#: dozen numpy calls whatever its width, so few snapshots want wide chunks (measured on the
#: bench_stream runs: 10 snapshots 2.14 s at 8,192 columns, 1.71 s at 32,768; 24 snapshots
#: best at 8,192-16,384); many snapshots want at least 1,024 columns for the Gram product
#: (single-threaded ``c @ c.T`` at T = 1,000: 34 GFlop/s with 262 columns, 80 with 1,024).
#: Each worker holds two.
WORK_BYTES = 3 * 2**20
_CW_MIN, _CW_MAX = 1024, 32768

#: Row-wise dot products ``a_i . b_i``: numpy 2's ``vecdot`` (3x faster than ``einsum``).
_rowdot = getattr(np, "vecdot", None) or (lambda a, b: np.einsum("ij,ij->i", a, b))


#: Smallest run (snapshots x parameters) the compiled pass is used for. Loading it costs
#: 0.5-0.6 s in a new process (numba's import, then its runtime and the cached machine
#: code at the first call), and it saves about 1.7 ns an element (numpy's path ~2 ns, the
#: compiled one ~0.3 ns on two threads), so it pays back from ~3.5e8 elements: 2**29
#: (5.4e8) leaves a margin. On the bench_stream runs: 24 x 11.7M weights (2.8e8) 0.87-1.12
#: s by numpy, 0.55-0.70 s compiled once loaded, 1.47 s in a new process (0.6 s loading).
MIN_ELEMENTS = 2**29

#: The compiled function once loaded; False where numba is unavailable.
_kernel: Callable | bool | None = None


def worth(elements: int) -> bool:
    """Whether a run of ``elements`` (snapshots x parameters) is better served compiled:
    from :data:`MIN_ELEMENTS`, whether or not this process has loaded numba already, so
    that a run's analysis does not depend on what the process did before (the two paths
    differ in the order of float64 additions)."""
    return elements >= MIN_ELEMENTS


def kernel():
    """The compiled chunk function, or None where numba cannot be imported."""
    global _kernel
    if _kernel is None:
        try:
            _kernel = _compile()
        except ImportError:
            _kernel = False
    return _kernel or None


def _compile():
    import numba

    # reassoc (vectorised sums) and contract (fused multiply-adds) only: no nnan/ninf
    flags = {"reassoc", "contract"}

    @numba.njit(fastmath=flags, nogil=True, cache=True, boundscheck=False)
    def chunk_sums(buf, a, k, slot, c, out):  # pragma: no cover - compiled
        """Sums of columns ``a:a+k`` of ``buf`` into ``out`` (5 x T: sq, fi, tf, st, cs);
        row ``w_i - w_0`` written to ``c[slot[i]]`` where ``slot[i] >= 0``."""
        t = buf.shape[0]
        r0 = buf[0, a:a + k]
        rl = buf[t - 1, a:a + k]
        for i in range(t):
            x = buf[i, a:a + k]
            s_sq = 0.0
            s_fi = 0.0
            s_tf = 0.0
            s = slot[i]
            if s >= 0:
                cr = c[s]
                for j in range(k):
                    v = np.float64(x[j])
                    d = v - np.float64(r0[j])
                    e = v - np.float64(rl[j])
                    cr[j] = d
                    s_sq += v * v
                    s_fi += d * d
                    s_tf += e * e
            else:
                for j in range(k):
                    v = np.float64(x[j])
                    d = v - np.float64(r0[j])
                    e = v - np.float64(rl[j])
                    s_sq += v * v
                    s_fi += d * d
                    s_tf += e * e
            out[0, i] = s_sq
            out[1, i] = s_fi
            out[2, i] = s_tf
            if i >= 1:
                p = buf[i - 1, a:a + k]
                s_st = 0.0
                if i >= 2:
                    q = buf[i - 2, a:a + k]
                    s_cs = 0.0
                    for j in range(k):
                        pv = np.float64(p[j])
                        u = np.float64(x[j]) - pv
                        s_st += u * u
                        s_cs += u * (pv - np.float64(q[j]))
                    out[4, i] = s_cs
                else:
                    for j in range(k):
                        u = np.float64(x[j]) - np.float64(p[j])
                        s_st += u * u
                out[3, i] = s_st

    return chunk_sums


def warm(store: np.dtype) -> Callable | None:
    """:func:`kernel`, compiled (or loaded from numba's cache: 0.5-0.6 s with numba's
    import, in a new process) for ``store`` blocks on this thread, so the pass's workers
    only call it."""
    f = kernel()
    if f is not None:
        buf = np.zeros((3, 4), dtype=store)
        f(buf, 0, 4, np.array([0, -1, 1], dtype=np.int64), np.zeros((2, 4)), np.zeros((5, 3)))
    return f


class Sums:
    """One worker of the streaming pass: its float64 sums over the chunks it was given (the
    five distance sums of every snapshot, the Gram matrix ``g`` of the snapshots ``rows``,
    in their order) and its work arrays. ``kern``: the compiled chunk sums, or None for
    numpy's."""

    def __init__(self, n: int, rows: np.ndarray, kern: Callable | None):
        self.n, self.rows, self.kern = n, rows, kern
        m = len(rows)
        self.sq, self.fi, self.tf = np.zeros(n), np.zeros(n), np.zeros(n)
        self.st, self.cs = np.zeros(n), np.zeros(n)
        self.g = np.zeros((m, m))
        self.bad = np.zeros(n, dtype=bool)
        if kern is not None:  # the compiled pass reads the block itself: only the Gram rows
            self.cw = chunk(m)
            self.slot = np.full(n, -1, dtype=np.int64)
            self.slot[rows] = np.arange(m)
            self.c = np.empty((m, self.cw))
            # the kernel leaves out[3, 0], out[4, 0] and out[4, 1] at zero: no update before
            # the first snapshot, no cosine before the third
            self.out = np.zeros((5, n))
        else:  # numpy's widened copy and differences of every row (64 columns at least)
            self.cw = int(min(_CW_MAX, max(64, chunk(n))))
            self.w, self.c = np.empty((n, self.cw)), np.empty((n, self.cw))
        self.all_rows = m == n
        # the Gram rows are w_r - w_0: the first snapshot's, where it is one, is zero
        self.skip = int(m > 0 and rows[0] == 0)

    def merge(self, o: Sums) -> None:
        for k in ("sq", "fi", "tf", "st", "cs", "g"):
            getattr(self, k)[...] += getattr(o, k)
        self.bad |= o.bad

    def add(self, buf: np.ndarray, starts: Sequence[int]) -> None:
        """Add the chunks of ``buf`` (snapshots x columns) beginning at ``starts``.

        Every difference is taken in float64 (exact for float32 weights) and every sum of
        products accumulated in float64. The Gram matrix is that of the rows minus the
        chunk's first row (any row common to all rows: :meth:`Streamed.gram` double-centres,
        which removes it); its rows are the ``w_i - w_0`` of ``from_init``, computed once."""
        with np.errstate(invalid="ignore", over="ignore"):
            for a in starts:
                k = min(self.cw, buf.shape[1] - a)
                if self.kern is not None:
                    self._compiled(buf, a, k)
                else:
                    self._numpy(buf, a, k)

    def _compiled(self, buf: np.ndarray, a: int, k: int) -> None:
        out, c = self.out, self.c[:, :k]
        self.kern(buf, a, k, self.slot, c, out)
        sq = out[0]
        self.sq += sq
        self.fi += out[1]
        self.tf += out[2]
        self.st += out[3]
        self.cs += out[4]
        if np.isfinite(sq).all():
            k0 = self.skip
            v = c[k0:]
            self.g[k0:, k0:] += v @ v.T
            return
        self._gram_of_finite(~np.isfinite(sq), buf[self.rows, a:a + k])

    def _gram_of_finite(self, bad: np.ndarray, w: np.ndarray) -> None:
        """A chunk with non-finite weights in the snapshots ``bad``: flagged, and the Gram
        rows about the chunk's first finite Gram row, those of the flagged ones zeroed."""
        self.bad |= bad
        fin = ~bad[self.rows]
        if not fin.any():
            return
        c = np.asarray(w, dtype=np.float64) - np.asarray(w[int(np.argmax(fin))], dtype=np.float64)
        c[~fin] = 0.0
        self.g += c @ c.T

    def _numpy(self, buf: np.ndarray, a: int, k: int) -> None:
        n, dot = self.n, _rowdot
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
        if not np.isfinite(sq).all():
            fin = np.isfinite(w).all(axis=1)  # a snapshot with non-finite weights here
            self._gram_of_finite(~fin, w[self.rows])
            return
        k0 = self.skip
        v = c[k0:] if self.all_rows else c[self.rows[k0:]]
        self.g[k0:, k0:] += v @ v.T


def chunk(rows: int) -> int:
    """Columns of a chunk whose ``rows x chunk`` float64 work array is :data:`WORK_BYTES`."""
    return int(min(_CW_MAX, max(_CW_MIN, WORK_BYTES // (8 * max(rows, 1)))))


def distances(sq, fi, tf, st, cs, bad) -> Distances:
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
