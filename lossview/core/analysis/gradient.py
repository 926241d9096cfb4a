"""Does the gradient norm vanish once the loss is flat, or level off (Zhang et al. 2021)?

``early`` = median of the first 10% of the logged gradient norms; ``post`` = mean after the
plateau (the last quarter of the run when there is none). Verdict:

* ``"levels off"``: within the post segment, the mean of its last quarter is at least half
  the mean of its first quarter: the loss converged without the weights reaching a
  stationary point;
* otherwise ``"vanishes"`` when post / early < 0.02, else ``"still falling"``.
"""

from __future__ import annotations

import numpy as np

from lossview.core.analysis.metric_names import GRAD_NORM as NAMES
from lossview.core.run import Run

VANISH = 0.02
FALLING = 0.5


def gradient_behaviour(run: Run, plateau_step: int | None, until: int | None = None) -> dict:
    """The verdict above on the logged gradient norms before step ``until`` (a diverged
    run's first non-finite step: what follows it is not analysed)."""
    s = run.metric(*NAMES)
    if s is None:
        return {"verdict": None, "reason": "no gradient norm was logged (metric 'grad_norm')"}
    ok = np.isfinite(s.values)
    if until is not None:
        ok &= s.steps < until
    steps, g = s.steps[ok], s.values[ok]
    n = len(g)
    if n < 8:
        return {"verdict": None, "reason": f"needs at least 8 finite gradient norms, has {n}"}
    early = float(np.median(g[: max(n // 10, 1)]))
    if plateau_step is not None and np.sum(steps >= plateau_step) >= 4:
        post = g[steps >= plateau_step]
        seg = "after the plateau"
    else:
        post = g[-max(n // 4, 4):]
        seg = "last quarter of the run"
    q = max(len(post) // 4, 1)
    trend = float(post[-q:].mean() / post[:q].mean()) if post[:q].mean() > 0 else None
    ratio = float(post.mean() / early) if early > 0 else None
    if trend is None or trend >= FALLING:
        verdict = "levels off"
    elif ratio is not None and ratio < VANISH:
        verdict = "vanishes"
    else:
        verdict = "still falling"
    return {"verdict": verdict, "metric": next(k for k in NAMES if run.metrics.get(k) is s),
            "early": early, "post_mean": float(post.mean()), "post_over_early": ratio,
            "post_trend": trend, "segment": seg}
