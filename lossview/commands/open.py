"""``lossview open [PATH] [--step N] [--screenshot FILE] [--model FILE.py | --data FILE]``:
the desktop app."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "open",
        help="open the desktop app (start page, or a run folder)",
        description="Open the lossview window; with PATH, load that run folder.",
    )
    p.add_argument("path", nargs="?", help="run folder or checkpoint file (omit: start page)")
    p.add_argument("--step", type=int, help="show the snapshot at (or just before) this step")
    p.add_argument("--screenshot", metavar="FILE.png",
                   help="render the window once every panel is drawn, write the PNG, exit "
                        "(no display needed: see lossview export --help)")
    p.add_argument("--size", metavar="WxH", default="1600x1000",
                   help="for --screenshot: the window's size in pixels (default: 1600x1000)")
    p.add_argument("--model", metavar="FILE.py",
                   help="for foreign folders: a Python file that builds the model and data "
                        "(runs your code; enables the loss surface and sharpness)")
    from lossview.commands.surface import add_data_arguments

    add_data_arguments(p)  # Hugging Face folders: the surface and sharpness without code


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lossview.core.errors import LossviewError

    if args.screenshot and not args.path:
        raise LossviewError("--screenshot needs a PATH to open")
    if args.path and not Path(args.path).expanduser().exists():
        raise LossviewError(f"no such file or folder: {args.path}")
    from lossview.gui.app import run_app

    if args.model and not Path(args.model).expanduser().is_file():
        raise LossviewError(f"no such model file: {args.model}")
    data, block_size = getattr(args, "data", None), getattr(args, "block_size", None)
    if data and args.model:
        raise LossviewError("--data is for Hugging Face folders without a model file; "
                            "pass --model or --data, not both")
    if block_size is not None and not data:
        raise LossviewError("--block-size needs --data FILE")
    if data and not Path(data).expanduser().is_file():
        raise LossviewError(f"no such data file: {data}")
    from lossview.commands.export import parse_size

    size = parse_size(args.size) if args.screenshot else None
    return run_app(args.path, step=args.step, screenshot=args.screenshot,
                   model_file=args.model, size=size, data=data, block_size=block_size)
