"""``lossview export --png/--gif`` with no display at all (Qt's offscreen platform), and
help texts that name only files the repository has.

Real subprocesses with ``DISPLAY`` and ``WAYLAND_DISPLAY`` removed from the environment,
on a copy of the shipped demo run (its surface cache is written beside it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lossview.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
#: the one line the command prints about the 3D view (which one depends on the machine)
VIEW_LINE = re.compile(r"3D view: offscreen OpenGL.*|3D view not available without a display "
                       r"\(.+\): the surface is shown as a contour map")
#: the light theme's (the default) training-loss colour and viridis' two ends
TRAIN_RGB = (0x1F, 0x6F, 0xB4)
VIRIDIS_LOW, VIRIDIS_HIGH = (68, 1, 84), (253, 231, 37)


def headless_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["LOSSVIEW_SETTINGS_DIR"] = str(tmp_path / "settings")
    return env


def lossview_headless(tmp_path: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lossview", *map(str, args)],
                          capture_output=True, text=True, timeout=540, cwd=ROOT,
                          env=headless_env(tmp_path))


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from lossview.resources import path

    src = path("demo")
    if not (src / "run.json").is_file():
        pytest.skip("the demo run is not shipped with this build")
    dst = tmp_path_factory.mktemp("demo") / "demo"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("cache"))
    return dst


def near(rgb: np.ndarray, colour: tuple[int, int, int], tol: float = 24.0) -> np.ndarray:
    return np.linalg.norm(rgb.astype(float) - np.array(colour, float), axis=-1) < tol


def assert_looks_like_the_window(rgb: np.ndarray, min_colours: int = 500,
                                 map_tol: float = 40.0) -> None:
    h, w, _ = rgb.shape
    colours, counts = np.unique(rgb.reshape(-1, 3), axis=0, return_counts=True)
    assert len(colours) > min_colours  # curves, colour maps, text: not a blank window
    assert counts.max() < 0.8 * counts.sum()
    # the loss panel (top left): its training-loss curve
    assert near(rgb[: h // 2, : w // 3], TRAIN_RGB).sum() > 200
    # the surface panel (top right): drawn, with both ends of its colour map
    surface = rgb[: h // 2, 2 * w // 3:]
    assert len(np.unique(surface.reshape(-1, 3), axis=0)) > min_colours // 4
    assert near(surface, VIRIDIS_LOW, map_tol).sum() > 50
    assert near(surface, VIRIDIS_HIGH, map_tol).sum() > 50


def the_view_line(stdout: str) -> str:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("3D view")]
    assert len(lines) == 1, stdout
    assert VIEW_LINE.fullmatch(lines[0]), lines[0]
    return lines[0]


def test_png_without_a_display(demo, tmp_path):
    iio = pytest.importorskip("imageio.v3")
    out = tmp_path / "demo.png"
    r = lossview_headless(tmp_path, "export", demo, "--png", out, "--size", "1280x800")
    assert r.returncode == 0, r.stderr[-2000:]
    # no traceback, no notes from Qt's offscreen plugin
    assert "Traceback" not in r.stderr and "propagateSizeHints" not in r.stderr, r.stderr
    the_view_line(r.stdout)
    rgb = iio.imread(out)[..., :3]
    assert rgb.shape == (800, 1280, 3)
    assert_looks_like_the_window(rgb)


def test_gif_without_a_display(demo, tmp_path):
    iio = pytest.importorskip("imageio.v3")
    out = tmp_path / "demo.gif"
    r = lossview_headless(tmp_path, "export", demo, "--gif", out, "--frames", 3,
                          "--size", "1280x800")
    assert r.returncode == 0, r.stderr[-2000:]
    the_view_line(r.stdout)
    frames = iio.imread(out, index=None)[..., :3]
    assert frames.shape == (3, 800, 1280, 3)
    # a GIF frame has 256 colours, chosen per frame: the colour map's ends move by up to
    # ~45 (seen: viridis' yellow 45 away in one frame, 23 in the others)
    assert_looks_like_the_window(frames[-1], min_colours=120, map_tol=60.0)
    # the timeline moved: the first and the last frame differ
    assert (frames[0] != frames[-1]).any(axis=-1).sum() > 100


def test_the_window_without_a_display_is_one_line_naming_export(tmp_path):
    r = lossview_headless(tmp_path, "open")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "lossview export" in r.stderr and "--png" in r.stderr


def test_an_export_of_a_missing_run_says_so(tmp_path):
    r = lossview_headless(tmp_path, "export", tmp_path / "nope", "--png", tmp_path / "x.png")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "no such file or folder" in r.stderr
    assert not (tmp_path / "x.png").exists()


def help_texts() -> dict[str, str]:
    parser = build_parser()
    texts = {"lossview": parser.format_help()}
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        texts[f"lossview {name}"] = p.format_help()
    return texts


def test_every_file_named_in_a_help_text_exists():
    texts = help_texts()
    assert {"lossview analyze", "lossview export", "lossview open"} <= set(texts)
    named = {(cmd, m) for cmd, text in texts.items()
             for m in re.findall(r"[\w./-]+\.(?:md|rst|txt|html)\b", text)}
    assert ("lossview analyze", "docs/analysis.md") in named  # where --json's keys are
    missing = sorted(f"{cmd}: {name}" for cmd, name in named if not (ROOT / name).is_file())
    assert not missing, missing
