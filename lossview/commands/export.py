"""``lossview export RUN --png|--csv|--gif FILE [--step N]``: images, tables, animations."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write the window as PNG, the metrics as CSV, or the timeline as GIF/MP4",
        description="Export a run without opening the window interactively. PNG and GIF "
                    "render the app's window; with no display (no DISPLAY or WAYLAND_DISPLAY) "
                    "on Qt's offscreen platform, where the loss surface is shown as a "
                    "contour map unless an OpenGL context can be made (the command says "
                    "which).",
    )
    p.add_argument("path", help="run folder or checkpoint file")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--png", metavar="FILE", help="the window at --step as a PNG")
    g.add_argument("--csv", metavar="FILE", help="every logged metric, one row per step")
    g.add_argument("--gif", metavar="FILE", help="an animation of the timeline (.gif or .mp4)")
    p.add_argument("--step", type=int, help="for --png: the snapshot to show (default: last)")
    p.add_argument("--size", metavar="WxH", default="1600x1000",
                   help="for --png and --gif: the window's size in pixels (default: 1600x1000)")
    p.add_argument("--frames", type=int, default=60, help="for --gif: at most this many frames")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lossview.core.errors import LossviewError
    from lossview.core.io import open_run

    if args.csv:
        from lossview.core.io.export_csv import write_metrics_csv

        r = open_run(args.path)
        if not r.metrics:
            raise LossviewError(f"{args.path} logged no metrics")
        write_metrics_csv(r, args.csv)
        return 0
    if not Path(args.path).expanduser().exists():
        raise LossviewError(f"no such file or folder: {args.path}")
    size = parse_size(args.size)
    if args.png:
        from lossview.gui.app import run_app

        return run_app(args.path, step=args.step, screenshot=args.png, size=size,
                       say_3d=True)
    out = Path(args.gif)
    if out.suffix.lower() not in (".gif", ".mp4"):
        raise LossviewError(f"{out}: --gif writes a .gif or an .mp4")
    _check_writer(out.suffix.lower())
    from lossview.gui.animation_cli import export_animation

    return export_animation(args.path, out, max_frames=args.frames, size=size)


def _check_writer(suffix: str) -> None:
    """Before minutes of rendering: the GIF writer (imageio) or ffmpeg for an MP4."""
    import importlib.util
    import shutil

    from lossview.core.errors import LossviewError

    if suffix == ".gif" and importlib.util.find_spec("imageio") is None:
        raise LossviewError("--gif FILE.gif needs imageio: pip install 'lossview[export]'")
    if suffix == ".mp4" and shutil.which("ffmpeg") is None:
        raise LossviewError("--gif FILE.mp4 needs ffmpeg on PATH (or write a .gif)")


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x800"`` -> (1280, 800); a LossviewError (exit 2) for anything else."""
    from lossview.core.errors import LossviewError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise LossviewError(f"--size takes WIDTHxHEIGHT in pixels, not {text!r}") from None
    if not (320 <= w <= 8192 and 240 <= h <= 8192):
        raise LossviewError(f"--size {text}: between 320x240 and 8192x8192")
    return w, h
