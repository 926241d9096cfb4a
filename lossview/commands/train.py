"""``lossview train PROBLEM [options]``: train a built-in problem into a run folder."""

from __future__ import annotations

import argparse
import sys

from lossview.core.train.names import PROBLEM_NAMES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a built-in problem (quadratic, linreg, mlp, bn-mlp, cnn) into a run folder",
        description="Train a built-in problem and write a lossview run folder. Options left "
                    "out take the problem's defaults, chosen to show its phenomenon "
                    "(see docs/training.md).",
    )
    p.add_argument("problem", metavar="PROBLEM", help=f"one of: {', '.join(PROBLEM_NAMES)}")
    p.add_argument("--optimizer", help="sgd | adam | adamw | rmsprop")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--momentum", type=float, help="SGD/RMSprop momentum (Adam: beta1)")
    p.add_argument("--nesterov", action="store_true", help="Nesterov momentum (sgd)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--schedule", default="constant", help="constant | step | cosine | warmup")
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--batch-size", type=int, help="samples per step; 0 = full batch")
    p.add_argument("--steps", type=int, help="number of updates")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--every", type=int, metavar="K", help="snapshot every K steps")
    g.add_argument("--log-every", type=int, nargs="?", const=100, metavar="N",
                   help="about N log-spaced snapshots, dense early (default N: 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label-noise", type=float, default=0.0)
    p.add_argument("--clip-grad", type=float, default=0.0, help="clip to this global norm (0: off)")
    p.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                   help="problem option, e.g. --set dim=50 --set data=synthetic")
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/PROBLEM-seedS)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing lossview run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _option(text: str) -> tuple[str, object]:
    from lossview.core.errors import LossviewError

    if "=" not in text:
        raise LossviewError(f"--set needs OPTION=VALUE, not {text!r}")
    k, v = text.split("=", 1)
    for conv in (int, float):
        try:
            return k.strip(), conv(v)
        except ValueError:
            pass
    if v.lower() in ("true", "false"):
        return k.strip(), v.lower() == "true"
    return k.strip(), v


def build_config(args: argparse.Namespace):
    from lossview.core.errors import LossviewError
    from lossview.core.train.config import AUTO, TrainConfig

    if args.problem not in PROBLEM_NAMES:
        raise LossviewError(f"unknown problem {args.problem!r} (choose from {', '.join(PROBLEM_NAMES)})")
    pick = lambda v: AUTO if v is None else v  # noqa: E731
    cfg = TrainConfig(
        problem=args.problem, problem_options=dict(_option(s) for s in args.set),
        optimizer=pick(args.optimizer), lr=pick(args.lr), momentum=pick(args.momentum),
        nesterov=args.nesterov, weight_decay=args.weight_decay, schedule=args.schedule,
        warmup_steps=args.warmup_steps, batch_size=pick(args.batch_size), steps=pick(args.steps),
        every=pick(args.every), log_snapshots=args.log_every or 0, seed=args.seed,
        label_noise=args.label_noise, clip_grad=args.clip_grad, progress_interval=0.2,
    )
    if args.batch_size is not None and args.batch_size < 0:
        raise LossviewError(f"batch_size must be >= 0 (0 = full batch), not {args.batch_size}")
    return cfg


def run(args: argparse.Namespace) -> int:
    from lossview.core.train.trainer import Trainer

    cfg = build_config(args)
    out = args.out or f"runs/{args.problem}-seed{args.seed}"
    trainer = Trainer(cfg, out, overwrite=args.overwrite)
    bar = sys.stderr.isatty() and not args.quiet
    gen = trainer.run()
    try:
        while True:
            try:
                ev = next(gen)
            except StopIteration as e:
                summary = e.value
                break
            if bar:
                _draw(ev)
    except KeyboardInterrupt:
        gen.close()
        raise
    if bar:
        sys.stderr.write("\n")
    line = (f"{summary.status}: {summary.steps_done}/{summary.total} steps, "
            f"{summary.n_snapshots} snapshots in {summary.elapsed:.1f} s -> {summary.path}")
    if summary.divergence_step is not None:
        line += f" (diverged at step {summary.divergence_step})"
    elif summary.train_loss is not None:
        line += f" (train loss {summary.train_loss:.4g})"
    print(line)
    return 0


def _draw(ev) -> None:
    width = 30
    done = int(width * ev.fraction)
    sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {ev.step}/{ev.total} "
                     f"loss {ev.loss:.4g}  {ev.elapsed:.1f}s ")
    sys.stderr.flush()
