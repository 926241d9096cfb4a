"""How soon the window shows a large run: the first picture (the preview: loss curves and
timeline) against the analysed run (run_loaded), in the full main window.

    xvfb-run -a -s "-screen 0 1600x1000x24 +extension GLX" python benchmarks/bench_first_picture.py
    ... python benchmarks/bench_first_picture.py --gpt-layers 12     # full GPT-2-small (~2.4 GB)

Builds bench_stream's runs in a temporary folder (a ResNet-18-shaped net, 24 ``torch.save``
snapshots with a metrics.csv of its loss, 1.0 GiB as float32; a GPT-2-shaped bf16 Hugging
Face folder of 10 checkpoints), then, each in a fresh child process (cold Python, warm page
cache), opens it in a shown 1600 x 1000 main window (its job server started as the app
starts it, 6 s earlier) and times from ``open_path`` to the
first paint of the run's loss panel (the preview, or the analysed run when it came first)
and to ``run_loaded`` (every panel has the analysed run). The reference is the goal of
issue 21 item 5: "the user sees something within seconds".
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's lossview
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _child(folder: str) -> None:
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    from lossview.gui.app import start_job_server
    from lossview.gui.window.main_window import MainWindow

    win = MainWindow()
    win.resize(1600, 1000)
    win.show()
    start_job_server()  # as the app does at launch
    t = time.perf_counter()
    while time.perf_counter() - t < 6:  # a user takes seconds to pick a folder
        app.processEvents()
        time.sleep(0.01)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    win.run_loaded.connect(lambda _run: times.setdefault("loaded", time.perf_counter() - t0))
    win.open_path(folder)
    deadline = t0 + 600
    while "loaded" not in times and time.perf_counter() < deadline:
        app.processEvents()
        if "first" not in times and win.run is not None and \
                win.stack.currentWidget() is win.workspace:
            times["first"] = time.perf_counter() - t0
            times["preview"] = float(win.opener.previewed)
        time.sleep(0.002)
    win.shutdown()
    print(json.dumps(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpt-layers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child)
        return
    from bench_stream import write

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        write(root, resnet_n=24, gpt_n=10, gpt_layers=args.gpt_layers)
        tdir = root / "resnet_torch"
        with open(tdir / "metrics.csv", "w") as f:  # a loss logged each epoch, as users do
            f.write("epoch,loss\n" + "".join(f"{i},{2.0 / (1 + i):.4f}\n" for i in range(24)))
        for name in ("resnet_torch", "gpt2_hf"):
            for _ in range(args.repeat):
                out = subprocess.run([sys.executable, __file__, "--child", str(root / name)],
                                     capture_output=True, text=True, check=True)
                t = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{name}: first picture {t['first']:.2f} s "
                      f"({'preview' if t.get('preview') else 'analysed run'}), analysed run "
                      f"{t['loaded']:.2f} s, ratio {t['first'] / t['loaded']:.2f}", flush=True)


if __name__ == "__main__":
    main()
