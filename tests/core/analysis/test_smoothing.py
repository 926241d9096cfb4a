"""The loss panel's EMA: the recursion, NaN-safe, computed in blocks without scipy."""

import numpy as np
import pytest

from lossview.core.analysis.smoothing import ema


def test_ema_matches_recursion_and_skips_nan():
    x = np.array([1.0, 3.0, np.nan, 5.0, 2.0])
    w = 0.5
    # y0 = x0; y_k = w y_{k-1} + (1 - w) x_k over the finite values only
    expect = [1.0, 2.0, np.nan, 3.5, 2.75]
    np.testing.assert_allclose(ema(x, w), expect, equal_nan=True)
    np.testing.assert_array_equal(ema(x, 0.0), x)


@pytest.mark.parametrize("n", [1, 63, 64, 65, 1000])
@pytest.mark.parametrize("w", [0.3, 0.9, 0.999])
def test_blocked_ema_equals_the_recursion_across_block_edges(n, w):
    x = np.random.default_rng(n).lognormal(size=n)
    y, prev = np.empty(n), x[0]
    for i, v in enumerate(x):
        prev = w * prev + (1 - w) * v
        y[i] = prev
    np.testing.assert_allclose(ema(x, w), y, rtol=1e-12)
