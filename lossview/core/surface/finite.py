"""Which snapshots curvature and surfaces may use, and the full-data loss at each snapshot.

A diverged run ends in snapshots whose weights are inf/NaN, or finite but so large that
the loss overflows. Nothing is computed there: Lanczos on NaN fails, a plane through them
is a NaN square. The **finite prefix** is every snapshot up to the last one whose weights
are finite and whose full-data loss (the model source's data, eval mode) is finite; the
snapshots after it are reported with the reason (``{"step", "reason"}``), never computed.

:func:`model_loss_series` gives the full-data loss at each snapshot as a
:class:`~lossview.core.run.MetricSeries` (metric name :data:`LOSS_FULL`): the loss curve of
a folder of bare state_dicts that logged none, from the user's model file.

``device`` (``auto``, ``cpu``, ``cuda[:i]``; None: the model's): the model and the data go
there once per call (:func:`on_device`), and every snapshot is evaluated there.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch.func import functional_call

from lossview.core.errors import LossviewError
from lossview.core.run import MetricSeries, Run
from lossview.core.surface.evaluate import as_batches, batch_size, eval_mode
from lossview.core.surface.loop import resolve_device, to_device
from lossview.core.surface.usermodel import ModelSource, model_source, snapshot_tensors

#: Metric name of the full-data loss computed from a model source.
LOSS_FULL = "loss_full"


def on_device(src: ModelSource, device: Any) -> ModelSource:
    """``src`` with its model on ``device`` and its batches moved there, once (None: as
    it is). The model moves in place (model sources are lossview's own, built from a
    problem or a model file for this evaluation)."""
    if device is None:
        return src
    first = next(iter(src.model.parameters()), None)
    dev = resolve_device(device, first.device if first is not None else torch.device("cpu"))
    src.model.to(dev)
    data = [(to_device(x, dev), to_device(y, dev)) for x, y in as_batches(src.data)]
    return replace(src, data=data)


def weights_problem(run: Run, i: int) -> str | None:
    """Why snapshot ``i``'s weights cannot be used (the first inf/NaN tensor), or None."""
    for name, a in run.params(i).items():
        a = np.asarray(a)
        if not np.isfinite(a).all():
            kind = "NaN" if np.isnan(a).any() else "inf"
            return f"non-finite weights ({kind} in {name})"
    return None


def snapshot_loss(src: ModelSource, run: Run, i: int) -> float:
    """Full-data mean loss at snapshot ``i`` (eval mode, batch means weighted by size)."""
    model = src.model
    p, b = snapshot_tensors(run, i, model)
    bufs = {n: t.detach() for n, t in model.named_buffers()}
    bufs.update(b)
    total, count = 0.0, 0
    try:
        with torch.no_grad(), eval_mode(model):
            for x, y in as_batches(src.data):
                k = batch_size(x)
                total += float(src.loss_fn(functional_call(model, (p, bufs), (x,)), y)) * k
                count += k
    except LossviewError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's model or loss_fn: one line
        raise evaluation_error(src, int(run.steps[i]), e) from None
    return total / count


def evaluation_error(src: ModelSource, step: int, e: BaseException) -> LossviewError:
    """The one-line error for the user's model or loss_fn failing at ``step``."""
    msg = (str(e).strip().splitlines() or [""])[0][:200]
    return LossviewError(f"evaluating the loss of {src.origin} at step {step} failed: "
                         f"{type(e).__name__}: {msg}")


def loss_problem(loss: float) -> str | None:
    """Why a full-data loss rules its snapshot out (not finite), or None."""
    return None if math.isfinite(loss) else f"full-data loss is {loss} at these weights (overflowed)"


def snapshot_problem(src: ModelSource, run: Run, i: int) -> str | None:
    """Why snapshot ``i`` is unusable (non-finite weights or loss), or None."""
    why = weights_problem(run, i)
    if why:
        return why
    return loss_problem(snapshot_loss(src, run, i))


@dataclass
class FinitePrefix:
    """``last``: index of the last usable snapshot (None: none); ``skipped``: the snapshots
    after it, ``{"step", "reason"}`` each."""

    last: int | None
    n: int
    skipped: list[dict[str, Any]] = field(default_factory=list)

    @property
    def indices(self) -> list[int]:
        return [] if self.last is None else list(range(self.last + 1))

    @property
    def reason(self) -> str | None:
        """Why nothing is usable (None when something is)."""
        if self.last is not None:
            return None
        first = self.skipped[0]["reason"] if self.skipped else "the run has no snapshots"
        return (f"no snapshot has finite weights and a finite loss ({self.n} checked; the "
                f"first: {first})")


def finite_prefix(run: Run, src: ModelSource, device: Any = None) -> FinitePrefix:
    """The finite prefix of ``run`` (see module doc), evaluated on ``device``.

    Snapshots are checked backwards from the last until one has finite weights and a
    finite loss (one read and one evaluation for a healthy run); a divergence does not
    recover, so the snapshots before that one are taken as finite.
    """
    src = on_device(src, device)
    t = len(run)
    skipped: list[dict[str, Any]] = []
    last = None
    for i in range(t - 1, -1, -1):
        why = snapshot_problem(src, run, i)
        if why is None:
            last = i
            break
        skipped.append({"step": int(run.steps[i]), "reason": why})
    return FinitePrefix(last, t, skipped[::-1])


def iter_model_loss(run: Run, model_file: str | None = None, source: ModelSource | None = None,
                    indices: Sequence[int] | None = None, device: Any = None,
                    ) -> Generator[float, None, MetricSeries]:
    """:func:`model_loss_series` as a generator: yields the fraction done, returns it."""
    src = on_device(source or model_source(run, model_file), device)
    t = len(run)
    idx = list(range(t)) if indices is None else sorted({range(t)[int(i)] for i in indices})
    values = np.full(len(idx), np.nan)
    for n, i in enumerate(idx):
        if weights_problem(run, i) is None:
            values[n] = snapshot_loss(src, run, i)
        yield (n + 1) / max(len(idx), 1)
    return MetricSeries(run.steps[idx] if idx else np.zeros(0, np.int64), values)


def model_loss_series(run: Run, model_file: str | None = None, source: ModelSource | None = None,
                      indices: Sequence[int] | None = None, device: Any = None) -> MetricSeries:
    """Full-data loss at each snapshot (all, or ``indices``) on the model source's data.

    NaN where the weights are non-finite (not evaluated); inf/NaN where the loss
    overflowed. Store it as the run's :data:`LOSS_FULL` metric.
    """
    gen = iter_model_loss(run, model_file, source, indices, device)
    while True:
        try:
            next(gen)
        except StopIteration as e:
            return e.value
