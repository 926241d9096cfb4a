"""Parameters read straight from file bytes: Hugging Face / plain safetensors folders in
bfloat16, float16 and float32 (``Run.vector`` through ``read_into``) and the byte ranges of
torch zip files, against the weights as saved, widened by torch."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from lossview.core.io import open_run
from lossview.core.io.ranges import SpanReader, snapshot_ranges

SHAPES = {"enc.weight": (6, 4), "enc.bias": (6,), "dec.weight": (3, 6), "dec.bias": (3,)}


def _weights(n, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{k: torch.randn(s, generator=g).to(dtype) for k, s in SHAPES.items()} for _ in range(n)]


def _hf(path, ws):
    for i, w in enumerate(ws):
        c = path / f"checkpoint-{10 * (i + 1)}"
        c.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in w.items()}, str(c / "model.safetensors"))
        (c / "config.json").write_text(json.dumps({"model_type": "mlp"}))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_hf_safetensors_vectors_are_read_from_the_bytes_and_widened_exactly(tmp_path, dtype):
    ws = _weights(3, dtype)
    _hf(tmp_path / "hf", ws)
    run = open_run(tmp_path / "hf")
    assert run.format == "hf-trainer"
    run._cache.clear()  # what opening looked at: the reads below must not need it
    for out_dtype in (np.float32, np.float64):
        buf = np.empty(run.n_params, dtype=out_dtype)
        for i, w in enumerate(ws):
            ref = np.concatenate([w[k].float().numpy().astype(out_dtype).ravel() for k in run.param_names])
            np.testing.assert_array_equal(run.vector(i, out=buf), ref)
    assert len(run._cache) == 0  # no snapshot was decoded


def test_torch_byte_ranges_read_the_saved_tensors(tmp_path):
    ws = _weights(2, torch.float32)
    tdir = tmp_path / "pt"
    tdir.mkdir()
    for i, w in enumerate(ws):
        torch.save({"state_dict": w, "epoch": i}, tdir / f"epoch_{i}.pt")
    run = open_run(tdir)
    spans = [snapshot_ranges(run, s) for s in run.snapshots]
    assert all(sp is not None for sp in spans)
    r = SpanReader(spans)
    for i, w in enumerate(ws):
        for k, name in enumerate(run.param_names):
            a = w[name].numpy().ravel()
            out = np.empty(a.size - 1, dtype=np.float64)
            r.read(i, k, 1, a.size - 1, out)  # from the second element on, widened
            np.testing.assert_array_equal(out, a[1:].astype(np.float64))
    r.close()
