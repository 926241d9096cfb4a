"""The lossview command itself: help, version, broken pipes."""

import subprocess
import sys

from lossview import __version__
from lossview.cli import main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as e:
        assert e.code == 0
    assert capsys.readouterr().out.strip() == f"lossview {__version__}"


def test_unknown_subcommand_exits_2(capsys):
    try:
        main(["frobnicate"])
    except SystemExit as e:
        assert e.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_reader_closing_the_pipe_is_not_an_error(data_dir):
    cmd = [sys.executable, "-m", "lossview", "analyze", str(data_dir / "torch_general"), "--json"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(10)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0
    assert "Traceback" not in err
