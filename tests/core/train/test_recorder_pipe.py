"""The Recorder's hand-overs written by the training thread itself: what the non-blocking
pipe does not take goes to the feeder thread, and every record and snapshot still
arrives whole and in order (small hand-overs written directly, snapshots larger than
the pipe split between the two threads)."""

from __future__ import annotations

import json
import sys
import time

import pytest
import torch
from safetensors import safe_open
from torch import nn

from lossview.core.io import open_run
from lossview.core.io.native import RunWriter
from lossview.core.train.writer_process import ProcessWriter


@pytest.mark.parametrize("width", [3, 300])  # a snapshot of 48 bytes, and of 361 KB (> the pipe)
def test_direct_and_fed_hand_overs_arrive_whole_and_in_order(tmp_path, width):
    torch.manual_seed(0)
    model = nn.Linear(width, width)
    w = ProcessWriter(RunWriter(tmp_path / "r"), handover_interval=0.0)
    seen, lines = {}, []
    for step in range(40):
        with torch.no_grad():  # in place: the same tensors, new values every step
            for p in model.parameters():
                p.mul_(-1.5).add_(step)
        w.log(step, loss=float(step) / 7, n=step)
        lines.append({"step": step, "loss": float(step) / 7, "n": step})
        if step % 3 == 0:
            if step % 2:
                _idle(w)  # the feeder has written everything: this one goes to the pipe now
            params = dict(model.named_parameters())
            w.snapshot(step, params)
            seen[step] = {k: v.detach().clone() for k, v in params.items()}
    direct = w._out is not None
    w.close()
    if sys.platform != "win32":
        assert direct  # the training thread wrote to the pipe itself
    with open(tmp_path / "r" / "metrics.jsonl", encoding="utf-8") as fh:
        assert [json.loads(line) for line in fh] == lines
    run = open_run(tmp_path / "r")
    assert list(run.steps) == sorted(seen) and run.spec["status"] == "finished"
    for step, state in seen.items():
        f = tmp_path / "r" / "checkpoints" / f"step_{step:09d}.safetensors"
        with safe_open(str(f), framework="pt") as st:
            for k, v in state.items():
                assert torch.equal(st.get_tensor(k), v), (step, k)  # bit-exact


def _idle(w: ProcessWriter) -> None:
    deadline = time.monotonic() + 30
    while (w._out is None or w._written != w._sent) and time.monotonic() < deadline:
        time.sleep(0.002)
