"""Write the demo run shipped with lossview (resources/demo/) with the built-in trainer.

The run: the ``mlp`` problem (a 64-32-32-10 ReLU MLP on the 8x8 digits lossview ships)
trained with its defaults, constant-lr SGD (lr 0.3, batch 32), plus 20 % label noise,
for 2000 steps with a snapshot every 20 steps (101 snapshots, about 1.8 MB). The training
loss falls for a few hundred steps and then stays on a plateau (the clean-label loss
hovers around 0.3) while the weights keep moving away from the start: the gradient norm
does not vanish and the distance from the start keeps growing, which is what the app's
views and diagnosis are about. Everything needed to rebuild it is in its run.json.

    python packaging/make_demo_run.py [--out resources/demo]

The result is deterministic on CPU.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_BYTES = 2_000_000


def demo_config():
    from lossview.core.train.config import TrainConfig

    return TrainConfig("mlp", problem_options={"data": "digits"}, label_noise=0.2,
                       steps=2000, every=20, seed=0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "resources" / "demo")
    args = ap.parse_args(argv)
    from lossview.core.io import RunWriter
    from lossview.core.train.trainer import Trainer, run_to_end

    out: Path = args.out
    if out.exists():
        if any(out.iterdir()) and not (out / "run.json").is_file():
            print(f"refusing to replace {out}: it is not a lossview run", file=sys.stderr)
            return 2
        shutil.rmtree(out)
    config = demo_config()
    config.resolve()  # a bad setting fails here, before anything is written
    writer = RunWriter(out, {"name": "demo: mlp on digits, constant-lr SGD with label noise"})
    summary = run_to_end(Trainer(config, writer).run())
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{summary.status}: {summary.n_snapshots} snapshots, train loss {summary.train_loss:.3f}, "
          f"{size / 1e6:.2f} MB in {out}")
    if size > MAX_BYTES:
        print(f"the demo run is {size} bytes, over the {MAX_BYTES} budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
