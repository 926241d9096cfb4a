import json
import math

import numpy as np
import pytest

from lossview.core.errors import LossviewError, NoCheckpointsError
from lossview.core.io import RunWriter, open_run
from lossview.core.io.native import read_metrics_jsonl


def _write_run(path, n=5, seed=0):
    rng = np.random.default_rng(seed)
    w = {"fc.weight": rng.normal(size=(3, 4)).astype(np.float32),
         "fc.bias": np.zeros(3, np.float32)}
    vecs = []
    with RunWriter(path, spec={"problem": {"name": "toy"}}) as wr:
        for k in range(n):
            step = 10 * k
            wr.log(step, loss=1.0 / (k + 1), lr=0.1)
            wr.snapshot(step, w, buffers={"bn.running_mean": np.ones(3, np.float32),
                                          "bn.num_batches_tracked": np.array(k)})
            vecs.append(np.concatenate([w["fc.weight"].ravel(), w["fc.bias"]]))
            w = {k_: v + rng.normal(scale=0.1, size=v.shape).astype(np.float32) for k_, v in w.items()}
    return vecs


def test_roundtrip_keeps_order_metrics_and_buffers_apart(tmp_path):
    vecs = _write_run(tmp_path / "run")
    run = open_run(tmp_path / "run")
    assert run.format == "lossview"
    assert run.steps.tolist() == [0, 10, 20, 30, 40]
    assert set(run.param_names) == {"fc.weight", "fc.bias"}
    assert run.n_params == 15
    assert run.buffer_names == ["bn.num_batches_tracked", "bn.running_mean"]
    assert run.spec["status"] == "finished"
    assert run.spec["problem"] == {"name": "toy"}
    np.testing.assert_allclose(run.metric("loss").values, [1, 1 / 2, 1 / 3, 1 / 4, 1 / 5])
    p = run.params(3)
    expected = vecs[3]
    got = np.concatenate([p["fc.weight"].ravel(), p["fc.bias"]])
    np.testing.assert_array_equal(got, expected)


def test_torn_last_metrics_line_is_ignored(tmp_path):
    f = tmp_path / "metrics.jsonl"
    f.write_text('{"step": 0, "loss": 1.5}\n{"step": 1, "loss": NaN}\n{"step": 2, "lo')
    series, warnings = read_metrics_jsonl(f)
    assert series["loss"].steps.tolist() == [0, 1]
    assert series["loss"].values[0] == 1.5 and math.isnan(series["loss"].values[1])
    assert warnings == []


def test_refuses_to_overwrite_a_non_run(tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(LossviewError, match="not empty"):
        RunWriter(tmp_path)
    with pytest.raises(LossviewError, match="not a lossview run"):
        RunWriter(tmp_path, overwrite=True)
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_run_without_snapshot_is_a_clear_error(tmp_path):
    RunWriter(tmp_path / "r").close()
    with pytest.raises(NoCheckpointsError, match="no complete snapshot"):
        open_run(tmp_path / "r")


def test_corrupt_snapshot_is_skipped_and_named(tmp_path):
    _write_run(tmp_path / "run")
    bad = tmp_path / "run" / "checkpoints" / "step_000000020.safetensors"
    bad.write_bytes(bad.read_bytes()[:40])
    run = open_run(tmp_path / "run")
    assert run.steps.tolist() == [0, 10, 30, 40]
    assert any("step_000000020.safetensors" in w for w in run.warnings)


def test_run_json_records_format(tmp_path):
    _write_run(tmp_path / "run", n=1)
    spec = json.loads((tmp_path / "run" / "run.json").read_text())
    assert spec["format"] == "lossview-run" and spec["format_version"] == 1
