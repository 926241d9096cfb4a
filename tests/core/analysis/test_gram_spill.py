"""The Gram matrix of a run in a format that can only be read whole (torch files): the
snapshots are copied once to a temporary file and the column blocks read from there, so
each snapshot file is read once however many blocks the matrix needs."""

import numpy as np
import torch

from lossview.core.analysis.gram import centred_gram, drive, gram_steps
from lossview.core.io import open_run
from lossview.core.io.memory import run_from_arrays

SHAPES = {"fc1.weight": (6, 5), "fc1.bias": (6,), "fc2.weight": (4, 6), "fc2.bias": (4,)}


def _torch_folder(path, n, seed=0):
    rng = np.random.default_rng(seed)
    path.mkdir()
    w = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
    rows = []
    for i in range(n):
        torch.save({k: torch.from_numpy(v.copy()) for k, v in w.items()}, path / f"model_{10 * i}.pt")
        rows.append(w)
        w = {k: (v + 0.01 * rng.normal(size=v.shape)).astype(np.float32) for k, v in w.items()}
    return rows


class CountingReader:
    """The run's own reader, counting the snapshots it reads."""

    def __init__(self, inner):
        self.inner, self.format, self.reads = inner, inner.format, 0

    def read(self, snapshot):
        self.reads += 1
        return self.inner.read(snapshot)


def test_torch_run_gram_reads_each_file_once_and_equals_the_in_memory_gram(tmp_path):
    n = 12
    rows = _torch_folder(tmp_path / "t", n)
    run = open_run(tmp_path / "t")
    assert run.format == "torch"
    run.reader = CountingReader(run.reader)
    small = 12 * 8 * 7  # blocks of a few columns: many blocks, tensors split across them
    g = centred_gram(run, max_bytes=small)
    assert run.reader.reads <= n + 1  # one read per snapshot (plus the dtype probe)
    mem = run_from_arrays([{k: v.astype(np.float64) for k, v in r.items()} for r in rows])
    ref = centred_gram(mem)  # one block, float64
    # the same float32 values, centred in float64 either way: summation order only
    np.testing.assert_allclose(g.gram, ref.gram, rtol=1e-10, atol=1e-12 * np.abs(ref.gram).max())
    x = np.stack([np.concatenate([r[k].astype(np.float64).ravel() for k in run.param_names])
                  for r in rows])
    y = x - x.mean(axis=0)
    np.testing.assert_allclose(g.gram, y @ y.T, rtol=1e-10, atol=1e-12 * np.abs(ref.gram).max())


def test_torch_run_gram_with_a_subset_and_a_stop_request(tmp_path):
    _torch_folder(tmp_path / "t", 10, seed=1)
    run = open_run(tmp_path / "t")
    idx = [0, 3, 4, 9]
    a = centred_gram(run, idx, max_bytes=4 * 12 * 5)
    b = centred_gram(run, idx, max_bytes=10**9)  # one block: no copy
    np.testing.assert_allclose(a.gram, b.gram, rtol=1e-10, atol=1e-12 * np.abs(b.gram).max())
    assert a.steps.tolist() == [0, 30, 40, 90]
    calls = []
    stopped = gram_steps(run, max_bytes=10 * 12 * 5,
                         should_stop=lambda: calls.append(1) or len(calls) > 3)
    assert drive(stopped) is None and len(calls) == 4
    fractions = list(gram_steps(run, max_bytes=10 * 12 * 5))
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def _spill_case(tmp_path, rows):
    path = tmp_path / "t"
    path.mkdir()
    for i, r in enumerate(rows):
        torch.save({k: torch.from_numpy(v.copy()) for k, v in r.items()}, path / f"model_{10 * i}.pt")
    run = open_run(path)
    g = centred_gram(run, max_bytes=12 * 8 * 7)
    x = np.stack([np.concatenate([r[k].astype(np.float64).ravel() for k in run.param_names])
                  for r in rows])
    y = x - x.mean(axis=0)
    np.testing.assert_allclose(g.gram, y @ y.T, rtol=1e-10, atol=1e-12 * np.abs(y @ y.T).max())


def _to_bf16_values(v):
    return torch.from_numpy(v).to(torch.bfloat16).float().numpy()


def test_bfloat16_weights_are_spilled_as_half_words_and_read_back_exactly(tmp_path):
    rng = np.random.default_rng(3)
    rows = [{k: _to_bf16_values(rng.normal(size=s).astype(np.float32)) for k, s in SHAPES.items()}
            for _ in range(7)]
    _spill_case(tmp_path, rows)


def test_a_snapshot_that_is_not_bfloat16_after_the_first_restarts_the_spill_in_float32(tmp_path):
    rng = np.random.default_rng(4)
    rows = [{k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()} for _ in range(7)]
    rows[0] = {k: _to_bf16_values(v) for k, v in rows[0].items()}
    rows[1] = {k: _to_bf16_values(v) for k, v in rows[1].items()}
    _spill_case(tmp_path, rows)
