"""A training process killed with SIGKILL leaves a folder `lossview analyze` reads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lossview.core.io import open_run

SCRIPT = """
import sys
from lossview.core.train.config import TrainConfig
from lossview.core.train.trainer import train, run_to_end
run_to_end(train(TrainConfig("mlp", steps=1_000_000, every=5), sys.argv[1]))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_sigkill_mid_run_leaves_a_readable_run(tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpts = out / "checkpoints"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if ckpts.is_dir() and len(list(ckpts.glob("*.safetensors"))) >= 6:
                break
            if proc.poll() is not None:
                pytest.fail(f"trainer exited early: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.02)
        else:
            pytest.fail("no snapshots written within 120 s")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    r = subprocess.run([sys.executable, "-m", "lossview", "analyze", str(out), "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    run = open_run(out)
    assert run.spec["status"] == "running"  # never closed
    n = len(run)
    assert n >= 6 and report["n_checkpoints"] == n
    assert report["steps"] == [5 * i for i in range(n)]  # complete snapshots, no gaps
    # every snapshot whole; the metrics reach (at least) the last snapshot's step
    for i in range(n):
        assert run.vector(i).shape == (run.n_params,)
    assert run.metric("loss").steps.max() >= run.steps[-1] - 5
    # no temporary file is mistaken for a snapshot
    assert all(p.name.startswith("step_") for p in ckpts.glob("*.safetensors"))
