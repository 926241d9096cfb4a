"""Opening and analysing a run off the GUI thread: a plain generator for GeneratorWorker.

:func:`load_and_analyze` yields progress strings (and one :class:`Preview`, the run before
its analysis) and returns :class:`Opened` (the run,
its report, and whether the model file given was usable) or :class:`SeveralRuns` (the
folder holds several runs: the window offers a choice); the GUI wraps it in a worker
(a child process). It never touches widgets.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lossview.core.analysis.metric_names import TRAIN_LOSS

#: at most this many snapshots enter the pairwise distance matrix (evenly spaced)
PAIRWISE_MAX = 200
#: and at most this many float32 values are held at once for it
PAIRWISE_MAX_VALUES = 400_000_000


def pairwise_distances(run: Any, max_points: int = PAIRWISE_MAX) -> Generator[str, None, dict]:
    """Euclidean distance between evenly spaced snapshots, as ``{indices, matrix}``."""
    n = len(run)
    if n < 2:
        return {"matrix": None, "reason": "fewer than 2 snapshots"}
    idx = np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(np.int64))
    if len(idx) * run.n_params > PAIRWISE_MAX_VALUES:
        return {"matrix": None, "reason": f"too large ({len(idx)} x {run.n_params:,} values)"}
    # float64 when it fits in ~400 MB, else float32; centred so that |a|^2 + |b|^2 - 2 a.b
    # does not cancel catastrophically for nearby snapshots far from the origin
    dtype = np.float64 if run.n_params * len(idx) <= 50_000_000 else np.float32
    vecs = np.empty((len(idx), run.n_params), dtype=dtype)
    for k, i in enumerate(idx):
        vecs[k] = run.vector(int(i), dtype=dtype)
        if k % 20 == 0:
            yield f"pairwise distances: snapshot {k + 1}/{len(idx)}"
    vecs -= vecs.mean(axis=0)
    sq = np.einsum("ij,ij->i", vecs, vecs)
    g = vecs @ vecs.T
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * g, 0.0)
    m = np.sqrt(d2)
    np.fill_diagonal(m, 0.0)
    return {"indices": idx.tolist(), "matrix": m}


@dataclass(frozen=True)
class DataFile:
    """A data file for a Hugging Face folder without a model file (``--data FILE``
    ``--block-size N``): the model is rebuilt from the folder's config.json and its loss
    is averaged over this file (:func:`lossview.core.surface.usermodel.model_source`)."""

    path: str
    block_size: int | None = None

    @property
    def name(self) -> str:
        return Path(self.path).name


@dataclass
class Opened:
    """An opened and analysed run. ``model_file``/``data``: the model file or data file
    the run is shown with (None if none was given or it failed its check);
    ``model_error``: why the given one failed."""

    run: Any
    report: dict
    model_file: str | None = None
    model_error: str | None = None
    data: DataFile | None = None


@dataclass
class Preview:
    """The opened run and what can be shown of it before its analysis ends
    (:func:`lossview.core.analysis.report.preview_report`): yielded by
    :func:`load_and_analyze` as a progress item, so a window can show the loss curves of a
    run whose analysis takes seconds. Its text is the progress line."""

    run: Any
    report: dict

    def failed(self, message: str) -> dict:
        """The preview's report once the analysis failed with ``message``."""
        from lossview.core.analysis.preview import preview_report

        return preview_report(self.run, failed=message)

    def __str__(self) -> str:
        return (f"analysing {len(self.run)} snapshots "
                f"({self.run.n_params:,} parameters)")


@dataclass
class SeveralRuns:
    """``path`` holds several runs: ``choices`` are ``(sub-folder name, checkpoints)``;
    ``message`` is the core's one line."""

    path: str
    message: str
    choices: list[tuple[str, int]] = field(default_factory=list)


def load_and_analyze(path: str | Path, model_file: str | None = None,
                     data: DataFile | None = None
                     ) -> Generator[str, None, Opened | SeveralRuns]:
    """Open ``path``, analyse it, add the pairwise matrix; yields progress lines, and a
    :class:`Preview` once the run is open and its model or data file checked.

    ``model_file``: a user file building the model and data (``--model``, or attached in
    the window), for foreign runs. It is checked first (:func:`check_model_file`); one
    that fails is left out, with its one-line reason in :attr:`Opened.model_error`, and
    the run opens without it. ``data``: a data file for a Hugging Face folder (used only
    without a model file), checked and left out the same way. The desktop app runs this
    in a child process: the opened run (headers, metrics, lazy readers) and the report
    pickle in a few milliseconds.
    """
    from lossview.core.errors import LossviewError
    from lossview.core.io import open_run

    yield f"opening {path}"
    try:
        run = open_run(path)
    except LossviewError as e:
        choices = run_choices(path)
        if len(choices) > 1:
            return SeveralRuns(str(path), str(e), choices)
        raise
    model_error = None
    if model_file:
        yield f"checking the model file {Path(model_file).name}"
        try:
            check_model_file(run, model_file)
        except LossviewError as e:
            model_file, model_error = None, str(e)
    elif data is not None:
        yield f"checking the data file {data.name}"
        try:
            check_data_file(run, data)
        except LossviewError as e:
            data, model_error = None, str(e)
    from lossview.core.analysis.preview import preview_report

    yield Preview(run, preview_report(run))
    # a data file rebuilds the Hugging Face model: its loss per snapshot is the loss series
    # of a folder that logged none, as with a model file
    source = data_source(run, data) if data is not None and not model_file else None
    report = yield from analyze_run(run, model_file=model_file, source=source)
    loss = report.get("loss_from_model")
    if loss and loss in run.metrics:
        # the folder logged no loss: the model's full-data loss at each snapshot is the
        # training loss the loss panel draws (the analyses already used it)
        run.metric_aliases.setdefault(TRAIN_LOSS[0], loss)
    return Opened(run, report, model_file, model_error, data)


