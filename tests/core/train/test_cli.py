"""`lossview train`: writes a run with the problem's defaults; exit 2 with one line on bad input."""

from __future__ import annotations

import sys

import pytest

from lossview.cli import main
from lossview.core.io import open_run


def test_train_writes_a_run_with_given_options(tmp_path, capsys):
    out = tmp_path / "q"
    rc = main(["train", "quadratic", "--lr", "0.4", "--momentum", "0.5", "--batch-size", "0",
               "--steps", "120", "--every", "40", "--seed", "2", "--set", "dim=5",
               "--set", "n=32", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr()
    assert "finished: 120/120 steps, 4 snapshots" in printed.out
    assert printed.err == ""  # not a terminal: no progress bar
    run = open_run(out)
    assert list(run.steps) == [0, 40, 80, 120] and run.n_params == 5
    assert run.spec["optimizer"]["lr"] == 0.4 and run.spec["optimizer"]["momentum"] == 0.5
    assert run.spec["training"]["batch_size"] is None
    assert run.spec["problem"] == {"name": "quadratic", "seed": 2, "dim": 5, "n": 32, "noise": 1.0,
                                   "min_eig": 0.01, "max_eig": 1.0, "init_scale": 3.0,
                                   "rotate": True}


def test_defaults_and_log_spaced_snapshots(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "linreg", "--log-every", "30", "--optimizer", "adam", "--lr", "0.01"]) == 0
    run = open_run(tmp_path / "runs" / "linreg-seed0")  # the default folder
    assert run.spec["training"]["steps"] == 500  # the problem's default
    assert run.spec["snapshots"] == {"log_spaced": 30}
    assert run.steps[1] == 1 and run.steps[-1] == 500


@pytest.mark.parametrize(("argv", "msg"), [
    (["train", "resnet"], "unknown problem 'resnet'"),
    (["train", "mlp", "--lr", "-1"], "lr must be > 0"),
    (["train", "mlp", "--batch-size", "-3"], "batch_size must be"),
    (["train", "mlp", "--steps", "0"], "steps must be"),
    (["train", "mlp", "--optimizer", "lbfgs"], "unknown optimizer"),
    (["train", "quadratic", "--set", "dims=3"], "no option 'dims'"),
])
def test_bad_input_exits_2_with_one_line(argv, msg, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_existing_folder_is_kept(tmp_path, capsys):
    out = tmp_path / "r"
    args = ["train", "linreg", "--steps", "10", "--every", "5", "--out", str(out)]
    assert main(args) == 0
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert list(open_run(out).steps) == [0, 5, 10]


def test_progress_bar_only_on_a_terminal(tmp_path):
    pty = pytest.importorskip("pty")
    import os

    out = tmp_path / "t"
    code = ("import sys; from lossview.cli import main; "
            f"sys.exit(main(['train', 'linreg', '--steps', '300', '--out', {str(out)!r}]))")
    pid, fd = pty.fork()
    if pid == 0:  # child: stdout and stderr are the terminal
        os.execv(sys.executable, [sys.executable, "-c", code])
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "[" in text and "300/300" in text and "\r" in text  # the bar, redrawn in place
    # (without a terminal there is no bar: test_train_writes_a_run_with_given_options)
