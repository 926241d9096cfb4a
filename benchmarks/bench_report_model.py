"""What the typed report costs the GUI thread, beside what the plain dict cost there.

The window reads the analysis report as a :class:`RunReport` (made once when a run is
shown) and makes a new one when the sharpness arrives (``with_sharpness``); before, it
held the dict and ``refresh_answers`` filled it in place. Both run on the GUI thread, so
each must stay far under the 50 ms budget for one block of it (docs/benchmarks.md).

Measured on the report of a built-in mlp run trained for ``--steps`` steps with a
snapshot every 10 (1,001 snapshots by default), best of ``--repeat``:

* ``from_json``: dict -> RunReport (at every run shown, and every live analysis);
* ``with_sharpness``: a new report with the sharpness and core's answers recomputed;
* peer ``refresh_answers``: the same answers recomputed in place on a dict (the old path);
* floor ``json.loads(json.dumps())``: copying the report's data once, as plain Python.

    python benchmarks/bench_report_model.py [--steps 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's lossview


def best(fn, repeat: int) -> float:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return 1e3 * min(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    from lossview.core.analysis.report import analyze, refresh_answers
    from lossview.core.analysis.report_model import RunReport
    from lossview.core.io import open_run
    from lossview.core.train.config import TrainConfig
    from lossview.core.train.trainer import run_to_end, train

    out = Path(tempfile.mkdtemp()) / "mlp"
    run_to_end(train(TrainConfig("mlp", steps=args.steps, every=10), out))
    report = analyze(open_run(out))
    n = report["n_checkpoints"]
    table = {"steps": report["steps"][:12], "sharpness": [1.0] * 12, "lr": [0.1] * 12}
    typed = RunReport.from_json(report)
    assert typed.to_json() == report

    def peer() -> None:
        d = copy.copy(report)  # the dict the window held, refreshed in place
        d["sharpness"] = dict(table)
        refresh_answers(d)

    rows = [
        ("from_json", best(lambda: RunReport.from_json(report), args.repeat)),
        ("with_sharpness", best(lambda: typed.with_sharpness(table), args.repeat)),
        ("peer refresh_answers (in place)", best(peer, args.repeat)),
        ("floor json round trip", best(lambda: json.loads(json.dumps(report)), args.repeat)),
    ]
    kb = len(json.dumps(report)) // 1024
    print(f"report of {n} snapshots ({kb:,} KB of JSON), best of {args.repeat}:")
    floor = rows[3][1]
    for name, ms in rows:
        print(f"  {name:34s} {ms:7.1f} ms   {ms / floor:5.2f}x the floor")
    print(f"  with_sharpness / refresh_answers: {rows[1][1] / rows[2][1]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
