"""The lossview command itself: help, version, broken pipes."""

import subprocess
import sys

import pytest

from lossview import __version__
from lossview.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"lossview {__version__}"


def test_unknown_subcommand_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_reader_closing_the_pipe_is_not_an_error(tmp_path):
    import numpy as np

    from lossview.core.io import RunWriter

    with RunWriter(tmp_path / "run") as w:  # ~1 MB of JSON: far more than a pipe buffer
        w.snapshot(0, {"w": np.zeros(3, np.float32)})
        for step in range(30000):
            w.log(step, loss=1.0 / (step + 1))
    cmd = [sys.executable, "-m", "lossview", "analyze", str(tmp_path / "run"), "--json"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.read(10) == b'{"format":'
    p.stdout.close()  # like `| head -c 10`
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0
    assert "Traceback" not in err
