"""The trainer: run folder contents, metrics semantics, determinism, divergence, cancel."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lossview.core.errors import LossviewError
from lossview.core.io import RunWriter, open_run
from lossview.core.train.config import TrainConfig, snapshot_steps
from lossview.core.train.optim import lr_at
from lossview.core.train.problems import problem_from_spec
from lossview.core.train.trainer import Trainer, run_to_end, train

SMALLQ = {"dim": 6, "n": 64}


def test_run_folder_records_everything_to_rebuild(tmp_path):
    cfg = TrainConfig("mlp", steps=60, every=20, seed=3, label_noise=0.1, clip_grad=5.0,
                      weight_decay=1e-4, momentum=0.5, nesterov=True)
    s = run_to_end(train(cfg, tmp_path / "r"))
    assert s.status == "finished" and s.steps_done == 60 and s.path == tmp_path / "r"
    run = open_run(tmp_path / "r")
    assert list(run.steps) == [0, 20, 40, 60]
    spec = run.spec
    assert spec["status"] == "finished" and spec["steps_done"] == 60
    assert spec["problem"]["name"] == "mlp" and spec["problem"]["seed"] == 3
    assert spec["optimizer"] == {"name": "sgd", "lr": 0.3, "momentum": 0.5, "nesterov": True,
                                 "weight_decay": 1e-4}
    assert spec["training"] == {"steps": 60, "batch_size": 32, "sampling": "shuffle",
                                "label_noise": 0.1, "clip_grad": 5.0}
    assert spec["snapshots"] == {"every": 20}
    # the problem rebuilds from run.json alone: same initial weights as snapshot 0
    p = problem_from_spec(spec["problem"])
    m = p.make_model()
    for k, v in m.named_parameters():
        np.testing.assert_array_equal(run.params(0)[k], v.detach().numpy())
    # and the whole config round-trips: training again gives the same final weights
    cfg2 = TrainConfig.from_dict(spec["config"])
    s2 = run_to_end(train(cfg2, None))
    last2, last = s2.run.params(len(s2.run) - 1), run.params(len(run) - 1)
    assert last2.keys() == last.keys()
    for k in last:
        np.testing.assert_array_equal(last2[k], last[k])
    for name in ("loss", "lr", "grad_norm", "update_norm", "param_norm"):
        assert len(run.metric(name)) >= 60
    assert list(run.metric("train_loss").steps) == [0, 20, 40, 60]
    assert list(run.metric("val_loss").steps) == [0, 20, 40, 60]


def test_metric_semantics_match_snapshots():
    """Record t: param_norm = |w_t|, update_norm = |w_{t+1} - w_t|, loss at w_t."""
    cfg = TrainConfig("quadratic", problem_options=SMALLQ, steps=20, every=1, batch_size=None,
                      lr=0.3)
    run = run_to_end(train(cfg)).run
    w = np.stack([run.vector(i) for i in range(len(run))])
    pn = run.metric("param_norm")
    un = run.metric("update_norm")
    np.testing.assert_allclose(pn.values[:20], np.linalg.norm(w[:20], axis=1), rtol=1e-5)
    np.testing.assert_allclose(un.values[:20], np.linalg.norm(np.diff(w, axis=0), axis=1), rtol=1e-4)
    # full batch: the mini-batch loss is the full train loss
    np.testing.assert_allclose(run.metric("loss").values[:20], run.metric("train_loss").values[:20],
                               rtol=1e-5)
    # plain GD: update = lr * gradient
    np.testing.assert_allclose(un.values[:20], 0.3 * run.metric("grad_norm").values[:20], rtol=1e-4)


def test_same_seed_is_bit_identical_and_other_seed_differs(tmp_path):
    cfg = TrainConfig("bn-mlp", steps=80, every=40, seed=7, label_noise=0.05)
    for name in ("a", "b"):
        run_to_end(train(cfg, tmp_path / name))
    a, b = open_run(tmp_path / "a"), open_run(tmp_path / "b")
    for i in range(len(a)):
        ta, tb = a.tensors(i), b.tensors(i)
        assert ta.keys() == tb.keys()
        for k in ta:
            assert ta[k].tobytes() == tb[k].tobytes(), (i, k)
    c = run_to_end(train(TrainConfig("bn-mlp", steps=80, every=40, seed=8, label_noise=0.05))).run
    assert not np.array_equal(c.vector(len(c) - 1), a.vector(len(a) - 1))
    la = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert la == lb


def test_divergence_is_recorded_and_training_stops_cleanly(tmp_path):
    cfg = TrainConfig("mlp", lr=1e4, steps=500, every=5)
    s = run_to_end(train(cfg, tmp_path / "d"))
    assert s.status == "diverged"
    d = s.divergence_step
    assert d is not None and d < 500 and d - 1 <= s.steps_done <= d  # last finite weights
    run = open_run(tmp_path / "d")
    assert run.spec["status"] == "diverged" and run.spec["divergence_step"] == d
    assert all(np.isfinite(run.vector(i)).all() for i in range(len(run)))
    assert run.steps[-1] <= d
    loss = run.metric("loss")
    finite = np.isfinite(loss.values)
    # the first non-finite loss or weight is the divergence step; nothing logged after it
    assert loss.steps.max() <= d
    if not finite.all():
        assert loss.steps[~finite][0] == d


def test_stop_is_honoured_within_one_step(tmp_path):
    cfg = TrainConfig("quadratic", problem_options=SMALLQ, steps=10_000, every=7, progress_interval=0)
    trainer = Trainer(cfg, tmp_path / "s")
    gen = trainer.run()
    events = [next(gen) for _ in range(5)]
    assert [e.step for e in events] == [1, 2, 3, 4, 5]
    trainer.stop()
    final = list(gen)  # the generator finishes: one closing event
    assert len(final) == 1 and final[0].status == "stopped"
    assert final[0].step == 5  # no update after the request
    run = open_run(tmp_path / "s")
    assert run.spec["status"] == "stopped" and run.spec["stopped_step"] == 5
    assert list(run.steps) == [0, 5]  # the stopped weights are kept
    assert run.metric("loss").steps.max() == 4


def test_closing_the_generator_marks_the_run_stopped(tmp_path):
    gen = train(TrainConfig("linreg", steps=1000, every=10, progress_interval=0), tmp_path / "c")
    for _ in range(3):
        next(gen)
    gen.close()
    run = open_run(tmp_path / "c")
    assert run.spec["status"] == "stopped" and run.spec["steps_done"] == 3
    assert list(run.steps) == [0, 3]  # the weights at the close are kept


def test_progress_events_cover_every_step_and_carry_snapshots():
    cfg = TrainConfig("quadratic", problem_options=SMALLQ, steps=50, every=10, progress_interval=0)
    events = list(train(cfg))
    steps = np.concatenate([e.metrics["step"] for e in events])
    assert list(steps) == list(range(50))
    snaps = [(e.snapshot_step, e.params) for e in events if e.params is not None]
    assert [s for s, _ in snaps] == [0, 10, 20, 30, 40, 50]
    assert set(snaps[1][1]) == {"w"} and snaps[1][1]["w"].shape == (6,)
    assert events[-1].status == "finished" and events[-1].step == 50
    # the full-data losses of every snapshot arrive (evaluated in the writer thread)
    evaluated = {}
    for e in events:
        evaluated.update(e.snapshot_metrics)
    assert sorted(evaluated) == [0, 10, 20, 30, 40, 50]
    assert all(set(v) == {"train_loss"} and v["train_loss"] > 0 for v in evaluated.values())
    assert all(set(e.metrics) == {"step", "loss", "lr", "grad_norm", "update_norm", "param_norm"}
               for e in events)
    # a long interval: no event until the end, which still carries all 50 records
    lazy = list(train(TrainConfig("quadratic", problem_options=SMALLQ, steps=50, every=10,
                                  progress_interval=1e9)))
    assert len(lazy) == 1 and len(lazy[0].metrics["step"]) == 50


def test_snapshot_evaluation_can_be_switched_off():
    s = run_to_end(train(TrainConfig("linreg", steps=20, every=10, eval_snapshots=False)))
    assert s.train_loss is None and s.run.metric("train_loss") is None
    assert s.n_snapshots == 3 and len(s.run.metric("loss")) == 20


def test_log_spaced_snapshots_are_dense_early():
    s = snapshot_steps(10_000, 1, log_snapshots=40)
    assert s[0] == 0 and s[-1] == 10_000 and 30 <= len(s) <= 41
    assert np.all(np.diff(s) > 0)
    assert np.diff(s)[:5].max() <= 2 and np.diff(s)[-1] > 500
    assert list(snapshot_steps(25, 10)) == [0, 10, 20, 25]
    run = run_to_end(train(TrainConfig("linreg", steps=200, log_snapshots=20))).run
    assert list(run.steps) == list(snapshot_steps(200, 1, 20))


@pytest.mark.parametrize("schedule", ["constant", "step", "cosine", "warmup"])
def test_schedules_drive_the_logged_lr(schedule):
    cfg = TrainConfig("linreg", steps=100, every=50, lr=0.4, schedule=schedule, warmup_steps=0,
                      lr_step_every=30, lr_gamma=0.5)
    lr = run_to_end(train(cfg)).run.metric("lr").values
    expect = [lr_at(t, 0.4, schedule, 100, 0, 30, 0.5) for t in range(100)]
    np.testing.assert_allclose(lr, expect)
    if schedule == "step":
        assert lr[29] == 0.4 and lr[30] == 0.2 and lr[60] == 0.1
    if schedule == "cosine":
        assert lr[0] == 0.4 and lr[50] == pytest.approx(0.2) and lr[99] < 0.001
    if schedule == "warmup":  # 5 % of the steps
        assert lr[0] == pytest.approx(0.08) and lr[4] == 0.4 and lr[99] == 0.4


@pytest.mark.parametrize("opt", ["adam", "adamw", "rmsprop"])
def test_other_optimizers_train(opt):
    s = run_to_end(train(TrainConfig("mlp", optimizer=opt, lr=3e-3, steps=300, every=300)))
    assert s.status == "finished" and s.train_loss < 0.5


def test_gradient_clipping_bounds_the_update():
    cfg = TrainConfig("quadratic", problem_options=SMALLQ, lr=0.5, clip_grad=0.1, steps=30,
                      every=30, batch_size=None)
    run = run_to_end(train(cfg)).run
    gn, un = run.metric("grad_norm").values[:30], run.metric("update_norm").values[:30]
    assert gn.max() > 1.0  # logged before clipping
    assert un.max() <= 0.5 * 0.1 * (1 + 1e-5)


def test_existing_writer_can_be_the_output(tmp_path):
    w = RunWriter(tmp_path / "w", {"note": "mine"})
    s = run_to_end(train(TrainConfig("linreg", steps=10, every=5), w))
    run = open_run(tmp_path / "w")
    assert run.spec["note"] == "mine" and run.spec["problem"]["name"] == "linreg"
    assert s.status == "finished" and list(run.steps) == [0, 5, 10]


@pytest.mark.parametrize(("change", "msg"), [
    ({"lr": -0.1}, "lr must be > 0"), ({"lr": math.nan}, "lr must be a finite number"),
    ({"momentum": 1.0}, "momentum must be"), ({"optimizer": "lbfgs"}, "unknown optimizer"),
    ({"schedule": "exp"}, "unknown schedule"), ({"batch_size": 5000}, "larger than"),
    ({"batch_size": -2}, "batch_size must be"), ({"steps": 0}, "steps must be"),
    ({"every": 0}, "every must be"), ({"label_noise": 1.5}, "label_noise must be"),
    ({"nesterov": True}, "nesterov needs"), ({"problem": "resnet"}, "unknown problem"),
    ({"sampling": "stratified"}, "unknown sampling"),
])
def test_invalid_settings_are_one_line_errors(change, msg, tmp_path):
    with pytest.raises(LossviewError, match=msg):
        Trainer(TrainConfig(**{"problem": "mlp", **change}), tmp_path / "x")
    assert not (tmp_path / "x").exists()  # nothing written
    with pytest.raises(LossviewError, match="unknown training setting"):
        TrainConfig.from_dict({"problem": "mlp", "learning_rate": 1})


def test_refuses_to_overwrite_unless_asked(tmp_path):
    run_to_end(train(TrainConfig("linreg", steps=5, every=5), tmp_path / "r"))
    with pytest.raises(LossviewError, match="already exists"):
        run_to_end(train(TrainConfig("linreg", steps=5, every=5), tmp_path / "r"))
    assert open_run(tmp_path / "r").spec["status"] == "finished"
    run_to_end(train(TrainConfig("linreg", steps=7, every=7), tmp_path / "r", overwrite=True))
    assert list(open_run(tmp_path / "r").steps) == [0, 7]
