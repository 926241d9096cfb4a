"""The merged streaming pass (distances and Gram matrix from one read of every snapshot)
against numpy on the stacked float64 vectors of the saved weights, and against the
per-analysis functions ``analyze`` used before, on real small runs: native, torch, bfloat16
Hugging Face safetensors, torch saved under DDP names, npz (read whole, spilled)."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file as save_torch

from lossview.core.analysis.distances import distances
from lossview.core.analysis.gram import centred_gram
from lossview.core.analysis.pca import pca_from_gram
from lossview.core.analysis.report import analyze
from lossview.core.analysis.stream import stream
from lossview.core.io import RunWriter, open_run
from lossview.core.io.ranges import run_ranges, snapshot_ranges

SHAPES = {"fc1.weight": (90, 5), "fc1.bias": (90,), "fc2.weight": (4, 90), "fc2.bias": (4,)}
N = 7


def _weights(n=N, seed=0, nan_at=None):
    rng = np.random.default_rng(seed)
    w = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
    out = []
    for i in range(n):
        snap = {k: v.copy() for k, v in w.items()}
        if i == nan_at:
            snap["fc2.weight"][1, 3] = np.nan
        out.append(snap)
        w = {k: (v + 1e-3 * rng.normal(size=v.shape)).astype(np.float32) for k, v in w.items()}
    return out


def _bf16(ws):
    return [{k: torch.from_numpy(v).to(torch.bfloat16) for k, v in w.items()} for w in ws]


def write(kind, path, ws):
    if kind == "native":
        with RunWriter(path) as wr:
            for i, w in enumerate(ws):
                wr.snapshot(10 * i, w)
        return ws
    path.mkdir()
    if kind in ("torch", "ddp", "legacy"):
        prefix = "module." if kind == "ddp" else ""
        for i, w in enumerate(ws):
            torch.save({prefix + k: torch.from_numpy(v) for k, v in w.items()}, path / f"model_{10 * i}.pt",
                       _use_new_zipfile_serialization=kind != "legacy")
        return ws
    if kind == "hf-bf16":
        for i, w in enumerate(_bf16(ws)):
            c = path / f"checkpoint-{100 * (i + 1)}"
            c.mkdir()
            save_torch({k: v.contiguous() for k, v in w.items()}, str(c / "model.safetensors"))
            (c / "config.json").write_text(json.dumps({"model_type": "mlp"}))
        return [{k: v.float().numpy() for k, v in w.items()} for w in _bf16(ws)]
    if kind == "npz":
        for i, w in enumerate(ws):
            np.savez(path / f"step_{10 * i}.npz", **w)
        return ws
    raise ValueError(kind)


def stacked(run, ws):
    return np.stack([np.concatenate([np.asarray(w[k], np.float64).ravel() for k in run.param_names])
                     for w in ws])


def numpy_distances(x):
    u = np.diff(x, axis=0)
    step = np.r_[0.0, np.linalg.norm(u, axis=1)]
    norm = np.linalg.norm(x, axis=1)
    cos = np.full(len(x), np.nan)
    cos[2:] = np.sum(u[1:] * u[:-1], axis=1) / (step[2:] * step[1:-1])
    ratio = np.r_[np.nan, step[1:] / norm[:-1]]
    return {"from_init": np.linalg.norm(x - x[0], axis=1), "to_final": np.linalg.norm(x - x[-1], axis=1),
            "step_length": step, "param_norm": norm, "update_cosine": cos, "update_ratio": ratio}


def same_distances(got, want, keys):
    """``got``'s distances ``keys`` equal ``want``'s to 1e-12, NaN where ``want`` has NaN."""
    for k in keys:
        a, b = getattr(got, k), getattr(want, k)
        assert np.array_equal(np.isnan(a), np.isnan(b)), k
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, err_msg=k)


def numpy_gram(x):
    y = x - x.mean(axis=0)
    return y @ y.T


KINDS = ["native", "torch", "ddp", "hf-bf16", "npz", "legacy"]


@pytest.mark.parametrize("kind", KINDS)
# one block; blocks of 16 columns (rows of 90 go whole)
@pytest.mark.parametrize("max_bytes", [None, 2 * 4 * N * 16])
# the chunk sums by numpy, and compiled (numba: what runs of 2**27 elements or more get)
@pytest.mark.parametrize("compiled", [False, True])
def test_the_pass_equals_numpy_on_the_stacked_vectors_and_the_old_analyses(tmp_path, kind, max_bytes,
                                                                           compiled):
    ws = write(kind, tmp_path / "r", _weights())
    run = open_run(tmp_path / "r")
    x = stacked(run, ws)
    s = stream(run, compiled=compiled) if max_bytes is None else stream(run, max_bytes, compiled=compiled)
    ref = numpy_distances(x)
    old = distances(run)
    for k, v in ref.items():
        np.testing.assert_allclose(getattr(s.distances, k), v, rtol=1e-12, atol=0, err_msg=k)
        np.testing.assert_allclose(getattr(s.distances, k), getattr(old, k), rtol=1e-12, atol=0, err_msg=k)
    assert s.distances.nonfinite == [] == old.nonfinite
    g = s.gram(run)
    y = numpy_gram(x)
    np.testing.assert_allclose(g.gram, y, rtol=0, atol=1e-12 * np.abs(y).max())
    np.testing.assert_allclose(g.gram, centred_gram(run).gram, rtol=0, atol=1e-12 * np.abs(y).max())
    assert g.indices.tolist() == list(range(N)) and g.steps.tolist() == run.steps.tolist()


@pytest.mark.parametrize("kind", ["torch", "hf-bf16", "native"])
def test_files_read_by_range_are_never_decoded_whole(tmp_path, kind):
    write(kind, tmp_path / "r", _weights())
    run = open_run(tmp_path / "r")
    assert run_ranges(run) is not None
    stream(run, max_bytes=2 * 4 * N * 16)
    assert len(run._cache) == 0  # the Run's decoded-snapshot cache stayed empty


def test_legacy_torch_files_are_not_read_by_range_and_still_read_once(tmp_path):
    write("legacy", tmp_path / "r", _weights())
    run = open_run(tmp_path / "r")
    assert snapshot_ranges(run, run.snapshots[0]) is None
    assert len(run._cache) <= 1  # float_dtype's look at the first snapshot, nothing more
    stream(run, max_bytes=2 * 4 * N * 16)
    assert len(run._cache) <= 1


@pytest.mark.parametrize("kind", ["torch", "native"])
@pytest.mark.parametrize("compiled", [False, True])
def test_a_snapshot_with_non_finite_weights_is_flagged_and_left_out_of_the_gram(tmp_path, kind, compiled):
    ws = write(kind, tmp_path / "r", _weights(nan_at=3))
    run = open_run(tmp_path / "r")
    s = stream(run, max_bytes=2 * 4 * N * 16, compiled=compiled)
    old = distances(run)
    assert s.distances.nonfinite == [3] == old.nonfinite
    same_distances(s.distances, old, ("from_init", "to_final", "step_length", "param_norm",
                                      "update_cosine", "update_ratio"))
    g = s.gram(run)
    keep = [i for i in range(N) if i != 3]
    y = numpy_gram(stacked(run, [ws[i] for i in keep]))
    assert g.indices.tolist() == keep and g.dropped == [3]
    np.testing.assert_allclose(g.gram, y, rtol=0, atol=1e-12 * np.abs(y).max())
    sub = s.gram(run, [0, 1, 2, 3, 4])  # a subset: centred on its own mean
    y = numpy_gram(stacked(run, [ws[i] for i in (0, 1, 2, 4)]))
    np.testing.assert_allclose(sub.gram, y, rtol=0, atol=1e-12 * np.abs(y).max())
    assert sub.dropped == [3]


@pytest.mark.parametrize("kind", ["torch", "hf-bf16"])
def test_analyze_reports_what_the_per_analysis_functions_give(tmp_path, kind):
    ws = write(kind, tmp_path / "r", _weights(n=12))
    run = open_run(tmp_path / "r")
    rep = analyze(run)
    x = stacked(run, ws)
    ref = numpy_distances(x)
    np.testing.assert_allclose(rep["distance"]["from_init"], ref["from_init"], rtol=1e-12)
    np.testing.assert_allclose(rep["distance"]["path_length"], ref["step_length"].sum(), rtol=1e-12)
    old = pca_from_gram(centred_gram(open_run(tmp_path / "r")), k=10).to_json()
    np.testing.assert_allclose(rep["pca"]["explained_variance_ratio"], old["explained_variance_ratio"],
                               rtol=1e-10)
    np.testing.assert_allclose(np.abs(rep["pca"]["coords"]), np.abs(old["coords"]), rtol=1e-8, atol=1e-12)
    d = np.sqrt(np.maximum(np.sum((x[:, None] - x[None]) ** 2, axis=2), 0))
    np.testing.assert_allclose(rep["pairwise"]["matrix"], d, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["torch", "hf-bf16"])
@pytest.mark.parametrize("compiled", [False, True])
def test_chunks_shared_among_workers_add_up_to_the_same_sums(tmp_path, kind, compiled, monkeypatch):
    import lossview.core.analysis.chunk_sums as chunk_sums
    import lossview.core.analysis.stream as stream_module

    ws = write(kind, tmp_path / "r", _weights())
    run = open_run(tmp_path / "r")
    monkeypatch.setattr(chunk_sums, "WORK_BYTES", 0)  # the narrowest chunks: 64 columns,
    monkeypatch.setattr(chunk_sums, "_CW_MIN", 64)  # 15 of them for the 904 parameters
    monkeypatch.setattr(stream_module, "_workers", lambda: 2)
    s = stream(run, compiled=compiled)
    x = stacked(run, ws)
    for k, v in numpy_distances(x).items():
        np.testing.assert_allclose(getattr(s.distances, k), v, rtol=1e-12, atol=0, err_msg=k)
    y = numpy_gram(x)
    np.testing.assert_allclose(s.gram(run).gram, y, rtol=0, atol=1e-12 * np.abs(y).max())


def test_a_file_cut_short_after_opening_is_a_one_line_error(tmp_path):
    from lossview.core.errors import LossviewError

    write("torch", tmp_path / "r", _weights())
    run = open_run(tmp_path / "r")
    f = run.snapshots[2].source
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 3])
    with pytest.raises(LossviewError, match=f"cannot read {f.name}"):
        stream(run)


@pytest.mark.parametrize("kind", ["torch", "native"])
@pytest.mark.parametrize("compiled", [False, True])
def test_a_non_finite_first_snapshot_leaves_the_gram_of_the_others_exact(tmp_path, kind, compiled):
    # the Gram rows are w_i - w_0 where every snapshot is finite: here another row stands in
    ws = write(kind, tmp_path / "r", _weights(nan_at=0))
    run = open_run(tmp_path / "r")
    s = stream(run, max_bytes=2 * 4 * N * 16, compiled=compiled)
    old = distances(run)
    assert s.distances.nonfinite == [0] == old.nonfinite
    same_distances(s.distances, old, ("to_final", "step_length", "param_norm", "update_cosine"))
    g = s.gram(run)
    y = numpy_gram(stacked(run, ws[1:]))
    assert g.indices.tolist() == list(range(1, N)) and g.dropped == [0]
    np.testing.assert_allclose(g.gram, y, rtol=0, atol=1e-12 * np.abs(y).max())


@pytest.mark.parametrize("compiled", [False, True])
def test_the_gram_of_some_rows_equals_numpy_on_those_rows_and_the_distances_stay_all(tmp_path, compiled):
    # a long run of a large model forms the Gram matrix of an even subsample (gram_rows)
    ws = write("native", tmp_path / "r", _weights(n=11, nan_at=6))
    run = open_run(tmp_path / "r")
    rows = [0, 3, 6, 8, 10]
    s = stream(run, max_bytes=2 * 4 * 11 * 16, rows=rows, compiled=compiled)
    assert s.rows.tolist() == rows
    x = stacked(run, ws)
    old = distances(run)
    assert s.distances.nonfinite == [6] == old.nonfinite
    np.testing.assert_allclose(s.distances.from_init, old.from_init, rtol=1e-12, atol=0)
    np.testing.assert_allclose(s.distances.step_length, old.step_length, rtol=1e-12, atol=0)
    g = s.gram(run)
    assert g.indices.tolist() == [0, 3, 8, 10] and g.dropped == [6]
    y = numpy_gram(x[[0, 3, 8, 10]])
    np.testing.assert_allclose(g.gram, y, rtol=0, atol=1e-12 * np.abs(y).max())
    sub = s.gram(run, [3, 8, 10])
    y = numpy_gram(x[[3, 8, 10]])
    np.testing.assert_allclose(sub.gram, y, rtol=0, atol=1e-12 * np.abs(y).max())
    with pytest.raises(ValueError, match="no Gram matrix rows"):
        s.gram(run, [1, 3])
    # rows without the first snapshot (the Gram rows are w_r - w_0 all the same)
    s = stream(run, max_bytes=2 * 4 * 11 * 16, rows=[2, 5, 9], compiled=compiled)
    y = numpy_gram(x[[2, 5, 9]])
    np.testing.assert_allclose(s.gram(run).gram, y, rtol=0, atol=1e-12 * np.abs(y).max())


def test_gram_rows_keeps_every_snapshot_of_small_models_and_subsamples_long_runs_of_large_ones():
    from lossview.core.analysis.stream import FULL_GRAM_SNAPSHOTS, GRAM_BUDGET, gram_rows

    assert len(gram_rows(24, 11_700_000)) == 24  # up to 128 snapshots: all of them
    assert len(gram_rows(1000, 3466)) == 1000  # the demo's model: 1000^2 x 3466 / 2 < 2**32
    r = gram_rows(1000, 2**20)  # bench_open's native run: 1,000 x 1M weights
    assert len(r) == FULL_GRAM_SNAPSHOTS and r[0] == 0 and r[-1] == 999
    assert np.all(np.diff(r) >= 7) and np.all(np.diff(r) <= 9)  # evenly spread
    r = gram_rows(100_000, 100)  # at most 2,000 whatever the budget
    assert len(r) == 2000
    assert len(r) ** 2 * 100 / 2 <= GRAM_BUDGET


def test_analyze_of_a_long_run_over_the_budget_reports_pca_of_the_even_subsample(tmp_path, monkeypatch):
    import lossview.core.analysis.stream as stream_module

    monkeypatch.setattr(stream_module, "GRAM_BUDGET", 1)  # what 1,000 x 1M weights get
    ws = write("native", tmp_path / "r", _weights(n=140))
    run = open_run(tmp_path / "r")
    rep = analyze(run)
    rows = np.unique(np.round(np.linspace(0, 139, 128)).astype(int))
    assert rep["pca"]["indices"] == rows.tolist()
    x = stacked(run, ws)
    y = x[rows] - x[rows].mean(axis=0)
    u, sv, _ = np.linalg.svd(y, full_matrices=False)
    np.testing.assert_allclose(rep["pca"]["explained_variance_ratio"][:3], (sv**2 / np.sum(sv**2))[:3],
                               rtol=1e-9)
    np.testing.assert_allclose(np.abs(np.asarray(rep["pca"]["coords"])[:, :2]), np.abs(u[:, :2] * sv[:2]),
                               rtol=1e-7, atol=1e-10)
    # distances of every snapshot all the same
    np.testing.assert_allclose(rep["distance"]["from_init"], numpy_distances(x)["from_init"], rtol=1e-12)
    assert len(rep["distance"]["from_init"]) == 140
