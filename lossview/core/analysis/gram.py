"""The centred T x T Gram matrix of a run's snapshots, accumulated without stacking them.

Everything that needs inner products between snapshots (PCA, pairwise distances, mean
squared displacement) starts from ``G = Y Y^T`` with ``Y`` the snapshot matrix centred on
its mean. For ``T`` snapshots of ``D`` parameters, holding ``Y`` costs ``8 T D`` bytes;
here the parameter axis is cut into column blocks of at most ``max_bytes`` and

    G = sum over blocks b of  Y_b Y_b^T ,   Y_b = X_b - mean over snapshots of X_b

so each block is centred exactly (no cancellation between large weights and small
motions) and only one block is ever in memory. Every snapshot file is visited once per
block; for lossview's own runs (memory-mapped safetensors) only the block's slice of each
file is read, so the bytes read are one pass over the run whatever the block count.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import numpy as np

from lossview.core.run import Run

#: Default memory for one column block of the snapshot matrix (float64).
DEFAULT_BLOCK_BYTES = 128 * 2**20


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


def _slice_reader(run: Run) -> Callable[[int, list[_Piece]], list[np.ndarray]]:
    """Reads the pieces of one block from snapshot ``i``: memory-mapped slices for native
    runs, the whole snapshot (cached by the Run) otherwise."""

    def generic(i: int, pieces: list[_Piece]) -> list[np.ndarray]:
        t = run.tensors(i)
        out = []
        for p in pieces:
            a = np.asarray(t[p.name])
            a = a.reshape(a.shape[0], -1) if a.ndim else a.reshape(1, 1)
            out.append(a[p.row0:p.row1])
        return out

    if run.format != "lossview":
        return generic
    from safetensors import safe_open

    def native(i: int, pieces: list[_Piece]) -> list[np.ndarray]:
        src = run.snapshots[i].source
        try:
            with safe_open(str(src), framework="np") as f:
                out = []
                for p in pieces:
                    sl = f.get_slice(p.name)
                    out.append(np.asarray(sl[p.row0:p.row1]) if sl.get_shape() else
                               np.asarray(f.get_tensor(p.name)))
                return out
        except (TypeError, ValueError, KeyError):  # bfloat16 and friends: full read
            return generic(i, pieces)

    return native


def gram_steps(
    run: Run,
    indices: Sequence[int] | None = None,
    max_bytes: int = DEFAULT_BLOCK_BYTES,
    should_stop: Callable[[], bool] | None = None,
) -> Generator[float, None, Gram | None]:
    """Accumulate the centred Gram matrix; yields the fraction done, returns a :class:`Gram`
    (None if ``should_stop()`` became true)."""
    idx = np.arange(len(run)) if indices is None else np.asarray(list(indices), dtype=np.int64)
    t = len(idx)
    max_cols = max(int(max_bytes // (8 * max(t, 1))), 1)
    blocks = _blocks(run.param_shapes, max_cols)
    read = _slice_reader(run)
    g = np.zeros((t, t))
    bad = np.zeros(t, dtype=bool)
    for b, pieces in enumerate(blocks):
        width = pieces[-1].col0 + pieces[-1].width
        buf = np.empty((t, width))
        for row, i in enumerate(idx):
            for p, a in zip(pieces, read(int(i), pieces)):
                buf[row, p.col0:p.col0 + p.width] = a.reshape(-1)
            if should_stop is not None and should_stop():
                return None
        finite = np.isfinite(buf).all(axis=1)
        if not finite.all():
            bad |= ~finite
            buf[~finite] = 0.0
        if finite.any():
            buf -= buf[finite].mean(axis=0)
        g += buf @ buf.T
        yield (b + 1) / len(blocks)
    keep = ~bad
    g = double_centre(g[np.ix_(keep, keep)])
    g = 0.5 * (g + g.T)
    return Gram(idx[keep], run.steps[idx[keep]], g, [int(i) for i in idx[bad]])


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
