"""Chunks on several single-threaded pipelines: same numbers, balanced, cancellable, and
the caller's torch thread count untouched."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from lossview.core.surface.evaluate import PlaneEvaluator
from lossview.core.surface.fastpath import per_point_loss
from lossview.core.surface.pipelines import Workspace, balanced_spans, run_chunks


@given(st.integers(0, 5000), st.integers(1, 300), st.integers(1, 8))
def test_balanced_spans_cover_every_index_once_in_equal_shares(n, chunk, workers):
    spans = balanced_spans(n, chunk, workers)
    assert [i for lo, hi in spans for i in range(lo, hi)] == list(range(n))
    if n:
        lengths = [hi - lo for lo, hi in spans]
        assert max(lengths) <= chunk and max(lengths) - min(lengths) <= 1
        assert len(spans) % workers == 0 or len(spans) == n


def _own_threads():
    return [t for t in threading.enumerate() if t.name.startswith("lossview-surface-")]


def test_pipelines_give_the_serial_numbers_and_leave_the_callers_thread_count():
    before = torch.get_num_threads()
    seen = set()

    def work(lo, hi, ws):
        seen.add((threading.current_thread().name, torch.get_num_threads()))
        out = ws.get("x", (hi - lo, 3), torch.zeros(1, dtype=torch.float64))
        out.copy_(torch.arange(lo, hi, dtype=torch.float64).view(-1, 1).expand(-1, 3))
        assert not torch.is_grad_enabled()
        return out.sum(1).clone()

    spans = balanced_spans(100, 7, 3)
    got = np.zeros(100)
    for lo, hi, v in run_chunks(work, spans, 3):
        got[lo:hi] = v.numpy()
    np.testing.assert_array_equal(got, 3 * np.arange(100))
    assert {n for n, _ in seen} <= {f"lossview-surface-{k}" for k in range(3)}
    assert {k for _, k in seen} == {1}  # each pipeline runs torch on one thread
    assert torch.get_num_threads() == before
    assert not _own_threads()


def test_closing_the_generator_stops_the_pipelines_and_errors_surface():
    gen = run_chunks(lambda lo, hi, ws: torch.tensor([lo]), balanced_spans(1000, 1, 2), 2)
    next(gen)
    gen.close()  # cancel
    assert not _own_threads()

    def bad(lo, hi, ws):
        if lo == 5:
            raise ValueError("chunk 5 failed")
        return torch.tensor([lo])

    with pytest.raises(ValueError, match="chunk 5 failed"):
        list(run_chunks(bad, balanced_spans(10, 1, 2), 2))
    assert not _own_threads()


def test_workspace_reuses_its_buffers():
    ws = Workspace()
    a = ws.get("h", (4, 5), torch.zeros(1))
    b = ws.get("h", (2, 5), torch.zeros(1))
    assert a.data_ptr() == b.data_ptr() and b.shape == (2, 5)
    c = ws.get("h", (8, 5), torch.zeros(1, dtype=torch.float64))
    assert c.dtype == torch.float64 and c.shape == (8, 5)


def test_cross_entropy_with_classes_first_matches_torch_even_for_huge_logits():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 50, 7, generator=g, dtype=torch.float64) * 300  # exp overflows
    y = torch.randint(0, 7, (50,), generator=g)
    ref = torch.stack([F.cross_entropy(o, y) for o in logits])
    got = per_point_loss("ce", F.cross_entropy, logits.transpose(1, 2).contiguous(), y, "pcn")
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-9)
    # targets the shortcut cannot take (ignore_index) go through torch's own loss
    y2 = y.clone()
    y2[:5] = -100
    ref2 = torch.stack([F.cross_entropy(o, y2) for o in logits])
    got2 = per_point_loss("ce", F.cross_entropy, logits.transpose(1, 2), y2, "pcn")
    torch.testing.assert_close(got2, ref2, rtol=1e-12, atol=1e-9)


def test_evaluator_on_two_pipelines_equals_one_pipeline_bitwise():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
    x, y = torch.randn(300, 6), torch.randint(0, 3, (300,))
    d1 = {n: torch.randn_like(p) for n, p in m.named_parameters()}
    d2 = {n: torch.randn_like(p) for n, p in m.named_parameters()}
    pts = np.random.default_rng(0).uniform(-1, 1, (203, 2))
    ev = PlaneEvaluator(m, nn.CrossEntropyLoss(), (x, y), None, d1, d2, memory_budget=2**20)
    assert ev.path == "first-layer+mlp" and ev.chunk_size() < 203
    chunk = ev.chunk_size()
    two = ev.losses(pts)
    # one pipeline would take twice the chunk (the budget is per pipeline); a different
    # chunk is a different GEMM shape, whose float32 rounding differs on some CPUs (AMD
    # EPYC: 2e-7), so the chunk is pinned and only the pipeline count changes
    ev.workers = lambda: 1
    ev.chunk_size = lambda: chunk
    np.testing.assert_array_equal(ev.losses(pts), two)


def test_a_thread_budget_caps_the_pipelines_and_their_threads():
    from lossview.core.surface.threads import set_thread_budget, thread_budget

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x, y = torch.randn(50, 4), torch.randint(0, 2, (50,))
    ev = PlaneEvaluator(m, nn.CrossEntropyLoss(), (x, y))
    pts = np.random.default_rng(1).uniform(-1, 1, (40, 2))
    free = ev.losses(pts)
    set_thread_budget(1)
    try:
        assert thread_budget() == 1 and ev.workers() == 1
        np.testing.assert_array_equal(ev.losses(pts), free)
        # one worker on one torch thread, off the caller's thread (the caller keeps its own)
        seen = []
        list(run_chunks(lambda lo, hi, ws: seen.append(
            (threading.current_thread() is threading.main_thread(), torch.get_num_threads())),
            [(0, 1)], 1, thread_budget()))
        assert seen == [(torch.get_num_threads() == 1, 1)]
    finally:
        set_thread_budget(None)
    assert thread_budget() == torch.get_num_threads()
