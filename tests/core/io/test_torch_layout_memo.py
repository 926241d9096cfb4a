"""Torch zip files laid out alike are unpickled once per run (``run_ranges``' memo), and
every file's byte ranges still read its own tensors: files whose names differ in length,
whose pickles differ (a tag saved beside the weights) or whose tensors differ in size are each parsed
themselves."""

import numpy as np
import torch

from lossview.core.io import open_run
from lossview.core.io.ranges import SpanReader, _zip_layout, run_ranges, snapshot_ranges

SHAPES = {"enc.weight": (6, 4), "enc.bias": (6,), "dec.weight": (3, 6), "dec.bias": (3,)}


def _weights(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{k: torch.randn(s, generator=g) for k, s in SHAPES.items()} for _ in range(n)]


def _read_all(run, spans):
    r = SpanReader(spans)
    try:
        out = []
        for i in range(len(spans)):
            row = []
            for k, sp in enumerate(spans[i]):
                a = np.empty(sp.size, dtype=np.float32)
                r.read(i, k, 0, sp.size, a)
                row.append(a)
            out.append(row)
        return out
    finally:
        r.close()


def test_files_laid_out_alike_share_one_parse_and_each_reads_its_own_bytes(tmp_path):
    ws = _weights(12)
    d = tmp_path / "pt"
    d.mkdir()
    for i, w in enumerate(ws):  # model_0 .. model_9 share a layout, model_10, model_11 another
        torch.save(w, d / f"model_{i}.pt")
    run = open_run(d)
    assert _zip_layout(run.snapshots[0].source) == _zip_layout(run.snapshots[1].source)
    assert _zip_layout(run.snapshots[0].source) != _zip_layout(run.snapshots[10].source)
    memo: dict = {}
    spans = [snapshot_ranges(run, s, memo) for s in run.snapshots]
    assert len(memo) == 2
    assert [sp[0].path for sp in spans] == [str(s.source) for s in run.snapshots]
    assert spans == run_ranges(run)
    got = _read_all(run, spans)
    for i, s in enumerate(run.snapshots):
        w = ws[int(s.source.stem.split("_")[1])]
        for k, name in enumerate(run.param_names):
            np.testing.assert_array_equal(got[i][k], w[name].numpy().ravel())


def test_a_file_with_another_pickle_or_shape_is_parsed_itself(tmp_path):
    ws = _weights(4, seed=1)
    d = tmp_path / "pt"
    d.mkdir()
    for i, (w, tag) in enumerate(zip(ws, "aabc")):  # the tag is in each pickle
        torch.save({"state_dict": w, "tag": tag}, d / f"model_{i}.pt")
    run = open_run(d)
    assert len(run) == 4
    memo: dict = {}
    spans = [snapshot_ranges(run, s, memo) for s in run.snapshots]
    assert len(memo) == 3  # model_0 and model_1 share one
    got = _read_all(run, spans)
    for i in range(4):
        for k, name in enumerate(run.param_names):
            np.testing.assert_array_equal(got[i][k], ws[i][name].numpy().ravel())
    # a file whose tensor is larger is not taken for the first one's layout
    big = {k: v.clone() for k, v in ws[0].items()}
    big["dec.bias"] = torch.randn(5)
    torch.save({"state_dict": big, "tag": "a"}, tmp_path / "model_0.pt")
    assert _zip_layout(tmp_path / "model_0.pt") != _zip_layout(d / "model_0.pt")
