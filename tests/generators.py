"""Test helper: run one of lossview's core generators to its end (importable from every
test directory: pytest puts ``tests/``, the folder of the root conftest, on ``sys.path``)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any


def finish(gen: Generator) -> tuple[list, Any]:
    """``(what gen yielded, what it returned)``."""
    items = []
    while True:
        try:
            items.append(next(gen))
        except StopIteration as stop:
            return items, stop.value
