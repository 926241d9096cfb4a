"""Ordering checkpoint files by the numbers in their names (``model_2`` before ``model_10``)."""

from __future__ import annotations

import re
from pathlib import Path

_NUM = re.compile(r"(\d+)")
# Words that announce a step or epoch number in a file name, most specific first.
_STEP_WORDS = re.compile(r"(?:global_step|step|iter|iteration|checkpoint|ckpt)[-_=]?(\d+)", re.I)
# Not preceded by a letter, so "step10" does not announce epoch 10.
_EPOCH_WORDS = re.compile(r"(?<![a-z])(?:epoch|ep)[-_=]?(\d+)", re.I)


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded integers numerically: a2 < a10 < b1."""
    parts = _NUM.split(name)
    return tuple((0, int(p), p) if i % 2 else (1, 0, p.lower()) for i, p in enumerate(parts))


def numbers_in(name: str) -> list[int]:
    return [int(m) for m in _NUM.findall(name)]


def step_from_name(path: Path | str) -> int | None:
    """The step a file name announces (``step=120``, ``checkpoint-40``), else its last number."""
    stem = Path(path).name
    for pat in (_STEP_WORDS,):
        m = pat.search(stem)
        if m:
            return int(m.group(1))
    nums = numbers_in(Path(stem).stem if "." in stem else stem)
    return nums[-1] if nums else None


def epoch_from_name(path: Path | str) -> int | None:
    m = _EPOCH_WORDS.search(Path(path).name)
    return int(m.group(1)) if m else None
