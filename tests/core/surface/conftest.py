"""Every surface test starts as in a fresh process: the fast path's numba kernels not
loaded and no savings forgone (they load once enough surfaces have run, which would make
a test's path depend on the tests before it); test_mlp_kernels.py loads them itself."""

from __future__ import annotations

import pytest

from lossview.core.surface import fastkernels


@pytest.fixture(autouse=True)
def _kernels_as_in_a_fresh_process():
    fastkernels.reset()
    yield
    fastkernels.reset()
