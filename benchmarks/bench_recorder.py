"""Overhead of ``lossview.Recorder`` against the same bare PyTorch loop (issue 21 item 6).

The loop: the ``mlp`` problem's 64-32-32-10 MLP on the 8x8 digits, SGD lr 0.1, batch 32,
the same batches, one torch thread. Variants, alternating in one process (``--repeats``
rounds after a warm-up round, each round running every variant once):

- ``bare``: forward, backward, ``optimizer.step()``, ``loss.item()``; nothing recorded;
- ``process``: the bare loop plus ``Recorder(folder, model, every=20, optimizer=opt)`` and
  ``rec.log(step, loss=loss.item())`` every step (the lr comes from the optimizer): the
  Recorder as shipped, writing through its writer process;
- ``thread``: the same with the previous writer, a thread in the training process
  (``Recorder(..., _writer="thread")``, kept for this comparison and for frozen apps).

With ``--against REV`` (a git revision), one more variant: ``REV``, the process writer
as it was at that revision (its ``recorder.py``, ``writer_process.py`` and
``_writer_child.py`` loaded from git), to measure a change side by side with the code
before it.

With ``--floor``, one more variant: ``floor``, the bare loop beside the disk work alone:
a process started the same way (``python -I -S``, in the timed region), told by one
byte per snapshot, sent through a pipe at most every 20 ms as the Recorder hands over,
that writes a file of the snapshot's size for each and appends the records' bytes to a
metrics file, then fsyncs a batch's files together and renames them (as the writer
does: a batch's fsyncs mostly share one journal commit); at the end it fsyncs the metrics,
the last files and ``run.json`` together; the loop waits for it. No recording, pickling
or JSON: what any writer keeping these files durable costs the loop here.

Each recorded variant includes creating the Recorder and ``close()`` (all files
written). The order of the variants rotates from round to round. Prints the median and
best wall seconds, the ratio of medians to ``bare`` (goal <= 1.10), the median of the
per-round ratios (``paired``: each round's recorded run against the same round's bare
run, which shares its machine load), the ratio of the CPU time of all threads and of the
writer process (``all CPU``: the work, wherever it runs), the training thread's CPU time
ratio, and the median milliseconds of creating the Recorder and of ``close()``.

    python benchmarks/bench_recorder.py [--steps 2000] [--repeats 7] [--dir /dev/shm] [--floor]
                                        [--against REV]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import lossview
from lossview.core.train.problems import build_problem

FLOOR = r"""
import os, select, sys
folder, size, line = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def start(name, data):
    tmp = os.path.join(folder, f".{name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, data)
    return fd, tmp, os.path.join(folder, name)
def finish(started):
    for fd, _, _ in started:
        os.fsync(fd)
    for fd, tmp, path in started:
        os.close(fd); os.replace(tmp, path)
metrics = open(os.path.join(folder, "metrics.jsonl"), "ab")
n, started = 0, []
while c := os.read(0, 4096):
    for _ in range(c.count(b"s")):
        metrics.write(b"x" * line); metrics.flush()
        started.append(start(f"step_{n:09d}.safetensors", b"w" * size)); n += 1
    if not select.select([0], [], [], 0)[0]:  # a batch's files together, as the writer
        finish(started); started = []
last = start("run.json", b"{}" * 400)
metrics.flush(); os.fsync(metrics.fileno()); metrics.close()
finish([*started, last])
"""


def loop(problem, steps: int, folder: Path | None = None, writer: str = "process",
         every: int = 20, recorder=None) -> tuple[float, float, float, float, float]:
    torch.manual_seed(0)
    model = problem.make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = problem.train_data
    g = torch.Generator().manual_seed(0)
    per = problem.n_train // 32
    rows: list[torch.Tensor] = []
    t0, c0, a0 = time.perf_counter(), time.thread_time(), _all_cpu()
    side = rec = None
    if writer == "floor":  # the same files written beside the loop, nothing recorded
        folder.mkdir()
        size = sum(p.numel() * p.element_size() for p in model.parameters()) + 1000
        side = subprocess.Popen([sys.executable, "-I", "-S", "-c", FLOOR, str(folder), str(size),
                                 str(every * 60)], stdin=subprocess.PIPE, bufsize=0)
    elif recorder is not None:  # another revision's Recorder
        rec = recorder(folder, model, every=every, optimizer=opt)
    elif folder is not None:
        rec = lossview.Recorder(folder, model, every=every, optimizer=opt, _writer=writer)
    t_open = time.perf_counter() - t0
    held, sent = 0, time.perf_counter()
    for step in range(steps):
        if not rows:
            rows = list(torch.randperm(problem.n_train, generator=g)[: per * 32]
                        .view(per, 32).unbind(0))
        idx = rows.pop()
        loss = problem.loss_fn(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        value = loss.item()
        if rec is not None:
            rec.log(step, loss=value)
        elif side is not None and step % every == 0:
            held += 1
            if (now := time.perf_counter()) - sent > 0.02:  # the Recorder's hand-over interval
                side.stdin.write(b"s" * held)
                held, sent = 0, now
    t_close = time.perf_counter()
    if rec is not None:
        rec.close()
    elif side is not None:
        side.stdin.write(b"s" * (held + 1))  # and the last step's snapshot
        side.stdin.close()
        side.wait()
    t1 = time.perf_counter()
    return t1 - t0, time.thread_time() - c0, t_open, t1 - t_close, _all_cpu() - a0


def recorder_at(rev: str, tmp: Path):
    """The Recorder class of git revision ``rev``, writing through that revision's
    writer process (modules loaded from ``git show``; the rest of lossview as it is)."""
    import importlib.util

    root = Path(__file__).resolve().parent.parent
    mods = {}
    for name in ("recorder", "writer_process", "_writer_child"):
        src = subprocess.run(["git", "show", f"{rev}:lossview/core/train/{name}.py"], cwd=root,
                             capture_output=True, text=True, check=True).stdout
        path = tmp / f"{name}_{rev.replace('/', '_')}.py"
        path.write_text(src)
        if name != "_writer_child":
            spec = importlib.util.spec_from_file_location(f"_at_{name}", path)
            mods[name] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mods[name])
    wp = mods["writer_process"]
    wp._CHILD = tmp / f"_writer_child_{rev.replace('/', '_')}.py"
    mods["recorder"]._open_writer = lambda run, kind: wp.ProcessWriter(run)
    return mods["recorder"].Recorder


def _all_cpu() -> float:
    """CPU seconds of this process's threads and of its finished child processes."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--dir", default=None,
                    help="where the run folders go (default: the system's temporary folder); "
                         "/dev/shm (tmpfs) leaves out the disk's cost of creating and "
                         "fsyncing the snapshot files")
    ap.add_argument("--against", metavar="REV", default=None,
                    help="also time the process writer of this git revision")
    ap.add_argument("--floor", action="store_true",
                    help="also time the bare loop beside the same file writes alone (floor)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    problem = build_problem("mlp")
    variants = {
        "bare": lambda tmp: loop(problem, args.steps),
        "process": lambda tmp: loop(problem, args.steps, tmp, "process", args.every),
        "thread": lambda tmp: loop(problem, args.steps, tmp, "thread", args.every),
    }
    if args.floor:
        variants["floor"] = lambda tmp: loop(problem, args.steps, tmp, "floor", args.every)
    code = tempfile.TemporaryDirectory()
    if args.against:
        old = recorder_at(args.against, Path(code.name))
        variants[args.against[:8]] = lambda tmp: loop(problem, args.steps, tmp, "process",
                                                      args.every, recorder=old)
    times: dict[str, list[tuple[float, ...]]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        n = 0
        names = list(variants)
        for r in range(args.repeats + 1):
            for k in names[r % len(names):] + names[: r % len(names)]:  # each first in turn
                n += 1
                t = variants[k](Path(tmp) / f"{k}{n}")
                if r:  # round 0 warms up
                    times[k].append(t)
    print(f"mlp 64-32-32-10, {args.steps} steps, batch 32, snapshot every {args.every}, "
          f"{args.repeats} alternating repeats, torch {torch.__version__}, 1 torch thread, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, runs in "
          f"{args.dir or tempfile.gettempdir()}")
    print(f"{'variant':8s} {'wall med':>9s} {'wall best':>9s} {'us/step':>8s} {'ratio med':>9s} "
          f"{'ratio best':>10s} {'paired':>7s} {'thread CPU ratio':>16s} {'open ms':>8s} "
          f"{'close ms':>8s} {'all CPU ratio':>13s}")
    med = {k: [statistics.median(c) for c in zip(*v)] for k, v in times.items()}
    best = {k: [min(c) for c in zip(*v)] for k, v in times.items()}
    for k in variants:
        m, b = med[k], best[k]
        print(f"{k:8s} {m[0]:9.3f} {b[0]:9.3f} {1e6 * m[0] / args.steps:8.0f} "
              f"{m[0] / med['bare'][0]:9.3f} {b[0] / best['bare'][0]:10.3f} "
              f"{statistics.median(t[0] / u[0] for t, u in zip(times[k], times['bare'])):7.3f} "
              f"{m[1] / med['bare'][1]:16.3f} {1e3 * m[2]:8.1f} {1e3 * m[3]:8.1f} "
              f"{m[4] / med['bare'][4]:13.3f}")


if __name__ == "__main__":
    main()
