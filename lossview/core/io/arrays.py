"""Plain ``.safetensors`` and ``.npz`` files (a folder of them, or one file).

Opening reads the safetensors JSON header (``safe_open``) or the ``.npy`` headers inside
the npz zip; tensor data is read by :meth:`read` only. npz files are opened with
``allow_pickle=False``: object arrays (pickles) are refused, never executed.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lossview.core.errors import LossviewError
from lossview.core.io.filescan import one_line, positions_from_names
from lossview.core.io.native import safetensors_info
from lossview.core.run import Snapshot, TensorDict

_STEP_META = ("step", "global_step", "iteration")
_EPOCH_META = ("epoch",)


#: safetensors dtypes numpy holds natively; the others (BF16, F8_*) go through torch.
_NUMPY_DTYPES = frozenset({"F16", "F32", "F64", "I8", "I16", "I32", "I64", "U8", "U16", "U32",
                           "U64", "BOOL"})


def widen(a: np.ndarray) -> np.ndarray:
    """float16, and the extension floats ``ml_dtypes`` registers with numpy (bfloat16, fp8;
    keras and jax import it), become float32, exactly; other arrays are returned as they are."""
    if a.dtype == np.float16 or (a.dtype.kind == "V" and a.dtype.itemsize <= 2
                                 and a.dtype.names is None):
        return a.astype(np.float32)
    return a


def read_safetensors_file(path: Path) -> TensorDict:
    """Every tensor of a ``.safetensors`` file, in the file's order. float16 is widened to
    float32 by numpy; bfloat16 and fp8, which numpy has no type for, are read through
    safetensors' torch API and widened there: every bfloat16 is a float32 with the low 16
    mantissa bits zero, so the values are exact."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        keys = list(f.keys())
        other = {k for k in keys if str(f.get_slice(k).get_dtype()) not in _NUMPY_DTYPES}
        out = {k: widen(f.get_tensor(k)) for k in keys if k not in other}
    if other:
        from lossview.core.io.torchfiles import loaded_to_numpy

        with safe_open(str(path), framework="pt") as f:  # widened once, not copied again
            out.update({k: loaded_to_numpy(f.get_tensor(k)) for k in other})
    return {k: out[k] for k in keys}


def npz_info(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """name -> (shape, dtype) from the ``.npy`` headers inside an npz, no array data read."""
    info = {}
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if not name.endswith(".npy"):
                raise ValueError(f"member {name} is not a .npy array")
            with z.open(name) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            if dtype.hasobject:
                raise ValueError(f"array {name[:-4]} holds Python objects (a pickle); not loaded")
            info[name[:-4]] = (tuple(int(s) for s in shape), str(dtype))
    return info


def read_npz(path: Path) -> TensorDict:
    with np.load(path, allow_pickle=False) as z:
        return {k: widen(np.asarray(z[k])) for k in z.files}


class ArrayFileReader:
    """Reads one snapshot's ``.safetensors`` file(s) or ``.npz`` file on demand."""

    def __init__(self, format: str) -> None:
        self.format = format

    def read_into(self, snapshot: Snapshot, shapes, offsets, out) -> bool:
        """Parameters straight from safetensors bytes into a flat vector (see
        :func:`lossview.core.io.ranges.read_safetensors_into`); False for npz."""
        if self.format == "npz":
            return False
        from lossview.core.io.ranges import read_safetensors_into

        return read_safetensors_into(snapshot, shapes, offsets, out)

    def read(self, snapshot: Snapshot) -> TensorDict:
        out: TensorDict = {}
        for f in snapshot.meta.get("files", [snapshot.source]):
            f = Path(f)
            try:
                out.update(read_npz(f) if f.suffix.lower() == ".npz" or self.format == "npz"
                           else read_safetensors_file(f))
            except Exception as e:  # noqa: BLE001 - a file damaged after opening
                raise LossviewError(f"cannot read {f.name}: {one_line(e)}") from None
        return out


def _meta_number(meta: dict, keys: Sequence[str]) -> float | None:
    for k in keys:
        try:
            return float(meta[k])
        except (KeyError, TypeError, ValueError):
            continue
    return None


def scan_array_files(files: Sequence[Path], fmt: str) -> tuple[list, list[str]]:
    """``(Snapshot, info)`` entries for safetensors or npz files, and warnings for bad ones."""
    found, warnings = [], []
    for f in files:
        try:
            if fmt == "npz":
                info, meta = npz_info(f), {}
            else:
                info, meta = safetensors_info(f)
        except Exception as e:  # noqa: BLE001 - any damaged file is named and skipped
            warnings.append(f"skipped {f.name}: not a readable {fmt} file ({one_line(e)})")
            continue
        found.append((f, info, meta))
    name_steps, name_epochs, name_units, w = positions_from_names([f for f, _, _ in found])
    warnings += w
    entries = []
    for (f, info, meta), nstep, nepoch, nunit in zip(found, name_steps, name_epochs, name_units):
        step = _meta_number(meta, _STEP_META)
        epoch = _meta_number(meta, _EPOCH_META)
        unit = "step"
        if step is None:
            step, unit = (epoch, "epoch") if epoch is not None else (nstep, nunit)
        entries.append((Snapshot(step=int(step), source=f,
                                 epoch=epoch if epoch is not None else nepoch,
                                 meta={"position": unit}), info))
    return entries, warnings
