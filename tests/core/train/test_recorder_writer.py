"""The Recorder's writer (a process by default, a thread as the fallback): every record
and snapshot arrives in order and bit-exact, a writer error reaches the training thread,
the hand-over queue is bounded, and a killed training process leaves a readable run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

import lossview
from lossview.core.io import open_run
from lossview.core.io.native import RunWriter
from lossview.core.train.writer_process import ProcessWriter


def _model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 3))
    m.register_parameter("scale", nn.Parameter(torch.ones(3, dtype=torch.float64)))
    return m


def _record(path, writer, steps=120, every=7):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    seen, lines = {}, []
    g = torch.Generator().manual_seed(1)
    with lossview.Recorder(path, model, every=every, optimizer=opt, _writer=writer) as rec:
        for step in range(steps):
            x = torch.randn(8, 5, generator=g)
            loss = ((model(x).double() * model.scale) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            lr = opt.param_groups[0]["lr"]
            rec.log(step, loss=loss, tag="t", skip=None)
            lines.append({"step": step, "loss": loss.item(), "tag": "t", "lr": lr})
            if step % 50 == 49:
                rec.log_metrics(step, val=float(step))
                lines.append({"step": step, "val": float(step)})
                rec.update_spec(at=step)
            sched.step()
            if step == 0 or step % every == 0 or step == steps - 1:
                seen[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return seen, lines


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_every_record_and_snapshot_arrives_in_order_and_bit_exact(tmp_path, writer):
    seen, lines = _record(tmp_path / "r", writer)
    with open(tmp_path / "r" / "metrics.jsonl", encoding="utf-8") as fh:
        got = [json.loads(line) for line in fh]
    assert got == lines  # every record, in order, the lr of the schedule included
    files = sorted((tmp_path / "r" / "checkpoints").iterdir())
    assert [f.name for f in files] == [f"step_{s:09d}.safetensors" for s in sorted(seen)]
    for f, (step, state) in zip(files, sorted(seen.items())):
        with safe_open(str(f), framework="pt") as st:
            assert set(st.keys()) == set(state)
            meta = st.metadata()
            for k, v in state.items():
                t = st.get_tensor(k)
                if writer == "thread" and v.ndim == 0:
                    t = t.reshape(())  # the threaded writer stores 0-d tensors as shape (1,)
                assert t.dtype == v.dtype and t.shape == v.shape, k
                assert torch.equal(t, v), (step, k)  # bit-exact
        assert meta["step"] == str(step) and meta["epoch"] == ""
        assert json.loads(meta["buffers"]) == ["1.num_batches_tracked", "1.running_mean",
                                               "1.running_var"]
    run = open_run(tmp_path / "r")
    assert run.spec["status"] == "finished" and run.spec["at"] == 99
    assert run.spec["steps_done"] == 119 and run.spec["optimizer"]["name"] == "sgd"
    np.testing.assert_array_equal(run.tensors(len(run) - 1)["scale"], seen[119]["scale"].numpy())
    assert run.buffer_names == ["1.num_batches_tracked", "1.running_mean", "1.running_var"]
    assert not list((tmp_path / "r").rglob("*.tmp"))


def test_the_process_writer_is_the_default(tmp_path):
    rec = lossview.Recorder(tmp_path / "r", nn.Linear(2, 1))
    try:
        assert isinstance(rec._sink, ProcessWriter)
    finally:
        rec.close()


def _break(run):
    """Put a file where the checkpoints folder was: no snapshot can be written."""
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").write_text("not a folder")


def _log_then_close(rec, steps, pause=0.0, **metrics):
    """Log ``loss=1.0`` (and ``metrics``) at each of ``steps``, ``pause`` seconds apart,
    then close: a writer's error may surface at any of these calls."""
    for step in steps:
        rec.log(step, loss=1.0, **metrics)
        if pause:
            time.sleep(pause)
    rec.close()


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_a_writer_error_is_raised_in_the_training_thread(tmp_path, writer):
    model = nn.Linear(3, 1)
    rec = lossview.Recorder(tmp_path / "r", model, every=1, _writer=writer)
    rec.log(0, loss=1.0)
    _break(tmp_path / "r")  # every later snapshot fails
    with pytest.raises(OSError):  # at a log call or at close() at the latest
        _log_then_close(rec, range(1, 200), pause=0.002)
    if writer == "thread":  # the thread goes on writing: each failed snapshot raises
        with pytest.raises(OSError):
            rec.close()
    else:
        rec.close()  # the process's error was raised once: closing now marks the run
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "finished"


