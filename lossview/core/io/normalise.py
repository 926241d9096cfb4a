"""Tensor names that differ only by a wrapper, tied tensors stored twice, narrow dtypes.

``torch.compile`` returns an ``OptimizedModule`` holding the model as ``_orig_mod``, so a
state_dict saved after compiling names ``net.0.weight`` as ``_orig_mod.net.0.weight``;
``DistributedDataParallel`` and ``DataParallel`` hold it as ``module`` (``module.net.0.weight``).
Snapshots saved before and after compiling (or with and without DDP) would otherwise not
line up, and a user's plain model would not load them. Rules, per snapshot:

* every ``_orig_mod`` component is removed, wherever it sits (``encoder._orig_mod.fc.weight``
  from compiling a sub-module): no other PyTorch module uses that attribute name;
* a leading ``module.`` is removed when *every* tensor of the snapshot starts with it (DDP
  wraps the whole model; a model with one sub-module called ``module`` among others keeps it),
  repeatedly (``module._orig_mod.`` and ``_orig_mod.module.`` both vanish);
* a snapshot whose names would collide after this is left as it is.

:func:`normalise_entries` applies this before the snapshots are compared and writes what
it did in ``spec["normalised"]`` (a list of sentences), together with the narrow float dtypes
(bfloat16, float16) that are read as float32, exactly. The reader is wrapped so that reads
give the normalised names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lossview.core.run import Snapshot, TensorDict

COMPILE, DDP = "_orig_mod", "module"


def normalised_names(names: Sequence[str]) -> tuple[dict[str, str], set[str]]:
    """``raw -> normalised`` for the names that change (empty when none does, or when two
    would collide), and which wrappers were removed (``{"_orig_mod.", "module."}``)."""
    parts = {n: list(n.split(".")) for n in names}
    removed: set[str] = set()
    for n, p in parts.items():
        kept = [x for x in p if x != COMPILE]
        if len(kept) != len(p) and kept:
            removed.add(COMPILE + ".")
            parts[n] = kept
    while parts and all(len(p) > 1 and p[0] == DDP for p in parts.values()):
        removed.add(DDP + ".")
        parts = {n: p[1:] for n, p in parts.items()}
    mapping = {n: ".".join(p) for n, p in parts.items() if ".".join(p) != n}
    if not mapping or len({".".join(p) for p in parts.values()}) != len(parts):
        return {}, set()
    return mapping, removed


class RenamingReader:
    """Wraps a reader: tensors come back under the names ``snapshot.meta["renamed"]`` gives
    (``raw -> normalised``); everything else is the inner reader's."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.format = inner.format
        if hasattr(inner, "read_into"):
            self.read_into = self._read_into

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def read(self, snapshot: Snapshot) -> TensorDict:
        data = self.inner.read(snapshot)
        ren = snapshot.meta.get("renamed")
        return {ren.get(k, k): v for k, v in data.items()} if ren else data

    def _read_into(self, snapshot: Snapshot, shapes: Mapping[str, tuple[int, ...]],
                   offsets: np.ndarray, out: np.ndarray) -> bool:
        inv = {v: k for k, v in (snapshot.meta.get("renamed") or {}).items()}
        raw = {inv.get(n, n): s for n, s in shapes.items()}
        return self.inner.read_into(snapshot, raw, offsets, out)


_WHAT = {"_orig_mod.": "'_orig_mod.' (torch.compile)", "module.": "'module.' (DDP/DataParallel)"}


def _narrow(dtype: str) -> str | None:
    d = str(dtype).lower().replace("torch.", "")
    if d in ("bf16", "bfloat16"):
        return "bfloat16"
    if d in ("f16", "float16", "half"):
        return "float16"
    return None


def normalise_entries(entries: Sequence[tuple[Snapshot, Mapping]], reader: Any,
                      spec: Mapping[str, Any] | None, buffer_names: Sequence[str] = ()):
    """``(entries, reader, spec, buffer_names)`` with wrapper prefixes removed from the tensor
    names of each snapshot (see the module doc) and ``spec["normalised"]`` saying what was
    done; ``buffer_names`` (names a native file lists as buffers) are renamed alike."""
    out = []
    renamed: dict[str, str] = {}
    changed: dict[str, list[int]] = {}
    narrow: dict[str, int] = {}
    for snap, info in entries:
        mapping, removed = normalised_names(list(info))
        for d in {_narrow(dt) for _, dt in info.values()} - {None}:
            narrow[d] = narrow.get(d, 0) + 1
        if mapping:
            for r in removed:
                changed.setdefault(r, []).append(snap.step)
            renamed.update(mapping)
            snap = dataclasses.replace(snap, meta={**snap.meta, "renamed": mapping})
            info = {mapping.get(k, k): v for k, v in info.items()}
        out.append((snap, info))
    notes = list((spec or {}).get("normalised") or [])
    n = len(entries)
    for prefix, steps in sorted(changed.items()):
        which = "every snapshot" if len(steps) == n else (
            f"{len(steps)} of {n} snapshots (steps {', '.join(map(str, sorted(steps)[:4]))}"
            f"{' ...' if len(steps) > 4 else ''})")
        notes.append(f"removed {_WHAT[prefix]} from the tensor names of {which}")
    tied = next((s.meta["tied"] for s, _ in entries if s.meta.get("tied")), None)
    if tied:
        pairs = [f"{a} = {b}" for a, b in tied.items()]
        notes.append("tied tensors stored once, counted once: " + ", ".join(pairs[:3])
                     + (" ..." if len(pairs) > 3 else ""))
    for d, k in sorted(narrow.items()):
        which = "every snapshot" if k == n else f"{k} of {n} snapshots"
        notes.append(f"{d} tensors in {which} read as float32 (exactly)")
    if not changed and not notes:
        return list(entries), reader, spec, buffer_names
    spec = {**(spec or {}), "normalised": notes}
    buffer_names = [renamed.get(b, b) for b in buffer_names]
    return out, (RenamingReader(reader) if changed else reader), spec, buffer_names


def tied_aliases(state_dict: Mapping[str, Any]) -> dict[str, str]:
    """``alias -> kept name`` for tensors of a loaded torch state_dict that are views of the
    same storage with the same offset, shape and strides: tied weights (GPT-2's
    ``lm_head.weight`` is ``transformer.wte.weight``), which ``torch.save`` stores once and
    ``state_dict()`` lists twice. The first name in the state_dict's order is kept, as
    safetensors and accelerate keep it."""
    seen: dict[tuple, str] = {}
    out: dict[str, str] = {}
    for name, t in state_dict.items():
        try:
            if t.numel() == 0:
                continue
            key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape),
                   tuple(t.stride()), str(t.dtype))
        except (AttributeError, RuntimeError, TypeError):
            continue
        if key in seen:
            out[str(name)] = seen[key]
        else:
            seen[key] = str(name)
    return out
