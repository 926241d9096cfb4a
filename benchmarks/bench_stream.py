"""Analyses at read speed: lossview's full ``analyze`` pass against a bare read of every snapshot.

    python benchmarks/bench_stream.py      # ResNet-18-shaped torch run + GPT-2-ish bf16 HF folder
    python benchmarks/bench_stream.py --resnet-n 24 --gpt-layers 12 --gpt-n 10   # full size (~3.4 GB)

Writes, into a temporary folder, (a) a folder of ``torch.save`` state_dicts of a
ResNet-18-shaped net (11.2M float32 parameters, random walk) and (b) a Hugging Face
``checkpoint-N/model.safetensors`` folder of a GPT-2-small-shaped net in bfloat16 (layers
reduced by default to keep each run under a minute). Then, each in a fresh child process (peak
RSS via ``resource.getrusage`` belongs to that measurement only), alternating, ``--repeat``
times:

* ``read``: ``open_run`` + ``Run.vector(i, out=buf)`` for every snapshot (float32 buffer),
* ``read64``: the same into a float64 buffer (the "one float64 pass" of issue 21),
* ``stream``: ``open_run`` + the merged streaming pass alone
  (:func:`lossview.core.analysis.stream.stream`: distances and Gram matrix),
* ``analyze``: ``open_run`` + :func:`lossview.core.analysis.report.analyze`.

Prints medians and the ratios stream / read, analyze / read, analyze / read64. With
``--baseline DIR`` (another checkout of lossview, e.g. ``git archive OLD | tar -x -C DIR``)
the side ``base_stream`` is that checkout's ``stream``, measured in the same rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's lossview


def resnet18_shapes() -> dict[str, tuple[int, ...]]:
    s: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7), "bn1.weight": (64,), "bn1.bias": (64,)}
    cin = 64
    for li, cout in enumerate((64, 128, 256, 512), start=1):
        for b in range(2):
            p = f"layer{li}.{b}."
            s[p + "conv1.weight"] = (cout, cin if b == 0 else cout, 3, 3)
            s[p + "bn1.weight"], s[p + "bn1.bias"] = (cout,), (cout,)
            s[p + "conv2.weight"] = (cout, cout, 3, 3)
            s[p + "bn2.weight"], s[p + "bn2.bias"] = (cout,), (cout,)
            if b == 0 and cin != cout:
                s[p + "downsample.0.weight"] = (cout, cin, 1, 1)
                s[p + "downsample.1.weight"], s[p + "downsample.1.bias"] = (cout,), (cout,)
        cin = cout
    s["fc.weight"], s["fc.bias"] = (1000, 512), (1000,)
    return s


def gpt2_shapes(layers: int) -> dict[str, tuple[int, ...]]:
    d = 768
    s: dict[str, tuple[int, ...]] = {"transformer.wte.weight": (50257, d),
                                     "transformer.wpe.weight": (1024, d)}
    for i in range(layers):
        p = f"transformer.h.{i}."
        s[p + "ln_1.weight"], s[p + "ln_1.bias"] = (d,), (d,)
        s[p + "attn.c_attn.weight"], s[p + "attn.c_attn.bias"] = (d, 3 * d), (3 * d,)
        s[p + "attn.c_proj.weight"], s[p + "attn.c_proj.bias"] = (d, d), (d,)
        s[p + "ln_2.weight"], s[p + "ln_2.bias"] = (d,), (d,)
        s[p + "mlp.c_fc.weight"], s[p + "mlp.c_fc.bias"] = (d, 4 * d), (4 * d,)
        s[p + "mlp.c_proj.weight"], s[p + "mlp.c_proj.bias"] = (4 * d, d), (d,)
    s["transformer.ln_f.weight"], s["transformer.ln_f.bias"] = (d,), (d,)
    return s


def write(root: Path, resnet_n: int, gpt_n: int, gpt_layers: int, seed: int = 0) -> None:
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    tdir = root / "resnet_torch"
    tdir.mkdir(parents=True)
    w = {k: torch.randn(s, generator=g) * 0.05 for k, s in resnet18_shapes().items()}
    for i in range(resnet_n):
        torch.save(w, tdir / f"epoch_{i}.pt")
        for v in w.values():
            v += torch.randn(v.shape, generator=g) * 1e-3
    hdir = root / "gpt2_hf"
    hdir.mkdir()
    w = {k: torch.randn(s, generator=g) * 0.02 for k, s in gpt2_shapes(gpt_layers).items()}
    for i in range(gpt_n):
        c = hdir / f"checkpoint-{100 * (i + 1)}"
        c.mkdir()
        save_file({k: v.to(torch.bfloat16).contiguous() for k, v in w.items()}, str(c / "model.safetensors"))
        (c / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": gpt_layers}))
        for v in w.values():
            v += torch.randn(v.shape, generator=g) * 1e-3


def write_native(root: Path, n: int, seed: int = 0) -> None:
    """bench_open.py's native run: ``n`` snapshots of its 1M-parameter MLP (a random walk)."""
    from bench_open import SHAPES

    from lossview.core.io import RunWriter

    rng = np.random.default_rng(seed)
    w = {k: rng.normal(scale=0.05, size=s).astype(np.float32) for k, s in SHAPES.items()}
    with RunWriter(root / "native", spec={"name": "bench"}) as wr:
        for i in range(n):
            wr.log(10 * i, loss=1.0 / (i + 1))
            wr.snapshot(10 * i, w)
            for v in w.values():
                v += rng.normal(scale=1e-3, size=v.shape).astype(np.float32)