def test_an_error_is_raised_at_close_at_the_latest(tmp_path):
    rec = lossview.Recorder(tmp_path / "r", nn.Linear(3, 1), every=1000)
    rec.log(0, loss=1.0)
    rec.log(1, loss=1.0)
    _break(tmp_path / "r")
    with pytest.raises(OSError):
        rec.close()  # the last step's snapshot cannot be written
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "finished"


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP (POSIX)")
@pytest.mark.parametrize(("max_pending", "max_bytes", "most"), [(2, 1 << 30, 4), (100, 100_000, 1)])
def test_the_queue_is_bounded_and_blocks_the_training_thread(tmp_path, max_pending, max_bytes,
                                                             most):
    model = nn.Linear(200, 100)  # 80 KB a snapshot: more than the pipe holds
    w = ProcessWriter(RunWriter(tmp_path / "r"), max_pending=max_pending, handover_interval=0.0,
                      max_pending_bytes=max_bytes)
    deadline = time.monotonic() + 30
    while w._proc is None and time.monotonic() < deadline:  # the feeder starts it
        time.sleep(0.01)
    os.kill(w._proc.pid, signal.SIGSTOP)  # a stalled disk
    done = []

    def loop():
        for step in range(20):
            w.log(step, loss=float(step))
            w.snapshot(step, dict(model.named_parameters()))
            done.append(step)

    t = threading.Thread(target=loop, daemon=True)
    try:
        t.start()
        t.join(1.5)
        assert t.is_alive(), "the training thread should be blocked"
        assert w._q.qsize() <= max_pending
        assert w._queued_bytes <= max(max_bytes, 80_400)  # or a single hand-over
        # by count: 2 queued, one in the feeder's pipe write, one being put; by bytes: one
        assert len(done) <= most
    finally:
        os.kill(w._proc.pid, signal.SIGCONT)
    t.join(30)
    assert not t.is_alive() and len(done) == 20
    w.close()
    run = open_run(tmp_path / "r")
    assert list(run.steps) == list(range(20))
    assert list(run.metric("loss").steps) == list(range(20))


KILLED = """
import sys, time, torch
import lossview
model = torch.nn.Linear(4, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
rec = lossview.Recorder(sys.argv[1], model, every=5, optimizer=opt)
for step in range(10**9):
    loss = model(torch.randn(8, 4)).pow(2).mean()
    opt.zero_grad(); loss.backward(); opt.step()
    rec.log(step, loss=loss.item())
    time.sleep(0.0005)
    if step == 0:
        while rec._sink._proc is None:
            time.sleep(0.01)
        print(rec._sink._proc.pid, flush=True)
"""


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_a_killed_training_process_leaves_a_readable_run(tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    writer_pid = int(proc.stdout.readline())
    ckpts = out / "checkpoints"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if ckpts.is_dir() and len(list(ckpts.glob("*.safetensors"))) >= 8:
                break
            if proc.poll() is not None:
                pytest.fail(f"recording exited early: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.02)
        else:
            pytest.fail("no snapshots written within 120 s")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # it writes what it received, then exits
        try:
            os.kill(writer_pid, 0)
        except ProcessLookupError:
            break
        if _zombie(writer_pid):  # exited, not reaped (no init reaping orphans)
            break
        time.sleep(0.02)
    else:
        pytest.fail("the writer process did not exit after its parent was killed")
    run = open_run(out)
    assert run.spec["status"] == "running"
    n = len(run)
    assert n >= 8 and list(run.steps) == [5 * i for i in range(n)]
    for i in range(n):
        assert run.vector(i).shape == (run.n_params,)
    assert run.metric("loss").steps.max() >= run.steps[-1]
    assert list(run.metric("loss").steps) == list(range(len(run.metric("loss").steps)))


def test_a_frozen_app_falls_back_to_the_writer_thread(tmp_path, monkeypatch):
    from lossview.core.train.sinks import AsyncWriter

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    with lossview.Recorder(tmp_path / "r", nn.Linear(2, 1), every=2) as rec:
        assert isinstance(rec._sink, AsyncWriter)
        for step in range(5):
            rec.log(step, loss=1.0)
    assert list(open_run(tmp_path / "r").steps) == [0, 2, 4]


def test_a_process_that_cannot_start_is_an_error_in_the_training_thread(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError("no processes here")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    rec = lossview.Recorder(tmp_path / "r", nn.Linear(2, 1), every=2)
    with pytest.raises(PermissionError):
        _log_then_close(rec, range(5), pause=0.01)
    rec.close()
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "finished"


def test_a_metric_the_writer_cannot_take_is_an_error_not_a_hang(tmp_path):
    rec = lossview.Recorder(tmp_path / "r", nn.Linear(2, 1), every=100)
    with pytest.raises(Exception):  # noqa: B017 - pickling or JSON, either is reported
        _log_then_close(rec, [0], bad=lambda: 0)
    rec.close()
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "finished"


def test_an_epoch_of_any_number_type_is_stored(tmp_path):
    rec = lossview.Recorder(tmp_path / "r", nn.Linear(2, 1), every=100)
    rec.log(0, loss=1.0)
    rec.snapshot(3, epoch=np.float64(1.5))
    rec.snapshot(6, epoch=torch.tensor(2.0))
    rec.close()
    run = open_run(tmp_path / "r")
    assert list(run.steps) == [0, 3, 6]
    assert [s.epoch for s in run.snapshots] == [None, 1.5, 2.0]
