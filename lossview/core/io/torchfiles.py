"""Files written by ``torch.save``: bare state_dicts, the tutorial's general checkpoint,
``{"state_dict": ...}`` wrappers (Lightning ``.ckpt`` files are of the last kind).

Security: every load is ``torch.load(..., weights_only=True)``, which refuses to build
anything but tensors, containers and plain numbers; a file that needs more (a pickled
``nn.Module``, a custom class, a pickle with a payload) raises :class:`UnsafeFile` and is
skipped. There is no fallback to ``weights_only=False``.

Laziness: zip-format files (every ``torch.save`` since PyTorch 1.6) are loaded with
``mmap=True``, which parses the small pickle and maps the tensor storage without reading
it, so opening a folder reads names, shapes, dtypes and scalars only.
"""

from __future__ import annotations

import argparse
import math
import pickle
import warnings as pywarnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lossview.core.errors import LossviewError
from lossview.core.io.bookkeeping import (
    EPOCH_KEYS,
    POSITION_KEYS,
    STEP_KEYS,
    bookkeeping,
    dataset_like,
    is_bookkeeping,
    metric_name,
)
from lossview.core.io.filescan import first_present, one_line
from lossview.core.run import Snapshot, TensorDict

#: Where the weights sit in a checkpoint dict, most specific first.
STATE_KEYS = ("state_dict", "model_state_dict", "model", "module", "model_state", "net",
              "network", "weights", "params")
SAFETY = "needs pickled code; skipped for safety (lossview never runs code from checkpoints)"
#: What to do about files that need pickled code (whole models saved with torch.save(model)).
SAFETY_FIX = ("lossview never runs code from checkpoints: save model.state_dict() instead "
              "(for files you trust: torch.save(torch.load(f, weights_only=False)"
              ".state_dict(), f))")


class UnsafeFile(Exception):
    """The file can only be loaded by running pickled code."""


class UnreadableFile(Exception):
    """Not a torch file, or a damaged one."""


class NotWeights(UnreadableFile):
    """A readable torch file that holds something else (a saved dataset)."""


#: Inert standard-library classes allowed beside tensors: ``argparse.Namespace`` holds the
#: hyper-parameters of many Lightning checkpoints (``save_hyperparameters(args)``); building
#: one only sets attributes.
SAFE_GLOBALS = (argparse.Namespace,)


def load_torch(path: Path, mmap: bool = True) -> Any:
    """``torch.load`` with ``weights_only=True`` on the CPU, memory-mapped when possible."""
    import torch

    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)), pywarnings.catch_warnings():
            # torch's notes on pickle protocols: what matters is reported as a skipped file
            pywarnings.simplefilter("ignore", UserWarning)
            try:
                return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError as e:
                if mmap and "mmap can only be used" in str(e):
                    return torch.load(str(path), map_location="cpu", weights_only=True)
                raise
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower() or "unsupported global" in str(e).lower():
            raise UnsafeFile(SAFETY) from None
        raise UnreadableFile(one_line(e)) from None
    except MemoryError:
        raise UnreadableFile("too large to unpickle") from None
    except Exception as e:  # noqa: BLE001 - torch raises many kinds on damaged files
        raise UnreadableFile(one_line(e)) from None


def _is_tensor(v: Any) -> bool:
    return hasattr(v, "shape") and hasattr(v, "dtype") and hasattr(v, "detach")


def _tensor_mapping(obj: Any) -> bool:
    return isinstance(obj, Mapping) and any(_is_tensor(v) for v in obj.values())


def find_state_dict(obj: Any) -> tuple[str | None, Mapping[str, Any]]:
    """``(key, state_dict)``: ``key`` is None for a bare state_dict, else where it sat.

    Raises
    ------
    UnreadableFile : no name -> tensor mapping in it.
    """
    if isinstance(obj, (tuple, list)) and obj and all(_is_tensor(v) for v in obj):
        shapes = ", ".join(str(list(v.shape)) for v in obj[:3]) + (" ..." if len(obj) > 3 else "")
        raise NotWeights(f"holds a {type(obj).__name__} of {len(obj)} tensors ({shapes}), "
                         f"data rather than a state_dict")
    if not isinstance(obj, Mapping):
        raise UnreadableFile(f"holds a {type(obj).__name__}, not a state_dict")
    for key in STATE_KEYS:
        if key in obj and _tensor_mapping(obj[key]):
            return key, obj[key]
    if obj and all(_is_tensor(v) for v in obj.values()):
        return None, obj
    keys = ", ".join(str(k) for k in list(obj)[:6])
    raise UnreadableFile(f"no state_dict in it (keys: {keys})")


