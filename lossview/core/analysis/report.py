"""``lossview analyze``: every analysis of a Run gathered under the keys of DESIGN.md."""

from __future__ import annotations

from typing import Any

from lossview.core.analysis.distances import distances
from lossview.core.run import Run


def analyze(run: Run, model_file: str | None = None) -> dict[str, Any]:
    """The JSON-ready report of a run. Keys not computed yet are present as None."""
    d = distances(run)
    return {
        "format": run.format,
        "path": str(run.path),
        "name": run.name,
        "n_checkpoints": len(run),
        "steps": run.steps.tolist(),
        "n_params": run.n_params,
        "buffers": run.buffer_names,
        "warnings": run.warnings,
        "metrics": {k: s.to_json() for k, s in run.metrics.items()},
        "distance": d.to_json(),
        "pca": None,
        "plateau": None,
        "diffusion": None,
        "divergence": None,
        "diagnosis": [],
    }


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
    for s in report.get("diagnosis") or []:
        lines.append(f"- {s}")
    return "\n".join(lines) + "\n"
