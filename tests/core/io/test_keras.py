"""Keras 3 checkpoints open as runs: ``ModelCheckpoint(save_weights_only=True)`` files
(``weights.{epoch:02d}-{val_loss:.2f}.weights.h5``) and ``.keras`` archives, with the
CSVLogger's ``training.log``, all written here by real Keras (torch backend, CPU)."""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
pytest.importorskip("h5py")

from lossview.cli import main  # noqa: E402
from lossview.core.errors import LossviewError  # noqa: E402
from lossview.core.io import detect_format, open_run  # noqa: E402

EPOCHS = 3


class _Expect(keras.callbacks.Callback):
    """The values of named variables at the end of each epoch (after ModelCheckpoint saved)."""

    def __init__(self, named):
        super().__init__()
        self.named = named
        self.at: dict[int, dict[str, np.ndarray]] = {}

    def on_epoch_end(self, epoch, logs=None):
        self.at[epoch + 1] = {n: np.array(keras.ops.convert_to_numpy(v))
                              for n, v in self.named().items()}
        got = sorted(a.tobytes() for a in self.at[epoch + 1].values())
        want = sorted(np.asarray(w).tobytes() for w in self.model.get_weights())
        assert got == want  # the names cover model.get_weights(), nothing more


def _data():
    rng = np.random.RandomState(0)
    x = rng.randn(96, 4).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5], [0.0]]) + 0.3).astype("float32")


