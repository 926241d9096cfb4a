"""--device for surfaces and sharpness: cpu and auto equal the default to the bit on a machine
without CUDA; a CUDA device that is not there is one line, exit 2 (the CUDA path itself is
exercised where a GPU is present)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lossview.cli import main
from lossview.core.surface.cache import load


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("dev") / "mlp"
    assert main(["train", "mlp", "--steps", "60", "--every", "10", "--out", str(d), "--quiet",
                 "--set", "hidden=8"]) == 0
    return d


def test_cpu_and_auto_equal_the_default_bit_for_bit(run_dir, tmp_path, capsys):
    arrays = {}
    for dev in (None, "cpu", "auto"):
        out = tmp_path / f"s_{dev}.npz"
        args = ["surface", str(run_dir), "--steps", "5", "--no-cache", "--out", str(out)]
        assert main(args + (["--device", dev] if dev else [])) == 0
        arrays[dev] = load(out)
    if not torch.cuda.is_available():  # auto is the CPU here
        for dev in ("cpu", "auto"):
            np.testing.assert_array_equal(arrays[dev]["loss"], arrays[None]["loss"])
    capsys.readouterr()
    assert main(["analyze", str(run_dir), "--json", "--device", "cpu"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["sharpness"]["sharpness"] and all(np.isfinite(rep["sharpness"]["sharpness"]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("dev,words", [("cuda", "no CUDA device"), ("gpu7", "unknown device")])
def test_a_device_that_is_not_there_is_one_line(run_dir, tmp_path, capsys, dev, words):
    rc = main(["surface", str(run_dir), "--steps", "3", "--no-cache", "--device", dev,
               "--out", str(tmp_path / "s.npz")])
    err = capsys.readouterr().err
    assert rc == 2 and words in err and len(err.strip().splitlines()) == 1