def _scalar(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if _is_tensor(v) and v.numel() == 1 and not v.dtype.is_complex:
        return float(v.reshape(-1)[0].item())
    return None


def checkpoint_meta(obj: Any, key: str | None) -> dict[str, Any]:
    """Step, epoch, other positions, bookkeeping (``info``) and the metric scalars stored
    beside the weights in a checkpoint dict (see :mod:`lossview.core.io.bookkeeping`)."""
    if key is None or not isinstance(obj, Mapping):
        return {}
    step = _scalar(first_present(STEP_KEYS, obj))
    epoch = _scalar(first_present(EPOCH_KEYS, obj))
    scalars, positions = {}, {}
    for k, v in obj.items():
        if k == key or not isinstance(k, str) or is_bookkeeping(k, v):
            continue
        s = _scalar(v)
        if s is None:
            continue
        if k in POSITION_KEYS:
            positions[k] = s
        else:
            scalars[metric_name(k, obj)] = s
    return {"step": None if step is None or not math.isfinite(step) else int(step),
            "epoch": None if epoch is None or not math.isfinite(epoch) else epoch,
            "scalars": scalars, "positions": positions, "info": bookkeeping(obj, key)}


def tensor_info(sd: Mapping[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
    """name -> (shape, dtype) of the tensors of a state_dict (no data read)."""
    return {str(k): (tuple(int(s) for s in v.shape), str(v.dtype))
            for k, v in sd.items() if _is_tensor(v)}


def to_numpy(t: Any) -> np.ndarray:
    """A CPU numpy copy; bfloat16 and float16 widened to float32."""
    import torch

    t = t.detach()
    if t.dtype in (torch.bfloat16, torch.float16) or (
            t.dtype.is_floating_point and t.dtype not in (torch.float32, torch.float64)):
        t = t.float()  # fp8 and the like have no numpy type either
    return t.cpu().contiguous().numpy().copy()


def loaded_to_numpy(t: Any) -> np.ndarray:
    """:func:`to_numpy` for a tensor this process just loaded from a file (nobody else
    holds it): no copy where the array can share the tensor's memory, i.e. after a widening
    (a new tensor already) or when the tensor is contiguous and spans its whole storage
    (a view into a larger storage is still copied, so the array does not pin it)."""
    import torch

    t = t.detach()
    if t.dtype in (torch.bfloat16, torch.float16) or (
            t.dtype.is_floating_point and t.dtype not in (torch.float32, torch.float64)):
        return t.float().numpy()  # fp8 and the like have no numpy type either
    if (t.device.type == "cpu" and t.is_contiguous() and t.storage_offset() == 0
            and t.untyped_storage().nbytes() == t.numel() * t.element_size()):
        return t.numpy()
    return to_numpy(t)


def inspect_file(path: Path) -> tuple[dict, dict[str, Any]]:
    """Open one torch file lazily: ``(tensor info, meta)``.

    ``meta`` holds ``key`` (where the state_dict sat), ``step``, ``epoch``, ``scalars`` and
    ``optimizer`` (settings saved beside the weights, see :mod:`lossview.core.io.optimizer`).
    Raises :class:`UnsafeFile` or :class:`UnreadableFile`.
    """
    obj = load_torch(path)
    key, sd = find_state_dict(obj)
    from lossview.core.io.normalise import tied_aliases

    tied = tied_aliases(sd)  # one storage under two names (tied weights) counts once
    info = {k: v for k, v in tensor_info(sd).items() if k not in tied}
    if key is None and (data := dataset_like(info)) is not None:
        raise NotWeights(f"holds data, not weights ({data})")
    meta = checkpoint_meta(obj, key)
    meta["key"] = key
    meta["tied"] = tied
    if key is not None:
        from lossview.core.io.optimizer import from_checkpoint

        meta["optimizer"] = from_checkpoint(obj)
    del obj, sd
    return info, meta


class TorchReader:
    """Tensors of one snapshot, read from its torch file on demand."""

    def __init__(self, format: str = "torch") -> None:
        self.format = format

    def read(self, snapshot: Snapshot) -> TensorDict:
        out: TensorDict = {}
        for f in snapshot.meta.get("files", [snapshot.source]):
            try:
                obj = load_torch(Path(f))
                key = snapshot.meta.get("key")
                sd = obj if key is None else obj[key]
                out.update({str(k): loaded_to_numpy(v) for k, v in sd.items() if _is_tensor(v)})
            except (UnsafeFile, UnreadableFile, KeyError, TypeError) as e:
                raise LossviewError(f"cannot read {Path(f).name}: {one_line(e)}") from None
        return out


def scan_torch_files(files: Sequence[Path], unsafe: list[Path] | None = None
                     ) -> tuple[list[tuple[Path, dict, dict]], list[str]]:
    """Inspect each file; unreadable or unsafe ones become warnings naming the file (and the
    unsafe ones are appended to ``unsafe`` when given, for :func:`unsafe_refusal`)."""
    found, warnings = [], []
    for f in files:
        try:
            info, meta = inspect_file(f)
        except UnsafeFile:
            warnings.append(f"{f.name}: {SAFETY}")
            if unsafe is not None:
                unsafe.append(f)
            continue
        except NotWeights as e:
            warnings.append(f"skipped {f.name}: {e}")
            continue
        except UnreadableFile as e:
            warnings.append(f"skipped {f.name}: not a readable checkpoint ({e})")
            continue
        found.append((f, info, meta))
    return found, warnings


def unsafe_refusal(path: Path, unsafe: Sequence[Path], n_files: int) -> str | None:
    """The one-line reason for torch files that all need pickled code (whole models saved
    with ``torch.save(model)``), saying what to do; None when some file could be read."""
    if not unsafe or len(unsafe) < n_files:
        return None
    where = "" if path.is_file() else f"no readable checkpoints in {path}: "
    if len(unsafe) == 1:
        return (f"{where}{unsafe[0].name}: needs pickled code to load (a whole model saved "
                f"with torch.save(model)?); {SAFETY_FIX}")
    names = ", ".join(f.name for f in unsafe[:3]) + (" ..." if len(unsafe) > 3 else "")
    return (f"{where}all {len(unsafe)} torch files ({names}) need pickled code to load "
            f"(whole models saved with torch.save(model)?); {SAFETY_FIX}")


def snapshots_from_scan(found: Sequence[tuple[Path, dict, dict]], note_copies: bool = True
                        ) -> tuple[list, list[str]]:
    """``(Snapshot, info)`` entries: step from the file's metadata, else its epoch (epoch-only
    checkpoints), else the numbers in its name; a name without a number (``model_final.pt``)
    goes after the others (see :func:`~lossview.core.io.filescan.positions_from_names`).
    ``meta["position"]`` says which unit the step is in (``"epoch"`` when it came from an
    ``epoch`` key or an epoch in the name). A number-less file (``last.pth.tar``,
    ``model_best.pth.tar``) whose stored position repeats a numbered file's is a copy of
    it and is left out, with a note unless ``note_copies`` is False (Lightning's
    ``last.ckpt``, which ``ModelCheckpoint(save_last=True)`` always writes)."""
    from lossview.core.io.filescan import positions_from_names
    from lossview.core.io.naming import epoch_from_name, is_alias_name, step_from_name

    warnings: list[str] = []
    no_meta = [i for i, (_, _, m) in enumerate(found)
               if m.get("step") is None and m.get("epoch") is None]
    known = [int(m["step"] if m.get("step") is not None else m["epoch"])
             for _, _, m in found if m.get("step") is not None or m.get("epoch") is not None]
    name_steps, name_epochs, name_units, w = positions_from_names(
        [found[i][0] for i in no_meta], known=known)
    warnings += w
    by_name = dict(zip(no_meta, zip(name_steps, name_epochs, name_units)))
    entries = []
    for i, (f, info, meta) in enumerate(found):
        epoch = meta.get("epoch")
        if meta.get("step") is not None:
            step, unit = int(meta["step"]), "step"
        elif epoch is not None:
            step, unit = int(epoch), "epoch"
        else:
            step, epoch, unit = by_name[i]
        if epoch is None:
            e = epoch_from_name(f)
            epoch = None if e is None else float(e)
        snap_meta = {"key": meta.get("key"), "scalars": meta.get("scalars", {}),
                     "position": unit, "optimizer": meta.get("optimizer"),
                     "positions": meta.get("positions", {}), "info": meta.get("info", {})}
        entries.append((Snapshot(step=step, source=f, epoch=epoch, meta=snap_meta), info))
    def unnumbered(f: Path) -> bool:
        return step_from_name(f) is None or is_alias_name(f)

    numbered = {s.step: s.source.name for s, _ in entries if not unnumbered(s.source)}
    kept = []
    for s, info in entries:
        if unnumbered(s.source) and s.step in numbered:
            unit = "epoch" if s.meta.get("position") == "epoch" else "step"
            if note_copies:
                warnings.append(f"left out {s.source.name}: a copy of {unit} {s.step} "
                                f"({numbered[s.step]})")
            continue
        kept.append((s, info))
    return kept, warnings


def checkpoint_info(entries: Sequence[tuple[Snapshot, Any]]) -> dict:
    """Bookkeeping saved in the newest checkpoint (``args``, ``config``, ``version``...), for
    ``run.spec["checkpoint_meta"]``."""
    for snap, _ in sorted(entries, key=lambda e: e[0].step, reverse=True):
        if snap.meta.get("info"):
            return dict(snap.meta["info"])
    return {}


def scalar_series(entries: Sequence[tuple[Snapshot, Any]]) -> dict:
    """Metric series of the scalars stored in the checkpoints (the tutorial's ``loss``)."""
    from lossview.core.run import MetricSeries

    cols: dict[str, list[tuple[int, float]]] = {}
    for snap, _ in entries:
        for k, v in snap.meta.get("scalars", {}).items():
            cols.setdefault(k, []).append((snap.step, v))
    out = {}
    for k, pts in cols.items():
        pts.sort(key=lambda p: p[0])
        out[k] = MetricSeries(np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
    return out