def check_model_file(run: Any, model_file: str | Path) -> None:
    """The model file's contract (:func:`lossview.core.surface.usermodel.model_source`:
    it runs the user's code) and its loss at the last snapshot with finite weights, so that
    a model whose forward pass or loss fails on these checkpoints is said at once, in one
    line (LossviewError)."""
    from lossview.core.surface.usermodel import model_source

    _check_loss(run, model_source(run, model_file), f"your model file {model_file}")


def check_data_file(run: Any, data: DataFile) -> None:
    """The Hugging Face model rebuilt from the folder's config.json and ``data`` tokenized
    (a text shorter than one block, labels that do not fit, transformers missing: one
    line, LossviewError), and its loss at the last snapshot with finite weights."""
    _check_loss(run, data_source(run, data), f"the model rebuilt from config.json on "
                f"{data.name}")


def _check_loss(run: Any, src: Any, what: str) -> None:
    from lossview.core.errors import LossviewError
    from lossview.core.surface.finite import snapshot_loss, weights_problem

    usable = [i for i in range(len(run) - 1, -1, -1) if weights_problem(run, i) is None]
    if not usable:
        return
    try:
        snapshot_loss(src, run, usable[0])
    except LossviewError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's code: any failure is one line
        line = (str(e).strip().splitlines() or [""])[0][:200]
        raise LossviewError(f"{what} failed on step "
                            f"{int(run.steps[usable[0]])}: {type(e).__name__}: {line}") from None


def run_choices(path: str | Path) -> list[tuple[str, int]]:
    """The runs in ``path``'s sub-folders when detection refused it for holding several
    (:func:`lossview.core.io.locate.choose`), as ``(name, checkpoints)``; else ``[]``."""
    from lossview.core.errors import LossviewError
    from lossview.core.io import locate
    from lossview.core.io.naming import natural_key

    p = Path(path).expanduser()
    if not p.is_dir():
        return []
    try:
        locate.choose(p)
        return []  # not refused for holding several runs: the error was another one
    except LossviewError:
        pass
    try:
        subs = sorted((d for d in p.iterdir() if d.is_dir() and not d.name.startswith((".", "__"))),
                      key=lambda d: natural_key(d.name))
    except OSError:
        return []
    cands = [c for d in subs if (c := locate.sub_candidate(d)) is not None]
    series = [c for c in cands if c.series]
    return [(c.top.name, c.count) for c in (series if len(series) > 1 else cands)]


def analyze_run(run: Any, analyze=None, model_file: str | None = None, source: Any = None
                ) -> Generator[str, None, dict]:
    """The report of an already opened run, plus the pairwise matrix if the core has none."""
    if analyze is None:
        from lossview.core.analysis.report import analyze
    gen_fn = _generator_analysis()
    if gen_fn is not None:
        report = yield from gen_fn(run, model_file=model_file, source=source)
    else:
        report = analyze(run, model_file=model_file, source=source)
    if not report.get("pairwise"):
        report["pairwise"] = yield from pairwise_distances(run)
    return report


def _generator_analysis():
    """The core's generator form of analyze, if it has one (yields progress)."""
    try:
        from lossview.core.analysis import report as rep
    except ImportError:  # pragma: no cover
        return None
    return getattr(rep, "analyze_iter", None)


#: snapshots at which the GUI measures sharpness: core's number, the same as analyze's
from lossview.core.surface import SHARPNESS_POINTS  # noqa: E402


def can_measure_sharpness(run: Any, model_file: str | None = None,
                          data: DataFile | None = None) -> bool:
    """Sharpness needs the model and data: lossview runs of a built-in problem carry them,
    other folders need a user model file (Hugging Face folders: or a data file)."""
    return (bool(model_file) or data is not None or bool(run.spec.get("problem"))) \
        and len(run) > 0


def data_source(run: Any, data: DataFile | None) -> Any:
    """The model source for ``data`` (a Hugging Face folder's model from its config.json),
    or None without one (the run's problem, or the model file, then decides)."""
    if data is None:
        return None
    from lossview.core.surface.usermodel import model_source

    return model_source(run, data=data.path, block_size=data.block_size)


def sharpness_table(run: Any, points: int = SHARPNESS_POINTS, model_file: str | None = None,
                    data: DataFile | None = None) -> Generator[str, None, dict]:
    """Top Hessian eigenvalue against the (2 + 2 momentum) / lr limit at a few snapshots
    (Cohen et al. 2021), via :func:`lossview.core.surface.stability.iter_sharpness`."""
    from lossview.core.surface.stability import iter_sharpness

    # core picks the snapshots: evenly spaced over the finite prefix (a diverged run's
    # NaN snapshots are skipped with a reason), as `lossview analyze` does
    gen = iter_sharpness(run, points=points, model_file=model_file,
                         source=data_source(run, data))
    while True:
        try:
            frac = next(gen)
        except StopIteration as stop:
            return stop.value
        yield f"sharpness: {100 * float(frac):.0f}%"
