"""One model folder per step: ``save_pretrained`` folders and accelerate's ``save_state``.

Two layouts written by users' own loops (no ``Trainer``, no ``trainer_state.json``):

``hf-pretrained``  ``model.save_pretrained(f"out/step_{step}")`` (or ``epoch_3``, ``ckpt-500``):
                   each sub-folder holds ``config.json`` and ``model.safetensors``, or for a
                   large model ``model-0000k-of-0000n.safetensors`` shards listed in
                   ``model.safetensors.index.json``. One such folder opened by itself is a
                   one-snapshot run.
``accelerate``     ``accelerator.save_state()``: ``model.safetensors`` (or ``pytorch_model.bin``
                   with ``safe_serialization=False``) beside ``optimizer.bin``,
                   ``scheduler.bin`` and ``random_states_0.pkl``; with
                   ``ProjectConfiguration(automatic_checkpoint_naming=True)`` in
                   ``<project_dir>/checkpoints/checkpoint_<i>/``.

Steps: a ``step``/``global_step``/``iteration`` in the safetensors metadata, else the number
in the sub-folder's name (``step_100`` is step 100, ``epoch_3`` epoch 3). accelerate's
automatic names count saves, not steps (``checkpoint_2`` is the third save); the step
accelerate records is inside ``random_states_<rank>.pkl``, a pickle that is never opened,
so the save index is the position and a warning says so. Only the weight files are opened:
``optimizer.bin``, ``scheduler.bin``, ``*.pkl`` and the rest are listed in
``spec["not_opened"]``. A second model of ``save_state`` (``model_1.safetensors``) is left out
with a warning. Tied tensors that a ``.bin`` stores twice with one storage (GPT-2's
``lm_head.weight`` = ``transformer.wte.weight``) count once; safetensors stores them once.
"""

from __future__ import annotations

import re
from pathlib import Path

from lossview.core.io.filescan import (
    assemble_or_explain,
    natural_key,
    one_line,
    positions_from_names,
    visible_files,
)
from lossview.core.io.hf import HFReader, weight_files
from lossview.core.io.hf import info_of as hf_info
from lossview.core.io.torchfiles import SAFETY, UnsafeFile
from lossview.core.run import Run, Snapshot

FORMATS = ("hf-pretrained", "accelerate")
AUTO_NAME = re.compile(r"^checkpoint_(\d+)$")
_STATE = re.compile(r"^random_states_\d+\.pkl$")
_EXTRA_MODEL = re.compile(r"^(model_\d+\.safetensors|pytorch_model_\d+\.bin)$")
_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_STEP_META = ("step", "global_step", "iteration")


def _names(d: Path) -> list[str]:
    return [f.name for f in visible_files(d)]


def is_accelerate_state(d: Path) -> bool:
    """A folder ``save_state`` wrote: its RNG state file beside the weights."""
    return any(_STATE.match(n) for n in _names(d))


def is_model_folder(d: Path) -> bool:
    """Weights under Hugging Face's names, written by ``save_pretrained`` (a ``config.json``
    or a shard index beside them) or by ``save_state``."""
    if not weight_files(d):
        return False
    names = set(_names(d))
    return "config.json" in names or bool(names & set(_INDEXES)) or is_accelerate_state(d)


#: Sub-folder names that announce a position (``step_100``, ``checkpoint_0``, ``epoch-3``,
#: ``global_step500``, ``1000``) or the end of a run (``final``): per-step folders. Others
#: (``seed1``, ``lr0.1``, ``bert-base``) are separate runs or models, never steps of one.
_STEP_NAME = re.compile(r"^(?:(?:global_step|steps?|iter|iteration|it|checkpoint|ckpt|epoch|ep"
                        r"|model|weights|snapshot|save)[-_=]?)?\d+$", re.I)
_END_NAME = re.compile(r"^(?:final|last|latest|end)(?:[-_](?:model|checkpoint|ckpt))?$", re.I)


def _weight_subfolders(path: Path) -> list[Path]:
    try:
        subs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []
    return sorted((p for p in subs if weight_files(p)), key=lambda p: natural_key(p.name))


def _is_run(d: Path) -> bool:
    """A folder that is itself a run (Trainer output keeps its final model beside its
    ``checkpoint-N/``): it is not one step of another run."""
    from lossview.core.io.hf import is_hf_output

    return is_hf_output(d) or bool(_weight_subfolders(d)) or (d / "checkpoints").is_dir()


def step_folders(subs: list[Path]) -> tuple[list[Path], list[Path]]:
    """The sub-folders that are steps of one run, and those left out (names without a
    step, folders that are runs themselves); a lone model folder counts whatever its name."""
    subs = [d for d in subs if not _is_run(d)]
    if len(subs) == 1:
        return (subs, []) if is_model_folder(subs[0]) else ([], subs)
    steps = [d for d in subs if _STEP_NAME.match(d.name)]
    if not steps:
        return [], subs
    steps += [d for d in subs if _END_NAME.match(d.name)]
    return sorted(steps, key=lambda p: natural_key(p.name)), [d for d in subs if d not in steps]