def measure(side: str, folder: Path) -> dict:
    import torch  # noqa: F401 - every side pays for it

    from lossview.core.analysis.report import analyze
    from lossview.core.io import open_run

    t0 = time.perf_counter()
    run = open_run(folder)
    if side in ("read", "read64"):
        buf = np.empty(run.n_params, dtype=np.float32 if side == "read" else np.float64)
        for i in range(len(run)):
            run.vector(i, out=buf)
    elif side == "stream":
        from lossview.core.analysis.stream import stream

        stream(run)
    elif side == "analyze":
        analyze(run)
    else:
        raise SystemExit(f"unknown side {side}")
    return {"seconds": time.perf_counter() - t0, "n": len(run), "n_params": run.n_params,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


SIDES = ("read", "read64", "stream", "analyze")


def _child(what: str, root: Path, args) -> None:
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, __file__, "--measure", what, "--dir", str(root),
                    "--resnet-n", str(args.resnet_n), "--gpt-n", str(args.gpt_n),
                    "--gpt-layers", str(args.gpt_layers), "--native-n", str(args.native_n)], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resnet-n", type=int, default=24)
    ap.add_argument("--gpt-n", type=int, default=10)
    ap.add_argument("--gpt-layers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--only", choices=("resnet_torch", "gpt2_hf", "native"))
    ap.add_argument("--native-n", type=int, default=0,
                    help="also a native run of N snapshots x 1M parameters (bench_open's; 1000: 4 GB)")
    ap.add_argument("--sides", default=",".join(SIDES), help="comma-separated subset of " + ",".join(SIDES))
    ap.add_argument("--baseline", type=Path,
                    help="another checkout of lossview: adds the side base_stream (its stream pass)")
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure == "write":
        return write(args.dir, args.resnet_n, args.gpt_n, args.gpt_layers)
    if args.measure == "write_native":
        return write_native(args.dir, args.native_n)
    if args.measure:
        print(json.dumps(measure(args.measure, args.dir)))
        return
    root = args.dir or Path(tempfile.mkdtemp(prefix="lossview-stream-"))
    try:
        cases = ([args.only] if args.only
                 else ["resnet_torch", "gpt2_hf"] + (["native"] if args.native_n else []))
        # written by a child: a child's peak RSS starts from its parent's at fork (Linux keeps
        # ru_maxrss across exec), so this process must stay small
        if {"resnet_torch", "gpt2_hf"} & set(cases) and not (root / "resnet_torch").is_dir():
            _child("write", root, args)
        if "native" in cases and not (root / "native").is_dir():
            _child("write_native", root, args)
        sides = [x for x in args.sides.split(",") if x]
        if args.baseline and "base_stream" not in sides:
            sides.append("base_stream")
        for case in cases:
            res: dict[str, list[dict]] = {s: [] for s in sides}
            for _ in range(args.repeat):
                for side in sides:
                    script, what = __file__, side
                    if side.startswith("base_"):  # the baseline checkout's own measurement
                        script, what = str(args.baseline / "benchmarks" / "bench_stream.py"), side[5:]
                    p = subprocess.run([sys.executable, script, "--measure", what,
                                        "--dir", str(root / case)],
                                       capture_output=True, text=True)
                    if p.returncode != 0:
                        raise SystemExit(p.stderr)
                    res[side].append(json.loads(p.stdout.strip().splitlines()[-1]))
            med = {s: statistics.median(r["seconds"] for r in v) for s, v in res.items()}
            peak = {s: max(r["peak_rss_mb"] for r in v) for s, v in res.items()}
            r0 = res[sides[0]][0]
            snap_mb = r0["n_params"] * 4 / 2**20
            print(f"{case}: {r0['n']} snapshots x {r0['n_params']:,} parameters "
                  f"(one float32 snapshot {snap_mb:.0f} MiB), load {os.getloadavg()[0]:.1f}")
            for s in sides:
                print(f"  {s:8s} {med[s]:7.2f} s  peak RSS {peak[s]:6.0f} MiB")
            for a, b in (("stream", "read"), ("base_stream", "read"), ("analyze", "read"),
                         ("analyze", "read64")):
                if a in med and b in med:
                    print(f"  {a} / {b} {med[a] / med[b]:.2f}x", end=";")
            for a in ("stream", "analyze"):
                if a in peak:
                    print(f" {a} peak = {(peak[a] - 3 * snap_mb):.0f} MiB + 3 float32 snapshots", end=";")
            print(flush=True)
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
