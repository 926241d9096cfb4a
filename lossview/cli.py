"""The ``lossview`` command: open | demo | train | analyze | surface | export.

Each subcommand lives in ``lossview/commands/<name>.py`` with ``add_parser(sub)`` and
``run(args) -> int``; heavy imports (torch, Qt) happen inside ``run``, so ``--help`` is quick.
A :class:`LossviewError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lossview._version import __version__

COMMANDS = ("open", "demo", "train", "analyze", "surface", "export")


def _available() -> list[str]:
    found = []
    for name in COMMANDS:
        try:
            importlib.import_module(f"lossview.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"lossview.commands.{name}":
                raise
            continue
        found.append(name)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lossview",
        description="See what your optimizer does after the loss stops moving.",
    )
    parser.add_argument("--version", action="version", version=f"lossview {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _available():
        importlib.import_module(f"lossview.commands.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from lossview.core.errors import LossviewError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        if "open" in _available():
            args = parser.parse_args(["open"])
        else:
            parser.print_help()
            return 0
    module = importlib.import_module(f"lossview.commands.{args.command}")
    try:
        status = int(module.run(args) or 0)
        sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not at exit
        return status
    except LossviewError as e:
        print(f"lossview {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lossview {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `lossview analyze RUN | head`: the reader left; that is not an error.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def gui_main() -> int:
    return main(sys.argv[1:] or ["open"])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
