"""Which files of a folder are the checkpoints: the folder's own, or a sub-folder's.

A project folder holds more than checkpoints: ``data.pt`` (a dataset), ``model.pt`` (the
final weights), ``train.py``, ``checkpoints/`` with one file per step. Checkpoint-shaped
files win: several files with steps in their names. So, in order:

1. the folder's own files, when at least two of the most common kind have a number in
   their names (``model_100.pt``, ``model_200.pt``);
2. else the sub-folder holding such a series (its own files; ``checkpoint-N/`` folders;
   its ``checkpoints/``, ``ckpt/``... one level further down; ``.ckpt`` files a few levels
   down, as in ``lightning_logs/version_0/checkpoints``). Several such sub-folders are
   several runs: refused with one line listing them, unless exactly one of them is named
   like a checkpoint folder (``checkpoints``, ``ckpt``...);
3. else the folder's own files (one ``model.pt``);
4. else the one sub-folder holding any checkpoint (several: refused, listing them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lossview.core.errors import LossviewError
from lossview.core.io.filescan import visible_files
from lossview.core.io.naming import is_alias_name, natural_key, step_from_name

#: Names of the folders that training scripts save checkpoints into.
CHECKPOINT_DIRS = ("checkpoints", "checkpoint", "ckpt", "ckpts", "weights", "saved_models",
                   "models", "snapshots")
#: Runs named in the several-runs message.
_LISTED = 6


@dataclass
class Candidate:
    """Checkpoints found in ``folder`` (``top``: the sub-folder of the opened path it is in)."""

    folder: Path
    fmt: str
    count: int
    numbered: int
    top: Path
    kinds: dict[Path, str | None] = field(default_factory=dict)

    @property
    def series(self) -> bool:
        return self.numbered >= 2


def _numbered(files: list[Path]) -> int:
    return sum(1 for f in files if step_from_name(f) is not None and not is_alias_name(f))


def files_candidate(folder: Path, top: Path | None = None) -> Candidate | None:
    """The checkpoints among ``folder``'s own files (the most common kind), if any."""
    from lossview.core.io.foreign import _kinds, _majority

    kinds = _kinds(visible_files(folder))
    kind = _majority(kinds)
    if kind is None:
        return None
    files = [f for f, k in kinds.items() if k == kind]
    return Candidate(folder, kind, len(files), _numbered(files), top or folder, kinds)


def _subdirs(folder: Path) -> list[Path]:
    try:
        subs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))]
    except OSError:
        return []
    return sorted(subs, key=lambda p: natural_key(p.name))


def sub_candidate(sub: Path) -> Candidate | None:
    """Checkpoints in a sub-folder: its own files, its ``checkpoint-N/`` folders, its
    ``checkpoints/`` (one level down), or ``.ckpt`` files a few levels down."""
    from lossview.core.io.hf import checkpoint_dirs
    from lossview.core.io.lightning import find_ckpts

    c = files_candidate(sub)
    if c is not None:
        return c
    dirs = checkpoint_dirs(sub)
    if dirs:
        return Candidate(sub, "hf-trainer", len(dirs), len(dirs), sub)
    for d in _subdirs(sub):
        if d.name.lower() in CHECKPOINT_DIRS and (c := files_candidate(d, sub)) is not None:
            return c
    ckpts = find_ckpts(sub)
    if ckpts:
        return Candidate(sub, "lightning", len(ckpts), _numbered(ckpts), sub)
    return None


class SeveralRunsError(LossviewError):
    """``path`` holds several runs; ``runs`` lists ``(sub-folder, checkpoints)`` in the
    order of the message, for a chooser."""

    def __init__(self, message: str, runs: list[tuple[Path, int]]) -> None:
        super().__init__(message)
        self.runs = runs


def several_runs(path: Path, cands: list[Candidate]) -> SeveralRunsError:
    shown = ", ".join(f"{c.top.name} ({c.count} checkpoint{'s' if c.count != 1 else ''})"
                      for c in cands[:_LISTED])
    more = f" and {len(cands) - _LISTED} more" if len(cands) > _LISTED else ""
    return SeveralRunsError(f"{path} holds {len(cands)} runs: {shown}{more}; open one of them "
                            f"(e.g. {path / cands[0].top.name})",
                            [(c.top, c.count) for c in cands])


def choose(path: Path) -> Candidate | None:
    """Where the checkpoints of ``path`` are (see the module's rules), None if nowhere.

    Raises :class:`SeveralRunsError` (one line listing them; ``.runs`` for a chooser) when
    several sub-folders are runs.
    """
    own = files_candidate(path)
    if own is not None and own.series:
        return own
    subs = [c for sub in _subdirs(path) if (c := sub_candidate(sub)) is not None]
    series = [c for c in subs if c.series]
    if len(series) > 1:
        named = [c for c in series if c.top.name.lower() in CHECKPOINT_DIRS]
        if len(named) != 1:
            raise several_runs(path, series)
        series = named
    if series:
        return series[0]
    if own is not None:
        return own
    if len(subs) > 1:
        raise several_runs(path, subs)
    return subs[0] if subs else None
