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
    p.add_argument("--json", action="store_true", help="print one JSON object (its keys: docs/analysis.md)")
    p.add_argument("--model", metavar="FILE.py",
                   help="for foreign folders: a Python file that builds the model and data "
                        "(runs your code; enables sharpness)")
    from lossview.commands.surface import add_data_arguments

    add_data_arguments(p)  # Hugging Face folders: sharpness without a model file
    p.add_argument("--no-sharpness", action="store_true",
                   help="skip the Hessian eigenvalues (a few seconds for built-in problems)")


def run(args: argparse.Namespace) -> int:
    from lossview.core.analysis.report import analyze, format_text, refresh_answers
    from lossview.core.io import open_run

    r = open_run(args.path)
    model_file = getattr(args, "model", None)
    data, block_size = getattr(args, "data", None), getattr(args, "block_size", None)
    src = None
    if model_file or data or block_size:
        # the user's model file, or a Hugging Face model rebuilt from config.json on --data:
        # loaded once, for the loss per snapshot (where none was logged) and sharpness
        from lossview.core.surface.finite import on_device
        from lossview.core.surface.usermodel import model_source

        # placed on --device once: the loss per snapshot and sharpness find it there
        src = on_device(model_source(r, model_file, data=data, block_size=block_size),
                        args.device)
    report = analyze(r, model_file=model_file, source=src, device=args.device)
    # Sharpness needs the model and data: built-in problems name theirs in run.json,
    # foreign folders only with --model (Hugging Face folders: or --data). Without
    # any of them the key stays null.
    report["sharpness"] = None if args.no_sharpness else _sharpness(r, src, args.device)
    refresh_answers(report)  # the stability answer compares lr with the measured sharpness
    # what the loader read and skipped, in one line (the warnings are in it), not a wall
    # of warning lines
    report["opened_as"] = r.spec.get("opened_as") or f"opened as {r.format}"
    if args.json:
        json.dump(report, sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(report["opened_as"] + "\n" + format_text(report))
    return 0


def _sharpness(run, source=None, device=None) -> dict | None:
    import math

    from lossview.core.surface.runsurface import run_to_end
    from lossview.core.surface.stability import iter_sharpness

    if source is None and not run.spec.get("problem"):
        return None  # a built-in problem's run rebuilds its own model; else there is no model
    rep = run_to_end(iter_sharpness(run, source=source, device=device))
    if rep is None:
        return None
    # strict JSON: non-finite numbers (a diverged snapshot) become null
    return {k: [None if isinstance(x, float) and not math.isfinite(x) else x for x in v]
            if isinstance(v, list) else v for k, v in rep.items()}
