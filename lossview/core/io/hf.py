"""Hugging Face ``Trainer`` output: ``checkpoint-N/`` folders.

Each checkpoint folder holds the weights (``model.safetensors``, sharded
``model-0000k-of-0000n.safetensors`` with an index, or ``pytorch_model.bin``), a
``trainer_state.json`` (``global_step``, ``epoch``, ``log_history``) and files that are not
weights and are never opened: ``scheduler.pt``, ``rng_state*.pth``, ``training_args.bin``
(the last two are pickles of arbitrary classes); ``optimizer.pt`` of the newest checkpoint
is loaded as data (``weights_only=True``) for its settings only.

Step: ``global_step`` of the folder's ``trainer_state.json``, else the N of its name.
Metrics: the ``log_history`` of the newest ``trainer_state.json`` (the output folder's own,
written by ``trainer.save_state()``, when it is the newest): ``loss``, ``grad_norm``,
``learning_rate`` (which ``run.metric("lr")`` finds), ``eval_loss`` and any other number
logged, at the logged ``step``. Optimizer settings: see :func:`optimizer_settings`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from lossview.core.io.arrays import ArrayFileReader
from lossview.core.io.filescan import assemble_or_explain, natural_key, one_line
from lossview.core.io.native import safetensors_info
from lossview.core.io.torchfiles import (
    SAFETY,
    TorchReader,
    UnreadableFile,
    UnsafeFile,
    inspect_file,
    load_torch,
)
from lossview.core.run import MetricSeries, Reader, Run, Snapshot, TensorDict

CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
_SKIP_METRICS = re.compile(r"(runtime|per_second|flos|^step$|^epoch$)")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "adapter_model.safetensors",
                "adapter_model.bin")


def checkpoint_dirs(path: Path) -> list[Path]:
    """``checkpoint-N`` folders in ``path`` (or ``path`` itself if it is one), natural order."""
    if CHECKPOINT_DIR.match(path.name) and path.is_dir():
        return [path]
    try:
        dirs = [p for p in path.iterdir() if p.is_dir() and CHECKPOINT_DIR.match(p.name)]
    except OSError:
        return []
    return sorted(dirs, key=lambda p: natural_key(p.name))


def is_hf_output(path: Path) -> bool:
    return path.is_dir() and bool(checkpoint_dirs(path))


#: Formats this module opens (see :func:`hf_format`).
HF_FORMATS = ("hf-trainer", "hf-pretrained", "accelerate")


def hf_format(path: Path) -> str | None:
    """``"hf-trainer"`` (``checkpoint-N/`` folders), ``"hf-pretrained"`` (one
    ``save_pretrained`` folder per step, or one such folder), ``"accelerate"`` (``save_state``
    folders) or None; see :mod:`lossview.core.io.hf_layouts`."""
    if is_hf_output(path):
        return "hf-trainer"
    from lossview.core.io.hf_layouts import find_layout

    found = find_layout(path)
    return found[0] if found else None


def weight_files(ckdir: Path) -> list[Path]:
    """The weight file(s) of one checkpoint folder, shards in index order; [] if none."""
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        p = ckdir / index
        if p.is_file():
            try:
                wmap = json.loads(p.read_text(encoding="utf-8"))["weight_map"]
                return [ckdir / n for n in sorted(set(wmap.values()), key=natural_key)]
            except (OSError, ValueError, KeyError, TypeError):
                continue
    for name in WEIGHT_FILES:
        if (ckdir / name).is_file():
            return [ckdir / name]
    return []


def read_trainer_state(ckdir: Path) -> dict:
    try:
        state = json.loads((ckdir / "trainer_state.json").read_text(encoding="utf-8"))
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def log_history_series(history: list) -> dict[str, MetricSeries]:
    cols: dict[str, tuple[list[int], list[float]]] = {}
    for rec in history if isinstance(history, list) else []:
        if not isinstance(rec, dict) or not isinstance(rec.get("step"), (int, float)):
            continue
        for k, v in rec.items():
            if _SKIP_METRICS.search(k) or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            s, vals = cols.setdefault(k, ([], []))
            s.append(int(rec["step"]))
            vals.append(float(v))
    out = {}
    for k, (s, v) in cols.items():
        order = np.argsort(np.asarray(s), kind="stable")
        out[k] = MetricSeries(np.asarray(s)[order], np.asarray(v)[order])
    return out


class HFReader:
    """Reads a checkpoint's safetensors (memory-mapped) or ``pytorch_model.bin`` weights."""

    format = "hf-trainer"

    def __init__(self) -> None:
        self._st: Reader = ArrayFileReader("hf-trainer")
        self._pt: Reader = TorchReader("hf-trainer")

    def read_into(self, snapshot: Snapshot, shapes, offsets, out) -> bool:
        """safetensors weights straight into a flat vector (bfloat16 widened on the way);
        False for ``.bin`` files, which :meth:`read` decodes."""
        from lossview.core.io.ranges import read_safetensors_into

        return read_safetensors_into(snapshot, shapes, offsets, out)

    def read(self, snapshot: Snapshot) -> TensorDict:
        files = snapshot.meta.get("files", [snapshot.source])
        if str(files[0]).endswith(".safetensors"):
            return self._st.read(snapshot)
        return self._pt.read(snapshot)


