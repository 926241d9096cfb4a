"""``lossview open --screenshot``, ``lossview export``: real subprocesses on a real run."""

import csv
import subprocess
import sys

import numpy as np
import pytest
from PySide6.QtGui import QImage

from lossview.cli import main
from lossview.gui.app import SCREENSHOT_SIZE

from .conftest import write_run


def lossview(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "lossview", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def image_array(path):
    from lossview.gui.plotkit.export import qimage_to_array

    img = QImage(str(path))
    assert not img.isNull()
    return qimage_to_array(img)


def test_screenshot_writes_a_full_window_png(tmp_path):
    run = write_run(tmp_path / "walk", n_snap=20)
    out = tmp_path / "shot.png"
    r = lossview("open", run, "--step", 100, "--screenshot", out)
    assert r.returncode == 0, r.stderr[-2000:]
    a = image_array(out)
    assert (a.shape[1], a.shape[0]) == SCREENSHOT_SIZE
    colours, counts = np.unique(a.reshape(-1, 3), axis=0, return_counts=True)
    assert len(colours) > 500  # curves, colour map, text: not a blank window
    assert counts.max() < 0.8 * counts.sum()  # no single colour fills the window


def test_screenshot_of_a_missing_folder_is_one_line_and_exit_2(tmp_path):
    r = lossview("open", tmp_path / "nope", "--screenshot", tmp_path / "x.png")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "no such file or folder" in r.stderr
    assert not (tmp_path / "x.png").exists()


def test_export_csv_holds_every_metric(tmp_path, capsys):
    run = write_run(tmp_path / "walk", n_snap=5)
    out = tmp_path / "m.csv"
    assert main(["export", str(run), "--csv", str(out)]) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["step", "grad_norm", "loss", "lr", "train_loss", "val_loss"]
    assert len(rows) == 1 + 50  # one row per logged step
    from lossview.core.io import open_run

    r = open_run(run)
    col = rows[0].index("train_loss")
    logged = [(int(x[0]), float(x[col])) for x in rows[1:] if x[col]]
    assert logged == list(zip(r.metrics["train_loss"].steps.tolist(),
                              r.metrics["train_loss"].values.tolist()))


def test_export_gif_animates_the_timeline(tmp_path):
    iio = pytest.importorskip("imageio.v3")
    run = write_run(tmp_path / "walk", n_snap=6)
    out = tmp_path / "a.gif"
    r = lossview("export", run, "--gif", out, "--frames", 3)
    assert r.returncode == 0, r.stderr[-2000:]
    frames = iio.imread(out, index=None)
    assert frames.shape[0] == 3
    # the cursor moved: consecutive frames differ
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).sum() > 0
