"""What the panels say about a run, taken from core's answers and never re-derived.

Core decides (:mod:`lossview.core.analysis.answers`) and names
(:mod:`lossview.core.analysis.verdicts`) every verdict; this module only turns them into
the panels' short texts: a verdict's tag in its role's colour, the number that decided
it, why a stability limit is not drawn, the unit of the run's positions. It reads the
typed report (:class:`~lossview.core.analysis.report_model.RunReport`) and its answers
(:class:`~lossview.core.analysis.report_model.Answer`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

from lossview.core.analysis import verdicts as V
from lossview.core.analysis.report_model import Answer, RunReport
from lossview.gui.plotkit import style

#: What a panel shows without a report: every part empty.
NO_REPORT = RunReport()


def report_of(report: RunReport | Mapping[str, Any] | None) -> RunReport:
    """``report`` as the typed value (a dict, as core's JSON has it, is read into one);
    :data:`NO_REPORT` for None."""
    return RunReport.of(report) or NO_REPORT


def _some(values: Any) -> bool:
    """A list or array from a report that holds something."""
    return values is not None and len(values) > 0


def step_unit(run: Any = None, report: RunReport | None = None) -> str:
    """``"epoch"`` where the run's positions count epochs (the report's ``step_unit``,
    else the run's), else ``"step"``."""
    unit = report.step_unit if report is not None else None
    if unit is None and run is not None:
        spec = getattr(run, "spec", None) or {}
        unit = getattr(run, "step_unit", None) or spec.get("step_unit")
    return "epoch" if unit == "epoch" else "step"


def verdict_html(verdict: str | None, text: str | None = None) -> str:
    """Core's tag of ``verdict`` (or ``text``), bold, in the colour of its role."""
    color = style.role_color(V.role(verdict))
    return f"<b style='color:{color}'>{html.escape(text or V.tag(verdict))}</b>"


def weights_number(weights: Answer) -> str:
    """The number that decided the weights verdict: the step-length trend for
    "converging", else the long-lag MSD slope ("" when there is none)."""
    trend, slope = weights.get("step_length_trend"), weights.get("msd_long_lag_slope")
    verdict, excess = weights.get("verdict"), weights.get("displacement_excess")
    if verdict == "diverged":
        return ""  # motion up to a blow-up: no slope worth quoting
    if verdict == "converging" and trend is not None:
        return f"step length ×{trend:.2g}"
    if verdict == "drifting" and excess is not None and (slope is None or slope < V.DRIFT_SLOPE_FROM):
        return f"net displacement² {excess:.1f}× diffusion's"
    return f"long-lag slope {slope:.2f}" if slope is not None else ""


def limit_applies(stability: Answer) -> bool:
    """Core compared this run's lr with its stability limit (the line is drawn)."""
    return _some(stability.get("ratios"))


def limit_note(stability: Answer) -> str:
    """Why the stability limit is not drawn, short enough for a plot ("" when it is)."""
    if limit_applies(stability):
        return ""
    name = stability.get("optimizer")
    if name in V.ADAPTIVE:
        return f"2/lr does not apply to {name}"
    reason = stability.get("reason") or "no learning rate is known"
    return f"2/lr not drawn: {reason}"


def limit_label(stability: Answer) -> str:
    """The limit line's legend entry: ``"limit: lr < 2/λ_max"``."""
    return f"limit: lr < {V.limit_formula(float(stability.get('momentum') or 0.0))}"


def _emphasise(sentence: str, verdict: str | None) -> str:
    """``sentence`` as HTML with the first occurrence of its verdict word bold and coloured."""
    text = html.escape(sentence)
    word = {"edge": "edge of stability"}.get(verdict or "", verdict or "")
    if not word:
        return text
    m = re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE)
    if m is None:
        return text
    return text[:m.start()] + verdict_html(verdict, m.group(0)) + text[m.end():]


def diagnosis_items(report: RunReport) -> list[str]:
    """The report's diagnosis as HTML items: each answer's sentence with its verdict word
    bold in the verdict's colour; the other sentences as they are."""
    a = report.answers
    verdict_of = {x.sentence: x.verdict for x in (a.loss, a.weights, a.stability, a.exploration)
                  if x.sentence}
    return [_emphasise(str(s), verdict_of.get(s)) for s in report.diagnosis or ()]
