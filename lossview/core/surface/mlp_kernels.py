"""numba kernels for the element-wise work around the MLP fast path's matrix products.

Imported lazily, by :func:`lossview.core.surface.fastkernels.preload` only (never at
lossview import time: numba costs ~0.2 s to import, its first call ~0.4 s, and each kernel
signature ~0.5-1 s to compile into an empty cache; ``cache=True`` keeps the machine code
on disk; :mod:`~lossview.core.surface.fastkernels` says when they pay back).
Each kernel makes one pass, in place, over arrays that are numpy views of the fast
path's torch buffers (``tensor.numpy()`` shares memory), and releases the GIL
(``nogil=True``) so the pipelines' threads run them at once.

- :func:`combine`: the first layer's output at each point, ``Z0 + a Z1 + b Z2``, and a
  ReLU after it, written once (instead of a K = 3 matrix product that MKL writes at a
  quarter of memory speed, then a ReLU pass).
- :func:`ce_sum`: each point's cross-entropy summed over a block of samples, from the
  ``[P, C, rows]`` logits before the output bias: bias, max-shifted log-sum-exp and the
  target's logit in one pass, summed in float64.

The exponential is Cephes' single-precision ``expf`` (polynomial after a range reduction
by ln 2, within 1 ulp; written out so that LLVM vectorises it: without Intel's SVML numba
calls the scalar libm ``expf`` per element). The logarithm of each sample's sum of
exponentials (between 1 and C after the max shift) is taken of float64 products of up to
:data:`LOG_RUN` such sums, one ``log`` per run instead of one per sample, more accurate
than the per-sample float32 logarithm it replaces.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

#: LLVM fast-math flags: ``fastmath=True`` less ``nnan``/``ninf`` (a NaN or an infinity
#: must reach the result as torch's operations propagate it: diverged points are marked).
_FLAGS = {"nsz", "arcp", "contract", "afn", "reassoc"}
#: ... and for the exponential also no reassociation (it would merge the two-part range
#: reduction ``x - n C1 - n C2`` and lose the low part's precision).
_EXP_FLAGS = {"nsz", "arcp", "contract", "afn"}

_LOG2E = np.float32(1.44269504088896341)
_C1 = np.float32(0.693359375)
_C2 = np.float32(-2.12194440e-4)
_P0 = np.float32(1.9875691500e-4)
_P1 = np.float32(1.3981999507e-3)
_P2 = np.float32(8.3334519073e-3)
_P3 = np.float32(4.1665795894e-2)
_P4 = np.float32(1.6666665459e-1)
_P5 = np.float32(5.0000001201e-1)
_LOW = np.float32(-87.0)  # exp(-87) = 1.6e-38: still normal; lower arguments clamp here
_ONE = np.float32(1.0)
_HALF = np.float32(0.5)
_ZERO = np.float32(0.0)

#: Samples whose sums of exponentials (each in [1, C]) are multiplied in float64 before
#: one logarithm: C**LOG_RUN must stay below float64's 1.8e308 (see :func:`log_run`).
LOG_RUN = 256


@intrinsic
def _as_float32(typingctx, bits):
    """The float32 whose bits are the int32 ``bits`` (a bit cast LLVM vectorises)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@numba.njit(fastmath=_EXP_FLAGS, nogil=True, cache=True)
def _exp(u):
    """``exp(u)`` for float32 ``u <= 88`` (Cephes ``expf``; below -87 it returns
    ``exp(-87)``, 1.6e-38, where the true value is smaller still)."""
    x = max(u, _LOW)
    fx = np.floor(x * _LOG2E + _HALF)  # float32 (math.floor would give an int64)
    x = x - fx * _C1
    x = x - fx * _C2
    z = x * x
    p = ((((_P0 * x + _P1) * x + _P2) * x + _P3) * x + _P4) * x + _P5
    return (p * z + x + _ONE) * _as_float32((np.int32(fx) + np.int32(127)) << 23)


