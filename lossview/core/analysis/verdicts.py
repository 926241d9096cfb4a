"""The thresholds and words of lossview's answers: the one place where numbers become verdicts.

:mod:`lossview.core.analysis.answers` decides with these numbers, and the panels label
their plots with these words and colour roles, so a plot and the diagnosis never disagree.
Every threshold below is documented, with its reason, in docs/analysis.md ("Answers").
"""

from __future__ import annotations

import math

# -- the weights: converging / drifting / diffusing / confined ----------------------------

#: Fewest snapshots in the segment a weights verdict is decided on.
MIN_SEGMENT_SNAPSHOTS = 8
#: Step-length trend (median of the segment's last quarter over its first quarter) below
#: which the step "keeps shrinking": the weights approach a limit. A 1/t step (Hoffer et
#: al.'s log t distance, no limit) gives 0.71 over a run's second half; exponential or
#: 1/t^2 decay gives less than 0.5.
SHRINKING_BELOW = 0.5
#: Step-length trend below which the step shrinks so fast that the weights approach a
#: limit whatever else moves (exponential decay).
SHRINKING_FAST_BELOW = 0.2
#: Step-length trend from which directed motion "does not slow down" (drift); below it,
#: while the loss still falls and the norm stays put, the weights converge slowly.
STEADY_FROM = 0.8
#: Step-length trend above which the step is growing.
GROWING_ABOVE = 2.0
#: Norm growth over the segment, as a share of the net displacement over it, from which
#: the motion is outward (the norm grows steadily: e.g. cross-entropy's log t growth on
#: separable data, Soudry et al. 2018), so a shrinking step is no sign of a limit.
RADIAL_SHARE_FROM = 0.5
#: Relative norm growth over the segment that counts as "the norm grows".
NORM_GROWTH_FROM = 0.05
#: Long-lag MSD slope below which the MSD saturates (confined: an invariant measure).
CONFINED_SLOPE_BELOW = 0.5
#: Long-lag MSD slope range of a random walk (slope 1; Kunin et al. 2021 report 0.9-1.3).
DIFFUSIVE_SLOPE = (0.7, 1.4)
#: Long-lag MSD slope from which the motion is directed (drift: slope 2).
DRIFT_SLOPE_FROM = 1.4
#: Lag-1 update correlation below which a super-diffusive MSD contradicts itself
#: (drift makes successive updates positively correlated, never negatively).
DRIFT_CORRELATION_ABOVE = -0.1
#: |update correlation| above which updates are not random-walk-like.
RANDOM_CORRELATION_BELOW = 0.3
#: Long lags: the MSD slope is fitted over lags from span/LONG_LAG_FROM to span/LONG_LAG_TO.
LONG_LAG_FROM, LONG_LAG_TO = 20.0, 3.0
#: Drift on top of diffusion: the segment's net displacement squared over what diffusion
#: at lag span/10 predicts for the whole span (``MSD(span/10) * 10``). A random walk gives
#: about 1; 2 or more means the directed part moved the weights as far as the random part.
DRIFT_EXCESS_FROM = 2.0
#: ... and the MSD bends upward: the two-point slope from lag span/10 to span/2 at least this.
BENDING_SLOPE_FROM = 1.15

# -- stability: lr * lambda_max against the limit 2 (2 + 2 beta with momentum) -------------

#: lr*lambda/(2+2beta) within 1 +- EDGE_BAND counts as "at the edge" (Cohen et al. 2021).
EDGE_BAND = 0.15
#: Consecutive measured snapshots that make a "sustained" segment.
SUSTAINED = 2
#: Optimizers whose steps are preconditioned: the 2/lr limit of gradient descent does not
#: apply to lambda_max of the raw Hessian.
ADAPTIVE = frozenset({"adam", "adamw", "adamax", "nadam", "radam", "rmsprop", "adagrad",
                      "adadelta", "lion", "adafactor", "sparseadam", "lbfgs"})

# -- words and colour roles the GUI shows --------------------------------------------------

WEIGHTS_VERDICTS = ("converging", "drifting", "diffusing", "confined", "diverged", "undetermined")
LOSS_VERDICTS = ("improving", "converged", "diverged", "unknown")
STABILITY_VERDICTS = ("stable", "edge", "unstable", "diverged", "unknown")

#: Short tag per verdict, for plot titles (the MSD panel, the sharpness panel).
TAGS = {
    "converging": "converging", "drifting": "drifting (directed)",
    "diffusing": "diffusing (random walk)", "confined": "confined (saturating)",
    "diverged": "diverged", "undetermined": "undetermined",
    "improving": "improving", "converged": "converged", "unknown": "unknown",
    "stable": "stable", "edge": "at the edge of stability", "unstable": "unstable",
}
#: Colour role per verdict: "good", "notice", "bad" or "neutral" (the GUI's theme maps them).
ROLES = {
    "converging": "good", "confined": "good", "converged": "good", "stable": "good",
    "diffusing": "notice", "drifting": "notice", "improving": "notice", "edge": "notice",
    "diverged": "bad", "unstable": "bad",
    "undetermined": "neutral", "unknown": "neutral",
}


def tag(verdict: str | None) -> str:
    return TAGS.get(verdict or "unknown", verdict or "unknown")


def role(verdict: str | None) -> str:
    return ROLES.get(verdict or "unknown", "neutral")


def unit_word(unit: str | None, n: float = 1) -> str:
    """``"step"``/``"steps"`` or ``"epoch"``/``"epochs"``."""
    u = "epoch" if unit == "epoch" else "step"
    return u if n == 1 else u + "s"


def num(x: float | None, digits: int = 3) -> str:
    """A number as a person reads it: 3,395; 0.000588 -> 5.88e-04; None -> n/a."""
    if x is None or not math.isfinite(x):
        return "n/a"
    a = abs(x)
    if a != 0 and (a < 1e-3 or a >= 1e6):
        return f"{x:.{digits - 1}e}"
    if a >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def limit_formula(momentum: float) -> str:
    """``"2/λ_max"`` or ``"(2+2·0.9)/λ_max"``."""
    return "2/λ_max" if not momentum else f"(2+2·{momentum:g})/λ_max"


def stability_ratio(sharpness: float, lr: float, momentum: float = 0.0) -> float:
    """``lr * lambda_max / (2 + 2 beta)``: 1 at the stability limit of (heavy-ball) GD."""
    return float(sharpness) * float(lr) / (2.0 + 2.0 * float(momentum))


def band_of(ratio: float) -> str:
    """``"below"``, ``"at"`` or ``"above"`` the limit for a stability ratio."""
    if ratio > 1.0 + EDGE_BAND:
        return "above"
    if ratio >= 1.0 - EDGE_BAND:
        return "at"
    return "below"


# -- the PCA spectrum against a random walk's (Antognini & Sohl-Dickstein 2018) ----------

#: Random-walk similarity from which the PCA picture is "what diffusion alone draws".
RANDOM_WALK_SIMILAR_FROM = 0.7
#: Random-walk similarity from which the spectrum is partly random-walk-like.
RANDOM_WALK_PARTLY_FROM = 0.4


def similarity_words(s: float | None) -> str:
    """What a random-walk similarity of the PCA spectrum means, in words (panel and text)."""
    if s is None or not math.isfinite(s):
        return ""
    if s >= RANDOM_WALK_SIMILAR_FROM:
        return ("the spectrum is that of a random walk: smooth PCA arcs are what diffusion "
                "alone draws, not evidence of structure")
    if s >= RANDOM_WALK_PARTLY_FROM:
        return "partly random-walk-like: some of the shape is diffusion, not direction"
    return "unlike a random walk's spectrum"
