"""Ordering checkpoint files by the numbers in their names (``model_2`` before ``model_10``)."""

from __future__ import annotations

import re
from pathlib import Path

_NUM = re.compile(r"(\d+)")
# Words that announce a step or epoch number in a file name, most specific first.
_STEP_WORDS = re.compile(r"(?:global_step|step|iter|iteration|checkpoint|ckpt)[-_=]?(\d+)", re.I)
# Not preceded by a letter, so "step10" does not announce epoch 10.
_EPOCH_WORDS = re.compile(r"(?<![a-z])(?:epoch|ep)[-_=]?(\d+)", re.I)
# Keras ModelCheckpoint templates: ``weights.{epoch:02d}-{val_loss:.2f}.hdf5``,
# ``model.{epoch:02d}-{val_loss:.2f}.h5``, ``{epoch:02d}-{val_loss:.2f}.keras``.
_KERAS_EPOCH = re.compile(r"^(?:weights\.(\d+)(?=[-.])|(?:model\.)?(\d+)-\d*\.\d+)", re.I)


# A number-less name that announces the start of training (``model_init.pt``, ``initial.pt``).
_INITIAL = re.compile(r"(?:^|[^a-z])(?:init|initial|start|begin)(?:[^a-z]|$)", re.I)


# A name for a copy or the end of a run: ``last.ckpt``, ``last-v1.ckpt``, ``model_best.pth.tar``.
_ALIAS = re.compile(r"(?:^|[^a-z])(?:last|best|final|latest)(?:-v\d+)?$", re.I)


def is_alias_name(path: Path | str) -> bool:
    """True for ``last``/``best``/``final``/``latest`` names (``last-v1.ckpt`` included),
    which name a moment of the run rather than a step."""
    return bool(_ALIAS.search(Path(path).name.split(".")[0]))


def is_initial_name(path: Path | str) -> bool:
    """True for a name that says it holds the weights before training (``model_init.pt``)."""
    return bool(_INITIAL.search(Path(path).name))


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded integers numerically: a2 < a10 < b1."""
    parts = _NUM.split(name)
    return tuple((0, int(p), p) if i % 2 else (1, 0, p.lower()) for i, p in enumerate(parts))


def numbers_in(name: str) -> list[int]:
    return [int(m) for m in _NUM.findall(name)]


def name_position(path: Path | str) -> tuple[int | None, int | None, str]:
    """``(position, epoch, unit)`` a file name announces.

    A number after a step word (``step=120``, ``checkpoint-40``) is a step; else an epoch
    word (``epoch_3``, ``ep7``) or a Keras template (``weights.05-0.32``) gives an epoch,
    which is then also the position (unit ``"epoch"``); else the last number is the
    position (unit ``"step"``, the numbers of such names mean nothing more specific).
    """
    name = Path(path).name
    epoch = epoch_from_name(name)
    m = _STEP_WORDS.search(name)
    if m:
        return int(m.group(1)), epoch, "step"
    if epoch is not None:
        return epoch, epoch, "epoch"
    nums = numbers_in(Path(name).stem if "." in name else name)
    return (nums[-1] if nums else None), None, "step"


def step_from_name(path: Path | str) -> int | None:
    """The position a file name announces: a step (``step=120``, ``checkpoint-40``), else an
    epoch (``epoch_3``, Keras's ``weights.05-0.32``), else its last number."""
    return name_position(path)[0]


def epoch_from_name(path: Path | str) -> int | None:
    name = Path(path).name
    m = _EPOCH_WORDS.search(name)
    if m:
        return int(m.group(1))
    m = _KERAS_EPOCH.match(name)
    return int(m.group(1) or m.group(2)) if m else None