def info_of(files: list[Path]) -> tuple[dict, str | None, dict[str, str]]:
    """Tensor listing of a model's weight files (all shards), the state_dict key (torch
    files) and the tied tensors left out of the listing (``alias -> kept``): a ``.bin``
    stores GPT-2's ``lm_head.weight`` and ``transformer.wte.weight`` as one storage, and
    such a tensor counts once, as safetensors stores it."""
    info: dict = {}
    key = None
    tied: dict[str, str] = {}
    for f in files:
        if f.name.endswith(".safetensors"):
            info.update(safetensors_info(f)[0])
        else:
            i, meta = inspect_file(f)
            info.update(i)
            key = meta.get("key")
            tied.update(meta.get("tied") or {})  # inspect_file leaves them out of ``i``
    if len(files) > 1 and all(f.name.endswith(".safetensors") for f in files):
        info = dict(sorted(info.items()))  # the order of the same model in one file
    return info, key, tied


def _info(files: list[Path]) -> tuple[dict, str | None]:
    info, key, _ = info_of(files)
    return info, key


def _final_model(path: Path, state: dict, steps: list[int], warnings: list[str]):
    """The model ``trainer.save_model()`` left in the output folder, when ``trainer_state.json``
    there says it is newer than every checkpoint (otherwise it repeats the last one)."""
    files = weight_files(path)
    gs = state.get("global_step")
    if not files or not isinstance(gs, (int, float)) or (steps and int(gs) <= max(steps)):
        return None
    try:
        info, key = _info(files)
    except Exception as e:  # noqa: BLE001 - named and skipped
        warnings.append(f"skipped {files[0].name}: not readable ({one_line(e)})")
        return None
    ep = state.get("epoch")
    return (Snapshot(step=int(gs), source=files[0],
                     epoch=float(ep) if isinstance(ep, (int, float)) else None,
                     meta={"files": files, "key": key, "folder": "."}), info)


def open_hf(path: Path, fmt: str = "hf-trainer") -> Run:
    if fmt != "hf-trainer":
        from lossview.core.io.hf_layouts import open_layout

        return open_layout(path)
    warnings: list[str] = []
    entries = []
    states = []
    for ck in checkpoint_dirs(path):
        files = weight_files(ck)
        if not files:
            warnings.append(f"skipped {ck.name}: no model weights in it")
            continue
        state = read_trainer_state(ck)
        try:
            info, key = _info(files)
        except UnsafeFile:
            warnings.append(f"{ck.name}/{files[0].name}: {SAFETY}")
            continue
        except Exception as e:  # noqa: BLE001 - any damaged file is named and skipped
            warnings.append(f"skipped {ck.name}: {files[0].name} is not readable ({one_line(e)})")
            continue
        gs = state.get("global_step")
        step = int(gs) if isinstance(gs, (int, float)) else int(CHECKPOINT_DIR.match(ck.name)[1])
        ep = state.get("epoch")
        epoch = float(ep) if isinstance(ep, (int, float)) else None
        snap = Snapshot(step=step, source=files[0], epoch=epoch,
                        meta={"files": files, "key": key, "folder": ck.name})
        entries.append((snap, info))
        states.append((step, len(state.get("log_history") or []), state))
    top = read_trainer_state(path) if not CHECKPOINT_DIR.match(path.name) else {}
    if top:
        states.append((int(top.get("global_step") or 0), len(top.get("log_history") or []), top))
        final = _final_model(path, top, [e[0].step for e in entries], warnings)
        if final is not None:
            entries.append(final)
    metrics = {}
    if states:
        newest = max(states, key=lambda s: (s[0], s[1]))[2]
        metrics = log_history_series(newest.get("log_history") or [])
    spec = {"source": "hf-trainer"}
    from lossview.core.io.tensorboard import add_event_metrics  # report_to=["tensorboard"]
    add_event_metrics(metrics, path, warnings, spec)  # runs/*/events.out.tfevents.*
    run = assemble_or_explain(path, "hf-trainer", entries, HFReader(), metrics, spec, warnings)
    opt = optimizer_settings(run)
    if opt is not None:
        run.spec["optimizer"] = opt
    return run


def optimizer_settings(run: Run) -> dict | None:
    """The optimizer's settings: ``lr`` is the peak of the ``learning_rate`` the Trainer
    logged (the schedule itself is the ``lr`` series); the rest, and the lr where none was
    logged, from the ``param_groups`` of the newest checkpoint's ``optimizer.pt``, loaded as
    data (``weights_only=True``, memory-mapped: the moments are not read)."""
    from lossview.core.io.optimizer import describe, from_state_dict, is_optimizer_state, peak_lr
    from lossview.core.io.optimizer import spec_from_settings as as_spec

    opt_file = next((s.source.parent / "optimizer.pt" for s in reversed(run.snapshots)
                     if (s.source.parent / "optimizer.pt").is_file()), None)
    settings, base = None, None
    if opt_file is not None:
        try:
            sd = load_torch(opt_file)
            if is_optimizer_state(sd):
                settings = from_state_dict(sd)
                settings["where"] = "param_groups[0]"
                base = sd["param_groups"][0].get("initial_lr")
            del sd
        except (UnsafeFile, UnreadableFile):
            settings = None
    peak = peak_lr(run.metrics.get("learning_rate"))
    if settings is None and peak is None:
        return None
    where = []
    if peak is not None:
        where.append("lr: the peak of learning_rate in trainer_state.json's log_history")
    if settings is not None:
        rel = f"{opt_file.parent.name}/{opt_file.name}"
        where.append(("the rest: " if peak is not None else "")
                     + describe(settings, rel) + " (loaded as data)")
        if peak is None and isinstance(base, (int, float)) and not isinstance(base, bool) and base > 0:
            settings["lr"] = float(base)  # the schedule's base, not its last value
            where.append("lr: its initial_lr, the schedule's base")
    settings = settings or {}
    if peak is not None:
        settings["lr"] = peak
    return as_spec(settings, "; ".join(where))
