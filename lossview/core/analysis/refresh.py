"""Strict-JSON values and the answers recomputed after a part of a report changed.

Kept apart from :mod:`lossview.core.analysis.report` (which imports every analysis, torch
and scipy among them: ~0.45 s) so that the window can recompute the answers on its GUI
thread when the measured sharpness arrives (``RunReport.with_sharpness``) without that
import; this module needs only numpy and the answers' own modules (~20 ms).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lossview.core.analysis.answers import compute_answers
from lossview.core.analysis.diagnosis import diagnose


def jsonable(x: Any) -> Any:
    """Plain Python types with NaN/inf replaced by None (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def refresh_answers(report: dict[str, Any]) -> dict[str, Any]:
    """Recompute ``answers`` and ``diagnosis`` in place after a part of the report changed
    (the app measures sharpness after the first analysis); returns the report."""
    report["answers"] = jsonable(compute_answers(report))
    report["diagnosis"] = diagnose(report)
    if isinstance(report.get("sharpness"), dict):  # one verdict: the answer's
        report["sharpness"]["verdict"] = report["answers"]["stability"]["sentence"]
    return report
