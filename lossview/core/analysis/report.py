"""``lossview analyze``: every analysis of a Run gathered under the keys of DESIGN.md.

:func:`analyze_steps` is the generator the GUI runs in a worker (yields ``(fraction,
label)``, returns the report); :func:`analyze` drives it. Every value is JSON-ready: NaN
and infinities become None, and an analysis that cannot run says why under ``reason``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from lossview.core.analysis.diffusion import diffusion
from lossview.core.analysis.distances import distances
from lossview.core.analysis.divergence import divergence
from lossview.core.analysis.gradient import gradient_behaviour
from lossview.core.analysis.gram import subsample
from lossview.core.analysis.metric_names import LOSS as LOSS_NAMES
from lossview.core.analysis.pca import pca_from_gram
from lossview.core.analysis.permutation import permutation_report
from lossview.core.analysis.plateau import weight_motion
from lossview.core.analysis.preview import _null, loss_plateau, run_records
from lossview.core.analysis.refresh import jsonable, refresh_answers
from lossview.core.analysis.stationarity import stationarity
from lossview.core.analysis.stream import stream_steps
from lossview.core.run import Run

#: Most snapshots aligned by weight matching.
MAX_PERMUTATION_SNAPSHOTS = 50
#: Fewest snapshots in the post-plateau segment for it to be analysed on its own.
MIN_SEGMENT = 8
#: Most snapshots in the reported pairwise distance matrix (evenly subsampled beyond).
MAX_PAIRWISE = 200


def _logged_update_ratio(run: Run) -> dict | None:
    """``update_norm / param_norm`` where the run logged both (lossview's trainer does)."""
    u, p = run.metric("update_norm"), run.metric("param_norm")
    if u is None or p is None:
        return None
    common, iu, ip = np.intersect1d(u.steps, p.steps, return_indices=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = u.values[iu] / p.values[ip]
    return {"steps": common.tolist(), "values": ratio.tolist()}


def _pairwise(gram) -> dict:
    pos = subsample(len(gram), MAX_PAIRWISE)
    d = np.sqrt(gram.sq_distances()[np.ix_(pos, pos)])
    np.fill_diagonal(d, 0.0)
    return {"indices": gram.indices[pos].tolist(), "steps": gram.steps[pos].tolist(),
            "matrix": d.tolist()}


def _segment_start(steps: np.ndarray, plateau_step: int | None) -> tuple[int | None, str]:
    """Where the weights question's segment starts: the loss plateau when at least
    MIN_SEGMENT snapshots follow it, else the second half of the (finite) run."""
    if plateau_step is not None and np.sum(steps >= plateau_step) >= MIN_SEGMENT:
        return int(plateau_step), "after plateau"
    if len(steps) >= 2 * MIN_SEGMENT:
        return int(steps[len(steps) // 2]), "second half"
    return None, "whole run"


def analyze_steps(run: Run, model_file: str | None = None, source: Any = None,
                  device: Any = None) -> Generator[tuple[float, str], None, dict]:
    """Compute the report, yielding ``(fraction done, what)``; returns the report.

    ``model_file`` is the CLI's ``--model`` (``source``: an already loaded model source,
    e.g. a Hugging Face model rebuilt on ``--data``): where the folder logged no loss, the
    model's full-data loss at each snapshot becomes the loss series (evaluated on ``device``:
    ``auto``, ``cpu``, ``cuda[:i]``; None: the model's). Sharpness (which also
    needs the model) is added by the caller, then :func:`refresh_answers`.

    Runs of 3 snapshots or more get their distances and Gram matrix from one pass over
    the files (:mod:`lossview.core.analysis.stream`; the Gram matrix of every snapshot, or
    of an even subsample of a long run of a large model: :func:`gram_rows`).
    """
    n = len(run)
    yield 0.0, "distances"
    streamed = None
    if n >= 3:
        gen = stream_steps(run)
        while True:
            try:
                f = next(gen)
            except StopIteration as e:
                streamed = e.value
                break
            yield 0.7 * f, "distances and Gram matrix"
        d = streamed.distances
    else:
        d = distances(run)
    report: dict[str, Any] = {
        **run_records(run),
        "distance": {**d.to_json(), "logged_update_ratio": _logged_update_ratio(run)},
    }
    if (model_file or source is not None) and run.metric(*LOSS_NAMES) is None:
        # a bare state_dict folder logged no loss: the model file's full-data loss at each
        # snapshot becomes the loss series (curve, plateau, answers)
        yield 0.02, "loss of each snapshot"
        from lossview.core.surface.finite import LOSS_FULL, model_loss_series

        run.metrics[LOSS_FULL] = model_loss_series(run, model_file, source=source, device=device)
        report["metrics"][LOSS_FULL] = run.metrics[LOSS_FULL].to_json()
        report["loss_from_model"] = LOSS_FULL
    report["divergence"] = dv = divergence(run, d.nonfinite)
    loss, plateau = loss_plateau(run)
    if plateau.get("step") is not None and n >= 2:
        plateau["weights"] = weight_motion(run.steps, d.from_init, d.to_final, d.step_length,
                                           plateau["step"])
    report["plateau"] = plateau

    # analyses run on the finite prefix: nothing after the last finite snapshot of a
    # diverged run (its loss may be non-finite before its weights are)
    bad = set(d.nonfinite)
    last = dv.get("last_finite_snapshot")
    end = (last["index"] if last else -1) if dv.get("diverged") and dv.get("step") is not None else n - 1
    finite = [i for i in range(end + 1) if i not in bad]
    keep = set(finite)
    idx = [int(i) for i in streamed.rows if i in keep] if streamed is not None else []
    gram = streamed.gram(run, idx) if len(idx) >= 3 else None
    if gram is None or len(gram) < 3:
        why = f"needs at least 3 snapshots with finite weights, the run has {len(finite)}"
        report["pca"] = _null(why, explained_variance_ratio=None, random_walk_similarity=None, coords=None)
        report["diffusion"] = _null(why, exponent=None)
        report["stationarity"] = _null(why, verdict=None, statistic=None)
        report["pairwise"] = _null(why, matrix=None)
    else:
        report["pairwise"] = _pairwise(gram)
        yield 0.7, "PCA"
        report["pca"] = pca_from_gram(gram, k=10).to_json()
        if len(idx) < len(finite):  # an even subsample of a long run (gram_rows)
            report["pca"]["of_snapshots"] = len(finite)
        start, segment = _segment_start(np.asarray(gram.steps), plateau.get("step"))
        report["diffusion"] = {**diffusion(gram, start), "segment": segment}
        report["stationarity"] = {**stationarity(gram, start, loss), "segment": segment}
    report["gradient"] = gradient_behaviour(run, plateau.get("step"), until=dv.get("step"))
    yield 0.8, "weight matching"
    # modulo permutation over the segment the question is about, to its last finite snapshot
    seg_start = (report.get("diffusion") or {}).get("segment_start_step")
    seg = [i for i in finite if seg_start is None or run.steps[i] >= seg_start]
    if finite:
        pidx = [seg[j] for j in subsample(len(seg), MAX_PERMUTATION_SNAPSHOTS)]
        report["permutation"] = permutation_report(run, pidx, ref=finite[-1])
    else:
        report["permutation"] = {"raw_to_final": None, "aligned_to_final": None,
                                 "reason": "no snapshot has finite weights"}
    report = jsonable(report)
    yield 1.0, "done"
    return refresh_answers(report)


def analyze_iter(run: Run, model_file: str | None = None, source: Any = None
                 ) -> Generator[str, None, dict]:
    """:func:`analyze_steps` with progress as text lines (for the GUI's worker)."""
    gen = analyze_steps(run, model_file, source)
    while True:
        try:
            frac, what = next(gen)
        except StopIteration as e:
            return e.value
        yield f"analysis: {what} ({frac:.0%})"


def analyze(run: Run, model_file: str | None = None, source: Any = None,
            device: Any = None) -> dict[str, Any]:
    """The JSON-ready report of a run (see docs/analysis.md for the keys). ``device``:
    where a model file's loss at each snapshot is evaluated (None: the model's)."""
    gen = analyze_steps(run, model_file, source, device)
    while True:
        try:
            next(gen)
        except StopIteration as e:
            return e.value


def _fmt(x: Any, spec: str = ".4g") -> str:
    return "n/a" if x is None else format(x, spec)


def format_text(report: dict[str, Any]) -> str:
    """A readable summary of :func:`analyze`'s report."""
    steps = report["steps"]
    d = report["distance"]
    lines = [
        f"{report['name']}  ({report['format']}, {report['n_checkpoints']} snapshots, "
        f"steps {steps[0]}..{steps[-1]}, {report['n_params']:,} parameters)",
    ]
    if report["metrics"]:
        lines.append("logged: " + ", ".join(sorted(report["metrics"])))
    if d["net_displacement"] is not None:
        lines.append(
            f"distance: path length {d['path_length']:.4g}, net displacement "
            f"{d['net_displacement']:.4g} (ratio {d['net_displacement'] / max(d['path_length'], 1e-300):.2f})"
        )
    if d["nonfinite_snapshots"]:
        lines.append(f"non-finite weights in {len(d['nonfinite_snapshots'])} snapshot(s)")
    p = report.get("plateau") or {}
    lines.append("plateau: " + (f"step {p['step']:,}" if p.get("step") is not None
                                else f"none ({p.get('reason', 'n/a')})"))
    pca = report.get("pca") or {}
    ev = pca.get("explained_variance_ratio")
    if ev:
        lines.append("pca: explained variance " + ", ".join(f"{v:.3f}" for v in ev[:4])
                     + f"; random-walk similarity {_fmt(pca.get('random_walk_similarity'), '.2f')}")
    df = report.get("diffusion") or {}
    if "exponent" in df:
        lines.append(f"diffusion: MSD exponent {_fmt(df.get('exponent'), '.2f')}"
                     + (f" ({df['segment']})" if df.get("segment") else "")
                     + (f": {df['reason']}" if df.get("exponent") is None and df.get("reason") else ""))
    st = report.get("stationarity") or {}
    if st.get("verdict"):
        lines.append(f"stationarity: {st['verdict']} (score {st['statistic']:.2f})")
    g = report.get("gradient") or {}
    if g.get("verdict"):
        lines.append(f"gradient norm: {g['verdict']} ({_fmt(g.get('post_over_early'), '.0%')} of early)")
    dv = report.get("divergence") or {}
    if dv.get("step") is not None:
        lines.append(f"divergence: step {dv['step']:,}")
    perm = report.get("permutation") or {}
    if perm.get("aligned_to_final"):
        lines.append(f"permutation: first snapshot {_fmt(perm['raw_to_final'][0])} raw, "
                     f"{_fmt(perm['aligned_to_final'][0])} aligned to the final one")
    elif perm.get("reason"):
        lines.append(f"permutation: n/a ({perm['reason']})")
    if report.get("diagnosis"):
        lines.append("")
        lines.append("diagnosis:")
    for s in report.get("diagnosis") or []:
        lines.append(f"- {s}")
    return "\n".join(lines) + "\n"