def _train(model, named, weights_dir, archive_dir, log_dirs):
    """Fit with both checkpoint kinds at once, a CSVLogger per folder; the expected values."""
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")
    expect = _Expect(named)
    cbs = [keras.callbacks.ModelCheckpoint(
               str(weights_dir / "weights.{epoch:02d}-{val_loss:.2f}.weights.h5"),
               save_weights_only=True),
           keras.callbacks.ModelCheckpoint(str(archive_dir / "model.{epoch:02d}.keras")),
           *[keras.callbacks.CSVLogger(str(d / "training.log")) for d in log_dirs],
           expect]
    x, y = _data()
    hist = model.fit(x, y, epochs=EPOCHS, batch_size=16, validation_split=0.25, callbacks=cbs,
                     verbose=0)
    return expect.at, hist.history


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Sequential (folders seq_h5, seq_keras) and functional (fn/checkpoints/ with the log in
    fn/, and fn_keras) runs: {folder: (expected per epoch, history, model)}."""
    root = tmp_path_factory.mktemp("keras")
    keras.utils.set_random_seed(0)
    L = keras.layers
    seq = keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"),
                            L.BatchNormalization(), L.Dense(1)])
    d0, bn, d1 = seq.layers

    def seq_named():
        return {"dense.kernel": d0.kernel, "dense.bias": d0.bias,
                "batch_normalization.gamma": bn.gamma, "batch_normalization.beta": bn.beta,
                "batch_normalization.moving_mean": bn.moving_mean,
                "batch_normalization.moving_variance": bn.moving_variance,
                "dense_1.kernel": d1.kernel, "dense_1.bias": d1.bias}

    for d in ("seq_h5", "seq_keras", "fn/checkpoints", "fn_keras"):
        (root / d).mkdir(parents=True)
    at, hist = _train(seq, seq_named, root / "seq_h5", root / "seq_keras",
                      [root / "seq_h5", root / "seq_keras"])
    out = {"seq_h5": (at, hist, seq), "seq_keras": (at, hist, seq)}

    inp = keras.Input((4,), name="inp")
    hidden, side = L.Dense(8, activation="relu", name="hidden"), L.Dense(8, name="side")
    norm, head = L.BatchNormalization(name="bn"), L.Dense(1, name="out")
    fn = keras.Model(inp, head(norm(L.Add()([hidden(inp), side(inp)]))))

    def fn_named():  # h5 paths: the layer class in snake case, numbered in model order
        return {"dense.kernel": hidden.kernel, "dense.bias": hidden.bias,
                "dense_1.kernel": side.kernel, "dense_1.bias": side.bias,
                "batch_normalization.gamma": norm.gamma, "batch_normalization.beta": norm.beta,
                "batch_normalization.moving_mean": norm.moving_mean,
                "batch_normalization.moving_variance": norm.moving_variance,
                "dense_2.kernel": head.kernel, "dense_2.bias": head.bias}

    at, hist = _train(fn, fn_named, root / "fn/checkpoints", root / "fn_keras",
                      [root / "fn", root / "fn_keras"])
    out.update({"fn": (at, hist, fn), "fn_keras": (at, hist, fn)})
    return root, out


@pytest.mark.parametrize("folder", ["seq_h5", "seq_keras", "fn", "fn_keras"])
def test_every_tensor_is_the_models_weight_at_that_epoch(runs, folder):
    root, cases = runs
    at, hist, model = cases[folder]
    assert detect_format(root / folder) == "keras"
    run = open_run(root / folder)
    assert run.format == "keras" and run.warnings == []
    assert run.steps.tolist() == [1, 2, 3] and run.step_unit == "epoch"
    assert [s.epoch for s in run.snapshots] == [1.0, 2.0, 3.0]
    assert sorted(run.buffer_names) == ["batch_normalization.moving_mean",
                                        "batch_normalization.moving_variance"]
    assert set(run.param_names) == set(at[1]) - set(run.buffer_names)
    assert run.n_params == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    for i, epoch in enumerate(run.steps):
        got = run.tensors(i)
        assert set(got) == set(at[epoch])
        for name, want in at[epoch].items():
            assert got[name].dtype == want.dtype == np.float32
            assert np.array_equal(got[name], want), (folder, epoch, name)
    # Keras' (in, out) kernel layout is kept
    assert run.param_shapes["dense.kernel"] == (4, 8)
    # CSVLogger counts epochs from 0, ModelCheckpoint's {epoch} from 1: the log is shifted
    for key in ("loss", "val_loss"):
        s = run.metric(key)
        assert s.steps.tolist() == [1, 2, 3]
        np.testing.assert_allclose(s.values, hist[key], rtol=1e-12)


def test_layer_names_and_optimizer_from_the_archive(runs):
    root, _ = runs
    fn = open_run(root / "fn_keras")
    assert fn.spec["keras_layer_names"] == {"dense": "hidden", "dense_1": "side",
                                            "batch_normalization": "bn", "dense_2": "out"}
    opt = fn.spec["optimizer"]
    assert opt["name"] == "sgd" and opt["lr"] == pytest.approx(0.05)
    assert opt["momentum"] == pytest.approx(0.9) and opt["nesterov"] is False
    assert "compile_config" in opt["source"] and "model.03.keras" in opt["source"]
    assert "optimizer" not in open_run(root / "seq_h5").spec  # .weights.h5 holds no config


def test_analyze_json_has_the_epochs_and_the_logged_loss(runs, capsys):
    root, cases = runs
    _, hist, model = cases["fn"]
    assert main(["analyze", str(root / "fn"), "--json"]) == 0
    out, err = capsys.readouterr()
    rep = json.loads(out)
    assert err == ""
    assert rep["format"] == "keras" and rep["steps"] == [1, 2, 3] and rep["n_checkpoints"] == 3
    assert rep["n_params"] == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert rep["metrics"]["loss"]["steps"] == [1, 2, 3]
    np.testing.assert_allclose(rep["metrics"]["loss"]["values"], hist["loss"], rtol=1e-12)
    assert len(rep["distance"]["from_init"]) == 3 and rep["distance"]["from_init"][0] == 0.0


def test_a_truncated_file_is_one_line(runs, tmp_path, capsys):
    root, _ = runs
    good = sorted((root / "seq_h5").glob("*.weights.h5"))
    bad = tmp_path / "weights.04-0.50.weights.h5"
    bad.write_bytes(good[-1].read_bytes()[: good[-1].stat().st_size // 2])
    assert main(["analyze", str(bad), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and bad.name in err
    # among good files it is skipped and named; the others load
    for f in good:
        shutil.copy(f, tmp_path / f.name)
    run = open_run(tmp_path)
    assert run.steps.tolist() == [1, 2, 3]
    assert any(bad.name in w and "skipped" in w for w in run.warnings)


def test_a_truncated_archive_is_one_line(runs, tmp_path, capsys):
    root, _ = runs
    src = root / "seq_keras" / "model.03.keras"
    bad = tmp_path / "model.03.keras"
    bad.write_bytes(src.read_bytes()[:4000])
    assert main(["analyze", str(bad), "--json"]) == 2
    _, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and bad.name in err


def test_without_h5py_the_message_names_the_extra(runs, monkeypatch, capsys):
    root, _ = runs
    monkeypatch.setitem(sys.modules, "h5py", None)  # what `import h5py` does when missing
    with pytest.raises(LossviewError, match=r"pip install lossview\[keras\]"):
        open_run(root / "seq_h5")
    assert main(["analyze", str(root / "seq_keras"), "--json"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "lossview[keras]" in err


def test_number_less_files_beside_the_epochs(runs, tmp_path):
    """ModelCheckpoint(save_best_only=True)'s copy of an earlier epoch is left out; a final
    save_weights after fit goes after the numbered epochs, which keep their numbers."""
    root, _ = runs
    for f in (root / "seq_h5").iterdir():
        shutil.copy(f, tmp_path / f.name)
    shutil.copy(next((root / "seq_h5").glob("weights.02-*")), tmp_path / "best.weights.h5")
    shutil.copy(next((root / "seq_h5").glob("weights.03-*")), tmp_path / "final.weights.h5")
    run = open_run(tmp_path)
    assert run.steps.tolist() == [1, 2, 3, 4] and run.step_unit == "epoch"
    assert run.snapshots[-1].source.name == "final.weights.h5"
    assert any("best.weights.h5" in w and "best-only" in w for w in run.warnings)
    assert any("final.weights.h5" in w and "epoch 4" in w for w in run.warnings)
    assert run.metric("loss").steps.tolist() == [1, 2, 3]


def test_subclassed_model_and_bf16(tmp_path):
    """Attribute paths (``block.dense``), a model's own variable, bfloat16 read exactly
    (widened to float32); a subclassed model's config does not list its layers, so the
    BatchNormalization with only gamma (center=False) names it var0 in both files."""
    L = keras.layers

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.block = keras.Sequential([L.Dense(5), L.BatchNormalization(center=False)])
            self.head = L.Dense(1, dtype="bfloat16")
            self.scale = self.add_weight(shape=(2,), initializer="ones", name="scale")

        def call(self, x):
            return self.head(self.block(x))

    keras.utils.set_random_seed(1)
    net = Net()
    net(np.zeros((2, 4), "float32"))
    net.save_weights(tmp_path / "net.weights.h5")
    net.save(tmp_path / "net.keras")
    dense, bn = net.block.layers
    assert str(net.head.kernel.dtype) == "bfloat16"
    want = {"block.dense.kernel": dense.kernel, "block.dense.bias": dense.bias,
            "block.batch_normalization.var0": bn.gamma,
            "block.batch_normalization.moving_mean": bn.moving_mean,
            "block.batch_normalization.moving_variance": bn.moving_variance,
            "head.kernel": net.head.kernel, "head.bias": net.head.bias, "var0": net.scale}
    for f in ("net.weights.h5", "net.keras"):
        run = open_run(tmp_path / f)
        got = run.tensors(0)
        assert set(got) == set(want)
        for name, v in want.items():
            assert got[name].dtype == np.float32 and np.array_equal(got[name], _f32(v)), name
        assert run.buffer_names == ["block.batch_normalization.moving_mean",
                                    "block.batch_normalization.moving_variance"]


def test_the_archive_config_tells_gamma_from_beta(tmp_path):
    L = keras.layers
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((3,)), L.BatchNormalization(center=False),
                              L.LayerNormalization(scale=False)])
    model.save_weights(tmp_path / "m.weights.h5")
    model.save(tmp_path / "m.keras")
    bn, ln = model.layers
    for f, names in (("m.weights.h5", ("var0", "var0")), ("m.keras", ("gamma", "beta"))):
        got = open_run(tmp_path / f).tensors(0)
        assert np.array_equal(got[f"batch_normalization.{names[0]}"], _f32(bn.gamma))
        assert np.array_equal(got[f"layer_normalization.{names[1]}"], _f32(ln.beta))
        assert np.array_equal(got["batch_normalization.moving_variance"],
                              _f32(bn.moving_variance))


def _f32(v):
    return np.asarray(keras.ops.convert_to_numpy(v)).astype(np.float32)


@pytest.mark.parametrize(("name", "want"), [
    ("weights.05.weights.h5", (5, "epoch")), ("weights.05-0.32.weights.h5", (5, "epoch")),
    ("model.07.keras", (7, "epoch")), ("model-07-0.32.keras", (7, "epoch")),
    ("weights-improvement-12-0.87.keras", (12, "epoch")), ("resnet50-03.keras", (3, "epoch")),
    ("ckpt-04.weights.h5", (4, "epoch")), ("epoch_3_loss_0.25.keras", (3, "epoch")),
    ("step_500.weights.h5", (500, "step")), ("model.keras", (None, "step")),
])
def test_positions_from_modelcheckpoint_names(name, want):
    from pathlib import Path

    from lossview.core.io.kerasfiles import keras_position

    assert keras_position(Path(name)) == want


def test_sharded_saves_are_refused_in_one_line(tmp_path, capsys):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(300),
                              keras.layers.Dense(300)])
    model.save_weights(tmp_path / "model.weights.json", max_shard_size=0.0004)
    assert (tmp_path / "model_00000.weights.h5").is_file()
    assert main(["analyze", str(tmp_path), "--json"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "sharded Keras saves are not read" in err
