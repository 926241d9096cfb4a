"""Flat weight vectors read straight from native files, and the streaming distances on them.

``Run.vector`` on a native run copies each tensor's bytes from the safetensors file into
the vector (``NativeReader.read_into``); these tests check it against the general path
(``safetensors.numpy.load_file``), its fallbacks, and the distances computed from it
against float64 numpy on the same weights.
"""

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from lossview.core.analysis.distances import distances
from lossview.core.io import RunWriter, open_run
from lossview.core.io.native import read_params_into

SHAPES = {"a.weight": (7, 5), "a.bias": (7,), "b.weight": (3, 7), "b.bias": (3,)}


def _write(path, n, dtype=np.float32, seed=0, nan_at=None):
    rng = np.random.default_rng(seed)
    w = {k: rng.normal(size=s).astype(dtype) for k, s in SHAPES.items()}
    with RunWriter(path) as wr:
        for i in range(n):
            snap = {k: v.copy() for k, v in w.items()}
            if i == nan_at:
                snap["b.weight"][1, 2] = np.nan
            wr.snapshot(10 * i, snap, buffers={"bn.running_mean": np.full(3, float(i), np.float32)})
            # steps 1e-4 of the weights: differences small against the values
            w = {k: (v + 1e-4 * rng.normal(size=v.shape)).astype(dtype) for k, v in w.items()}


def _reference(run, i):
    t = load_file(str(run.snapshots[i].source))
    return np.concatenate([t[n].astype(np.float64).ravel() for n in run.param_names])


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_vector_equals_the_file_contents_in_any_dtype(tmp_path, dtype):
    _write(tmp_path / "r", 3, dtype)
    run = open_run(tmp_path / "r")
    assert run.float_dtype == (np.float64 if dtype == np.float64 else np.float32)
    out = np.full(run.n_params, -1.0, dtype=np.float32)
    for i in range(3):
        ref = _reference(run, i)
        np.testing.assert_array_equal(run.vector(i), ref)  # float64, exact widening
        got = run.vector(i, out=out)
        assert got is out
        np.testing.assert_array_equal(got, ref.astype(np.float32))
        assert run.vector(i, dtype=None).dtype == run.float_dtype
    # the cached path (tensors already loaded) gives the same vector
    run.tensors(1)
    np.testing.assert_array_equal(run.vector(1), _reference(run, 1))
    with pytest.raises(ValueError):
        run.vector(0, out=np.empty(run.n_params + 1))


def test_read_into_declines_files_it_cannot_copy(tmp_path):
    _write(tmp_path / "r", 1)
    run = open_run(tmp_path / "r")
    src = run.snapshots[0].source
    out = np.empty(run.n_params, dtype=np.float32)
    assert read_params_into(src, run.param_shapes, run._offsets, out)
    wrong = dict(run.param_shapes, **{"a.weight": (5, 7)})
    assert not read_params_into(src, wrong, run._offsets, out)
    missing = dict(run.param_shapes, **{"c.weight": (1,)})
    offsets = np.append(run._offsets, run._offsets[-1] + 1)
    assert not read_params_into(src, missing, offsets, np.empty(run.n_params + 1, np.float32))
    cut = tmp_path / "cut.safetensors"
    data = src.read_bytes()
    cut.write_bytes(data[:len(data) // 2])  # torn write: tensors end past the file
    assert not read_params_into(cut, run.param_shapes, run._offsets, out)
    ints = tmp_path / "ints.safetensors"
    save_file({n: np.zeros(s, np.int32) for n, s in run.param_shapes.items()}, str(ints))
    assert not read_params_into(ints, run.param_shapes, run._offsets, out)


def test_distances_of_a_float32_run_equal_float64_numpy(tmp_path):
    n = 9
    _write(tmp_path / "r", n, seed=3)
    run = open_run(tmp_path / "r")
    w = np.stack([_reference(run, i) for i in range(n)])
    d = distances(run)
    upd = np.diff(w, axis=0)
    # float32 weights are widened exactly and differenced in float64: only the float64
    # summation order differs from numpy's, a relative 1e-12 here
    np.testing.assert_allclose(d.param_norm, np.linalg.norm(w, axis=1), rtol=1e-12)
    np.testing.assert_allclose(d.from_init, np.linalg.norm(w - w[0], axis=1), rtol=1e-12)
    np.testing.assert_allclose(d.to_final, np.linalg.norm(w[-1] - w, axis=1), rtol=1e-12, atol=0)
    np.testing.assert_allclose(d.step_length[1:], np.linalg.norm(upd, axis=1), rtol=1e-12)
    cos = np.sum(upd[1:] * upd[:-1], axis=1) / (np.linalg.norm(upd[1:], axis=1)
                                                 * np.linalg.norm(upd[:-1], axis=1))
    np.testing.assert_allclose(d.update_cosine[2:], cos, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(d.update_ratio[1:], np.linalg.norm(upd, axis=1)
                               / np.linalg.norm(w[:-1], axis=1), rtol=1e-12)
    assert d.nonfinite == []


def test_distances_flag_non_finite_snapshots(tmp_path):
    _write(tmp_path / "r", 5, nan_at=2)
    d = distances(open_run(tmp_path / "r"))
    assert d.nonfinite == [2]
    assert np.isnan(d.param_norm[2]) and np.isfinite(d.param_norm[[0, 1, 3, 4]]).all()
    assert np.isnan(d.step_length[[2, 3]]).all() and np.isfinite(d.step_length[4])


def test_loaded_tensors_become_arrays_without_a_second_copy_unless_they_view_a_larger_storage():
    import torch

    from lossview.core.io.torchfiles import loaded_to_numpy

    whole = torch.arange(12, dtype=torch.float32)
    a = loaded_to_numpy(whole)
    assert np.shares_memory(a, whole.numpy()) and a.dtype == np.float32
    part = whole[2:5]  # a view: copied, so the array does not pin the whole storage
    b = loaded_to_numpy(part)
    assert not np.shares_memory(b, whole.numpy())
    np.testing.assert_array_equal(b, [2, 3, 4])
    bf = torch.tensor([1.5, -2.25, 3e38], dtype=torch.bfloat16)
    c = loaded_to_numpy(bf)
    assert c.dtype == np.float32
    np.testing.assert_array_equal(c, bf.float().numpy())  # widened exactly, once


def test_torch_and_bf16_folders_read_the_same_vectors_as_the_saved_weights(tmp_path):
    import torch
    from safetensors.torch import save_file as save_torch

    rng = np.random.default_rng(5)
    ws = [{k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()} for _ in range(3)]
    (tmp_path / "pt").mkdir()
    (tmp_path / "st").mkdir()
    for i, w in enumerate(ws):
        torch.save({k: torch.from_numpy(v) for k, v in w.items()}, tmp_path / "pt" / f"model_{i}.pt")
        save_torch({k: torch.from_numpy(v).to(torch.bfloat16) for k, v in w.items()},
                   str(tmp_path / "st" / f"model_{i}.safetensors"))
    for folder, conv in (("pt", lambda v: v),
                         ("st", lambda v: torch.from_numpy(v).to(torch.bfloat16).float().numpy())):
        run = open_run(tmp_path / folder)
        buf = np.empty(run.n_params, dtype=np.float32)
        for i, w in enumerate(ws):
            ref = np.concatenate([conv(w[k]).ravel() for k in run.param_names])
            np.testing.assert_array_equal(run.vector(i, out=buf), ref)
