"""``lossview analyze PATH [--json]``: what the weights did, as text or one JSON object."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="summarise a run: distances, PCA, diffusion, plateau, divergence, diagnosis",
        description="Analyse a checkpoint folder (any supported format) without running its code.",
    )
    p.add_argument("path", help="run folder or checkpoint file")
    p.add_argument("--json", action="store_true", help="print one JSON object (keys in DESIGN.md)")
    p.add_argument("--model", metavar="FILE.py",
                   help="for foreign folders: a Python file that builds the model and data "
                        "(runs your code; enables sharpness)")


def run(args: argparse.Namespace) -> int:
    from lossview.core.analysis.report import analyze, format_text
    from lossview.core.io import open_run

    r = open_run(args.path)
    for w in r.warnings:
        print(f"lossview analyze: warning: {w}", file=sys.stderr)
    report = analyze(r, model_file=getattr(args, "model", None))
    if args.json:
        json.dump(report, sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_text(report))
    return 0
