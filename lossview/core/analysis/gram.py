"""The centred T x T Gram matrix of a run's snapshots, accumulated without stacking them.

Everything that needs inner products between snapshots (PCA, pairwise distances, mean
squared displacement) starts from ``G = Y Y^T`` with ``Y`` the snapshot matrix centred on
its mean. For ``T`` snapshots of ``D`` parameters, holding ``Y`` costs ``8 T D`` bytes;
here the parameter axis is cut into column blocks of at most ``max_bytes`` and

    G = sum over blocks b of  Y_b Y_b^T ,   Y_b = X_b - mean over snapshots of X_b

so each block is centred exactly (no cancellation between large weights and small
motions) and only one block is ever in memory. Every snapshot file is visited once per
block; for lossview's own runs (safetensors) only the bytes of the block's rows are read
from each file, so the bytes read are one pass over the run whatever the block count.
Other formats (torch, Lightning, Hugging Face files) can only be read whole, so when the
matrix needs more than one block it is first copied, one snapshot at a time, into an
anonymous temporary file (the disk, not memory) and the blocks are read from there: one
pass over the snapshot files instead of one per block.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
import tempfile
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lossview.core.run import Run

#: Default memory for one column block of the snapshot matrix (float64).
DEFAULT_BLOCK_BYTES = 128 * 2**20

#: Columns of a float32 block centred into float64 at a time (T x this many float64).
_CENTRE_COLS = 8192


@dataclass
class Gram:
    """Centred Gram matrix of the snapshots ``indices`` (snapshots with non-finite weights
    are left out and listed in ``dropped``)."""

    indices: np.ndarray
    steps: np.ndarray
    gram: np.ndarray
    dropped: list[int]

    def __len__(self) -> int:
        return len(self.indices)

    def sq_distances(self) -> np.ndarray:
        """Pairwise squared distances ``||w_a - w_b||^2`` (T x T, clipped at 0)."""
        return sq_distances(self.gram)

    def about(self, ref: int) -> np.ndarray:
        """Gram matrix of ``w_i - w_ref`` for ``ref`` a position in ``indices``."""
        g = self.gram
        return g - g[:, [ref]] - g[[ref], :] + g[ref, ref]


def sq_distances(g: np.ndarray) -> np.ndarray:
    d = np.diag(g)
    return np.maximum(d[:, None] + d[None, :] - 2.0 * g, 0.0)


def double_centre(g: np.ndarray) -> np.ndarray:
    """``C G C`` with ``C = I - 11^T/T``: the Gram matrix of the rows minus their mean."""
    g = g - g.mean(axis=0, keepdims=True)
    return g - g.mean(axis=1, keepdims=True)


def subsample(n: int, max_n: int | None) -> np.ndarray:
    """``n`` indices, or ``max_n`` evenly spread ones keeping the first and last."""
    if max_n is None or n <= max_n:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_n)).astype(np.int64))


# -- column blocks -------------------------------------------------------------------
@dataclass(frozen=True)
class _Piece:
    name: str
    row0: int
    row1: int
    col0: int  # where the piece starts in the block
    width: int


def _blocks(shapes: dict[str, tuple[int, ...]], max_cols: int) -> list[list[_Piece]]:
    """Cut the flat parameter vector into blocks of at most ``max_cols`` entries, splitting
    large tensors along their first axis (a row is never split)."""
    blocks: list[list[_Piece]] = []
    cur: list[_Piece] = []
    used = 0
    for name, shape in shapes.items():
        rows = int(shape[0]) if len(shape) else 1
        row_size = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
        r = 0
        while r < rows:
            room = max_cols - used
            take = min(rows - r, max(room // row_size, 0))
            if take == 0:
                if cur:
                    blocks.append(cur)
                    cur, used = [], 0
                    continue
                take = 1  # a single row wider than a block: one oversized block
            cur.append(_Piece(name, r, r + take, used, take * row_size))
            used += take * row_size
            r += take
    if cur:
        blocks.append(cur)
    return blocks


_ST_DTYPES = {"F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8")}


def _safetensors_header(path: str) -> tuple[int, dict]:
    """Start of the data section and the JSON header of a .safetensors file (the format is
    an 8-byte little-endian header length, the header, then the raw tensors)."""
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        return 8 + n, json.loads(fh.read(n))


def _row_reader(run: Run) -> tuple[Callable[[int, list[_Piece], np.ndarray], None], np.dtype]:
    """A function filling one row of a block from snapshot ``i``, and the dtype the block
    should be stored in. Native runs whose parameters are all float32 are read straight
    into a float32 block, only the bytes of the block's rows (one ``readinto`` per piece);
    other runs fill a float64 block from the whole snapshot (cached by the Run)."""

    def generic(i: int, pieces: list[_Piece], out: np.ndarray) -> None:
        t = run.tensors(i)
        for p in pieces:
            a = np.asarray(t[p.name])
            a = a.reshape(a.shape[0], -1) if a.ndim else a.reshape(1, 1)
            out[p.col0:p.col0 + p.width] = a[p.row0:p.row1].reshape(-1)

    if run.format != "lossview" or not run.snapshots:
        return generic, np.dtype(np.float64)
    headers: dict[int, tuple[int, dict]] = {}

    def native(i: int, pieces: list[_Piece], out: np.ndarray) -> None:
        src = str(run.snapshots[i].source)
        try:
            if i not in headers:
                headers[i] = _safetensors_header(src)
            start, hdr = headers[i]
            with open(src, "rb", buffering=0) as fh:
                for p in pieces:
                    info = hdr[p.name]
                    dt = _ST_DTYPES[info["dtype"]]
                    shape = tuple(info["shape"])
                    if shape != tuple(run.param_shapes[p.name]):
                        raise ValueError("shape differs")
                    row = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
                    dest = out[p.col0:p.col0 + p.width]
                    a = dest if dt == out.dtype else np.empty(p.width, dtype=dt)
                    fh.seek(start + int(info["data_offsets"][0]) + p.row0 * row * dt.itemsize)
                    if fh.readinto(memoryview(a).cast("B")) != a.nbytes:
                        raise ValueError("short read")
                    if a is not dest:
                        dest[:] = a
        except (OSError, KeyError, ValueError, TypeError, struct.error):  # bfloat16, odd files
            generic(i, pieces, out)

    try:
        _, hdr = _safetensors_header(str(run.snapshots[0].source))
        f32 = all(hdr[n]["dtype"] == "F32" for n in run.param_names)
    except (OSError, KeyError, ValueError, TypeError, struct.error):
        f32 = False
    return native, np.dtype(np.float32 if f32 else np.float64)


_STOPPED = object()


def _spill_reader(run: Run, idx: np.ndarray, dtype: np.dtype,
                  should_stop: Callable[[], bool] | None):
    """Copy the snapshots ``idx`` as rows of a temporary file-backed matrix (one read of
    each snapshot); yields the fraction done, returns a row reader over the copy, None if
    the disk lacks room (twice the matrix free), ``_STOPPED`` if ``should_stop()`` became
    true."""
    shape = (len(idx), run.n_params)
    need = shape[0] * shape[1] * dtype.itemsize
    tmp = tempfile.gettempdir()
    if need == 0 or shutil.disk_usage(tmp).free < 2 * need:
        return None
    # plain writes and preads, not a memmap: the copy lives in the page cache, never in
    # this process's resident memory (a mapped file's touched pages count in RSS).
    # bfloat16 weights (float32 with the low 16 bits zero) are spilled as their high halves:
    # half the bytes to write and read back, widened again exactly when read.
    half = dtype == np.float32 and sys.byteorder == "little"
    vec = np.empty(shape[1], dtype=dtype)
    fh = None
    while True:
        if fh is not None:
            fh.close()
        # unlinked at once: gone when closed or on exit; kept open by the returned reader
        fh = tempfile.TemporaryFile(dir=tmp)  # noqa: SIM115
        fd = fh.fileno()
        restart = False
        for row, i in enumerate(idx):
            run.vector(int(i), out=vec, cache=False)
            if half:
                u16 = vec.view(np.uint16)
                if u16[0::2].any():  # not bfloat16 after all: spill float32 rows
                    half, restart = False, True
                    break
                data = np.ascontiguousarray(u16[1::2])
            else:
                data = vec
            view, pos, nb = memoryview(data).cast("B"), 0, data.nbytes
            while pos < nb:  # os.pwrite: BufferedRandom.write was 6x slower here
                pos += os.pwrite(fd, view[pos:], row * nb + pos)
            if should_stop is not None and should_stop():
                fh.close()
                return _STOPPED
            yield (row + 1) / len(idx)
        if not restart:
            break
    del vec
    item = 2 if half else dtype.itemsize
    row_bytes = shape[1] * item
    starts = {n: int(sl.start) for n, sl in run.param_slices().items()}
    rows = {int(i): r for r, i in enumerate(idx)}

    def spilled(i: int, pieces: list[_Piece], out: np.ndarray) -> None:
        p = pieces[0]
        shp = run.param_shapes[p.name]
        row_size = int(np.prod(shp[1:], dtype=np.int64)) if len(shp) > 1 else 1
        a = starts[p.name] + p.row0 * row_size  # a block is one contiguous flat range
        dest = np.empty(out.shape[0], dtype=np.uint16) if half else out
        view = memoryview(dest).cast("B")
        pos, off = 0, rows[i] * row_bytes + a * item
        while pos < len(view):
            got = os.preadv(fd, [view[pos:]], off + pos)
            if got <= 0:
                raise OSError("short read from the spill file")
            pos += got
        if half:
            ov = out.view(np.uint16)
            ov[0::2] = 0
            ov[1::2] = dest

    spilled.keep_alive = fh  # type: ignore[attr-defined]
    return spilled


def _in_memory(run: Run) -> bool:
    from lossview.core.io.memory import MemoryReader

    return isinstance(run.reader, MemoryReader)


def gram_steps(
    run: Run,
    indices: Sequence[int] | None = None,
    max_bytes: int = DEFAULT_BLOCK_BYTES,
    should_stop: Callable[[], bool] | None = None,
) -> Generator[float, None, Gram | None]:
    """Accumulate the centred Gram matrix; yields the fraction done, returns a :class:`Gram`
    (None if ``should_stop()`` became true).

    Each block is stored as read (float32 for float32 native runs, else float64), centred
    on its column means into float64 and multiplied in float64, so the result does not
    depend on the block size beyond rounding (``max_bytes`` bounds both buffers together).
    """
    idx = np.arange(len(run)) if indices is None else np.asarray(list(indices), dtype=np.int64)
    t = len(idx)
    read, store = _row_reader(run)
    per_col = 8 + (store.itemsize if store != np.float64 else 0)
    max_cols = max(int(max_bytes // (per_col * max(t, 1))), 1)
    blocks = _blocks(run.param_shapes, max_cols)
    share = 1.0  # of the progress left to the blocks
    if (len(blocks) > 1 and store == np.float64 and run.format != "lossview"
            and not _in_memory(run) and t):
        dt = run.float_dtype
        spilled = yield from scaled(_spill_reader(run, idx, dt, should_stop), 0.5)
        if spilled is _STOPPED:
            return None
        if spilled is not None:
            read, store, share = spilled, dt, 0.5
            per_col = 8 + (store.itemsize if store != np.float64 else 0)
            max_cols = max(int(max_bytes // (per_col * t)), 1)
            blocks = _blocks(run.param_shapes, max_cols)
    try:
        g = np.zeros((t, t))
        bad = np.zeros(t, dtype=bool)
        work: dict[int, np.ndarray] = {}  # float64 centred column chunk, reused
        for b, pieces in enumerate(blocks):
            width = pieces[-1].col0 + pieces[-1].width
            buf = np.empty((t, width), dtype=store)
            for row, i in enumerate(idx):
                read(int(i), pieces, buf[row])
                if should_stop is not None and should_stop():
                    return None
            finite = np.isfinite(buf).all(axis=1)
            if not finite.all():
                bad |= ~finite
                buf[~finite] = 0.0
            mean = (buf if finite.all() else buf[finite]).mean(axis=0, dtype=np.float64)
            if store == np.float64:
                buf -= mean
                c = buf
                g += c @ c.T
            else:  # centred into float64 a few cache-sized column chunks at a time
                cw = min(_CENTRE_COLS, width)
                if cw not in work:
                    work.clear()
                    work[cw] = np.empty((t, cw))
                for a in range(0, width, cw):
                    c = work[cw][:, :min(cw, width - a)]
                    np.subtract(buf[:, a:a + c.shape[1]], mean[a:a + c.shape[1]], out=c)
                    g += c @ c.T
                del buf
            yield 1.0 - share + share * (b + 1) / len(blocks)
        keep = ~bad
        g = double_centre(g[np.ix_(keep, keep)])
        g = 0.5 * (g + g.T)
        return Gram(idx[keep], run.steps[idx[keep]], g, [int(i) for i in idx[bad]])
    finally:  # the spill file (unlinked already) is closed now, not at garbage collection
        spill_file = getattr(read, "keep_alive", None)
        if spill_file is not None:
            spill_file.close()


def scaled(gen: Generator, factor: float) -> Generator[float, None, Any]:
    """``gen``'s progress fractions times ``factor``; returns what ``gen`` returns."""
    while True:
        try:
            f = next(gen)
        except StopIteration as e:
            return e.value
        yield factor * f


def drive(gen: Generator):
    """Run a progress generator to the end and return its result."""
    while True:
        try:
            next(gen)
        except StopIteration as e:
            return e.value


def centred_gram(run: Run, indices: Sequence[int] | None = None,
                 max_bytes: int = DEFAULT_BLOCK_BYTES) -> Gram:
    """The centred Gram matrix of ``run`` (see :func:`gram_steps`)."""
    return drive(gram_steps(run, indices, max_bytes))
