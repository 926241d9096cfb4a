"""What kind of checkpoint a file is, which files are not weights, and file-name steps.

Shared by the foreign readers (torch, Lightning, Hugging Face, safetensors, npz).
Classification looks at the extension first and at the first bytes for anything else,
so a folder of thousands of files is sorted without reading any tensor data.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from lossview.core.io.naming import name_position, natural_key

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".tar", ".ckpt")
SAFETENSORS_SUFFIXES = (".safetensors",)
NPZ_SUFFIXES = (".npz",)
KERAS_SUFFIXES = (".weights.h5", ".keras")  # Keras 3 (lossview.core.io.kerasfiles)

#: Files that hold optimizer, scheduler or RNG state or training arguments: never opened
#: (training_args.bin and rng_state.pth are pickles of arbitrary classes).
_NON_WEIGHTS = re.compile(
    r"^(optimizer|optim|scheduler|lr_scheduler|scaler|rng_state|random_states?|training_args"
    r"|trainer_state|sampler)([._-].*)?$",
    re.I,
)


def is_non_weight_file(path: Path | str) -> bool:
    """True for optimizer/scheduler/RNG/training-argument files, which lossview never opens."""
    return bool(_NON_WEIGHTS.match(Path(path).name))


def one_line(e: BaseException) -> str:
    """The first line of an exception message, short enough for a warning."""
    text = (str(e).strip().splitlines() or [""])[0].strip()
    return (text or type(e).__name__)[:160]


def sniff(path: Path) -> str | None:
    """``"torch"``, ``"safetensors"``, ``"npz"`` or None, from a file's first bytes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return None
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
        return None
    if len(head) >= 10 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        if 2 <= n < 100_000_000:
            return "safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch"  # a legacy (non-zip) torch.save file or a plain pickle
    return None


def kind_of(path: Path) -> str | None:
    """The checkpoint kind of a file by extension, else by content; None if not one."""
    suffix = path.suffix.lower()
    if path.name.lower().endswith(KERAS_SUFFIXES):
        return "keras"
    if suffix in SAFETENSORS_SUFFIXES:
        return "safetensors"
    if suffix in NPZ_SUFFIXES:
        return "npz"
    if suffix in TORCH_SUFFIXES:
        return "torch"
    if suffix in (".json", ".yaml", ".yml", ".txt", ".md", ".csv", ".log", ".py", ".png", ".jpg"):
        return None
    return sniff(path)


def visible_files(folder: Path) -> list[Path]:
    """Plain files directly in ``folder``, hidden and temporary files left out, natural order."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    files = [p for p in entries if p.is_file() and not p.name.startswith(".")
             and not p.name.endswith((".tmp", ".partial", ".lock"))]
    return sorted(files, key=lambda p: natural_key(p.name))


def summarize_ignored(files: Sequence[Path], why: str, limit: int = 5) -> str | None:
    """One warning line naming ignored files (the first few), or None if there are none."""
    if not files:
        return None
    names = ", ".join(f.name for f in files[:limit]) + (" ..." if len(files) > limit else "")
    return f"ignored {len(files)} file{'s' if len(files) > 1 else ''} ({why}): {names}"


def positions_from_names(files: Sequence[Path], known: Sequence[int] = ()
                         ) -> tuple[list[int], list[float | None], list[str], list[str]]:
    """Position, epoch and unit (``"step"``/``"epoch"``) of each file from its name.

    Numbers in the names give the positions (``model_2`` before ``model_10``); names that
    announce only an epoch (``epoch_3``, ``weights.05-0.32``) use it as the position, in
    epochs. A name without a number among numbered ones (``model_final.pt``, ``last.pt``;
    ``known`` holds the positions other snapshots took from their contents) goes after
    them, at the last position + 1 (several: + 1, + 2... in name order), or at 0 when it
    says it is the start (``model_init.pt``) and 0 is free; the numbered ones keep their
    numbers and a warning says where the others went. If no name holds a number, the
    natural order of the names gives the steps 0, 1, 2... and a warning says so.
    """
    from lossview.core.io.naming import is_initial_name

    found = [name_position(f) for f in files]
    steps = [p[0] for p in found]
    epochs = [None if p[1] is None else float(p[1]) for p in found]
    units = [p[2] for p in found]
    warnings: list[str] = []
    nameless = sorted((i for i, s in enumerate(steps) if s is None),
                      key=lambda i: natural_key(files[i].name))
    taken = [int(s) for s in steps if s is not None] + [int(k) for k in known]
    if nameless and not taken and len(files) > 1:
        for rank, i in enumerate(nameless):
            steps[i] = rank
        units = ["step"] * len(files)
        warnings.append("some file names hold no step number; snapshots are ordered by name")
    elif nameless and taken:
        numbered_units = [units[i] for i, s in enumerate(steps) if s is not None]
        unit = "epoch" if numbered_units and all(u == "epoch" for u in numbered_units) \
            and not known else "step"
        first = [i for i in nameless if is_initial_name(files[i])]
        if len(first) == 1 and min(taken) > 0:
            steps[first[0]], units[first[0]] = 0, unit
            warnings.append(f"{files[first[0]].name} has no {unit} number in its name: placed "
                            f"at {unit} 0, before the first numbered one ({min(taken)})")
            nameless.remove(first[0])
        top = max(taken)
        for k, i in enumerate(nameless):
            steps[i], units[i] = top + 1 + k, unit
        if nameless:
            names = ", ".join(files[i].name for i in nameless[:4]) + (
                " ..." if len(nameless) > 4 else "")
            at = ", ".join(str(top + 1 + k) for k in range(min(len(nameless), 4)))
            warnings.append(
                f"{names} {'has' if len(nameless) == 1 else 'have'} no {unit} number in "
                f"{'its name' if len(nameless) == 1 else 'their names'}: placed at "
                f"{unit}{'s' if len(nameless) > 1 else ''} {at}, after the last numbered "
                f"one ({top})")
    return [0 if s is None else int(s) for s in steps], epochs, units, warnings


def steps_from_names(files: Sequence[Path]) -> tuple[list[int], list[float | None], list[str]]:
    """Step (and epoch) of each file from its name (see :func:`positions_from_names`)."""
    steps, epochs, _, warnings = positions_from_names(files)
    return steps, epochs, warnings


def first_present(keys: Iterable[str], mapping: dict) -> object | None:
    for k in keys:
        if k in mapping and mapping[k] is not None:
            return mapping[k]
    return None


def assemble_or_explain(path: Path, fmt: str, entries, reader, metrics, spec, warnings):
    """:func:`~lossview.core.io.common.assemble_run`, or a NoCheckpointsError that repeats
    why the files were skipped when none could be read."""
    from lossview.core.errors import NoCheckpointsError
    from lossview.core.io.common import assemble_run

    if not entries:
        detail = "; ".join(warnings[-2:])
        raise NoCheckpointsError(
            f"no readable checkpoints in {path}" + (f" ({detail})" if detail else ""))
    return assemble_run(path, fmt, entries, reader, metrics, spec, warnings)
