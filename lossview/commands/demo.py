"""``lossview demo``: train the default problem live (or open the recorded demo run)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="train the default problem live and watch it (or open the recorded demo run)",
        description="Show lossview working: trains the default built-in problem live; "
                    "--recorded opens the small demo run shipped with lossview instead.",
    )
    p.add_argument("--recorded", action="store_true", help="open the shipped demo run instead")
    p.add_argument("--step", type=int, help="with --recorded: the snapshot to show")
    p.add_argument("--screenshot", metavar="FILE.png",
                   help="with --recorded: write the window as a PNG once drawn, then exit")


def run(args: argparse.Namespace) -> int:
    from lossview.gui.app import run_app
    from lossview.gui.window.main_window import demo_path

    if args.recorded or args.screenshot:
        p = demo_path()
        if p is None:
            from lossview.core.errors import LossviewError

            raise LossviewError("the recorded demo run is not shipped with this build")
        return run_app(str(p), step=args.step, screenshot=args.screenshot)
    return run_app(demo=True, train=True)