#: Elements of the first layer's three outputs per tile of :func:`combine` (3 x 4 KiB stay
#: in the L1 cache while every point's row is written: 23 us a point of the medium MLP's
#: chunk, untiled 41 us, as the 1.9 MB written evict the 350 KB read from L2).
TILE = 1024


@numba.njit(fastmath=_FLAGS, nogil=True, cache=True)
def combine(coef, z0, z1, z2, out, relu):
    """``out[p] = coef[p, 0] z0 + coef[p, 1] z1 + coef[p, 2] z2``, then ``max(., 0)`` if
    ``relu`` (NaN stays NaN, as in ``torch.relu``): ``coef`` [P, 3], ``z0``, ``z1``,
    ``z2`` contiguous [L], ``out`` [P, L], all float32."""
    n = out.shape[1]
    for i0 in range(0, n, TILE):
        i1 = min(i0 + TILE, n)
        a0, a1, a2 = z0[i0:i1], z1[i0:i1], z2[i0:i1]  # slices: indices known >= 0
        for p in range(out.shape[0]):
            c0, c1, c2 = coef[p, 0], coef[p, 1], coef[p, 2]
            o = out[p, i0:i1]
            if relu:
                for i in range(i1 - i0):
                    v = c0 * a0[i] + c1 * a1[i] + c2 * a2[i]
                    o[i] = _ZERO if v < _ZERO else v
            else:
                for i in range(i1 - i0):
                    o[i] = c0 * a0[i] + c1 * a1[i] + c2 * a2[i]


@numba.njit(fastmath=_FLAGS, nogil=True, cache=True)
def ce_sum(logits, bias, target, total, scratch, flags, run):
    """``total[p] +=`` the cross-entropy of point ``p`` summed over the block's samples;
    returns how many points had a logit that is not finite: those are left out of
    ``total`` and marked in ``flags`` [P] uint8, for the caller to compute with torch's
    operations (whose results on infinities this kernel does not copy).

    ``logits`` [P, C, R] float32 (before the bias), ``bias`` [P, C] float32, ``target``
    [R] int64 class indices, ``total`` [P] float64; ``scratch`` [4, R] float32 is work
    space; ``run``: samples per float64 product of sums
    (:func:`log_run`). Per sample: ``log(sum_c exp(x_c - m)) + m - x_target`` with
    ``x = logits + bias`` and ``m`` its maximum: ``F.cross_entropy``'s arithmetic.
    """
    p_count, c_count, r = logits.shape
    m, s, chk, picked = scratch[0, :r], scratch[1, :r], scratch[2, :r], scratch[3, :r]
    bad = 0
    for p in range(p_count):
        x = logits[p]
        b = bias[p]
        for j in range(r):
            m[j] = -np.inf
            chk[j] = _ZERO
        for c in range(c_count):  # max and finiteness (a select of the target here
            bc = b[c]             # as well stops LLVM vectorising: 4x slower)
            row = x[c]
            for j in range(r):
                v = row[j] + bc
                chk[j] += v * _ZERO  # NaN if v is not finite
                m[j] = v if v > m[j] else m[j]
        finite = 0.0
        for j in range(r):
            finite += chk[j]
        if finite != 0.0:  # NaN
            flags[p] = 1
            bad += 1
            continue
        for j in range(r):
            s[j] = _ZERO
        for c in range(c_count):
            bc = b[c]
            row = x[c]
            for j in range(r):
                s[j] += _exp((row[j] + bc) - m[j])
        for j in range(r):
            t = target[j]
            picked[j] = x[t, j] + b[t]
        acc = 0.0
        for j in range(r):
            acc += np.float64(m[j]) - np.float64(picked[j])
        for lo in range(0, r, run):
            prod = 1.0
            for j in range(lo, min(lo + run, r)):
                prod *= np.float64(s[j])
            acc += math.log(prod)
        total[p] += acc
    return bad


def log_run(classes: int) -> int:
    """Samples per float64 product in :func:`ce_sum`: ``classes ** run`` below 1e300."""
    return max(1, min(LOG_RUN, int(300 * math.log(10) / math.log(max(classes, 2)))))
