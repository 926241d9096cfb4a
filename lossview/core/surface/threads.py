"""How many threads surface evaluation may use (torch is imported only when asked).

Kept apart from :mod:`~lossview.core.surface.pipelines` so that the desktop app can set
its budget at start-up without importing torch (1.2 s) before its window shows.
"""

from __future__ import annotations

_budget: int | None = None


def set_thread_budget(n: int | None) -> None:
    """Let surface evaluation use at most ``n`` threads in this process (None: torch's
    count). The desktop app keeps one core for its GUI thread this way: with both cores
    computing, its first paints of a run took 3x longer (measured)."""
    global _budget
    _budget = None if n is None else max(1, int(n))


def thread_budget() -> int:
    """Threads an evaluation may use: the caller's torch count, capped by the budget."""
    import torch

    n = max(1, torch.get_num_threads())
    return min(n, _budget) if _budget is not None else n


def current_budget() -> int | None:
    """The budget set by :func:`set_thread_budget` (None: none), e.g. to pass it on to a
    child process."""
    return _budget
