"""Planes that cannot be drawn say why in one line (exit 2), never a LinAlgError."""

from __future__ import annotations

from lossview.cli import main


def test_random_plane_of_a_model_with_only_1d_parameters_is_refused(tmp_path, capsys):
    # the built-in quadratic has one 1-D parameter vector: filter normalisation zeroes it
    assert main(["train", "quadratic", "--steps", "40", "--out", str(tmp_path / "q"), "--quiet"]) == 0
    capsys.readouterr()
    rc = main(["surface", str(tmp_path / "q"), "--plane", "random", "--steps", "5",
               "--out", str(tmp_path / "s.npz")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "1-D" in err and "--plane pca" in err
    assert not (tmp_path / "s.npz").exists()
    # the PCA plane of the same run works
    assert main(["surface", str(tmp_path / "q"), "--plane", "pca", "--steps", "5",
                 "--out", str(tmp_path / "s.npz")]) == 0
