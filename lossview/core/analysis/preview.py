"""What the window shows of a run while it is analysed: its own records, no analysis.

Light on purpose (numpy, scipy.ndimage; no torch): the window's GUI thread builds the
failed variant of a preview (:meth:`lossview.core.tasks.loader.Preview.failed`).
"""

from __future__ import annotations

from typing import Any

from lossview.core.analysis.metric_names import LOSS as LOSS_NAMES
from lossview.core.analysis.plateau import find_plateau
from lossview.core.analysis.refresh import jsonable
from lossview.core.run import Run


def _null(reason: str, **keys: Any) -> dict:
    return {**keys, "reason": reason}


def optimizer_settings(run: Run) -> dict[str, Any]:
    """The optimizer's settings as the run recorded them (run.json, or what a reader found
    saved beside the weights): ``name``, ``lr``, ``momentum``... or an empty dict."""
    opt = run.spec.get("optimizer")
    out = dict(opt) if isinstance(opt, dict) else {}
    for k in ("lr", "momentum"):
        if out.get(k) is None and isinstance(run.spec.get(k), (int, float)):
            out[k] = run.spec[k]
    return out


def step_unit(run: Run) -> str:
    """``"epoch"`` where the snapshots' positions are epochs, else ``"step"``."""
    u = getattr(run, "step_unit", None) or run.spec.get("step_unit")
    return "epoch" if u == "epoch" else "step"


def run_records(run: Run) -> dict[str, Any]:
    """The report's keys that are the run's own records (no snapshot read): what the
    preview shows and what :func:`lossview.core.analysis.report.analyze` starts from."""
    return {
        "format": run.format, "path": str(run.path), "name": run.name,
        "n_checkpoints": len(run), "steps": run.steps.tolist(), "n_params": run.n_params,
        "buffers": run.buffer_names, "warnings": run.warnings,
        "metrics": {k: s.to_json() for k, s in run.metrics.items()},
        "step_unit": step_unit(run), "optimizer": optimizer_settings(run),
    }


def loss_plateau(run: Run) -> tuple[Any, dict[str, Any]]:
    """The run's loss series (its first logged name of LOSS_NAMES) and its plateau, with
    the metric it was found on."""
    loss = run.metric(*LOSS_NAMES)
    plateau = find_plateau(loss)
    plateau["metric"] = next((k for k in LOSS_NAMES if run.metrics.get(k) is loss), None)
    return loss, plateau


def preview_report(run: Run, failed: str | None = None) -> dict[str, Any]:
    """What can be said of ``run`` before its snapshots are read: its own records (steps,
    logged metrics, optimizer) and the loss plateau, every analysis of the weights marked
    as being computed (with ``failed``, the one line of why the analysis failed: marked
    as not computed, for that reason). The window shows it while a large run is analysed
    (its loss curves within a second, the rest when :func:`analyze` ends); no answer is
    given from it."""
    n = len(run)
    mib = run.n_params * n * 4 / 2**20
    size = f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{max(mib, 0.1):.1f} MiB"
    # short, for the plots; the diagnosis says what is read
    why = "being computed" if failed is None else f"the analysis failed: {failed}"
    report = {
        **run_records(run),
        "plateau": loss_plateau(run)[1],
        "distance": _null(why, from_init=None, step_length=None, to_final=None),
        "pca": _null(why, explained_variance_ratio=None, random_walk_similarity=None, coords=None),
        "diffusion": _null(why, exponent=None),
        "pairwise": _null(why, matrix=None),
        "permutation": _null(why, raw_to_final=None, aligned_to_final=None),
        "diagnosis": [f"Analysing {n} snapshots of {run.n_params:,} parameters ({size} as "
                      "float32, read once): the distances, the PCA of the trajectory and the "
                      "answers follow." if failed is None
                      else f"No analysis of the weights: {failed}"],
    }
    return jsonable(report)
