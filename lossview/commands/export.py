"""``lossview export RUN --png|--csv|--gif FILE [--step N]``: images, tables, animations."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write the window as PNG, the metrics as CSV, or the timeline as GIF/MP4",
        description="Export a run without opening the window interactively. PNG and GIF "
                    "render the app (they need a display: use xvfb-run -a on a server).",
    )
    p.add_argument("path", help="run folder or checkpoint file")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--png", metavar="FILE", help="the window at --step as a PNG")
    g.add_argument("--csv", metavar="FILE", help="every logged metric, one row per step")
    g.add_argument("--gif", metavar="FILE", help="an animation of the timeline (.gif or .mp4)")
    p.add_argument("--step", type=int, help="for --png: the snapshot to show (default: last)")
    p.add_argument("--size", metavar="WxH", default="1600x1000",
                   help="for --png: the window's size in pixels (default: 1600x1000)")
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
    if args.png:
        from lossview.gui.app import run_app

        return run_app(args.path, step=args.step, screenshot=args.png, size=parse_size(args.size))
    out = Path(args.gif)
    if out.suffix.lower() not in (".gif", ".mp4"):
        raise LossviewError(f"{out}: animations are .gif or .mp4")
    from lossview.gui.animation_cli import export_animation

    return export_animation(args.path, out, max_frames=args.frames)


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