def find_layout(path: Path) -> tuple[str, Path, list[Path]] | None:
    """``(format, root, model folders)`` when ``path`` is one of the layouts, else None.

    ``root`` holds the model folders: ``path``, or ``path/checkpoints`` (accelerate's
    automatic naming opened at its project folder). Sub-folders with weights whose names
    announce steps (see :func:`step_folders`) make a run; else ``path`` itself when it is a
    model folder (one snapshot)."""
    path = Path(path)
    if not path.is_dir():
        return None
    root, subs = path, _weight_subfolders(path)
    if not subs and (path / "checkpoints").is_dir() and not weight_files(path / "checkpoints"):
        root, subs = path / "checkpoints", _weight_subfolders(path / "checkpoints")
    folders, _ = step_folders(subs)
    if not folders:
        if not is_model_folder(path):
            return None
        folders = [path]
    fmt = "accelerate" if any(is_accelerate_state(d) for d in folders) else "hf-pretrained"
    return fmt, root, folders


def _metadata_step(files: list[Path]) -> int | None:
    if not files[0].name.endswith(".safetensors"):
        return None
    from lossview.core.io.native import safetensors_info

    try:
        meta = safetensors_info(files[0])[1]
    except Exception:  # noqa: BLE001 - the listing below names a damaged file
        return None
    for k in _STEP_META:
        try:
            return int(float(meta[k]))
        except (KeyError, TypeError, ValueError):
            continue
    return None


class FolderReader(HFReader):
    """Reads one model folder's safetensors (all shards) or ``pytorch_model.bin``."""

    def __init__(self, format: str) -> None:
        super().__init__()
        self.format = format


def _positions(folders: list[Path], warnings: list[str]):
    """Step, epoch and unit of each folder from its name, where the steps came from, and
    whether the names are accelerate's automatic ones (save indices, not steps)."""
    steps, epochs, units, w = positions_from_names(folders)
    warnings += w
    auto = all(AUTO_NAME.match(d.name) and d.parent.name == "checkpoints" for d in folders)
    if auto:
        note = "accelerate's save index (checkpoint_<i> is the i-th save_state), not a step"
    elif len(folders) == 1 and not re.search(r"\d", folders[0].name):
        note = "one folder without a number: step 0"
    else:
        note = "the numbers in the folder names"
    return steps, epochs, units, note, auto


def open_layout(path: Path) -> Run:
    """Open a folder :func:`find_layout` recognises."""
    found = find_layout(path)
    if found is None:
        from lossview.core.errors import NoCheckpointsError

        raise NoCheckpointsError(f"no save_pretrained or save_state folders in {path}")
    fmt, root, folders = found
    warnings: list[str] = []
    if folders != [path]:
        left = step_folders(_weight_subfolders(root))[1]
        if left:
            warnings.append(f"ignored {len(left)} sub-folder{'s' if len(left) > 1 else ''} "
                            f"whose names hold no step (another run or model?): "
                            f"{', '.join(d.name for d in left[:5])}")
    steps, epochs, units, note, auto = _positions(folders, warnings)
    entries, not_opened, from_meta = [], set(), 0
    for d, step, epoch, unit in zip(folders, steps, epochs, units):
        files = weight_files(d)
        used = {f.name for f in files} | set(_INDEXES)
        extra = [n for n in _names(d) if _EXTRA_MODEL.match(n)]
        if extra:
            warnings.append(f"{d.name}: opened the first model ({files[0].name}); left out "
                            f"{', '.join(extra)} (another model given to accelerator.prepare)")
        not_opened |= {n for n in _names(d) if n not in used and n not in extra
                       and not n.endswith(".json")}
        try:
            info, key, tied = hf_info(files)
        except UnsafeFile:
            warnings.append(f"{d.name}/{files[0].name}: {SAFETY}")
            continue
        except Exception as e:  # noqa: BLE001 - a damaged folder is named and skipped
            warnings.append(f"skipped {d.name}: {files[0].name} is not readable ({one_line(e)})")
            continue
        meta_step = _metadata_step(files)
        if meta_step is not None:
            step, unit, from_meta = meta_step, "step", from_meta + 1
        snap = Snapshot(step=int(step), source=files[0], epoch=epoch,
                        meta={"files": files, "key": key, "folder": d.name, "position": unit,
                              "tied": tied})
        entries.append((snap, info))
    if from_meta:
        note = ("the step in the safetensors metadata" if from_meta == len(entries)
                else f"the step in the safetensors metadata ({from_meta} folders), else {note}")
    elif auto and entries:
        warnings.append("steps are accelerate's checkpoint numbers (checkpoint_0, _1, ...), not "
                        "optimizer steps: save_state keeps the step in random_states_*.pkl, a "
                        "pickle lossview never opens (save_state(f'ckpt/step_{step}') names it)")
    spec = {"source": fmt, "steps_from": note, "model_folders": [d.name for d in folders]}
    if not_opened:
        spec["not_opened"] = sorted(not_opened, key=natural_key)
    tied = sorted({f"{a} = {b}" for s, _ in entries for a, b in s.meta["tied"].items()})
    if tied:
        spec["tied"] = tied
    from lossview.core.io.metricfiles import folder_metrics

    tables = visible_files(root) + (visible_files(root.parent) if root != path or
                                    root.name == "checkpoints" else [])
    metrics, used_tables, w = folder_metrics(tables)
    warnings += w
    if used_tables:
        spec["metrics_files"] = [str(f) for f in used_tables]
    return assemble_or_explain(path, fmt, entries, FolderReader(fmt), metrics, spec, warnings)
