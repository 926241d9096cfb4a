"""A SpanReader over more files than it keeps open reads every file's bytes right (it closes
and reopens), and the number it keeps open follows the process's limit."""

import numpy as np
import torch

import lossview.core.io.ranges as ranges
from lossview.core.io import open_run
from lossview.core.io.ranges import SpanReader, run_ranges


def test_more_files_than_kept_open_are_still_read_right(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)
    ws = [{"a.weight": torch.randn(5, 3, generator=g), "a.bias": torch.randn(5, generator=g)}
          for _ in range(7)]
    d = tmp_path / "pt"
    d.mkdir()
    for i, w in enumerate(ws):
        torch.save(w, d / f"model_{i}.pt")
    run = open_run(d)
    monkeypatch.setattr(ranges, "_max_open_files", lambda: 2)
    r = SpanReader(run_ranges(run))
    try:
        for _ in range(2):  # twice round: every file reopened
            for i, w in enumerate(ws):
                for k, name in enumerate(run.param_names):
                    out = np.empty(w[name].numel(), dtype=np.float64)
                    r.read(i, k, 0, out.size, out)
                    np.testing.assert_array_equal(out, w[name].double().numpy().ravel())
                    assert len(r._fds) <= 2
    finally:
        r.close()


def test_files_kept_open_follow_the_soft_limit():
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    n = ranges._max_open_files()
    assert 128 <= n <= 4096
    if soft != resource.RLIM_INFINITY:
        assert n == min(max(soft // 2, 128), 4096)
